"""Human- and machine-readable reports of an analyzed graph:
`summary` (a per-layer table, collapsible by block), `--json`, and `explain`
(the arithmetic a student does by hand, layer by layer).

Analysis comes before the passes and the runtime in the pipeline, so this
module never optimizes or plans: the arena figures are computed by the
caller (`Model.summary` via `netdsl.compiler.memory`) and passed in."""
from __future__ import annotations

from math import prod

from .. import ops
from ..ops.geometry import shape_str
from .infer import BYTES, totals


def _fmt_int(n):
    return f"{n:,}"


def _fmt_bytes(n):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


def _fmt_macs(n):
    for unit, div in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= div:
            return f"{n / div:.2f}{unit}"
    return str(n)


def _jump(node):
    j = node.jump
    if j is None:
        return 1
    return [int(x) if x.denominator == 1 else float(x) for x in j]


def rows(model, depth=None):
    """Per-layer (or per-block at `depth`) rows as dicts."""
    g = model.graph
    nodes = g.nodes()
    if not depth:
        out = []
        for n in nodes:
            out.append({"name": n.name, "op": n.op, "output_shape": list(n.shape),
                        "params": n.n_params, "macs": n.macs, "memory_bytes": prod(n.shape) * BYTES,
                        "receptive_field": list(n.rf), "effective_stride": _jump(n),
                        "inputs": g.preds(n.name), "line": n.span.line if n.span else None})
        return out
    groups, order = {}, []
    for n in nodes:
        parts = n.name.split(".")
        key = ".".join(parts[:depth])
        if key not in groups:
            groups[key] = []
            order.append(key)
        groups[key].append(n)
    out = []
    for key in order:
        members = groups[key]
        last = members[-1]
        names = {m.name for m in members}
        ins = []
        for m in members:
            for p in g.preds(m.name):
                if p not in names:
                    k = ".".join(p.split(".")[:depth])
                    if k not in ins:
                        ins.append(k)
        op = last.op if len(members) == 1 and key == last.name else g.blocks.get(key, "group")
        out.append({"name": key, "op": op, "output_shape": list(last.shape),
                    "params": sum(m.n_params for m in members), "macs": sum(m.macs for m in members),
                    "memory_bytes": sum(prod(m.shape) * BYTES for m in members),
                    "receptive_field": [max(m.rf[0] for m in members), max(m.rf[1] for m in members)],
                    "effective_stride": _jump(last), "inputs": ins,
                    "line": last.span.line if last.span else None, "layers": len(members)})
    return out


def summary_dict(model, depth=None, memory=None):
    """The summary as a JSON-ready dict; `memory` is the arena plan the caller made
    (netdsl.compiler.memory: analysis does not run the passes or the planner)."""
    t = totals(model.graph)
    g = model.graph
    return {
        "model": model.name,
        "inputs": {n: list(g[n].shape) for n in g.inputs},
        "outputs": {k: list(g[v].shape) for k, v in g.outputs.items()},
        "total_params": t["total_params"],
        "total_macs": t["total_macs"],
        "activation_bytes": t["activation_bytes"],
        "weight_bytes": t["weight_bytes"],
        "memory": memory,
        "layers": rows(model, depth),
    }


def summary_text(model, depth=None, memory=None):
    """The per-layer table; `memory` (netdsl.compiler.memory) adds the arena line."""
    rs = rows(model, depth)
    head = ["layer", "op", "output", "params", "MACs", "memory", "RF", "inputs"]
    table = []
    for r in rs:
        ins = r["inputs"]
        conn = ", ".join(ins) if len(ins) > 1 or (ins and not depth and r["op"] in ("Concat", "Add", "Mul")) else ""
        rf = r["receptive_field"]
        table.append([r["name"], r["op"], shape_str(r["output_shape"]),
                      _fmt_int(r["params"]) if r["params"] else "-",
                      _fmt_macs(r["macs"]) if r["macs"] else "-",
                      _fmt_bytes(r["memory_bytes"]),
                      str(rf[0]) if rf[0] == rf[1] else f"{rf[0]}x{rf[1]}", conn])
    widths = [max(len(head[i]), *(len(row[i]) for row in table)) if table else len(head[i])
              for i in range(len(head))]
    widths[-1] = min(widths[-1], 60)
    right = {3, 4, 5, 6}

    def line(cells):
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    t = totals(model.graph)
    out = [f"{model.name}: " + ", ".join(f"input {n} {shape_str(s)}" for n, s in model.input_shapes.items()),
           line(head), line(["-" * w for w in widths])]
    out += [line(row) for row in table]
    out.append(line(["-" * w for w in widths]))
    outs = ", ".join(f"{k} {shape_str(s)}" for k, s in model.output_shapes.items())
    out.append(f"total params: {t['total_params']:,}   MACs: {t['total_macs']:,} ({_fmt_macs(t['total_macs'])})"
               f"   weights: {_fmt_bytes(t['weight_bytes'])}   activations (batch 1): "
               f"{_fmt_bytes(t['activation_bytes'])}")
    mem = memory
    if mem is not None:
        out.append(f"arena (batch 1, -O{mem['opt_level']}): {_fmt_bytes(mem['arena_bytes'])} peak   "
                   f"naive sum {_fmt_bytes(mem['naive_bytes'])}   lower bound {_fmt_bytes(mem['lower_bound_bytes'])}")
    out.append(f"outputs: {outs}")
    return "\n".join(out)


def _describe(node):
    a = node.attrs
    bits = []
    for k in ("out_channels", "out_features"):
        if k in a:
            bits.append(str(a[k]))
    if "kernel" in a and isinstance(a["kernel"], tuple):
        kh, kw = a["kernel"]
        bits.append(f"{kh}x{kw}")
    if isinstance(a.get("stride"), tuple) and a["stride"] != (1, 1):
        s = a["stride"]
        bits.append(f"stride {s[0]}" if s[0] == s[1] else f"stride {s[0]}x{s[1]}")
    if isinstance(a.get("pad"), tuple) and any(a["pad"]):
        p = a["pad"]
        bits.append(f"pad {p[0]}" if len(set(p)) == 1 else f"pad {p}")
    return f"{node.op}({', '.join(bits)})" if bits else node.op


def explain_layer(g, n) -> list:
    """The lines `netdsl explain` prints for one layer: its heading (op, shapes in -> out, source
    line), the op's arithmetic indented, and the receptive-field growth when it grows."""
    preds = g.preds(n.name)
    shapes = [g[p].shape for p in preds]
    where = f"line {n.span.line}" if n.span else ""
    if not preds:
        return [f"{n.name}: input {shape_str(n.shape)}   ({where})"]
    ins = " + ".join(shape_str(s) for s in shapes)
    out = [f"{n.name}: {_describe(n)}   {ins} -> {shape_str(n.shape)}   ({where})"]
    for ln in ops.get(n.op).explain(n.attrs, shapes, n.shape):
        out.append(f"    {ln}")
    before = max(g[p].rf[0] for p in preds)
    if n.rf[0] != before:
        j = _jump(n)
        j = j[0] if isinstance(j, list) else j
        out.append(f"    receptive field: {before} → {n.rf[0]}   (effective stride {j})")
    return out


def explain_text(model):
    g = model.graph
    out = []
    for n in g.nodes():
        out.extend(explain_layer(g, n))
    t = totals(g)
    out.append(f"total: {t['total_params']:,} params, {t['total_macs']:,} MACs")
    return "\n".join(out)
