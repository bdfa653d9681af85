"""Plan-time params for FC (csrc/kernels/fc.h): y (n, out) = x (n, in) . W^T + b.

The input may be a (C, H, W) map: it is read as C*H*W features (PyTorch's
flatten(1)), so no Flatten kernel runs before an FC.
"""
from __future__ import annotations

import math

from .. import lib as _lib
from ..executor import PlanError, check_int64
from . import KernelCall, kparams
from .conv import act_code


@kparams("FC")
def fc(a, in_shapes, out_shape, n):
    in_f = math.prod(in_shapes[0])
    out_f = out_shape[0]
    check_int64("input", n, in_f)
    check_int64("output", n, out_f)
    check_int64("weight", out_f, in_f)
    f = dict(n=n, in_features=in_f, out_features=out_f, act=act_code(a, "FC"),
             threads=max(1, _lib.max_threads()))
    p = _lib.ffi.new("nd_fc_params *", f)
    ws = int(_lib.lib.nd_fc_ws_floats(p))
    if ws < 0:
        raise PlanError(f"nd_fc_params: the kernel rejects these sizes ({f})")
    return KernelCall("nd_fc_f32", "nd_fc_params", f, ws,
                      weights=("weight", "bias" if a.get("bias", True) else None))
