"""Ops that move no data: Flatten, Reshape, Identity, Dropout.

All four carry the `no_op` flag: at run time they are views of their input
(a contiguous NCHW buffer reinterpreted, or the same buffer), so the planner
gives them no kernel and the passes may delete Identity and Dropout.
Dropout is an identity at inference; training (netdsl/train/bwd_pool.py) zeroes each value
with probability `p` and scales the rest by 1/(1-p), with a seeded mask.

Flatten (and a Reshape that drops the spatial layout) report the whole
input as their receptive-field window: past them, positions no longer
exist, so a following FC sees the whole map exactly as if it had flattened
the input itself.

Axes (Flatten, and Softmax, LogSoftmax and Concat elsewhere) are numbered as
in PyTorch and ONNX, counting the batch: on (N, C, H, W) axis 1 is the
channels, 2 the height, 3 the width; negative axes count from the end (-1 is
the last). netdsl shapes exclude the batch and every op works per sample, so
axis 0 (the batch) is refused. `resolve_axis` is the one rule for all of them.
Flatten(axis=k) is PyTorch's flatten(start_dim=k): the axes from k to the end
become one, so on (C, H, W) axis=1 gives (C·H·W,), axis=2 gives the rank-2
per-sample shape (C, H·W) and axis=3 leaves the shape as it is.
"""
from __future__ import annotations

import math

from . import register
from .attrs import Attr, OpError, float_, int_, int_tuple
from .geometry import shape_str
from .spec import OpSpec


_AXIS_NAMES = {3: ("channels", "height", "width")}


def axis_name(shape, axis):
    """'the channels' / 'the height' / 'axis 2' for a resolved axis (>= 1) of a per-sample shape."""
    names = _AXIS_NAMES.get(len(shape))
    if names:
        return names[axis - 1]
    if len(shape) == 1:
        return "features"
    return f"axis {axis}"


def axis_(v, name):
    """An axis as an integer (range-checked against the input in resolve_axis)."""
    return int_(v, name)


def resolve_axis(op, axis, shape, attr="axis"):
    """A PyTorch/ONNX axis (batch = 0, negative from the end) -> 1 .. len(shape) for a
    per-sample `shape` (which excludes the batch). Axis 0 and axes out of range are OpErrors."""
    rank = len(shape) + 1
    full = f"(N, {', '.join(map(str, shape))})" if shape else "(N,)"
    ax = axis + rank if axis < 0 else axis
    if not 0 <= ax < rank:
        raise OpError(f"{op} {attr}={axis} is out of range for input {full} of rank {rank}: "
                      f"axes go from 1 to {rank - 1} (or {-(rank - 1)} to -1)", attr=attr,
                      hint=f"axis 1 is the {axis_name(shape, 1) if shape else 'first'} axis; the batch (axis 0) "
                           f"is not counted in a layer's shape {shape_str(shape)}")
    if ax == 0:
        others = ", ".join(f"{i} ({axis_name(shape, i)})" for i in range(1, rank))
        raise OpError(f"{op} {attr}={axis} is the batch axis of {full}: netdsl layers work on one "
                      f"sample at a time and cannot {'' if op != 'Concat' else 'join or '}mix samples",
                      attr=attr, hint=f"use one of the axes of a sample: {others}")
    return ax


def _whole(shape):
    if len(shape) == 3:
        return (shape[1], shape[2], shape[1], shape[2])
    return (1, 1, 1, 1)


@register
class Flatten(OpSpec):
    name = "Flatten"
    output_sign = "inputs"
    doc = ("(C, H, W) -> (C·H·W,), C-major like PyTorch's flatten(1); Flatten(axis=2) "
           "joins only the axes from 2 on: (C, H·W).")
    arity = 1
    flags = frozenset({"no_op"})
    linear = True
    attrs = (Attr("axis", axis_, 1, "first axis joined, counting the batch (PyTorch start_dim, ONNX axis)"),)

    def resolve(self, a, shapes):
        a = dict(a)
        a["axis"] = resolve_axis(self.name, a.get("axis", 1), shapes[0])
        return a

    def infer(self, a, shapes):
        s, k = tuple(shapes[0]), a.get("axis", 1) - 1
        return (*s[:k], math.prod(s[k:]))

    def window(self, a, shapes):
        if tuple(self.infer(a, shapes)) == tuple(shapes[0]):
            return (1, 1, 1, 1)
        return _whole(shapes[0])

    def explain(self, a, shapes, out):
        s, k = tuple(shapes[0]), a.get("axis", 1) - 1
        if k == 0:
            return [f"{shape_str(s)} = {out[0]:,} values"]
        joined = "·".join(map(str, s[k:]))
        return [f"{shape_str(s)} → {shape_str(out)}: axes {k + 1}.. joined ({joined} = {out[-1]:,})"]

    def reference(self, a, xs, w):
        x = xs[0]
        return x.reshape(x.shape[0], *x.shape[1:a.get("axis", 1)], -1)

    samples = (({}, [(3, 5, 7)]), (dict(axis=2), [(3, 5, 7)]), (dict(axis=-1), [(3, 5, 7)]),
               (dict(axis=-2), [(3, 5, 7)]))


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
    doc = "Dropout: training zeroes each value with probability p and scales the rest by 1/(1-p); an identity at inference."
    arity = 1
    flags = frozenset({"no_op"})
    linear = True
    attrs = (Attr("p", _probability, 0.5, "drop probability during training"),)

    def explain(self, a, shapes, out):
        return [f"training drops {a['p']:g} of the values; at inference it passes them through"]

    def reference(self, a, xs, w):
        return xs[0]

    samples = ((dict(p=0.3), [(3, 5, 7)]),)
