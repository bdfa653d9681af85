"""What a drawing writes about a layer: the op with its non-default arguments, the epilogues
the optimizer fused into it, its fill colour (by capability flags, never by op name), and the
block instance that encloses a scope. Shared by the Graphviz text (netdsl/dot.py) and the
built-in SVG drawing (netdsl/viz/svg.py), so both say the same thing about a node."""
from __future__ import annotations

from .. import ops
from ..ops.attrs import fmt

# fill colours by capability (flags), not by op name
COLORS = (("Input", "#e8e8e8"), ("merge", "#fff2b3"), ("has_weights", "#cfe2ff"),
          ("elementwise", "#d9f2d9"), ("no_op", "#f4f4f4"))
DEFAULT_COLOR = "#f6e0ff"


def op_args(node) -> str:
    """The op with its non-default arguments, e.g. Conv(64, kernel=(7, 7), stride=(2, 2))."""
    spec = ops.lookup(node.op)
    if spec is None or node.op == "Input":
        return node.op
    parts = []
    for a in spec.attrs:
        if a.name not in node.attrs or a.name in ("act", "residual"):
            continue
        v = node.attrs[a.name]
        if not a.required:
            try:
                default = None if a.default is None else a.kind(a.default, a.name)
            except Exception:  # noqa: BLE001 — defaults that only resolve against shapes ('same')
                default = a.default
            if v == default or (isinstance(v, tuple) and len(set(v)) == 1 and v[0] == default):
                continue
            if isinstance(v, tuple) and len(set(v)) == 1:
                v = v[0]
            parts.append(f"{a.name}={fmt(v)}")
        else:
            parts.append(fmt(v))
    return f"{node.op}({', '.join(parts)})" if parts else node.op


def fused(node) -> list[str]:
    """'+ relu', '+ residual': the epilogues an optimized node carries (its attributes)."""
    out = []
    act = node.attrs.get("act")
    if act not in (None, "none"):
        out.append(f"+ {act}")
    if node.attrs.get("residual"):
        out.append("+ residual")
    return out


def color(node) -> str:
    spec = ops.lookup(node.op)
    flags = spec.flags if spec else frozenset()
    for key, col in COLORS:
        if key == node.op or key in flags:
            return col
    return DEFAULT_COLOR


def is_merge(node) -> bool:
    spec = ops.lookup(node.op)
    return bool(spec and "merge" in spec.flags)


def parent_block(scope: str, blocks) -> str:
    """The nearest enclosing block instance of `scope` ('' for top level)."""
    parts = scope.split(".")
    for i in range(len(parts) - 1, 0, -1):
        cand = ".".join(parts[:i])
        if cand in blocks:
            return cand
    return ""


def scope_block(node, blocks) -> str:
    """The innermost block instance holding `node` ('' when it is at top level)."""
    return node.scope if node.scope in blocks else parent_block(node.scope, blocks)
