"""Draw a Graph as Graphviz DOT text: one box per layer labelled with its
name, op and arguments, output shape and parameter count; one cluster per
block instance (graph.blocks, nested: `layer1` holds `layer1.0`), so an
Inception module or a dense block is visible as a unit. Fused epilogues the
optimizer added (`act`, `residual`) are shown in bold, so the before/after
drawings show what the compiler did.

    text = to_dot(model.graph, title="resnet18 -O2")
    render(text, "resnet18.svg")     # runs `dot` when Graphviz is installed

Plain text only: no Graphviz Python package is needed.
"""
from __future__ import annotations

import os
import shutil
import subprocess

from .viz.labels import color as _color
from .viz.labels import fused as _fused
from .viz.labels import op_args as _args
from .viz.labels import parent_block as _parent


def _q(s: str) -> str:
    return '"' + str(s).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _label(node, scope="") -> str:
    short = node.name[len(scope) + 1:] if scope and node.name.startswith(scope + ".") else node.name
    lines = [short, _args(node)] + _fused(node)
    if node.shape is not None:
        lines.append("x".join(map(str, node.shape)))
    if node.n_params:
        lines.append(f"{node.n_params:,} params")
    return "\n".join(lines)


def to_dot(graph, title: str | None = None, rankdir: str = "TB") -> str:
    """DOT text for an analyzed graph (clusters per block instance, fused ops in bold)."""
    out = ["digraph netdsl {", f"  rankdir={rankdir};",
           '  node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=10];',
           '  edge [fontname="Helvetica", fontsize=9, color="#555555"];']
    if title:
        out.append(f"  label={_q(title)}; labelloc=t; fontsize=14; fontname=\"Helvetica\";")
    outputs = {}
    for oname, nname in graph.outputs.items():
        outputs.setdefault(nname, []).append(oname)

    # block instances that hold at least one node, nested by prefix
    nodes = graph.nodes()
    members: dict[str, list] = {}
    for node in nodes:
        scope = node.scope if node.scope in graph.blocks else _parent(node.scope, graph.blocks)
        members.setdefault(scope, []).append(node)
    first: dict[str, int] = {}          # block -> position of its first node (draw order)
    for i, node in enumerate(nodes):
        scope = node.scope if node.scope in graph.blocks else _parent(node.scope, graph.blocks)
        while scope:
            first.setdefault(scope, i)
            scope = _parent(scope, graph.blocks)
    children: dict[str, list] = {}
    for b in sorted(first, key=first.get):
        children.setdefault(_parent(b, graph.blocks), []).append(b)

    def emit_node(node, indent, scope):
        attrs = [f"label={_q(_label(node, scope))}", f"fillcolor={_q(_color(node))}"]
        if node.op == "Input":
            attrs.append("shape=ellipse")
        if _fused(node):
            attrs.append("penwidth=2.2")
        if node.name in outputs:
            attrs.append("peripheries=2")
        out.append(f"{indent}{_q(node.name)} [{', '.join(attrs)}];")

    def emit_scope(scope, depth):
        indent = "  " * (depth + 1)
        if scope:
            out.append(f"{indent}subgraph {_q('cluster_' + scope)} {{")
            parent = _parent(scope, graph.blocks)
            shown = scope[len(parent) + 1:] if parent else scope
            out.append(f"{indent}  label={_q(shown + ': ' + graph.blocks[scope])}; style=\"rounded,dashed\"; "
                       f"color=\"#8888aa\"; fontname=\"Helvetica\"; fontsize=10;")
            indent += "  "
        for node in members.get(scope, []):
            emit_node(node, indent, scope)
        for child in children.get(scope, []):
            emit_scope(child, depth + 1 if scope else depth)
        if scope:
            out.append("  " * (depth + 1) + "}")

    emit_scope("", 0)
    for node in nodes:
        preds = graph.preds(node.name)
        for slot, p in enumerate(preds):
            attrs = []
            if node.attrs.get("residual") and slot == len(preds) - 1 and slot > 0:
                attrs.append('style=dashed, label="residual"')
            elif len(preds) > 1:
                attrs.append(f"label={_q(str(slot))}")
            out.append(f"  {_q(p)} -> {_q(node.name)}" + (f" [{', '.join(attrs)}]" if attrs else "") + ";")
    for nname, names in outputs.items():
        for oname in names:
            key = "out:" + oname
            out.append(f"  {_q(key)} [label={_q(oname)}, shape=plaintext, style=\"\"];")
            out.append(f"  {_q(nname)} -> {_q(key)};")
    out.append("}")
    return "\n".join(out) + "\n"


def dot_program() -> str | None:
    """Path of Graphviz's `dot`, or None."""
    return shutil.which("dot")


def render(text: str, path: str) -> tuple[str, bool]:
    """Write `text` to `path`: .dot as is, .svg/.png/.pdf through Graphviz when it is installed.
    Returns (the path written, whether it was rendered). Without Graphviz a .dot file is written
    next to the requested name instead."""
    from .errors import NetDSLError
    base, ext = os.path.splitext(path)
    fmt_ = ext.lower().lstrip(".")
    if fmt_ not in ("dot", "gv", "svg", "png", "pdf"):
        raise NetDSLError(f"cannot draw a graph as '{ext or path}'", hint="use a .svg, .png, .pdf or .dot file name")
    if fmt_ in ("dot", "gv"):
        _write(path, text)
        return path, False
    prog = dot_program()
    if prog is None:
        dot_path = base + ".dot"
        _write(dot_path, text)
        return dot_path, False
    try:
        r = subprocess.run([prog, f"-T{fmt_}", "-o", path], input=text.encode("utf-8"),
                           capture_output=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise NetDSLError(f"Graphviz failed to draw {path}: {e}")
    if r.returncode != 0:
        raise NetDSLError(f"Graphviz failed to draw {path}: {r.stderr.decode('utf-8', 'replace').strip()[:500]}")
    return path, True


def _write(path, text):
    from .errors import NetDSLError
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as e:
        raise NetDSLError(f"cannot write {path}: {e.strerror or e}")
