"""Params for csrc/kernels/softmax.c: Softmax, LogSoftmax over one axis.

The kernel normalises (OUTER, C, INNER) over C. For axis k of a per-sample shape s
(k counts the batch, so s[k-1] is the normalised size): OUTER = n·prod(s[:k-1]),
C = s[k-1], INNER = prod(s[k:]). Axis 1 of (C, H, W) normalises over C at each of
the H·W pixels; axis 3 is OUTER = n·C·H rows of W values with INNER = 1; a vector
(F,) is c = F with one position.
"""
from __future__ import annotations

import math

from . import KernelCall, kparams


def _softmax(name):
    def build(a, in_shapes, out_shape, n):
        s = tuple(in_shapes[0])
        k = a.get("axis", 1)
        k = k + len(s) + 1 if k < 0 else k
        fields = dict(n=n * math.prod(s[:k - 1]), c=s[k - 1], inner=math.prod(s[k:]))
        return KernelCall(f"nd_{name}_f32", f"nd_{name}_params", fields, weights=(None, None))
    build.__name__ = f"{name}_params"
    return build


kparams("Softmax")(_softmax("softmax"))
kparams("LogSoftmax")(_softmax("logsoftmax"))
