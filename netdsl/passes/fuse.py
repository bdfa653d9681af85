"""Passes that fuse element-wise epilogues into the op that produces their input, so the
value is written once: an activation into the layer before it (`act`), and at -O3 a residual
sum into the Conv producing one of its operands (`residual=true`, the other operand as input
slot 1). Weights are never touched; only attributes and edges change.

Each rule asks the capability it relies on (netdsl/ops/spec.py, OpSpec): the activation's
`epilogue` and the producer's `epilogues` (names of the activation table), the merge's
`combine == "sum"` and the Conv's `accepts_residual` — never an op name, never the loose
pair of flags "merge + elementwise" (which a Mul also has)."""
from __future__ import annotations

from .rewrite import Fired, display, run_rules


def _is_activation(ctx, node):
    return ctx.spec(node.name).epilogue(node.attrs) is not None


def _activation(ctx, node):
    """The activation's only input P is read by nothing else and is not an output, and P can
    apply this activation as its epilogue and has none yet: P applies it and the activation goes.
    Where the activation's own value is read by several nodes, all of them read P's (now
    activated) value: still the same value. The fused form computes what the op computes, NaN
    included, by construction: both are the one function of the activation table."""
    act = ctx.spec(node.name).epilogue(node.attrs)
    preds = ctx.g.preds(node.name)
    if len(preds) != 1:
        return None
    p = ctx.g[preds[0]]
    pspec = ctx.spec(p.name)
    if not (act in pspec.epilogues and ctx.private(p.name) and p.attrs.get("act", "none") == "none"):
        return None
    p.attrs["act"] = act
    ctx.bypass(node.name, p.name)
    return Fired(f"{display(node.op)} fused into {p.name}", p.name, node)


def fuse_activations(graph, weights=None):
    """Fuse an activation of the table (ReLU, LeakyReLU(0.01), Sigmoid, Tanh, ReLU6 — also
    Clip(0, 6) and Hardtanh(0, 6) —, HardSigmoid(1/6, 1/2), HardSwish, SiLU, GELU (erf), Mish)
    into the Conv, FC or ConvTranspose before it, and ReLU, ReLU6, HardSigmoid, HardSwish, SiLU,
    GELU or Mish into an Add or BN before it (each producer's `epilogues`). Legal
    only when the producer's value is read by nothing else and is not an output (it no longer
    exists unactivated) and has no activation yet. An activation whose parameters differ from
    the ones the fused epilogue has built in stays (LeakyReLU(0.2), Clip(0, 5), GELU(approximate=
    tanh): the activation table's `fixed`, the spec's `epilogue`)."""
    return run_rules(graph, weights, [(_is_activation, _activation)], "fuse_activations")


def _is_sum(ctx, node):
    """Pattern: a merge that adds its inputs value by value (Add). A product (Mul), a concat or
    a max is not a residual: conv(x)·r is not conv(x) + r."""
    return ctx.spec(node.name).combine == "sum"


def _residual(ctx, node):
    """A two-input sum S = C + R, C an op that accepts a residual (Conv): C computes
    act(C(x) + R) itself and S goes. Legal when C's value is read only by S and is not an
    output, C has no activation or residual yet and supports S's activation, R has C's output
    shape (no broadcast), R is not C's own input (one edge per pair of nodes), and R comes
    before C in execution order (so adding the edge R -> C reorders nothing). R itself may have
    other readers: C only reads it."""
    preds = ctx.g.preds(node.name)
    act = node.attrs.get("act", "none")
    if len(preds) != 2:
        return None
    # the later operand first: then the other one is already computed when it runs
    for c_name in sorted(preds, key=ctx.position, reverse=True):
        r_name = preds[1] if c_name == preds[0] else preds[0]
        c = ctx.g[c_name]
        spec = ctx.spec(c_name)
        if not (spec.accepts_residual and ctx.private(c_name) and len(ctx.g.preds(c_name)) == 1
                and c.attrs.get("act", "none") == "none" and not c.attrs.get("residual")
                and (act == "none" or act in spec.epilogues)
                and tuple(ctx.g[r_name].shape) == tuple(c.shape)
                and not ctx.g.g.has_edge(r_name, c_name)
                and ctx.position(r_name) < ctx.position(c_name)):
            continue
        ctx.g.connect(r_name, c_name, 1)
        c.attrs["residual"] = True
        c.attrs["act"] = act
        ctx.bypass(node.name, c_name)
        return Fired(f"{display(node.op)} {node.name} fused into {c_name} as its residual", c_name, node)
    return None


def fuse_residual(graph, weights=None):
    """Fuse a residual sum (and its fused ReLU) into the Conv producing one of its two operands:
    y = act(conv(x) + r). Only a merge whose `combine` is "sum"; legality: see _residual."""
    return run_rules(graph, weights, [(_is_sum, _residual)], "fuse_residual")
