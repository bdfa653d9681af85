"""Passes that delete what inference does not need: identities, reshape chains, dead nodes,
and the outputs a caller did not ask for. None of them touches a weight value."""
from __future__ import annotations

from ..errors import NetDSLError
from ..ops.attrs import OpError
from .rewrite import Fired, Record, any_node, display, flagged, run_rules


def _identity(ctx, node):
    """An op that returns input 0 unchanged (Dropout, Identity, Pad of 0, a Reshape or Flatten to
    the same shape, a Crop to the whole input): its readers read that input instead."""
    preds = ctx.g.preds(node.name)
    if not preds:
        return None
    shapes = [ctx.g[p].shape for p in preds]
    if not ctx.spec(node.name).identity(node.attrs, shapes, node.shape):
        return None
    src = preds[0]
    if ctx.is_output(node.name) and not ctx.g.preds(src):
        return None     # an output stays a computed value, never the network input itself
    if not ctx.can_bypass(node.name, src):
        return None     # a reader also reads src directly: Add(x, Dropout(x)) cannot be Add(x, x)
    ctx.bypass(node.name, src)
    return Fired(f"{display(node.op)} {node.name} removed", node.name)


def _view_chain(ctx, node):
    """A view (no_op) reading another view reads the first one's input when that gives it the
    same shape: Flatten(Reshape(x)) is Flatten(x); the skipped view goes if nothing else reads it."""
    preds = ctx.g.preds(node.name)
    if len(preds) != 1 or "no_op" not in ctx.spec(preds[0]).flags:
        return None
    mid = ctx.g[preds[0]]
    src = ctx.g.preds(mid.name)
    if len(src) != 1:
        return None
    spec = ctx.spec(node.name)
    try:
        a = spec.resolve(node.attrs, [ctx.g[src[0]].shape])
        out = tuple(spec.infer(a, [ctx.g[src[0]].shape]))
    except OpError:
        return None
    if out != tuple(node.shape):
        return None
    ctx.g.g.remove_edge(mid.name, node.name)
    ctx.g.connect(src[0], node.name, 0)
    node.attrs = a
    if not ctx.consumers(mid.name) and not ctx.is_output(mid.name):
        ctx.remove(mid.name)
        return Fired(f"{display(mid.op)} {mid.name} merged into {display(node.op)} {node.name}",
                     node.name, mid)
    return Fired(f"{display(node.op)} {node.name} reads {src[0]} directly, past {mid.name}", node.name)


def _dead(ctx, node):
    """A node no output depends on (and not a network input) is deleted."""
    if node.name in ctx.g.inputs or ctx.consumers(node.name) or ctx.is_output(node.name):
        return None
    ctx.remove(node.name)
    return Fired(f"unused {display(node.op)} {node.name} removed", node.name, node)


DEAD = [(any_node, _dead)]
RULES = [(flagged("no_op"), _view_chain), (any_node, _identity), *DEAD]


def remove_noops(graph, weights=None):
    """Delete inference no-ops (Dropout, Identity, zero Pad, same-shape Reshape/Flatten/Crop),
    collapse chains of views, and delete nodes no output depends on. Always legal: each rewrite
    keeps every output's value bit for bit; it does not fire where a reader would need the same
    tensor on two inputs, nor where an output would become the network input itself."""
    return run_rules(graph, weights, RULES, "remove_noops")


def select_outputs(graph, weights, outputs):
    """Keep only the graph outputs named in `outputs` and delete the layers only the others
    needed (GoogLeNet's aux heads at inference). Legal whenever the caller names its outputs."""
    wanted = list(outputs)
    unknown = [o for o in wanted if o not in graph.outputs]
    if unknown:
        raise NetDSLError(f"no output named {', '.join(unknown)}",
                          hint=f"the network's outputs are: {', '.join(graph.outputs)}")
    if not wanted:
        raise NetDSLError("asked for no outputs", hint=f"name one of: {', '.join(graph.outputs)}")
    g = graph.copy()
    dropped = [k for k in g.outputs if k not in wanted]
    g.outputs = {k: v for k, v in g.outputs.items() if k in wanted}
    records = [Record("select_outputs", f"output {k} dropped (not asked for)", graph.outputs[k],
                      graph[graph.outputs[k]].span) for k in dropped]
    g, w, more = run_rules(g, weights, DEAD, "select_outputs")
    return g, w, records + more
