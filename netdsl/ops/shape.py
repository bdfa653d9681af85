"""Ops that move no data: Flatten, Reshape, Identity, Dropout.

All four carry the `no_op` flag: at run time they are views of their input
(a contiguous NCHW buffer reinterpreted, or the same buffer), so the planner
gives them no kernel and the passes may delete Identity and Dropout.
Dropout is inference-only: an identity; its `p` is kept for the summary.

Flatten (and a Reshape that drops the spatial layout) report the whole
input as their receptive-field window: past them, positions no longer
exist, so a following FC sees the whole map exactly as if it had flattened
the input itself.
"""
from __future__ import annotations

import math

from . import register
from .attrs import Attr, OpError, float_, int_tuple
from .geometry import shape_str
from .spec import OpSpec


def _whole(shape):
    if len(shape) == 3:
        return (shape[1], shape[2], shape[1], shape[2])
    return (1, 1, 1, 1)


@register
class Flatten(OpSpec):
    name = "Flatten"
    output_sign = "inputs"
    doc = "(C, H, W) -> (C·H·W,), C-major like PyTorch's flatten(1)."
    arity = 1
    flags = frozenset({"no_op"})
    linear = True

    def infer(self, a, shapes):
        return (math.prod(shapes[0]),)

    def window(self, a, shapes):
        return _whole(shapes[0])

    def explain(self, a, shapes, out):
        return [f"{shape_str(shapes[0])} = {out[0]:,} values"]

    def reference(self, a, xs, w):
        return xs[0].reshape(xs[0].shape[0], -1)

    samples = (({}, [(3, 5, 7)]),)


def _target_shape(v, name):
    shape = int_tuple(v, name)
    if sum(1 for s in shape if s == -1) > 1:
        raise OpError(f"'{name}' may contain -1 only once, got {shape_str(shape)}",
                      hint="-1 stands for 'whatever is left'; give every other size")
    if any(s == 0 or s < -1 for s in shape):
        raise OpError(f"'{name}' sizes must be positive (or one -1), got {shape_str(shape)}")
    return shape


@register
class Reshape(OpSpec):
    name = "Reshape"
    output_sign = "inputs"
    aliases = ("View",)
    doc = "Reinterpret each sample with a new shape (one -1 allowed); the element count must match."
    arity = 1
    flags = frozenset({"no_op"})
    linear = True
    attrs = (Attr("shape", _target_shape, doc="per-sample shape, e.g. 64x7x7 or (-1,)"),)

    def example(self):
        return "Reshape(64x7x7)"

    def resolve(self, a, shapes):
        a = dict(a)
        a["shape"] = self.infer(a, shapes)
        return a

    def infer(self, a, shapes):
        n = math.prod(shapes[0])
        want = a["shape"]
        known = math.prod(s for s in want if s != -1)
        if -1 in want:
            if n % known:
                raise OpError(f"Reshape cannot fit {shape_str(shapes[0])} ({n:,} values) into "
                              f"{shape_str(want)}: {n:,} is not a multiple of {known:,}", attr="shape",
                              hint="the other sizes must divide the element count")
            return tuple(n // known if s == -1 else s for s in want)
        if known != n:
            raise OpError(f"Reshape changes the element count: {shape_str(shapes[0])} has {n:,} values, "
                          f"{shape_str(want)} has {known:,}", attr="shape",
                          hint="use -1 for one size to let netdsl compute it")
        return tuple(want)

    def window(self, a, shapes):
        out = self.infer(a, shapes)
        if len(shapes[0]) == 3 and not (len(out) == 3 and out[1:] == shapes[0][1:]):
            return _whole(shapes[0])
        return (1, 1, 1, 1)

    def explain(self, a, shapes, out):
        return [f"{shape_str(shapes[0])} → {shape_str(out)} ({math.prod(out):,} values)"]

    def reference(self, a, xs, w):
        return xs[0].reshape(xs[0].shape[0], *a["shape"])

    samples = ((dict(shape=(5, 21)), [(3, 5, 7)]), (dict(shape=(-1,)), [(3, 5, 7)]))


@register
class Identity(OpSpec):
    name = "Identity"
    output_sign = "inputs"
    aliases = ("Id",)
    doc = "Passes its input through unchanged."
    arity = 1
    flags = frozenset({"no_op"})
    linear = True

    def reference(self, a, xs, w):
        return xs[0]

    samples = (({}, [(3, 5, 7)]),)


def _probability(v, name):
    p = float_(v, name)
    if not 0.0 <= p < 1.0:
        raise OpError(f"'{name}' must be a probability in [0, 1), got {v}", hint="e.g. Dropout(0.5)")
    return p


@register
class Dropout(OpSpec):
    name = "Dropout"
    output_sign = "inputs"
    doc = "Dropout; an identity at inference (netdsl only runs inference)."
    arity = 1
    flags = frozenset({"no_op"})
    linear = True
    attrs = (Attr("p", _probability, 0.5, "drop probability during training"),)

    def explain(self, a, shapes, out):
        return [f"training drops {a['p']:g} of the values; at inference it passes them through"]

    def reference(self, a, xs, w):
        return xs[0]

    samples = ((dict(p=0.3), [(3, 5, 7)]),)
