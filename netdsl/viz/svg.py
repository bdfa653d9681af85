"""The network as an SVG drawing, written by hand: no Graphviz, no new dependency.

    text = to_svg(model.graph, name="resnet50", depth=2)     # blocks of nesting level 2 as boxes
    write_svg(text, "resnet50.svg")

What is drawn, top to bottom (the input at the top):
- one box per layer: its name (relative to the block it is in), the op with its non-default
  arguments, the output shape and the parameter count; merges (Concat, Add, Mul — the ops with
  the `merge` flag) in yellow with a glyph, inputs as pills, graph outputs as a labelled pill
  below the layer that produces them;
- one edge per connection, labelled with the tensor's shape where it changes and into every
  merge (so a Concat shows what it joins);
- block instances (graph.blocks, e.g. layer2.0 -> Bottleneck) as rounded frames around their
  layers with the block's name; `depth=N` draws the block instances of nesting level N as one
  box each (their layers' params and MACs summed, the shape going in and coming out), so
  `depth=1` shows the top-level blocks only;
- `badges` ({node: ["BN", "ReLU"]}, see `fusion_badges`) marks what the optimizer folded or
  fused into a node ("Conv +BN +ReLU");
- a title with the model's name, total params and MACs.

A drawing of more than `max_boxes` boxes (400) is refused with a NetDSLError naming the
--depth that fits: past that size a layered drawing is a wall no one reads (`netdsl graph`
without --depth picks that depth itself, `fitting_depth`, and says so).
The layout itself is netdsl/viz/layout.py.
"""
from __future__ import annotations

from xml.sax.saxutils import escape, quoteattr

from .. import ops
from ..errors import NetDSLError
from .labels import color, is_merge, op_args, parent_block, scope_block
from .layout import LABEL_H, layout

MAX_BOXES = 400
FONT = 11
CHAR_W = 0.6 * FONT             # a generous average width of a Helvetica/Arial character
LINE_H = 14
MAX_ARGS = 44                   # the op line is cut after this many characters
_GLYPH = {"sum": "\u2295", "prod": "\u2297", "concat": "\u29fa", "max": "max"}


def _text_w(s: str, size: float = FONT, bold: bool = False) -> float:
    return len(s) * size * (0.64 if bold else 0.58)


def shape_text(shape) -> str:
    return "x".join(map(str, shape)) if shape is not None else "?"


def count_text(n: int) -> str:
    """9408 -> '9.4K', 11689512 -> '11.7M'."""
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if n >= div:
            v = n / div
            return f"{v:.1f}{suffix}" if v < 100 else f"{v:.0f}{suffix}"
    return str(n)


def fusion_badges(graph, report=None) -> dict:
    """{node name: ['BN', 'ReLU', 'Add']}: what the optimizer folded or fused into each node of
    the optimized `graph`, from the passes' report (every rewrite names the node it changed and
    opens with the op it removed) or, for a graph read back from a bundle (no report), from the
    epilogues the node carries (`act`, `residual`)."""
    out: dict[str, list[str]] = {}
    if report is not None:
        for r in report:
            if r.node not in graph or r.pass_name == "select_outputs" or r.message.endswith(" removed"):
                continue
            word = r.message.split()[0]
            out.setdefault(r.node, []).append("Add" if r.pass_name == "fuse_residual" else word)
    for node in graph.nodes():
        have = out.get(node.name, [])
        act = node.attrs.get("act")
        if act not in (None, "none") and not any(b.lower() == str(act).lower() for b in have):
            names = {n.lower(): n for n in ops.all_specs()}       # 'relu' (the epilogue) -> 'ReLU'
            out.setdefault(node.name, []).append(names.get(str(act).lower(), str(act)))
        if node.attrs.get("residual") and "Add" not in have:
            out.setdefault(node.name, []).append("Add")
    return out


def block_levels(blocks) -> dict:
    """Nesting level of each block instance: 1 for a top-level one, 2 inside it, ..."""
    level = {}

    def lv(b):
        if b not in level:
            p = parent_block(b, blocks)
            level[b] = 1 + (lv(p) if p else 0)
        return level[b]
    for b in blocks:
        lv(b)
    return level


