"""Input: a network's declared input. The batch is not part of the shape.

`input x: 3x224x224 (mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))`
also records how images are normalized for `netdsl run image.png`.
"""
from __future__ import annotations

from . import register
from .attrs import Attr, OpError, float_, float_tuple, int_tuple, optional
from .spec import OpSpec


@register
class Input(OpSpec):
    name = "Input"
    arity = 0
    doc = "A network input; shape without the batch (CxHxW or F)."
    attrs = (
        Attr("shape", int_tuple, doc="per-sample shape, e.g. 3x224x224"),
        Attr("mean", optional(float_tuple), None, "per-channel mean subtracted from images"),
        Attr("std", optional(float_tuple), None, "per-channel std images are divided by"),
        Attr("scale", float_, 1.0 / 255.0, "factor applied to 8-bit pixels before mean/std"),
    )

    def check(self, a):
        shape = a["shape"]
        if len(shape) not in (1, 3):
            raise OpError(f"an input is CxHxW (e.g. 3x224x224) or a feature count (e.g. 784); got "
                          f"{'x'.join(map(str, shape))}", attr="shape",
                          hint="the batch size is not part of the file: it is free at run time")
        if any(s <= 0 for s in shape):
            raise OpError("input sizes must be positive", attr="shape")
        for key in ("mean", "std"):
            v = a[key]
            if v is not None and len(shape) == 3 and len(v) not in (1, shape[0]):
                raise OpError(f"'{key}' has {len(v)} values but the input has {shape[0]} channels",
                              attr=key)
        if a["std"] is not None and any(s == 0 for s in a["std"]):
            raise OpError("'std' values must be non-zero", attr="std")

    def infer(self, a, shapes):
        return tuple(a["shape"])

    def reference(self, a, xs, w):
        return xs[0]
