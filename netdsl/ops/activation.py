"""Activations: ReLU, LeakyReLU, Sigmoid, Tanh (elementwise), Softmax, LogSoftmax.

The elementwise four keep any shape and may overwrite their input
(`inplace_ok`), which the in-place pass reads. Softmax and LogSoftmax
normalize over the channel axis — axis 1 of (N, F) or of (N, C, H, W), so on
a feature map each pixel gets its own distribution over channels, as in
segmentation heads — and subtract the maximum first so large logits do not
overflow. MACs are 0: they are not multiply-accumulates.
"""
from __future__ import annotations

import numpy as np

from . import register
from .base import Attr, OpSpec, float_

_POINTWISE = frozenset({"elementwise", "inplace_ok"})


@register
class ReLU(OpSpec):
    name = "ReLU"
    output_sign = "nonneg"
    doc = "max(0, x)."
    flags = _POINTWISE

    def epilogue(self, a):
        return "relu"

    def explain(self, a, shapes, out):
        return ["y = max(0, x) per value; no parameters"]

    def reference(self, a, xs, w):
        return np.maximum(xs[0], 0)


@register
class LeakyReLU(OpSpec):
    name = "LeakyReLU"
    doc = "x for x >= 0, slope·x below."
    flags = _POINTWISE
    attrs = (Attr("slope", float_, 0.01, "gradient for negative inputs"),)

    def epilogue(self, a):
        # the fused epilogue of Conv/FC (reference and kernels) has the slope 0.01 built in
        return "leakyrelu" if a["slope"] == 0.01 else None

    def explain(self, a, shapes, out):
        return [f"y = x if x ≥ 0 else {a['slope']:g}·x"]

    def reference(self, a, xs, w):
        x = xs[0]
        return np.where(x >= 0, x, x * a["slope"]).astype(x.dtype, copy=False)


@register
class Sigmoid(OpSpec):
    name = "Sigmoid"
    output_sign = "nonneg"
    doc = "1 / (1 + e^-x)."
    flags = _POINTWISE

    def epilogue(self, a):
        return "sigmoid"

    def explain(self, a, shapes, out):
        return ["y = 1 / (1 + e^−x) per value"]

    def reference(self, a, xs, w):
        # 1/(1+e^-x) written as (1 + tanh(x/2))/2: the same function, and no overflow for x << 0
        x = xs[0]
        return (0.5 * (1 + np.tanh(0.5 * x))).astype(x.dtype, copy=False)


@register
class Tanh(OpSpec):
    name = "Tanh"
    doc = "tanh(x)."
    flags = _POINTWISE

    def epilogue(self, a):
        return "tanh"

    def explain(self, a, shapes, out):
        return ["y = tanh(x) per value"]

    def reference(self, a, xs, w):
        return np.tanh(xs[0])


def _over(shape):
    return f"the {shape[0]} channels" if len(shape) == 3 else f"the {shape[0]} values"


def _log_softmax(x):
    shifted = x - x.max(axis=1, keepdims=True)          # the largest logit becomes 0: exp never overflows
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


@register
class Softmax(OpSpec):
    name = "Softmax"
    output_sign = "nonneg"
    aliases = ("SM", "SoftMax")
    doc = "e^x / sum(e^x) over the channels (per pixel on a feature map)."

    def explain(self, a, shapes, out):
        return [f"y_i = e^x_i / Σ_j e^x_j over {_over(shapes[0])} (sums to 1)"]

    def reference(self, a, xs, w):
        x = xs[0]
        e = np.exp(x - x.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)


@register
class LogSoftmax(OpSpec):
    name = "LogSoftmax"
    aliases = ("LogSoftMax",)
    doc = "log(softmax(x)) over the channels, computed without forming softmax."

    def explain(self, a, shapes, out):
        return [f"y_i = x_i − log Σ_j e^x_j over {_over(shapes[0])}"]

    def reference(self, a, xs, w):
        return _log_softmax(xs[0])