def box_count(graph, depth=None) -> int:
    """How many boxes (layers and collapsed blocks) the drawing at `depth` has."""
    units = {_unit_of(n, graph.blocks, block_levels(graph.blocks), depth) for n in graph.nodes()}
    return len(units)


def fitting_depth(graph, max_boxes: int = MAX_BOXES):
    """None when every layer fits in `max_boxes` boxes, else the deepest --depth whose drawing
    fits (blocks opened as far as the limit allows), else 0: even the top-level blocks as
    boxes are too many."""
    if len(graph) <= max_boxes:
        return None
    deepest = max(block_levels(graph.blocks).values(), default=0)
    for d in range(deepest, 0, -1):
        if box_count(graph, d) <= max_boxes:
            return d
    return 0


def _chain(node, blocks):
    """Block instances holding `node`, outermost first."""
    out = []
    b = scope_block(node, blocks)
    while b:
        out.append(b)
        b = parent_block(b, blocks)
    return out[::-1]


def _unit_of(node, blocks, levels, depth):
    if depth is not None:
        for b in _chain(node, blocks):
            if levels[b] == depth:
                return "\x00" + b           # a collapsed block (cannot clash with a layer name)
    return node.name


def _check_depth(graph, depth):
    if depth is None:
        return
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        deepest = max(block_levels(graph.blocks).values(), default=0)
        raise NetDSLError(f"--depth must be a whole number from 1 up, got {depth!r}",
                          hint="--depth 1 draws every top-level block as one box, --depth 2 opens them one "
                               f"level (this model nests blocks {deepest} deep); leave it out to draw every layer")


def _too_big(graph, name, depth, n, max_boxes):
    levels = block_levels(graph.blocks)
    fits = [(d, box_count(graph, d)) for d in range(1, max(levels.values(), default=0) + 1)]
    fits = [(d, c) for d, c in fits if c <= max_boxes]
    at = "" if depth is None else f" at --depth {depth}"
    if fits:
        d, c = fits[-1]
        hint = f"draw its blocks as boxes: --depth {d} ({c} boxes)" + \
            (f", --depth 1 ({fits[0][1]} boxes)" if d != 1 else "")
    else:
        hint = "it has no blocks to collapse; write the Graphviz text instead (-o model.dot)"
    raise NetDSLError(f"{name}: {n} boxes{at} are too many to draw readably (the limit is {max_boxes})",
                      hint=hint + f", or raise the limit with --max-boxes {n}")


class _Unit:
    __slots__ = ("key", "kind", "lines", "fill", "badges", "shape", "w", "h", "parent", "node", "tip")

    def __init__(self, key, kind):
        self.key, self.kind = key, kind
        self.lines, self.badges, self.node, self.tip = [], [], None, ""


