"""Params for csrc/kernels/merge.c: Concat, Add, Mul.

Concat passes each input's element count from the joined axis on (C_i·H·W for
the channel axis) and folds the batch and the axes before the joined one into
`n`: joining on axis k is, for each of those n outer positions, laying the
inputs' blocks end to end (axis 2 of (C, H_i, W): n = batch·C blocks of H_i·W). Add/Mul pass the
output's (C, H·W), the fused activation (an nd_act, act_code) and, per input,
whether it is full size (0) or one value per channel ((C,1,1) or (C,), code 1). The kernel holds at most MAX_INPUTS
pointers' worth of per-input fields.
"""
from __future__ import annotations

import math

from ..executor import PlanError
from . import KernelCall, kparams
from .conv import act_code

MAX_INPUTS = 128   # the array bound in csrc/kernels/merge.h


def _check_count(op, k):
    if k > MAX_INPUTS:
        raise PlanError(f"{op} with {k} inputs: the kernel takes at most {MAX_INPUTS}")


@kparams("Concat")
def concat(a, in_shapes, out_shape, n):
    _check_count("Concat", len(in_shapes))
    s0 = tuple(in_shapes[0])
    k = a.get("axis", 1)
    k = k + len(s0) + 1 if k < 0 else k
    fields = dict(n=n * math.prod(s0[:k - 1]), ninputs=len(in_shapes),
                  inner=[math.prod(s[k - 1:]) for s in in_shapes])
    return KernelCall("nd_concat_f32", "nd_concat_params", fields, weights=(None, None))


def _eltwise(op, name):
    def build(a, in_shapes, out_shape, n):
        _check_count(op, len(in_shapes))
        c, hw = out_shape[0], math.prod(out_shape[1:])
        bcast = []
        for s in in_shapes:
            if tuple(s) == tuple(out_shape):
                bcast.append(0)
            elif tuple(s) in ((c, 1, 1), (c,)):
                bcast.append(1)
            else:
                raise PlanError(f"{op}: input shape {s} neither matches {out_shape} nor is per-channel")
        fields = dict(n=n, c=c, hw=hw, ninputs=len(in_shapes), act=act_code(a, op), bcast=bcast)
        return KernelCall(f"nd_{name}_f32", f"nd_{name}_params", fields, weights=(None, None))
    build.__name__ = f"{name}_params"
    return build


kparams("Add")(_eltwise("Add", "add"))
kparams("Mul")(_eltwise("Mul", "mul"))
