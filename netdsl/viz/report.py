"""The one-page HTML report of a model (`netdsl report`): one self-contained file a student keeps
open next to the lecture.

    text = report_html(m, x=None)            # x: one input [1, C, H, W] for the feature maps
    write_report(text, "resnet18.html")

The page, top to bottom:
- a header: the model, its totals, the input and the weights it describes;
- the graph: netdsl/viz/svg.py's drawing inline (as written, and as it runs after the passes),
  collapsed to the depth `netdsl graph` would choose for a big model; wheel or buttons zoom,
  dragging pans, a click on a box opens its <article> in the side panel: the layer's op, shape,
  params and MACs, its inputs and users (links), the lines `netdsl explain` prints for it
  (analysis/report.explain_layer), its receptive field (theoretical from the analysis; the exact
  support picture of netdsl/viz/rf.py for the picture layers), its feature maps (Model.features
  drawn by viz/grid.py, an embedded PNG) when an input is given, and what the passes did to it;
- the summary table (the rows and the formatting of `netdsl summary`), sortable by any column;
- the memory plan as a timeline: runtime/plan.lower(graph, n, kernels=False) of the graph as it
  runs (no C extension needed); one rectangle per root buffer, from the step that writes it to
  the last one that reads it, at its arena offset, so the top of the chart is the arena peak; the
  live total per step drawn over it, whose maximum is the lower bound;
- the optimizations applied: every rewrite of the passes with its source line, the totals per
  pass, and the planner's decisions (concats elided, buffers reused in place).

Self-contained: the CSS and JavaScript (report_assets/report.css and report.js: hand-written,
about 200 lines, no library) are inlined, every picture is a data: URI, nothing is fetched, so the
file works opened from disk with no network. Pictures (feature maps, receptive fields) are drawn
only for the "picture layers" — one per stage by default (Model.feature_layers), or the ones
asked for — so a ResNet-152 or DenseNet-201 report stays a few hundred KB.

Not done here: running anything in the page (it is a picture of one run), pictures for every
layer (`netdsl features` / `netdsl rf` draw any layer), a batch of inputs (the first sample is
drawn; --batch only sizes the memory plan).
"""
from __future__ import annotations

import base64
import io
import json
import os
from html import escape

from .. import __version__
from ..analysis.report import _fmt_bytes, _fmt_int, _fmt_macs, explain_layer
from ..errors import NetDSLError
from ..model import stage_layers
from ..passes import optimize
from ..runtime.plan import lower, report_lines
from .features import check_maps
from .labels import op_args, scope_block
from .svg import MAX_BOXES, _check_depth, _unit_of, block_levels, fitting_depth, fusion_badges, to_svg

ASSETS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "report_assets")
CAP = 16                # channels drawn per feature map (the panel is one screen, not a poster)
PANEL_W = 460           # px: feature sheets wrap their tiles to this, so they show unscaled in the panel
RF_SIDE = 224          # px: receptive-field pictures of smaller inputs are enlarged to this
TL_H = 300              # px: height of the memory chart's plot area
MIB = 2 ** 20
DOT = " \u00b7 "


def _asset(name: str) -> str:
    with open(os.path.join(ASSETS, name), encoding="utf-8") as f:
        return f.read()


