"""Activations: ReLU, LeakyReLU, Sigmoid, Tanh (elementwise), Softmax, LogSoftmax.

The elementwise four keep any shape and may overwrite their input
(`inplace_ok`, read by the memory planner); what each computes, whether it
keeps NaN and the `act` value it becomes when fused are one entry of the
activation table (activations.py), shared with the layers' fused epilogues.
Softmax and LogSoftmax normalize over the channel axis by default — axis 1 of
(N, F) or of (N, C, H, W), so on a feature map each pixel gets its own
distribution over channels, as in segmentation heads — or over `axis`
(PyTorch/ONNX numbering, batch = 0, negative from the end; the batch itself is
refused: shape.py resolve_axis), and subtract the maximum first so large
logits do not overflow. MACs are 0: they are not multiply-accumulates.
"""
from __future__ import annotations

import numpy as np

from . import activations as acts
from . import register
from .attrs import Attr, float_
from .spec import OpSpec


@register
class ReLU(acts.Pointwise):
    name = "ReLU"
    output_sign = "nonneg"
    doc = "max(0, x)."
    act = "relu"

    def explain(self, a, shapes, out):
        return ["y = max(0, x) per value; no parameters"]

    def reference(self, a, xs, w):
        return acts.relu(xs[0])

    samples = (({}, [(3, 5, 7)]), ({}, [(13,)]))


@register
class LeakyReLU(acts.Pointwise):
    name = "LeakyReLU"
    doc = "x for x >= 0, slope·x below."
    act = "leakyrelu"
    attrs = (Attr("slope", float_, 0.01, "gradient for negative inputs"),)

    def explain(self, a, shapes, out):
        return [f"y = x if x ≥ 0 else {a['slope']:g}·x"]

    def reference(self, a, xs, w):
        return acts.leaky_relu(xs[0], a["slope"])

    samples = (({}, [(3, 5, 7)]), (dict(slope=0.2), [(13,)]))


@register
class Sigmoid(acts.Pointwise):
    name = "Sigmoid"
    output_sign = "nonneg"
    doc = "1 / (1 + e^-x)."
    act = "sigmoid"

    def explain(self, a, shapes, out):
        return ["y = 1 / (1 + e^−x) per value"]

    def reference(self, a, xs, w):
        return acts.sigmoid(xs[0])

    samples = (({}, [(3, 5, 7)]), ({}, [(13,)]))


@register
class Tanh(acts.Pointwise):
    name = "Tanh"
    doc = "tanh(x)."
    act = "tanh"

    def explain(self, a, shapes, out):
        return ["y = tanh(x) per value"]

    def reference(self, a, xs, w):
        return acts.tanh(xs[0])

    samples = (({}, [(3, 5, 7)]), ({}, [(13,)]))


def _over(shape, axis=1):
    if len(shape) == 1:
        return f"the {shape[0]} values"
    from .shape import axis_name
    name = axis_name(shape, axis)
    if axis == 1 and len(shape) == 3:
        return f"the {shape[0]} channels (per pixel)"
    where = f"axis {axis} ({name})" if not name.startswith("axis") else name
    return f"{where}: {shape[axis - 1]} values, each of the other positions on its own"


def _axis_attr():
    from .shape import axis_
    return Attr("axis", axis_, 1, "axis normalized over, counting the batch: 1 channels, 2 height, "
                                  "3 width, -1 the last")


def _resolve(op, a, shapes):
    from .shape import resolve_axis
    a = dict(a)
    a["axis"] = resolve_axis(op, a.get("axis", 1), shapes[0])
    return a


def _log_softmax(x, axis=1):
    shifted = x - x.max(axis=axis, keepdims=True)       # the largest logit becomes 0: exp never overflows
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


@register
class Softmax(OpSpec):
    name = "Softmax"
    output_sign = "nonneg"
    aliases = ("SM", "SoftMax")
    doc = "e^x / sum(e^x) over the channels (per pixel on a feature map), or over `axis`."
    attrs = (_axis_attr(),)

    def resolve(self, a, shapes):
        return _resolve(self.name, a, shapes)

    def explain(self, a, shapes, out):
        return [f"y_i = e^x_i / Σ_j e^x_j over {_over(shapes[0], a['axis'])} (sums to 1)"]

    def reference(self, a, xs, w):
        x, ax = xs[0], a.get("axis", 1)
        e = np.exp(x - x.max(axis=ax, keepdims=True))
        return e / e.sum(axis=ax, keepdims=True)

    samples = (({}, [(5, 3, 7)]), ({}, [(13,)]), (dict(axis=2), [(3, 5, 7)]), (dict(axis=-1), [(3, 5, 7)]),
               (dict(axis=-1), [(3, 7)]))


@register
class LogSoftmax(OpSpec):
    name = "LogSoftmax"
    aliases = ("LogSoftMax",)
    doc = "log(softmax(x)) over the channels (or `axis`), computed without forming softmax."
    attrs = (_axis_attr(),)

    def resolve(self, a, shapes):
        return _resolve(self.name, a, shapes)

    def explain(self, a, shapes, out):
        return [f"y_i = x_i − log Σ_j e^x_j over {_over(shapes[0], a['axis'])}"]

    def reference(self, a, xs, w):
        return _log_softmax(xs[0], a.get("axis", 1))

    samples = (({}, [(5, 3, 7)]), ({}, [(13,)]), (dict(axis=3), [(3, 5, 7)]), (dict(axis=-2), [(3, 5, 7)]))
