"""Params for csrc/kernels/pad.c: Pad (constant, reflect, replicate) and Crop.

Crop's offset is resolved by the spec (centre, explicit, or centred on a
second input's size); the second input, if any, is not read by the kernel.
"""
from __future__ import annotations

from . import KernelCall, kparams

_MODES = {"constant": 0, "reflect": 1, "replicate": 2}


@kparams("Pad")
def pad(a, in_shapes, out_shape, n):
    c, h, w = in_shapes[0]
    t, l, b, r = a["pad"]
    fields = dict(n=n, c=c, h=h, w=w, pad_t=t, pad_l=l, pad_b=b, pad_r=r,
                  mode=_MODES[a["mode"]], value=float(a.get("value", 0.0)))
    return KernelCall("nd_pad_f32", "nd_pad_params", fields, weights=(None, None))


@kparams("Crop")
def crop(a, in_shapes, out_shape, n):
    c, h, w = in_shapes[0]
    _, oh, ow = out_shape
    off_h, off_w = a["offset"]
    fields = dict(n=n, c=c, h=h, w=w, oh=oh, ow=ow, off_h=off_h, off_w=off_w)
    return KernelCall("nd_crop_f32", "nd_crop_params", fields, weights=(None, None))
