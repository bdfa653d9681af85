"""Params for csrc/kernels/softmax.c: Softmax, LogSoftmax over axis 1.

(C, H, W) normalises over C at each of the H·W pixels; a vector (F,) is c = F
with one position.
"""
from __future__ import annotations

import math

from . import KernelCall, kparams


def _softmax(name):
    def build(a, in_shapes, out_shape, n):
        s = in_shapes[0]
        fields = dict(n=n, c=s[0], inner=math.prod(s[1:]))
        return KernelCall(f"nd_{name}_f32", f"nd_{name}_params", fields, weights=(None, None))
    build.__name__ = f"{name}_params"
    return build


kparams("Softmax")(_softmax("softmax"))
kparams("LogSoftmax")(_softmax("logsoftmax"))