def _png_uri(img) -> str:
    buf = io.BytesIO()
    img.save(buf, "PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _jpeg_uri(img) -> str:
    """A photo-like picture (a receptive field shaded over the input): JPEG is a third of the PNG."""
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _a(s) -> str:
    return escape(str(s), quote=True)


def _link(name: str) -> str:
    """A layer's name that selects it when clicked (the page's script reads the text)."""
    return f'<a class="sel">{escape(name)}</a>'


def _rf_text(rf) -> str:
    return str(rf[0]) if rf[0] == rf[1] else f"{rf[0]}x{rf[1]}"


def _jump_text(node) -> str:
    j = node.jump
    if j is None:
        return "1"
    vals = [int(v) if v.denominator == 1 else float(v) for v in j]
    return str(vals[0]) if vals[0] == vals[1] else f"{vals[0]}x{vals[1]}"


# -- what runs -------------------------------------------------------------------------------

def run_graph(m, level=None):
    """(graph as it runs, passes' report or None, level, rewrite lines): `m.graph` optimized at
    `level` (default m.run_level) on a copy; a compiled bundle is already optimized, and its
    header keeps the rewrite lines."""
    if m.bundle is not None:
        if level is not None and level != m.opt_level:
            raise NetDSLError(f"{m.path or m.name} is a bundle compiled at -O{m.opt_level}; it runs at that level",
                              hint="leave -O out, or report on the .net source at another level")
        return m.graph, None, m.opt_level, list(m.bundle.get("rewrites", []))
    level = m.run_level if level is None else level
    if level <= m.opt_level:
        return m.graph, None, level, []
    g, _, report = optimize(m.graph, None, level)
    return g, report, level, list(report.render())


def picture_layers(m, layers=None) -> list:
    """The layers that get feature maps and an exact receptive-field picture: `layers` (checked:
    known names that are feature maps) or one per stage."""
    if layers is None:
        return stage_layers(m.graph)
    names = m.feature_layers(layers)
    check_maps(m, names)
    return names


# -- the graph -------------------------------------------------------------------------------

def _inline_svg(text: str, key: str) -> str:
    """netdsl/viz/svg.py's document as an element of the page: its size moved to data- attributes
    (the page sizes it), everything wrapped in the <g class="viewport"> the zoom transforms, and
    the arrow marker's id made unique per view."""
    head, rest = text.split(">", 1)
    attrs = dict(kv.split("=", 1) for kv in head[len("<svg "):].split('" ') if "=" in kv)
    w, h = (attrs[k].strip('"') for k in ("width", "height"))
    rest = rest.replace('id="arrow"', f'id="arrow-{key}"').replace("url(#arrow)", f"url(#arrow-{key})")
    body, _ = rest.rsplit("</svg>", 1)
    return (f'<svg xmlns="http://www.w3.org/2000/svg" class="graph-svg" data-width="{w}" data-height="{h}" '
            f'font-family="Helvetica, Arial, sans-serif" font-size="11"><g class="viewport">{body}</g></svg>')


def graph_views(m, g_run, report, level, depth=None, max_boxes=MAX_BOXES) -> list:
    """[(key, button label, inline SVG or None, note, {layer: box it is drawn in})]: the graph as
    written and, when the passes changed it, as it runs (fused layers marked). A drawing that does
    not fit in max_boxes boxes even with its blocks collapsed is a note instead of an SVG."""
    bundle = m.bundle is not None
    todo = [("written", f"compiled at -O{level}" if bundle else "as written", m.graph,
             fusion_badges(m.graph, None) if bundle else {})]
    if not bundle and g_run is not m.graph:
        todo.append(("runs", f"as it runs (-O{level})", g_run, fusion_badges(g_run, report)))
    views = []
    for key, label, g, badges in todo:
        d = depth if depth is not None else (fitting_depth(g, max_boxes) or None)   # 0: nothing fits
        levels = block_levels(g.blocks)
        note = [label]
        if badges:
            note.append(f"{len(badges)} layers carry fused or folded ops (orange)")
        if d:
            note.append(f"blocks nested {d} deep drawn as one box each (--depth {d})")
        try:
            svg = _inline_svg(to_svg(g, name=m.name, depth=d, badges=badges, note=" \u00b7 ".join(note),
                                     max_boxes=max_boxes), key)
        except NetDSLError as e:
            svg, note = None, [f"the graph is not drawn: {e.diagnostics[0].message}; the summary table below "
                               "lists every layer"]
        boxes = {n.name: _unit_of(n, g.blocks, levels, d).lstrip("\x00") for n in g.nodes()}
        views.append((key, label, svg, " \u00b7 ".join(note), boxes))
    return views


def absorbed(g, g_run, report) -> dict:
    """{layer of `g` that is not in `g_run`: (the layer of g_run that computes its value now, or
    None when it was removed, [the rewrite lines that did it])}. A rewrite names the layer it
    changed and cites the removed layer's source (its span): a removed layer went into the
    rewrite's layer when that one is its input (BN folded, ReLU fused) or when the message names
    it (an Add fused as a residual, a no-op removed); chains (ReLU into an Add into a Conv) are
    followed to the end."""
    gone = [n.name for n in g.nodes() if n.name not in g_run]
    recs = list(report or ())
    into: dict[str, tuple] = {}

    def now(p):                     # who computes p's value by now (a folded BN: its conv)
        seen = set()
        while p in into and into[p][0] is not None and p not in seen:
            seen.add(p)
            p = into[p][0]
        return p
    for name in gone:               # in graph order: a layer's inputs are resolved before it
        node = g[name]
        ins = set(g.preds(name)) | {now(p) for p in g.preds(name)}
        named = [r for r in recs if r.node != name and name in r.message.replace(",", " ").split()]
        near = [r for r in recs if r.node in ins and r.span == node.span]     # (a block's instances share spans)
        for r in (named or near)[:1]:
            into[name] = (None if r.message.endswith("removed") else r.node, r)
    out = {}
    for name in gone:
        lines, cur, seen = [], name, set()
        while cur in into and cur not in seen:
            seen.add(cur)
            target, r = into[cur]
            lines.append(r.render(report.main_source))
            cur = target
        out[name] = (cur if cur is not None and cur in g_run else None, lines)
    return out


# -- the side panel --------------------------------------------------------------------------

def _figure(uri: str, alt: str, caption: str, cls: str) -> str:
    return (f'<figure class="{cls}"><img src="{uri}" alt="{_a(alt)}"><figcaption>{escape(caption)}</figcaption>'
            "</figure>")


def _layer_article(g, n, ctx) -> str:
    name = n.name
    block = scope_block(n, g.blocks)
    meta = [escape(" \u00b7 ".join(x for x in (
        "x".join(map(str, n.shape)) if n.shape else "?",
        f"{n.n_params:,} params" if n.n_params else "no params",
        f"{_fmt_macs(n.macs)} MACs" if n.macs else "",
        f"line {n.span.line}" if n.span else "") if x))]
    if block:
        meta.append(f"in {_link(block) if block in ctx['block_articles'] else escape(block)} "
                    f"({escape(g.blocks[block])})")
    preds, succs = g.preds(name), g.succs(name)
    outs = [k for k, v in g.outputs.items() if v == name]
    flow = []
    if preds:
        flow.append("inputs: " + ", ".join(_link(p) for p in preds))
    if succs:
        flow.append("used by: " + ", ".join(_link(s) for s in succs))
    if outs:
        flow.append("graph output " + ", ".join(escape(o) for o in outs))
    boxes = "".join(f' data-box-{k}="{_a(v[name])}"' for k, v in ctx["boxes"].items()
                    if name in v and v[name] != name)
    parts = [f'<article class="layer" data-name="{_a(name)}"{boxes} hidden>',
             f'<h3>{escape(name)} <span class="op">{escape(op_args(n))}</span></h3>',
             f'<p class="meta">{"<br>".join(meta)}</p>']
    if flow:
        parts.append(f'<p class="flow">{DOT.join(flow)}</p>')
    parts.append('<h4>The arithmetic <span class="src">(netdsl explain)</span></h4>')
    parts.append(f'<pre class="explain">{escape(chr(10).join(explain_layer(g, n)))}</pre>')
    if n.op == "Input":
        if ctx.get("input_uri"):
            parts.append(_figure(ctx["input_uri"], f"the input {name}", ctx["input_caption"], "input-pic"))
    elif n.rf:
        parts.append("<h4>Receptive field</h4>")
        parts.append(f'<p class="rf">theoretical: <b>{_rf_text(n.rf)}</b> input pixels, effective stride '
                     f"<b>{_jump_text(n)}</b> (one step in this map moves {_jump_text(n)} input pixels)</p>")
        if name in ctx["rf_pics"]:
            uri, cap = ctx["rf_pics"][name]
            parts.append(_figure(uri, f"receptive field of {name}", cap, "rf-pic"))
        elif n.shape is not None and len(n.shape) == 3:
            parts.append(f'<p class="hint">the exact field: <code>netdsl rf {escape(ctx["source"])} '
                         f"--layer {escape(name)}</code></p>")
    if ctx["have_input"] and n.op != "Input" and n.shape is not None and len(n.shape) == 3 \
            and n.shape[1] * n.shape[2] > 1:
        parts.append("<h4>Feature maps</h4>")
        if name in ctx["maps"]:
            uri, cap = ctx["maps"][name]
            parts.append(_figure(uri, f"feature maps of {name}", cap, "maps"))
        else:
            parts.append(f'<p class="hint">not drawn (one layer per stage is): <code>netdsl report '
                         f'{escape(ctx["source"])} --input ... --layers {escape(name)}</code></p>')
    notes = [escape(t) for t in ctx["records"].get(name, [])]
    if name in ctx["absorbed"]:
        target, lines = ctx["absorbed"][name]
        notes = [f"not in the graph as it runs; its value is computed by {_link(target)}" if target else
                 "not in the graph as it runs: removed"] + [escape(t) for t in lines]
    if notes:
        parts.append(f"<h4>Optimization (-O{ctx['level']})</h4>")
        parts.append("<ul class=\"opt\">" + "".join(f"<li>{t}</li>" for t in notes) + "</ul>")
    parts.append("</article>")
    return "".join(parts)


def _block_article(g, b, members, ctx) -> str:
    ms = [g[x] for x in members]
    names = set(members)
    ins = [p for x in ms for p in g.preds(x.name) if p not in names]
    out = [x for x in ms if x.name in g.outputs.values() or any(s not in names for s in g.succs(x.name))]
    shape_in = "x".join(map(str, g[ins[0]].shape)) if ins else "-"
    shape_out = "x".join(map(str, (out[-1] if out else ms[-1]).shape))
    params, macs = sum(x.n_params for x in ms), sum(x.macs for x in ms)
    pics = [x for x in members if x in ctx["maps"] or x in ctx["rf_pics"]]
    rows = "".join(f"<li>{_link(x.name)} <span class=\"op\">{escape(x.op)}</span> "
                   f"{escape('x'.join(map(str, x.shape)))}{' &#9635;' if x.name in pics else ''}</li>" for x in ms)
    return (f'<article class="layer block" data-name="{_a(b)}" data-pictures="{_a(" ".join(pics))}" hidden>'
            f'<h3>{escape(b)} <span class="op">{escape(g.blocks[b])} \u00b7 {len(ms)} layers</span></h3>'
            f'<p class="meta">{escape(shape_in)} \u2192 {escape(shape_out)} \u00b7 {params:,} params \u00b7 '
            f"{_fmt_macs(macs)} MACs</p>"
            f'<p class="hint">drawn as one box; its layers (click one; &#9635; has pictures):</p>'
            f'<ol class="members">{rows}</ol><div class="member-pictures"></div></article>')


# -- the summary table -----------------------------------------------------------------------

COLUMNS = (("#", "num"), ("layer", "text"), ("op", "text"), ("output", "num"), ("params", "num"),
           ("MACs", "num"), ("memory", "num"), ("RF", "num"), ("inputs", "text"), ("line", "num"))


def summary_table(m, summary: dict) -> str:
    """The rows of `netdsl summary` (same numbers, same formatting) as a sortable table: every
    cell's raw value in data-v (what sorting and the tests read)."""
    head = "".join(f'<th data-type="{t}" title="sort by {escape(c)}">{escape(c)}</th>' for c, t in COLUMNS)
    body = []
    for i, r in enumerate(summary["layers"]):
        shape = r["output_shape"]
        size = 1
        for d in shape:
            size *= d
        rf = r["receptive_field"]
        ins = r["inputs"]
        cells = [(i, str(i)), (r["name"], r["name"]), (r["op"], r["op"]),
                 (size, "x".join(map(str, shape))),
                 (r["params"], _fmt_int(r["params"]) if r["params"] else "-"),
                 (r["macs"], _fmt_macs(r["macs"]) if r["macs"] else "-"),
                 (r["memory_bytes"], _fmt_bytes(r["memory_bytes"])),
                 (rf[0] * rf[1], _rf_text(rf)), (", ".join(ins), ", ".join(ins)),
                 (r["line"] if r["line"] is not None else -1, str(r["line"] or ""))]
        tds = "".join(f'<td data-v="{_a(v)}">{escape(t)}</td>' for v, t in cells)
        body.append(f'<tr data-name="{_a(r["name"])}">{tds}</tr>')
    mem = summary.get("memory") or {}
    foot = (f'<tr><td colspan="4">total ({len(summary["layers"])} layers)</td>'
            f'<td data-v="{summary["total_params"]}">{summary["total_params"]:,}</td>'
            f'<td data-v="{summary["total_macs"]}">{_fmt_macs(summary["total_macs"])}</td>'
            f'<td data-v="{summary["activation_bytes"]}">{_fmt_bytes(summary["activation_bytes"])}</td>'
            '<td colspan="3"></td></tr>')
    totals = (f"total params: <b>{summary['total_params']:,}</b> \u00b7 MACs: <b>{summary['total_macs']:,}</b> "
              f"({_fmt_macs(summary['total_macs'])}) \u00b7 weights: {_fmt_bytes(summary['weight_bytes'])} \u00b7 "
              f"activations (batch 1): {_fmt_bytes(summary['activation_bytes'])}")
    if mem:
        totals += (f"<br>arena (batch 1, -O{mem['opt_level']}): {_fmt_bytes(mem['arena_bytes'])} peak \u00b7 "
                   f"naive sum {_fmt_bytes(mem['naive_bytes'])} \u00b7 lower bound "
                   f"{_fmt_bytes(mem['lower_bound_bytes'])}")
    return (f'<p class="totals" data-total-params="{summary["total_params"]}" '
            f'data-total-macs="{summary["total_macs"]}">{totals}</p>'
            '<p class="hint">click a column to sort (again: the other way); click a row to show the layer</p>'
            f'<div class="table-wrap"><table class="summary"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody><tfoot>{foot}</tfoot></table></div>')


# -- the memory timeline ---------------------------------------------------------------------

def live_bytes(plan) -> list:
    """Bytes of the root buffers live at each column of the timeline: column 0 is before the first
    step (the inputs), column k+1 is step k, the last is after the last step (the outputs)."""
    cols = len(plan.steps) + 2
    live = [0] * cols
    for b in plan.buffers:
        for c in range(b.first + 1, b.last + 2):
            live[c] += b.floats * 4
    return live


def _hue(i: int) -> str:
    return f"hsl({(i * 137.508) % 360:.0f}, 55%, 72%)"


def timeline_svg(plan, graph) -> str:
    """The memory plan as an SVG chart: x the execution steps, y the arena offset; one rectangle
    per root buffer (data-offset, data-bytes, data-first, data-last in bytes and steps), the arena
    peak and the lower bound as lines, the live total per step as a staircase."""
    steps = plan.steps
    cols = len(steps) + 2
    px = max(4.0, min(32.0, 1100.0 / cols))
    left, top, bottom = 74, 16, 130
    W = left + cols * px + 150
    arena = max(plan.arena_bytes, 1)
    ys = TL_H / arena

    def X(c):
        return left + c * px

    def Y(b):
        return top + TL_H - b * ys
    labels = ["inputs"] + [s.node for s in steps] + ["outputs"]
    live = live_bytes(plan)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="timeline" width="{W:.0f}" height="{top + TL_H + bottom}" '
           f'data-arena-bytes="{plan.arena_bytes}" data-lower-bound-bytes="{plan.lower_bound_bytes}" '
           f'font-family="Helvetica, Arial, sans-serif" font-size="10">',
           f'<rect x="{left}" y="{top}" width="{cols * px:.1f}" height="{TL_H}" fill="#fafafd" stroke="#ccc"/>']
    for k in range(5):                       # y axis: MiB
        v = arena * k / 4
        out.append(f'<line x1="{left - 4}" x2="{left + cols * px:.1f}" y1="{Y(v):.1f}" y2="{Y(v):.1f}" '
                   f'stroke="#e4e4ea"/><text x="{left - 6}" y="{Y(v) + 3:.1f}" text-anchor="end" fill="#555">'
                   f"{v / MIB:.2f} MiB</text>")
    for c in range(cols):                    # a column per step: hover says what is alive
        alive = sum(1 for b in plan.buffers if b.first + 1 <= c <= b.last + 1)
        out.append(f'<rect class="col" x="{X(c):.1f}" y="{top}" width="{px:.1f}" height="{TL_H}" fill="transparent">'
                   f"<title>{escape(f'step {c - 1}: {labels[c]}' if 0 < c < cols - 1 else labels[c])}: {alive} "
                   f"buffers alive, {live[c] / MIB:.2f} MiB</title></rect>")
    for b in plan.buffers:
        x0, x1 = X(b.first + 1), X(b.last + 2)
        y0, y1 = Y((b.offset + b.floats) * 4), Y(b.offset * 4)
        first = b.nodes[0] if b.nodes else ""
        tip = (f"buffer {b.id}: {', '.join(b.nodes)} \u00b7 {_fmt_bytes(b.floats * 4)} at offset "
               f"{b.offset * 4 / MIB:.2f} MiB \u00b7 alive from {labels[b.first + 1]} to {labels[b.last + 1]}")
        out.append(f'<rect class="buf" data-buffer="{b.id}" data-node="{_a(first)}" data-offset="{b.offset * 4}" '
                   f'data-bytes="{b.floats * 4}" data-first="{b.first}" data-last="{b.last}" x="{x0:.1f}" '
                   f'y="{y0:.1f}" width="{max(x1 - x0 - 0.5, 1):.1f}" height="{max(y1 - y0, 0.6):.1f}" '
                   f'fill="{_hue(b.id)}" stroke="#555" stroke-width="0.4"><title>{escape(tip)}</title></rect>')
    d = " ".join(f"{'M' if c == 0 else 'L'} {X(c):.1f} {Y(v):.1f} L {X(c + 1):.1f} {Y(v):.1f}"
                 for c, v in enumerate(live))
    out.append(f'<path class="live" d="{d}" fill="none" stroke="#1a55c0" stroke-width="1.5"/>')
    lb, right = plan.lower_bound_bytes, left + cols * px
    out.append(f'<line class="peak" x1="{left}" x2="{right:.1f}" y1="{Y(arena):.1f}" y2="{Y(arena):.1f}" '
               f'stroke="#c00" stroke-width="1.5"/><text x="{right + 6:.1f}" y="{Y(arena) + 4:.1f}" fill="#c00">'
               f"arena peak {plan.arena_bytes / MIB:.2f} MiB</text>")
    ly = Y(lb) + (14 if abs(Y(lb) - Y(arena)) < 12 else 4)
    out.append(f'<line class="lower-bound" x1="{left}" x2="{right:.1f}" y1="{Y(lb):.1f}" y2="{Y(lb):.1f}" '
               f'stroke="#1a55c0" stroke-dasharray="5,3"/><text x="{right + 6:.1f}" y="{ly:.1f}" fill="#1a55c0">'
               f"lower bound {lb / MIB:.2f} MiB</text>")
    every = max(1, int(-(-12 // px)))
    for c in range(0, cols, every):          # step names, rotated: each one ends under its column
        x, y = X(c) + px / 2 + 3, top + TL_H + 8
        out.append(f'<text x="{x:.1f}" y="{y}" transform="rotate(-60 {x:.1f} {y})" text-anchor="end" '
                   f'fill="#333">{escape(labels[c][-24:])}</text>')
    out.append("</svg>")
    return "".join(out)


def memory_section(plan, graph, level) -> str:
    mib = lambda b: f"{b / MIB:.2f} MiB"          # noqa: E731
    reuse = plan.naive_bytes / plan.arena_bytes if plan.arena_bytes else 1.0
    return (f'<p class="totals">batch {plan.n}, -O{level}: <b>arena peak {mib(plan.arena_bytes)}</b> \u00b7 lower '
            f"bound {mib(plan.lower_bound_bytes)} (the most bytes alive at one step: no placement of these buffers "
            f"can use less) \u00b7 naive sum {mib(plan.naive_bytes)} (one buffer per tensor; the plan reuses "
            f"memory {reuse:.1f}x) \u00b7 {len(plan.steps)} steps, {len(plan.buffers)} buffers</p>"
            '<p class="hint">each box is a buffer, from the step that writes it to the last one that reads it, at '
            "its place in the arena; the blue line is the total alive at each step. Hover for names, click a box "
            "to show its layer.</p>"
            f'<div class="timeline-wrap">{timeline_svg(plan, graph)}</div>')


def optimizations_section(report, lines, plan, g_run, level, bundle) -> str:
    parts = []
    if report is not None and report.passes:
        rows = "".join(f"<tr><td>{escape(p)}</td><td>{n}</td></tr>" for p, n in report.totals().items())
        parts.append(f'<table class="passes"><thead><tr><th>pass (-O{level})</th><th>rewrites</th></tr></thead>'
                     f"<tbody>{rows}</tbody></table>")
        records = report.render(totals=False)
    else:
        records = lines
        if not lines:
            parts.append(f"<p>-O{level}: no passes ran, the graph runs as written.</p>")
        elif bundle:
            parts.append(f"<p>compiled bundle: the rewrites made when it was compiled at -O{level}.</p>")
    if records:
        parts.append(f'<h3>Rewrites ({len(records)})</h3><ol class="rewrites">'
                     + "".join(f"<li>{escape(t)}</li>" for t in records) + "</ol>")
    parts.append('<h3>Memory planner</h3><ul class="planner">'
                 + "".join(f"<li>{escape(t)}</li>" for t in report_lines(plan, g_run)) + "</ul>")
    return "".join(parts)


# -- the page --------------------------------------------------------------------------------

def report_html(m, x=None, *, layers=None, cap: int = CAP, batch: int = 1, level=None, depth=None,
                max_boxes: int = MAX_BOXES, background=None, source=None, input_label=None,
                weights_label=None) -> str:
    """The report page of Model `m` as one HTML string (see the module docstring).

    x: one input [1, C, H, W] (None: no feature maps); layers: the picture layers (default one per
    stage); cap: channels drawn per map; batch: the memory plan's batch size; level: the -O level
    it runs at (default m.run_level); depth: the graph's collapse depth (default: what fits in
    max_boxes); background: uint8 H x W x 3 drawn under the receptive fields (default: x, or a
    grey canvas); source: how the model is named in command hints; input_label, weights_label:
    what the header says about them."""
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise NetDSLError(f"--batch must be at least 1, got {batch!r}")
    if cap < 1:
        raise NetDSLError(f"--cap must be at least 1, got {cap}")
    g = m.graph
    _check_depth(g, depth)                  # a bad --depth is the user's error, not a note on the page
    source = source or m.path or m.name
    g_run, report, level, rewrite_lines = run_graph(m, level)
    pics = picture_layers(m, layers)
    plan = lower(g_run, batch, kernels=False)
    summary = m.summary_dict()
    views = graph_views(m, g_run, report, level, depth, max_boxes)

    records: dict[str, list] = {}
    for r in (report or ()):
        records.setdefault(r.node, []).append(r.render(report.main_source))
    ctx = {"source": source, "level": level, "g_run": g_run, "records": records, "maps": {}, "rf_pics": {},
           "have_input": x is not None, "boxes": {key: boxes for key, _, _, _, boxes in views},
           "absorbed": absorbed(g, g_run, report) if g_run is not g else {}}
    _pictures(m, x, pics, cap, background, ctx)

    collapsed = {}
    for *_, boxes in views:
        for layer, box in boxes.items():
            if box != layer and box in g.blocks and layer in g:
                collapsed.setdefault(box, []).append(layer)
    ctx["block_articles"] = set(collapsed)
    for b in collapsed:
        collapsed[b] = [n.name for n in g.nodes() if n.name in set(collapsed[b])]
    articles = [_layer_article(g, n, ctx) for n in g.nodes()]
    articles += [_layer_article(g_run, n, ctx) for n in g_run.nodes() if n.name not in g]
    articles += [_block_article(g, b, ms, ctx) for b, ms in collapsed.items()]

    t = summary
    outs = ", ".join(("" if k == "output" else k + " ") + "x".join(map(str, s)) for k, s in m.output_shapes.items())
    ins = ", ".join(f"{k} {'x'.join(map(str, s))}" for k, s in m.input_shapes.items())
    facts = [f"{t['total_params']:,} params", f"{_fmt_macs(t['total_macs'])} MACs", f"{len(g)} layers",
             f"input {ins} \u2192 output {outs}",
             weights_label or ("weights loaded" if m.weights_loaded else "initial weights (seed 0)"),
             f"feature maps for {input_label}" if x is not None and input_label else
             ("feature maps for the given input" if x is not None else "no input given: no feature maps")]
    buttons = "".join(f'<button type="button" data-view="{k}"{" class=on" if i == 0 else ""}>{escape(label)}</button>'
                      for i, (k, label, _, _, _) in enumerate(views)) if len(views) > 1 else ""
    view_divs = "".join(
        f'<div class="view" data-view="{k}"{" hidden" if i else ""} data-note="{_a(note)}">'
        + (svg if svg else f'<p class="too-big">{escape(note)}</p>') + "</div>"
        for i, (k, _, svg, note, _) in enumerate(views))
    names = "".join(f'<option value="{_a(n.name)}"></option>' for n in g.nodes())
    data_json = json.dumps({"model": m.name, "pictures": pics, "level": level}).replace("</", "<\\/")
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="netdsl {_a(__version__)}">
<title>{escape(m.name)} \u2014 netdsl report</title>
<style>{_asset("report.css")}</style>
</head><body>
<header class="top"><h1>{escape(m.name)}</h1><p class="facts">{escape(DOT.join(facts))}</p>
<nav><a href="#graph-section">graph</a><a href="#summary">summary</a><a href="#memory">memory</a>\
<a href="#optimizations">optimizations</a></nav></header>
<main>
<section id="graph-section">
<div class="toolbar"><span class="group"><button type="button" data-zoom="in" title="zoom in">+</button>\
<button type="button" data-zoom="out" title="zoom out">\u2212</button>\
<button type="button" data-zoom="fit" title="fit the width">fit</button></span>\
<span class="group views">{buttons}</span>\
<input id="find" list="layer-names" placeholder="find a layer\u2026" aria-label="find a layer">\
<datalist id="layer-names">{names}</datalist>\
<span class="hint">wheel or +/\u2212: zoom \u00b7 drag: pan \u00b7 click a box: details</span></div>
<div class="graph-row"><div id="graph">{view_divs}</div>
<aside id="panel"><div class="placeholder"><h3>Click a box</h3><p>The panel shows that layer: its arithmetic
as <code>netdsl explain</code> prints it, its receptive field{", its feature maps" if x is not None else ""},
and what the optimizer did to it. Rows of the summary table and boxes of the memory chart open it too.</p>
<p>Pictures are drawn for: {", ".join(_link(p) for p in pics) or "none"}.</p></div>
<div class="unknown" hidden><h3></h3><p>not a layer of the graph as written.</p></div>
{"".join(articles)}</aside></div>
</section>
<section id="summary"><h2>Summary <span class="src">(netdsl summary)</span></h2>{summary_table(m, summary)}</section>
<section id="memory"><h2>Memory plan</h2>{memory_section(plan, g_run, level)}</section>
<section id="optimizations"><h2>Optimizations applied</h2>\
{optimizations_section(report, rewrite_lines, plan, g_run, level, m.bundle is not None)}</section>
</main>
<footer>netdsl {escape(__version__)} \u00b7 one file, nothing fetched: it works offline</footer>
<script type="application/json" id="nd-data">{data_json}</script>
<script>{_asset("report.js")}</script>
</body></html>
"""
    return page


def _pictures(m, x, pics, cap, background, ctx) -> None:
    """Fill ctx["maps"] and ctx["rf_pics"] ({layer: (data URI, caption)}) and the input picture."""
    try:
        from .grid import _pil, grid, normalize
        _pil()
    except NetDSLError:
        if x is not None:
            raise
        return                              # no Pillow: the report has no pictures, and says how to get them
    from .rf import default_at, rf_picture
    g = m.graph
    if background is None and x is not None:
        a = (x[g.inputs[0]] if isinstance(x, dict) else x)[0]     # several inputs: the first one is drawn
        a = a.reshape(-1, *a.shape[-2:]) if a.ndim >= 2 else a.reshape(1, 1, -1)
        background = normalize(a.transpose(1, 2, 0))[..., 0] if a.shape[0] == 3 else normalize(a.mean(axis=0))
    if x is not None:
        from PIL import Image
        ctx["input_uri"] = _png_uri(Image.fromarray(background))
        ctx["input_caption"] = (f"the input as the network sees it ({background.shape[1]}x{background.shape[0]}, "
                                "before normalization)")
        maps = m.features(x, pics) if pics else {}        # a network without stages has no pictures
        for name, a in maps.items():
            c = a.shape[1]
            ctx["maps"][name] = (_png_uri(grid(a[0], name=name, cap=cap, max_width=PANEL_W)),
                                 f"{min(c, cap)} of {c} channels, each normalized on its own (black = its min, "
                                 "white = its max)" if c > cap else
                                 f"all {c} channels, each normalized on its own (black = its min, white = its max)")
    for name in pics:
        if g[name].shape is None or len(g[name].shape) != 3:
            continue
        at = default_at(g, name)
        img, info = rf_picture(m, name, at, image=background, min_side=RF_SIDE, header=False)
        sup, (h, w) = info["support"], info["input_hw"]
        ctx["rf_pics"][name] = (_jpeg_uri(img), f"output position (y={at[0]}, x={at[1]}), the centre: it depends "
                                               f"on the red pixels, {sup[0]}x{sup[1]} ({info['reached']:,} of "
                                               f"{h * w:,}; darker = more paths); blue: the theoretical window")


def write_report(text: str, path: str) -> str:
    """Write the page; an unwritable path is a NetDSLError."""
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as e:
        raise NetDSLError(f"cannot write {path}: {e.strerror or e}",
                          hint="use an .html file name in a folder that exists and is writable") from None
    return path
