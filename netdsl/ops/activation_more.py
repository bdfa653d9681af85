"""The activations of modern exported models: HardSigmoid, HardSwish (MobileNetV3), SiLU /
Swish (EfficientNet, YOLOv5+), GELU (transformers, ConvNeXt), Mish (YOLOv4, Darknet).

Element-wise, any shape, in place (`inplace_ok`); each is one entry of the activation table
(activations.py: its numpy function, NaN behaviour and fused `act` value), with PyTorch's
formulas: hardsigmoid = relu6(x + 3) / 6, hardswish = x · relu6(x + 3) / 6, silu = x ·
sigmoid(x), gelu = x · Φ(x) (or the tanh approximation), mish = x · tanh(softplus(x)). The
x-times ones give NaN at -inf (-inf · 0), as PyTorch does. HardSigmoid also takes ONNX's
alpha/beta (y = min(max(alpha·x + beta, 0), 1)); its defaults are PyTorch's 1/6 and 1/2, not
ONNX's 0.2 and 0.5 — an ONNX importer passes the node's own. Fused into a producer: every one
of them with its defaults (HardSigmoid 1/6, 1/2; GELU's exact erf form).
"""
from __future__ import annotations

from . import activations as acts
from . import register
from .attrs import Attr, choice, float_


def _fmt_alpha(a):
    return "1/6" if a == 1 / 6 else f"{a:g}"


@register
class HardSigmoid(acts.Pointwise):
    name = "HardSigmoid"
    aliases = ("Hardsigmoid",)
    output_sign = "nonneg"
    doc = "min(max(alpha·x + beta, 0), 1); default alpha = 1/6, beta = 1/2: relu6(x + 3) / 6 (PyTorch)."
    act = "hardsigmoid"
    attrs = (Attr("alpha", float_, 1 / 6, "slope (PyTorch 1/6; ONNX's default is 0.2)"),
             Attr("beta", float_, 0.5, "offset (PyTorch and ONNX 0.5)"))

    def epilogue(self, a):
        """hardsigmoid when alpha is 1/6 (to float32 precision: an ONNX export's 0.16666667) and beta 1/2."""
        return "hardsigmoid" if acts.is_sixth(a.get("alpha")) and a.get("beta") == 0.5 else None

    def explain(self, a, shapes, out):
        if acts.is_sixth(a["alpha"]) and a["beta"] == 0.5:
            return ["y = relu6(x + 3) / 6 = min(max(x/6 + 1/2, 0), 1) per value"]
        return [f"y = min(max({_fmt_alpha(a['alpha'])}·x + {a['beta']:g}, 0), 1) per value"]

    def reference(self, a, xs, w):
        return acts.hard_sigmoid(xs[0], a["alpha"], a["beta"])

    samples = (({}, [(3, 5, 7)]), (dict(alpha=0.2, beta=0.5), [(13,)]))


@register
class HardSwish(acts.Pointwise):
    name = "HardSwish"
    aliases = ("Hardswish",)
    doc = "x · relu6(x + 3) / 6 (MobileNetV3)."
    act = "hardswish"

    def explain(self, a, shapes, out):
        return ["y = x · min(max(x + 3, 0), 6) / 6 per value"]

    def reference(self, a, xs, w):
        return acts.hard_swish(xs[0])

    samples = (({}, [(3, 5, 7)]), ({}, [(13,)]))


@register
class SiLU(acts.Pointwise):
    name = "SiLU"
    aliases = ("Swish",)
    doc = "x · sigmoid(x) (Swish with beta 1)."
    act = "silu"

    def explain(self, a, shapes, out):
        return ["y = x / (1 + e^−x) per value"]

    def reference(self, a, xs, w):
        return acts.silu(xs[0])

    samples = (({}, [(3, 5, 7)]), ({}, [(13,)]))


@register
class GELU(acts.Pointwise):
    name = "GELU"
    aliases = ("Gelu",)
    doc = "x · Φ(x) = x · (1 + erf(x/√2)) / 2, or its tanh approximation (torch.nn.GELU)."
    act = "gelu"
    attrs = (Attr("approximate", choice("none", "tanh"), "none",
                  "none: the exact erf form; tanh: x·(1 + tanh(√(2/π)·(x + 0.044715x³)))/2"),)

    def explain(self, a, shapes, out):
        if a["approximate"] == "tanh":
            return ["y = x · (1 + tanh(√(2/π) · (x + 0.044715·x³))) / 2 per value"]
        return ["y = x · (1 + erf(x / √2)) / 2 per value"]

    def reference(self, a, xs, w):
        return acts.gelu(xs[0], a["approximate"])

    samples = (({}, [(3, 5, 7)]), (dict(approximate="tanh"), [(3, 5, 7)]), ({}, [(13,)]))


@register
class Mish(acts.Pointwise):
    name = "Mish"
    doc = "x · tanh(softplus(x)) = x · tanh(log(1 + e^x)) (YOLOv4, Darknet's mish)."
    act = "mish"

    def explain(self, a, shapes, out):
        return ["y = x · tanh(log(1 + e^x)) per value"]

    def reference(self, a, xs, w):
        return acts.mish(xs[0])

    samples = (({}, [(3, 5, 7)]), ({}, [(13,)]))
