"""Params for csrc/kernels/prelu.c: PReLU, one slope per channel or one shared.

The shape collapses to (n, c, hw): a (C, H, W) map is c = C, hw = H·W; a vector
(F,) is c = F, hw = 1. The slopes are the node's `weight`, passed as w; no bias.
"""
from __future__ import annotations

import math

from ..executor import check_int64
from . import KernelCall, kparams


@kparams("PReLU")
def prelu(a, in_shapes, out_shape, n):
    s = in_shapes[0]
    check_int64("PReLU values", n, *s)          # the kernel's n·c·hw index stays in int64
    fields = dict(n=n, c=s[0], hw=math.prod(s[1:]), nw=a["num_parameters"])
    return KernelCall("nd_prelu_f32", "nd_prelu_params", fields, weights=("weight", None))
