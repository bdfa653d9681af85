"""Params for csrc/kernels/resize.c: Upsample (nearest, bilinear).

The spec resolves `scale` into `size`, so the kernel only needs the two sizes;
it derives the coordinate scale itself.
"""
from __future__ import annotations

from . import KernelCall, kparams

_MODES = {"nearest": 0, "bilinear": 1}


@kparams("Upsample")
def upsample(a, in_shapes, out_shape, n):
    c, h, w = in_shapes[0]
    _, oh, ow = out_shape
    fields = dict(n=n, c=c, h=h, w=w, oh=oh, ow=ow, mode=_MODES[a["mode"]],
                  align_corners=int(bool(a.get("align_corners", False))))
    return KernelCall("nd_upsample_f32", "nd_upsample_params", fields, weights=(None, None))
