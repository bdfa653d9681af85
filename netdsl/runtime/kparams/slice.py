"""Params for csrc/kernels/slice.c: Slice (channels start..stop-1)."""
from __future__ import annotations

import math

from . import KernelCall, kparams


@kparams("Slice")
def slice_params(a, in_shapes, out_shape, n):
    s = in_shapes[0]
    fields = dict(n=n, c=s[0], inner=math.prod(s[1:]), start=a["start"], stop=a["stop"])
    return KernelCall("nd_slice_f32", "nd_slice_params", fields, weights=(None, None))