def to_svg(graph, name: str = "model", depth: int | None = None, badges: dict | None = None,
           note: str | None = None, max_boxes: int = MAX_BOXES) -> str:
    """SVG text for an analyzed graph (see the module docstring)."""
    _check_depth(graph, depth)
    blocks = graph.blocks
    levels = block_levels(blocks)
    badges = badges or {}
    nodes = graph.nodes()
    unit_of = {n.name: _unit_of(n, blocks, levels, depth) for n in nodes}
    n_boxes = len(set(unit_of.values()))
    if n_boxes > max_boxes:
        _too_big(graph, name, depth, n_boxes, max_boxes)

    open_blocks = {b for b in blocks if depth is None or levels[b] < depth}
    units: dict[str, _Unit] = {}
    members: dict[str, list] = {}
    for n in nodes:
        members.setdefault(unit_of[n.name], []).append(n)

    def inner_open(node):
        ch = [b for b in _chain(node, blocks) if b in open_blocks]
        return ch[-1] if ch else ""

    edges, seen = [], {}
    for n in nodes:
        for slot, p in enumerate(graph.preds(n.name)):
            u, v = unit_of[p], unit_of[n.name]
            if u == v:
                continue
            if (u, v) not in seen:
                seen[(u, v)] = len(edges)
                residual = bool(n.attrs.get("residual")) and slot > 0 and slot == len(graph.preds(n.name)) - 1
                edges.append({"u": u, "v": v, "shape": graph[p].shape, "residual": residual})

    for key, ms in members.items():
        if key.startswith("\x00"):
            b = key[1:]
            u = _Unit(key, "block")
            names = {m.name for m in ms}
            ins = [graph[p].shape for m in ms for p in graph.preds(m.name) if p not in names]
            outs = [m for m in ms if m.name in graph.outputs.values()
                    or any(s not in names for s in graph.succs(m.name))]
            out_shape = (outs[-1] if outs else ms[-1]).shape
            parent = parent_block(b, blocks)
            short = b[len(parent) + 1:] if parent else b
            params = sum(m.n_params for m in ms)
            macs = sum(m.macs for m in ms)
            fused_n = sum(1 for m in ms if badges.get(m.name))
            u.lines = [(short, "name"), (f"{blocks[b]} \u00b7 {len(ms)} layers", "op"),
                       (f"{shape_text(ins[0]) if ins else '-'} \u2192 {shape_text(out_shape)}", "shape"),
                       (f"{count_text(params)} params \u00b7 {count_text(macs)} MACs", "params")]
            if fused_n:
                u.badges = [f"{fused_n} fused"]
            u.fill, u.shape, u.parent = "#eef0ff", out_shape, parent
            u.tip = f"{b}: {blocks[b]}, {len(ms)} layers, {params:,} params, {macs:,} MACs"
        else:
            n = ms[0]
            u = _Unit(key, "input" if n.op == "Input" else "layer")
            u.node = n
            scope = inner_open(n)
            short = n.name[len(scope) + 1:] if scope and n.name.startswith(scope + ".") else n.name
            args = op_args(n)
            if len(args) > MAX_ARGS:
                args = args[:MAX_ARGS - 1] + "\u2026"
            if is_merge(n):
                glyph = _GLYPH.get(getattr(ops.lookup(n.op), "combine", None) or "", "")
                args = f"{glyph} {args}".strip()
            bottom = shape_text(n.shape) + (f" \u00b7 {count_text(n.n_params)} params" if n.n_params else "")
            u.lines = [(short, "name"), (args, "op"), (bottom, "shape")]
            u.badges = ["+" + b for b in badges.get(n.name, [])]
            u.fill, u.shape, u.parent = color(n), n.shape, scope
            rf = f", receptive field {n.rf[0]}x{n.rf[1]}" if n.rf else ""
            u.tip = (f"{n.name}: {op_args(n)} \u2192 {shape_text(n.shape)}, {n.n_params:,} params, "
                     f"{n.macs:,} MACs{rf}" + (f" (line {n.span.line})" if n.span else ""))
        units[key] = u
    for oname, nname in graph.outputs.items():
        key = "\x01" + oname
        u = _Unit(key, "output")
        label = "output" if oname == "output" else f"output {oname}"
        u.lines, u.fill, u.shape, u.parent = [(label, "name")], "#ffffff", graph[nname].shape, ""
        u.tip = f"output {oname} = {nname}"
        units[key] = u
        edges.append({"u": unit_of[nname], "v": key, "shape": graph[nname].shape, "residual": False})

    for u in units.values():
        widths = [_text_w(t, FONT + (1 if k == "name" else 0), k == "name") for t, k in u.lines]
        if u.badges:
            widths.append(sum(_text_w(b, 9, True) + 12 for b in u.badges))
        u.w = max(60.0, max(widths) + 18)
        u.h = LINE_H * len(u.lines) + (LINE_H + 2 if u.badges else 0) + 10

    # clusters: the open blocks that hold something drawn
    used = set()
    for u in units.values():
        b = u.parent
        while b:
            used.add(b)
            b = parent_block(b, blocks)
    clusters = {}
    for b in sorted(used, key=lambda b: (levels[b], b)):
        parent = parent_block(b, blocks)
        clusters[b] = (parent, _text_w(_frame_label(b, parent, blocks), 10, True) + 12)
    order = [unit_of[n.name] for n in nodes]
    order = list(dict.fromkeys(order)) + [k for k in units if k.startswith("\x01")]
    lay = layout({k: (units[k].w, units[k].h, units[k].parent) for k in order},
                 [(e["u"], e["v"]) for e in edges], clusters)

    from ..analysis.infer import totals
    t = totals(graph)
    title = f"{name}: {t['total_params']:,} params, {count_text(t['total_macs'])} MACs, {len(nodes)} layers"
    sub = note or ""
    head = 30 + (16 if sub else 0)
    W = max(lay.width, _text_w(title, 15, True) + 40, _text_w(sub, 11) + 40)
    H = lay.height + head
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W:.0f}" height="{H:.0f}" '
           f'viewBox="0 0 {W:.0f} {H:.0f}" font-family="Helvetica, Arial, sans-serif" font-size="{FONT}">',
           "<defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"9\" refY=\"5\" markerWidth=\"7\" "
           "markerHeight=\"7\" orient=\"auto-start-reverse\"><path d=\"M 0 0 L 10 5 L 0 10 z\" fill=\"#555\"/>"
           "</marker></defs>",
           f'<rect width="{W:.0f}" height="{H:.0f}" fill="#ffffff"/>',
           f'<text class="title" x="16" y="22" font-size="15" font-weight="bold">{escape(title)}</text>']
    if sub:
        out.append(f'<text class="subtitle" x="16" y="39" font-size="11" fill="#555">{escape(sub)}</text>')
    out.append(f'<g transform="translate(0,{head})">')
    out.append('<g class="clusters">')
    for b in sorted(lay.frames, key=lambda b: levels[b]):
        x, y, w, h = lay.frames[b]
        label = _frame_label(b, clusters[b][0], blocks)
        shade = ("#f7f7fc", "#eef3fb", "#f3f9f1", "#fbf6ee")[(levels[b] - 1) % 4]
        out.append(f'<g class="cluster" data-block={quoteattr(b)}><title>{escape(b + ": " + blocks[b])}</title>'
                   f'<rect x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{h:.1f}" rx="10" fill="{shade}" '
                   f'stroke="#8888aa" stroke-dasharray="5,3"/>'
                   f'<text x="{x + 8:.1f}" y="{y + LABEL_H - 4:.1f}" font-size="10" font-weight="bold" '
                   f'fill="#4a4a78">{escape(label)}</text></g>')
    out.append("</g>")
    out.append('<g class="edges">')
    for e, pts in zip(edges, lay.routes):
        d = f"M {pts[0][0]:.1f} {pts[0][1]:.1f}"
        for i in range(len(pts) - 1):
            (x0, y0), (x1, y1) = pts[i], pts[i + 1]
            if i % 2 == 0:
                my = (y0 + y1) / 2
                d += f" C {x0:.1f} {my:.1f} {x1:.1f} {my:.1f} {x1:.1f} {y1:.1f}"
            else:
                d += f" L {x1:.1f} {y1:.1f}"
        dst = units[e["v"]]
        style = ' stroke-dasharray="6,3"' if e["residual"] else ""
        out.append(f'<g class="edge" data-src={quoteattr(_plain(e["u"]))} data-dst={quoteattr(_plain(e["v"]))}>'
                   f'<path d="{d}" fill="none" stroke="#555" stroke-width="1.2" marker-end="url(#arrow)"{style}/>')
        label = "residual" if e["residual"] else shape_text(e["shape"])
        n_in = sum(1 for f in edges if f["v"] == e["v"])
        if e["residual"] or dst.kind == "block" or units[e["u"]].kind == "block" or n_in > 1 or \
                (dst.shape is not None and tuple(dst.shape) != tuple(e["shape"] or ())) and dst.kind != "output":
            (x0, y0), (x1, y1) = pts[-2], pts[-1]
            # labels into one box alternate between two heights, so neighbours do not run together
            rank = sorted(f_pts[-1][0] for f, f_pts in zip(edges, lay.routes) if f["v"] == e["v"]).index(x1)
            y1 -= 18 * (rank % 2) if n_in > 2 else 0
            out.append(f'<text class="shape" x="{(x0 + x1) / 2 + 4:.1f}" y="{(y0 + y1) / 2 + 3:.1f}" font-size="9" '
                       f'fill="#333" stroke="#fff" stroke-width="3" paint-order="stroke">{escape(label)}</text>')
        out.append("</g>")
    out.append("</g>")
    out.append('<g class="nodes">')
    for key in order:
        out.append(_box(units[key], lay.boxes[key]))
    out.append("</g></g></svg>")
    return "\n".join(out) + "\n"


