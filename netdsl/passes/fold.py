"""Passes that fold per-channel affine ops (BatchNorm at inference: y = x·scale + shift)
into the weights of a neighbouring layer, and the constant-folding pass built on the same rule.

Arithmetic is float64 from the float32 weights and rounded once to float32:
    after  P:  P'(x) = P(x)·s + t      weight·s per output channel, bias·s + t
    before C:  C'(x) = C(x·s + t)      weight·s per input channel, bias + Σ weight·t
Which side a layer can absorb is its spec's `absorbs_affine`; the arithmetic for its weight
layout is its spec's `fold_affine` (Conv, FC, ConvTranspose, and BatchNorm itself).
"""
from __future__ import annotations

from .rewrite import Fired, capable, display, run_rules


def _affine_of(ctx, node):
    if ctx.w is None:
        return None, None
    return ctx.spec(node.name).affine_params(node.attrs, ctx.weights_of(node.name))


def _in_shapes(ctx, name):
    return [ctx.g[p].shape for p in ctx.g.preds(name)]


def _absorb(ctx, node, target, side, bypass_to):
    """`target` takes the affine op `node` into its weights (on its `side`: "out" or "in"),
    gains a bias if it can have one, and `node` is removed (its readers read `bypass_to`)."""
    new = None
    if ctx.w is not None:
        scale, shift = _affine_of(ctx, node)
        new = ctx.spec(target.name).fold_affine(target.attrs, _in_shapes(ctx, target.name),
                                                ctx.weights_of(target.name), scale, shift, side)
    if "bias" in target.attrs:
        target.attrs["bias"] = True
    ctx.set_weights(target.name, new)
    ctx.bypass(node.name, bypass_to)


def _into_producer(producer_ok, verb):
    def rule(ctx, node):
        """The affine op's only input P is read by nothing else and is not an output, P has no
        activation yet and can absorb the affine on its output: P's weights take it, P takes
        the affine op's activation, and the affine op goes."""
        preds = ctx.g.preds(node.name)
        if len(preds) != 1:
            return None
        p = ctx.g[preds[0]]
        pspec = ctx.spec(p.name)
        act = node.attrs.get("act", "none")
        if not (producer_ok(pspec) and ctx.private(p.name) and p.attrs.get("act", "none") == "none"
                and pspec.absorbs_affine(p.attrs, _in_shapes(ctx, p.name), "out")
                and (act == "none" or act in pspec.epilogues)):
            return None
        _absorb(ctx, node, p, "out", p.name)
        if act != "none":
            p.attrs["act"] = act
        return Fired(verb(node, p), p.name, node)
    return rule


def _into_consumer(ctx, node):
    """The affine op (no activation) is read only by C, on C's input 0, C is affine in that
    input (`linear`: C(x·s + t) is again an affine map of x) and its weights can absorb it
    there (`absorbs_affine`: FC; Conv without padding): C's weights take it and C reads the
    affine op's input directly."""
    preds = ctx.g.preds(node.name)
    if len(preds) != 1 or not ctx.private(node.name) or node.attrs.get("act", "none") != "none":
        return None
    c = ctx.g[ctx.consumers(node.name)[0]]
    cspec = ctx.spec(c.name)
    if ctx.slot(node.name, c.name) != 0 or not cspec.linear or \
            not cspec.absorbs_affine(c.attrs, _in_shapes(ctx, c.name), "in"):
        return None
    if not ctx.can_bypass(node.name, preds[0]):
        return None     # C already reads that input on another slot
    _absorb(ctx, node, c, "in", preds[0])
    return Fired(f"{display(node.op)} folded into the input of {c.name}", c.name, node)


def _any_absorber(spec):
    return True


def _affine_absorber(spec):
    return spec.channel_affine


FOLD_RULES = [
    (capable("channel_affine"), _into_producer(_any_absorber, lambda n, p: f"{display(n.op)} folded into {p.name}")),
    (capable("channel_affine"), _into_consumer),
]
CONST_RULES = [
    (capable("channel_affine"), _into_producer(
        _affine_absorber, lambda n, p: f"{display(n.op)} {n.name} merged into {display(p.op)} {p.name}")),
]


def fold_batchnorm(graph, weights=None):
    """Fold each BatchNorm into the Conv/FC/ConvTranspose before it (weight·s, bias·s + t; a bias
    is created) or, failing that, into the FC/unpadded Conv after it. Legal only where the layer
    and the BN read and write nothing else: the folded value is not an output nor read by
    another node, no activation sits between them, and a Conv with a fused residual is skipped."""
    return run_rules(graph, weights, FOLD_RULES, "fold_batchnorm")


def fold_constants(graph, weights=None):
    """Fold what is provably constant: a chain of per-channel affine ops (BN after BN) becomes
    one, since the composition of x·s1 + t1 and x·s2 + t2 is again x·s + t. Legal under the
    same conditions as fold_batchnorm. (The language cannot express a value that does not
    depend on an input, so there are no input-free subgraphs to evaluate.)"""
    return run_rules(graph, weights, CONST_RULES, "fold_constants")
