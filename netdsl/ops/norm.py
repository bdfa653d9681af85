"""Normalization at inference: BatchNorm and LRN (AlexNet's local response norm).

BatchNorm uses its running statistics (inference), per channel:
    y = (x − running_mean) / sqrt(running_var + eps) · weight + bias
on (C, H, W) or (F,) inputs; names and shapes are PyTorch's BatchNorm2d/1d
(PyTorch's num_batches_tracked counter is training state and is not kept).
MACs are counted as 0 (the papers' convention; the fold-BN pass usually
removes the layer anyway).

LRN is PyTorch's LocalResponseNorm, channel window [c − size//2, c + (size−1)//2]
zero-padded at the ends, with alpha divided by size:
    y_c = x_c / (k + alpha/size · Σ x_c'²)^beta
"""
from __future__ import annotations

import numpy as np

from . import register
from .activations import act_kind, apply as apply_act
from .attrs import Attr, OpError, float_, pos_int
from .geometry import need_rank
from .spec import OpSpec


def _positive(v, name):
    x = float_(v, name)
    if x <= 0:
        raise OpError(f"'{name}' must be positive, got {v}")
    return x


def _per_channel(v, x):
    """Broadcast a (C,) vector along axis 1 of (N, C, ...)."""
    return v.reshape(1, -1, *([1] * (x.ndim - 2)))


@register
class BatchNorm(OpSpec):
    name = "BatchNorm"
    aliases = ("BN", "BatchNorm2d")
    doc = "Batch normalization with running statistics (inference)."
    arity = 1
    flags = frozenset({"has_weights", "inplace_ok", "fusible_epilogue"})   # y = x·scale + shift, value by value
    epilogues = ("relu", "relu6", "hardsigmoid", "hardswish", "silu", "gelu", "mish")
    channel_affine = True
    linear = True
    attrs = (Attr("eps", _positive, 1e-5, "added to the variance before the square root"),
             Attr("act", act_kind(*epilogues), "none", "fused activation after the normalization"))

    def affine_params(self, a, w):
        scale = w["weight"].astype(np.float64) / np.sqrt(w["running_var"].astype(np.float64) + a["eps"])
        return scale, w["bias"].astype(np.float64) - w["running_mean"].astype(np.float64) * scale

    def absorbs_affine(self, a, shapes, side):
        return side == "out"        # BN after BN is one BN

    def fold_affine(self, a, shapes, w, scale, shift, side):
        s1, t1 = self.affine_params(a, w)
        s, t = s1 * scale, t1 * scale + shift
        # mean 0, var 1: then y = x·weight/√(1 + eps) + bias, so weight carries √(1 + eps)
        return {"weight": s * np.sqrt(1.0 + a["eps"]), "bias": t,
                "running_mean": np.zeros_like(s), "running_var": np.ones_like(s)}

    def infer(self, a, shapes):
        need_rank(shapes[0], (1, 3), self.name)
        return shapes[0]

    def params(self, a, shapes):
        c = shapes[0][0]
        return {"weight": (c,), "bias": (c,)}

    def buffers(self, a, shapes):
        c = shapes[0][0]
        return {"running_mean": (c,), "running_var": (c,)}

    def init(self, a, shapes, rng):
        c = shapes[0][0]
        return {"weight": np.ones(c, np.float32), "bias": np.zeros(c, np.float32),
                "running_mean": np.zeros(c, np.float32), "running_var": np.ones(c, np.float32)}

    def explain(self, a, shapes, out):
        c = shapes[0][0]
        return [f"y = (x − mean)/√(var + {a['eps']:g})·γ + β per channel",
                f"params: 2·{c} = {2 * c:,} (γ, β); buffers: 2·{c} (running mean, var)"]

    def reference(self, a, xs, w):
        x = xs[0]
        scale = w["weight"] / np.sqrt(w["running_var"] + a["eps"])
        y = (x - _per_channel(w["running_mean"], x)) * _per_channel(scale, x) + _per_channel(w["bias"], x)
        y = apply_act(y, a.get("act", "none"))
        return y.astype(np.result_type(x, w["weight"]), copy=False)

    samples = (({}, [(3, 5, 7)]), (dict(eps=1e-3, act="relu"), [(5, 3, 3)]), ({}, [(7,)]))


@register
class LRN(OpSpec):
    name = "LRN"
    output_sign = "inputs"     # x / (k + …)^β keeps the sign of x
    aliases = ("LocalResponseNorm",)
    doc = "Local response normalization across channels (PyTorch LocalResponseNorm)."
    arity = 1
    attrs = (
        Attr("size", pos_int, 5, "number of neighbouring channels in the sum"),
        Attr("alpha", float_, 1e-4, "scale (divided by size, as PyTorch does)"),
        Attr("beta", float_, 0.75, "exponent"),
        Attr("k", float_, 1.0, "additive constant"),
    )

    def infer(self, a, shapes):
        need_rank(shapes[0], (3,), self.name)
        return shapes[0]

    def explain(self, a, shapes, out):
        return [f"y_c = x_c / ({a['k']:g} + {a['alpha']:g}/{a['size']}·Σ x²)^{a['beta']:g} "
                f"over channels c−{a['size'] // 2}…c+{(a['size'] - 1) // 2}"]

    def reference(self, a, xs, w):
        x = xs[0]
        n, c = x.shape[:2]
        size = a["size"]
        lo, hi = size // 2, (size - 1) // 2
        sq = np.pad(x * x, ((0, 0), (lo, hi), (0, 0), (0, 0)))   # zero channels past both ends
        total = sum(sq[:, i:i + c] for i in range(size))
        return x / (a["k"] + a["alpha"] / size * total) ** a["beta"]

    samples = (({}, [(7, 5, 5)]), (dict(size=2, alpha=1e-2, beta=0.5, k=2.0), [(3, 5, 7)]))