def _frame_label(b, parent, blocks) -> str:
    """'branch2: Sequential' inside its parent's frame; the whole name where the short one is a
    bare index ('layer1.0', not '0')."""
    short = b[len(parent) + 1:] if parent else b
    return f"{b if short.isdigit() else short}: {blocks[b]}"


def _plain(key: str) -> str:
    return key.lstrip("\x00\x01")


def _box(u, box) -> str:
    x, y, w, h = box
    cls = {"layer": "node", "input": "node input", "block": "node block", "output": "output"}[u.kind]
    if u.kind == "layer" and u.badges:
        cls += " fused"
    data = f' data-name={quoteattr(_plain(u.key))}'
    if u.node is not None:
        data += f' data-op={quoteattr(u.node.op)}'
    parts = [f'<g class="{cls}"{data}><title>{escape(u.tip)}</title>']
    rx = h / 2 if u.kind in ("input", "output") else 6
    stroke = "#c05000" if "fused" in cls else "#4a4a78" if u.kind == "block" else "#666"
    sw = 2 if "fused" in cls or u.kind == "block" else 1
    extra = ' stroke-dasharray="2,2"' if u.kind == "output" else ""
    parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{h:.1f}" rx="{rx:.1f}" '
                 f'fill="{u.fill}" stroke="{stroke}" stroke-width="{sw}"{extra}/>')
    if u.kind == "block":      # a second frame edge: one box standing for many
        parts.append(f'<rect x="{x + 3:.1f}" y="{y + 3:.1f}" width="{w - 6:.1f}" height="{h - 6:.1f}" rx="4" '
                     f'fill="none" stroke="#4a4a78" stroke-width="0.7"/>')
    cy = y + 5 + LINE_H - 3
    cx = x + w / 2
    for i, (text, kind) in enumerate(u.lines):
        style = {"name": ' font-weight="bold" font-size="12"', "op": ' fill="#222"',
                 "shape": ' fill="#444" font-size="10"', "params": ' fill="#444" font-size="10"'}[kind]
        parts.append(f'<text x="{cx:.1f}" y="{cy:.1f}" text-anchor="middle"{style}>{escape(text)}</text>')
        cy += LINE_H
        if i == 1 and u.badges:
            total = sum(_text_w(b, 9, True) + 12 for b in u.badges) - 4
            bx = cx - total / 2
            for b in u.badges:
                bw = _text_w(b, 9, True) + 8
                parts.append(f'<g class="badge"><rect x="{bx:.1f}" y="{cy - 10:.1f}" width="{bw:.1f}" height="13" '
                             f'rx="6" fill="#ffe0c2" stroke="#c05000" stroke-width="0.8"/>'
                             f'<text x="{bx + bw / 2:.1f}" y="{cy:.1f}" text-anchor="middle" font-size="9" '
                             f'font-weight="bold" fill="#8a3a00">{escape(b)}</text></g>')
                bx += bw + 4
            cy += LINE_H + 2
    parts.append("</g>")
    return "".join(parts)


def write_svg(text: str, path: str) -> str:
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as e:
        raise NetDSLError(f"cannot write {path}: {e.strerror or e}")
    return path
