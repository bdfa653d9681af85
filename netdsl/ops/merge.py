"""Merges of two or more branches: Concat, Add, Mul.

Concat joins along the channel axis (axis 1 of NCHW, or the feature axis of
vectors) in input-slot order, or along `axis` (PyTorch/ONNX numbering with
the batch as axis 0, negative from the end; axis=2 joins heights, 3 widths;
the batch is refused, shape.py resolve_axis); every other size must agree.
Add (ResNet shortcuts) and Mul need identical shapes, except that either
also accepts a per-channel operand — (C, 1, 1) or (C,), in any slot —
broadcast over a (C, H, W) map: squeeze-and-excitation's rescaling (Mul) and
a per-channel shift (Add). Shape errors list every input's shape. No MACs are
counted (the papers' convention).

Each merge declares how it combines (`combine`: "concat", "sum", "product"),
which is what the passes read: only a "sum" may become a Conv's fused
residual, and only one whose operands both have the Conv's shape (a
broadcast Add is no residual: fuse.py checks the shapes). Add and Mul may
write over their first input (`inplace_ok`); the planner does so only when
that input has the output's size, never over a per-channel operand.
"""
from __future__ import annotations

import numpy as np

from . import register
from .activations import act_kind, apply as apply_act
from .attrs import Attr, OpError
from .geometry import shape_str
from .shape import axis_, axis_name, resolve_axis
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
    doc = "Concatenate along the channel axis (Inception, DenseNet, U-Net), or along `axis`."
    arity = None
    flags = frozenset({"merge"})
    combine = "concat"
    linear = True
    attrs = (Attr("axis", axis_, 1, "axis joined, counting the batch: 1 channels, 2 height, 3 width, -1 the last"),)

    def resolve(self, a, shapes):
        a = dict(a)
        if shapes:
            a["axis"] = resolve_axis(self.name, a["axis"], shapes[0])
        return a

    def infer(self, a, shapes):
        _need_two(self.name, shapes)
        ranks = {len(s) for s in shapes}
        if len(ranks) > 1:
            raise OpError(f"Concat inputs mix feature maps and vectors: {_all_shapes(shapes)}",
                          hint="Flatten the maps first, or keep both branches as feature maps")
        k = a.get("axis", 1) - 1
        rest = [tuple(s[:k]) + tuple(s[k + 1:]) for s in shapes]
        if len(set(rest)) > 1:
            sizes = " vs ".join(shape_str(r) for r in rest)
            joined = axis_name(shapes[0], k + 1)
            if k == 0 and len(shapes[0]) == 3:
                hint = ("Concat joins channels, so height and width must match: pad=same on "
                        "the branch convolutions, or Crop the larger input (U-Net)")
            else:
                hint = (f"Concat(axis={k + 1}) joins the {joined}; every other size must match "
                        f"(Crop, Pad or a Conv on one branch)")
            raise OpError(f"Concat inputs differ in size off the joined axis {k + 1} ({joined}): {sizes} "
                          f"(inputs: {_all_shapes(shapes)})", hint=hint)
        out = list(shapes[0])
        out[k] = sum(s[k] for s in shapes)
        return tuple(out)

    def explain(self, a, shapes, out):
        k = a.get("axis", 1)
        what = "channels" if k == 1 else axis_name(shapes[0], k)
        if k == 1 and len(shapes[0]) == 1:
            what = "features"
        return [" + ".join(str(s[k - 1]) for s in shapes) + f" = {out[k - 1]} {what}"]

    def reference(self, a, xs, w):
        return np.concatenate(xs, axis=a.get("axis", 1))

    samples = (({}, [(3, 5, 7), (2, 5, 7)]), ({}, [(1, 3, 3), (4, 3, 3), (2, 3, 3)]), ({}, [(3,), (5,)]),
               (dict(axis=2), [(3, 5, 7), (3, 2, 7)]), (dict(axis=-1), [(3, 5, 7), (3, 5, 1), (3, 5, 4)]),
               (dict(axis=2), [(3, 5), (3, 4)]))


def _per_channel(s, c):
    return tuple(s) in ((c, 1, 1), (c,))


class _Elementwise(OpSpec):
    output_sign = "inputs"     # a sum or product of non-negative values
    arity = None
    flags = frozenset({"merge", "elementwise", "inplace_ok"})
    symbol = "+"

    def infer(self, a, shapes):
        _need_two(self.name, shapes)
        full = [s for s in shapes if len(s) == 3 and tuple(s[1:]) != (1, 1)]
        if full and all(tuple(s) == tuple(full[0]) or _per_channel(s, full[0][0]) for s in shapes):
            return tuple(full[0])
        if len(set(map(tuple, shapes))) > 1:
            raise OpError(f"{self.name} inputs differ in shape: "
                          f"{' vs '.join(shape_str(s) for s in shapes)}",
                          hint=self.mismatch_hint)
        return tuple(shapes[0])

    def explain(self, a, shapes, out):
        line = f"y = {f' {self.symbol} '.join(f'x{i + 1}' for i in range(len(shapes)))} per value"
        bc = [f"x{i + 1}" for i, s in enumerate(shapes) if tuple(s) != tuple(out)]
        if bc:
            line += f"; {', '.join(bc)} {'is' if len(bc) == 1 else 'are'} one value per channel, " \
                    f"broadcast over the {out[1]}x{out[2]} map"
        return [line]

    def reference(self, a, xs, w):
        out = xs[0]
        for x in xs[1:]:
            if out.ndim == 4 and x.ndim == 2:
                x = x.reshape(*x.shape, 1, 1)
            elif out.ndim == 2 and x.ndim == 4:
                out = out.reshape(*out.shape, 1, 1)
            out = self.op(out, x)
        return apply_act(out, a.get("act", "none"))


@register
class Add(_Elementwise):
    name = "Add"
    aliases = ("Sum", "Residual")
    doc = "Elementwise sum (ResNet shortcut); a (C,1,1) or (C,) operand adds one value per channel."
    flags = frozenset({"merge", "elementwise", "inplace_ok", "fusible_epilogue"})
    combine = "sum"
    linear = True
    epilogues = ("relu", "relu6", "hardsigmoid", "hardswish", "silu", "gelu", "mish")
    attrs = (Attr("act", act_kind(*epilogues), "none", "fused activation after the sum"),)
    mismatch_hint = ("a shortcut across a change of size needs a projection: a 1x1 Conv with the "
                     "block's stride and channel count on the shortcut branch (a per-channel (C,1,1) "
                     "or (C,) operand is broadcast)")
    op = staticmethod(np.add)

    samples = (({}, [(3, 5, 7)] * 2), (dict(act="relu"), [(2, 5, 5)] * 3), ({}, [(7,), (7,)]),
               ({}, [(3, 5, 7), (3, 1, 1)]), (dict(act="relu"), [(3,), (3, 5, 5), (3, 1, 1)]))


@register
class Mul(_Elementwise):
    name = "Mul"
    doc = "Elementwise product; a (C,1,1) or (C,) operand scales each channel (squeeze-excite)."
    symbol = "·"
    combine = "product"
    mismatch_hint = "give both the same shape, or a per-channel (C,1,1) / (C,) scale"
    op = staticmethod(np.multiply)

    samples = (({}, [(3, 5, 7)] * 2), ({}, [(3, 5, 7), (3, 1, 1)]), ({}, [(3,), (3, 5, 5)]),
               ({}, [(5,), (5,), (5,)]))
