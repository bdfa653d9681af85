"""Clip and its fixed-bound forms ReLU6 and Hardtanh (element-wise, any shape, in place).

Clip(min, max) is torch.clamp / ONNX Clip: y = min(max(x, min), max), NaN kept, a missing
bound is no bound, min > max gives max everywhere (as torch.clamp). ReLU6 is Clip(0, 6)
(torch.nn.ReLU6, MobileNetV2); Hardtanh(min_val=-1, max_val=1) is torch.nn.Hardtanh. One C
kernel (nd_clip_f32) runs all three. Fused into the layer before it, any of them with bounds
exactly 0 and 6 becomes that layer's `act=relu6` (the activation table's relu6); other
bounds stay a separate step.
"""
from __future__ import annotations

from . import activations as acts
from . import register
from .attrs import Attr, OpError, float_, fmt, optional


def _bounds_note(lo, hi):
    if lo is not None and hi is not None and lo > hi:
        return [f"min {fmt(lo)} > max {fmt(hi)}: every value becomes {fmt(hi)} (as torch.clamp)"]
    return []


class _ClipBase(acts.Pointwise):
    act = "relu6"            # NaN behaviour: kept, as by the table's relu6
    lo_hi = ("min", "max")   # the attributes holding the bounds

    def bounds(self, a):
        lo, hi = (a.get(k) for k in self.lo_hi)
        return lo, hi

    def epilogue(self, a):
        return "relu6" if self.bounds(a) == (0.0, 6.0) else None

    def explain(self, a, shapes, out):
        lo, hi = self.bounds(a)
        lo_s = "−inf" if lo is None else f"{lo:g}"
        hi_s = "inf" if hi is None else f"{hi:g}"
        return [f"y = min(max(x, {lo_s}), {hi_s}) per value"] + _bounds_note(lo, hi)

    def reference(self, a, xs, w):
        lo, hi = self.bounds(a)
        return acts.clip(xs[0], lo, hi)


@register
class Clip(_ClipBase):
    name = "Clip"
    aliases = ("Clamp",)
    doc = "min(max(x, min), max) per value (torch.clamp, ONNX Clip); a missing bound is none."
    attrs = (Attr("min", optional(float_), None, "lower bound (none: no lower bound)"),
             Attr("max", optional(float_), None, "upper bound (none: no upper bound)"))

    def resolve(self, a, shapes):
        return dict(a)

    samples = ((dict(min=-0.5, max=1.25), [(3, 5, 7)]), (dict(min=0.0), [(13,)]),
               (dict(max=0.5), [(13,)]), (dict(min=1.0, max=-1.0), [(5,)]))


@register
class ReLU6(_ClipBase):
    name = "ReLU6"
    output_sign = "nonneg"
    doc = "min(max(x, 0), 6) (torch.nn.ReLU6): Clip(0, 6)."

    def bounds(self, a):
        return 0.0, 6.0

    def explain(self, a, shapes, out):
        return ["y = min(max(x, 0), 6) per value; no parameters"]

    samples = (({}, [(3, 5, 7)]), ({}, [(13,)]))


@register
class Hardtanh(_ClipBase):
    name = "Hardtanh"
    aliases = ("HardTanh",)
    doc = "min(max(x, min_val), max_val), default -1 and 1 (torch.nn.Hardtanh)."
    attrs = (Attr("min_val", float_, -1.0, "lower bound"),
             Attr("max_val", float_, 1.0, "upper bound"))
    lo_hi = ("min_val", "max_val")

    def resolve(self, a, shapes):
        if a["min_val"] > a["max_val"]:      # torch.nn.Hardtanh refuses it too
            raise OpError(f"min_val {fmt(a['min_val'])} is greater than max_val {fmt(a['max_val'])}",
                          attr="min_val", hint="write Hardtanh(min_val=-1, max_val=1), lower bound first")
        return dict(a)

    samples = (({}, [(3, 5, 7)]), (dict(min_val=0.0, max_val=6.0), [(13,)]))
