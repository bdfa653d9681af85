"""Merges of two or more branches: Concat (channel axis), Add, Mul.

Concat joins along the channel axis (axis 1 of NCHW, or the feature axis of
vectors) in input-slot order; every other size must agree. Add (ResNet
shortcuts) and Mul need identical shapes, except that Mul also accepts a
per-channel operand — (C, 1, 1) or (C,) — broadcast over a (C, H, W) map,
which is squeeze-and-excitation's rescaling. Shape errors list every
input's shape. No MACs are counted (the papers' convention).

Each merge declares how it combines (`combine`: "concat", "sum", "product"),
which is what the passes read: only a "sum" may become a Conv's fused
residual. Add and Mul may write over their first input (`inplace_ok`).
"""
from __future__ import annotations

import numpy as np

from . import register
from .activations import NAMES as ACT_NAMES, act_kind, apply as apply_act
from .attrs import Attr, OpError
from .geometry import shape_str
from .spec import OpSpec


def _all_shapes(shapes):
    return ", ".join(f"#{i + 1} {shape_str(s)}" for i, s in enumerate(shapes))


def _need_two(op, shapes):
    if len(shapes) < 2:
        raise OpError(f"{op} merges two or more inputs, got {len(shapes)}",
                      hint=f"write {op}(a, b) or merge parallel branches")


@register
class Concat(OpSpec):
    name = "Concat"
    output_sign = "inputs"
    aliases = ("Cat",)
    doc = "Concatenate along the channel axis (Inception, DenseNet, U-Net)."
    arity = None
    flags = frozenset({"merge"})
    combine = "concat"
    linear = True

    def infer(self, a, shapes):
        _need_two(self.name, shapes)
        ranks = {len(s) for s in shapes}
        if len(ranks) > 1:
            raise OpError(f"Concat inputs mix feature maps and vectors: {_all_shapes(shapes)}",
                          hint="Flatten the maps first, or keep both branches as feature maps")
        rest = [tuple(s[1:]) for s in shapes]
        if len(set(rest)) > 1:
            sizes = " vs ".join(shape_str(r) for r in rest)
            raise OpError(f"Concat inputs differ in size: {sizes} (inputs: {_all_shapes(shapes)})",
                          hint="Concat joins channels, so height and width must match: pad=same on "
                               "the branch convolutions, or Crop the larger input (U-Net)")
        return (sum(s[0] for s in shapes), *rest[0])

    def explain(self, a, shapes, out):
        return [" + ".join(str(s[0]) for s in shapes) + f" = {out[0]} channels"]

    def reference(self, a, xs, w):
        return np.concatenate(xs, axis=1)

    samples = (({}, [(3, 5, 7), (2, 5, 7)]), ({}, [(1, 3, 3), (4, 3, 3), (2, 3, 3)]), ({}, [(3,), (5,)]))


class _Elementwise(OpSpec):
    output_sign = "inputs"     # a sum or product of non-negative values
    arity = None
    flags = frozenset({"merge", "elementwise", "inplace_ok"})
    symbol = "+"

    def infer(self, a, shapes):
        _need_two(self.name, shapes)
        if len(set(map(tuple, shapes))) > 1:
            raise OpError(f"{self.name} inputs differ in shape: "
                          f"{' vs '.join(shape_str(s) for s in shapes)}",
                          hint=self.mismatch_hint)
        return tuple(shapes[0])

    def explain(self, a, shapes, out):
        return [f"y = {f' {self.symbol} '.join(f'x{i + 1}' for i in range(len(shapes)))} per value"]


@register
class Add(_Elementwise):
    name = "Add"
    aliases = ("Sum", "Residual")
    doc = "Elementwise sum (ResNet shortcut)."
    flags = frozenset({"merge", "elementwise", "inplace_ok", "fusible_epilogue"})
    combine = "sum"
    linear = True
    epilogues = ACT_NAMES          # the whole activation table (activations.py)
    attrs = (Attr("act", act_kind(*epilogues), "none", "fused activation after the sum"),)
    mismatch_hint = ("a shortcut across a change of size needs a projection: a 1x1 Conv with the "
                     "block's stride and channel count on the shortcut branch")

    def reference(self, a, xs, w):
        out = xs[0]
        for x in xs[1:]:
            out = out + x
        return apply_act(out, a.get("act", "none"))

    samples = (({}, [(3, 5, 7)] * 2), (dict(act="relu"), [(2, 5, 5)] * 3), ({}, [(7,), (7,)]))


def _per_channel(s, c):
    return tuple(s) in ((c, 1, 1), (c,))


@register
class Mul(_Elementwise):
    name = "Mul"
    doc = "Elementwise product; a (C,1,1) or (C,) operand scales each channel (squeeze-excite)."
    symbol = "·"
    combine = "product"
    mismatch_hint = "give both the same shape, or a per-channel (C,1,1) / (C,) scale"

    def infer(self, a, shapes):
        _need_two(self.name, shapes)
        full = [s for s in shapes if len(s) == 3 and tuple(s[1:]) != (1, 1)]
        if full and all(tuple(s) == tuple(full[0]) or _per_channel(s, full[0][0]) for s in shapes):
            return tuple(full[0])
        return super().infer(a, shapes)

    def reference(self, a, xs, w):
        out = xs[0]
        for x in xs[1:]:
            if out.ndim == 4 and x.ndim == 2:
                x = x.reshape(*x.shape, 1, 1)
            elif out.ndim == 2 and x.ndim == 4:
                out = out.reshape(*out.shape, 1, 1)
            out = out * x
        return out

    samples = (({}, [(3, 5, 7)] * 2), ({}, [(3, 5, 7), (3, 1, 1)]), ({}, [(3,), (3, 5, 5)]),
               ({}, [(5,), (5,), (5,)]))
