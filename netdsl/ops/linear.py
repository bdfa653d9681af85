"""FC (fully connected / Linear / Dense): y = W·x + b on the flattened input.

A (C, H, W) input is flattened in C-major order (PyTorch's x.flatten(1)), so
FC on a 16x4x4 map equals Conv(out, 4) on it with the same weights reshaped
(out, 16, 4, 4) — the lecture's "an FC layer is a conv covering the whole
input". weight is (out, in) as in PyTorch's nn.Linear.
"""
from __future__ import annotations

import math

import numpy as np

from . import register
from .attrs import Attr, bool_, pos_int
from .geometry import need_rank, shape_str
from .spec import OpSpec
from .activations import NAMES as ACT_NAMES, act_kind, apply as apply_act


@register
class FC(OpSpec):
    name = "FC"
    aliases = ("Dense", "Linear", "FullyConnected")
    doc = "Fully connected layer; flattens a feature map first."
    arity = 1
    flags = frozenset({"has_weights", "fusible_epilogue"})
    epilogues = ACT_NAMES
    linear = True
    attrs = (
        Attr("out_features", pos_int, doc="number of outputs"),
        Attr("bias", bool_, True, "add a learned bias"),
        Attr("act", act_kind(), "none", "fused activation after the layer"),
    )

    def example(self):
        return "FC(10)"

    def resolve(self, a, shapes):
        need_rank(shapes[0], (1, 3), self.name)
        a = dict(a)
        a["in_features"] = math.prod(shapes[0])
        return a

    def infer(self, a, shapes):
        need_rank(shapes[0], (1, 3), self.name)
        return (a["out_features"],)

    def params(self, a, shapes):
        p = {"weight": (a["out_features"], math.prod(shapes[0]))}
        if a["bias"]:
            p["bias"] = (a["out_features"],)
        return p

    def macs(self, a, shapes, out):
        return math.prod(shapes[0]) * a["out_features"]

    def window(self, a, shapes):
        if len(shapes[0]) == 3:
            c, h, w = shapes[0]
            return (h, w, h, w)
        return (1, 1, 1, 1)

    def explain(self, a, shapes, out):
        n_in, n_out = math.prod(shapes[0]), a["out_features"]
        lines = []
        if len(shapes[0]) != 1:
            lines.append(f"flatten {shape_str(shapes[0])} = {n_in:,} inputs")
        if a["bias"]:
            lines.append(f"({n_in} + 1)·{n_out} = {(n_in + 1) * n_out:,} params")
        else:
            lines.append(f"{n_in}·{n_out} = {n_in * n_out:,} params (no bias)")
        return lines

    def absorbs_affine(self, a, shapes, side):
        return True     # no padding: every input value is read exactly once per output

    def fold_affine(self, a, shapes, w, scale, shift, side):
        weight = w["weight"].astype(np.float64)
        bias = w["bias"].astype(np.float64) if a["bias"] else np.zeros(weight.shape[0])
        if side == "out":
            return {"weight": weight * scale[:, None], "bias": bias * scale + shift}
        reps = math.prod(shapes[0][1:])         # a (C,H,W) input is flattened C-major
        s, t = np.repeat(scale, reps), np.repeat(shift, reps)
        return {"weight": weight * s[None, :], "bias": bias + weight @ t}

    def reference(self, a, xs, w):
        x = xs[0].reshape(xs[0].shape[0], -1)
        y = x @ w["weight"].T
        if a["bias"]:
            y = y + w["bias"]
        return apply_act(y, a["act"])

    samples = (
        (dict(out_features=5), [(7,)]),
        (dict(out_features=3, bias=False, act="tanh"), [(2, 3, 5)]),     # a feature map, flattened
        (dict(out_features=9, act="leakyrelu"), [(33,)]),
        (dict(out_features=4, act="relu"), [(2, 5, 5)]),
    )
