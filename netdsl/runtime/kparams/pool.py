"""Params for csrc/kernels/pool.c: window pools and global pools.

The four window pools share `nd_pool_params` (typedef'd per op); ceil_mode is
already folded into the output size, and AvgPool's divisor rule is the one
flag the kernel needs beyond the geometry. Dilation is passed as the tap
spacing (dh, dw); the kernel runs dilated windows on a plain loop of their own. The builder signature does not name
the op, so each op gets its own builder from a small factory.
"""
from __future__ import annotations

import math

from ..executor import check_int64
from . import KernelCall, check_window, kparams


def _window_pool(name, op):
    def build(a, in_shapes, out_shape, n):
        c, h, w = in_shapes[0]
        _, oh, ow = out_shape
        (kh, kw), (sh, sw), (t, l, b, r) = a["kernel"], a["stride"], a["pad"]
        dh, dw = a.get("dilation") or (1, 1)
        check_int64("input", n, c, h, w)
        check_int64("windows", n, c, oh, ow, kh, kw)
        check_window(op, "H", h, oh, kh, sh, dh, t, b)
        check_window(op, "W", w, ow, kw, sw, dw, l, r)
        fields = dict(n=n, c=c, h=h, w=w, oh=oh, ow=ow, kh=kh, kw=kw, sh=sh, sw=sw, dh=dh, dw=dw,
                      pad_t=t, pad_l=l, pad_b=b, pad_r=r,
                      count_include_pad=int(bool(a.get("count_include_pad", False))))
        return KernelCall(f"nd_{name}_f32", f"nd_{name}_params", fields, weights=(None, None))
    build.__name__ = f"{name}_params"
    return build


def _global_pool(name):
    def build(a, in_shapes, out_shape, n):
        c = in_shapes[0][0]
        fields = dict(n=n, c=c, hw=math.prod(in_shapes[0][1:]))
        return KernelCall(f"nd_{name}_f32", f"nd_{name}_params", fields, weights=(None, None))
    build.__name__ = f"{name}_params"
    return build


for _op in ("MaxPool", "MinPool", "AvgPool", "StochasticPool"):
    kparams(_op)(_window_pool(_op.lower(), _op))
for _op in ("GlobalAvgPool", "GlobalMaxPool"):
    kparams(_op)(_global_pool(_op.lower()))
