"""Backward rules of the layers with weights: Conv, ConvTranspose, Local, FC (csrc/kernels/train_conv.h).

Conv also has a training forward (nd_conv_train_fwd_f32, same params struct): the inference
kernel with its weights packed per call, since they change every step (the inference plan
packs them once), and taps that only read padding dropped.

Each rule emits what `need` asks, one kernel call per gradient:
    "dx0"      nd_<op>_bwd_data_f32    ins ("dy",), w = "params" (the weight leads the block)
    "dparams"  nd_<op>_bwd_params_f32  ins ("dy", "x0"): dW then db, PyTorch layout, one block

The params struct's fields are the forward builder's (runtime/kparams), so the same size and
index checks run first, without the forward's `act`/packing fields. Workspace sizes come from
the C side (nd_<op>_bwd_*_ws_floats). The training graph is unfused: a layer with a fused
activation or residual is refused with a PlanError rather than differentiated wrongly.
"""
from __future__ import annotations

import math

from ..ops import get as get_spec
from ..runtime import lib as _lib
from ..runtime.executor import PlanError
from ..runtime.kparams import KernelCall, builder
from .registry import Bwd, TrainForward, backward, train_forward

_GEOM = ("n", "c", "h", "w", "oc", "oh", "ow", "kh", "kw", "sh", "sw", "dh", "dw",
         "pad_t", "pad_l", "pad_b", "pad_r")


def _unfused(op, a):
    if a.get("act", "none") not in ("none", None):
        raise PlanError(f"{op} with a fused activation (act={a['act']!r}) cannot be trained through: "
                        "the training graph is unfused", hint="write the activation as its own layer")
    if a.get("residual"):
        raise PlanError(f"{op} with a fused residual cannot be trained through: the training graph is unfused",
                        hint="write the shortcut as an Add after the convolution")


def _check_need(op, need, known=("dx0", "dparams")):
    bad = sorted(set(need) - set(known))
    if bad:
        raise PlanError(f"{op}'s backward has no gradient {', '.join(bad)} (it gives {', '.join(known)})")


def _ws(fn, struct, fields):
    ws = int(getattr(_lib.lib, fn)(_lib.ffi.new(f"{struct} *", fields)))
    if ws < 0:
        raise PlanError(f"{struct}: the backward kernel rejects these sizes ({fields})")
    return ws


def _param_floats(op, a, in_shapes):
    spec = get_spec(op)
    return sum(math.prod(s) for s in spec.params(a, [tuple(s) for s in in_shapes]).values())


def _emit(op, prefix, struct, fields, need, a, in_shapes):
    out = []
    if "dx0" in need:
        call = KernelCall(f"nd_{prefix}_bwd_data_f32", struct, dict(fields),
                          _ws(f"nd_{prefix}_bwd_data_ws_floats", struct, fields), weights=(None, None))
        out.append(Bwd(call, "dx0", ("dy",), w="params"))
    if "dparams" in need:
        call = KernelCall(f"nd_{prefix}_bwd_params_f32", struct, dict(fields),
                          _ws(f"nd_{prefix}_bwd_params_ws_floats", struct, fields), weights=(None, None))
        out.append(Bwd(call, "dparams", ("dy", "x0"), out_floats=_param_floats(op, a, in_shapes)))
    return out


def _window_fields(op, a, in_shapes, out_shape, n):
    fwd = builder(op)(dict(a, act="none"), [tuple(in_shapes[0])], tuple(out_shape), n)   # its checks
    f = {k: fwd.fields[k] for k in _GEOM}
    f.update(bias=int(bool(a.get("bias", True))), threads=max(1, _lib.max_threads()))
    return f


@backward("Conv")
def conv(a, in_shapes, out_shape, n, need):
    """Conv: dx by a conv of dy (stride 1) or GEMM + col2im, dW by im2col GEMM, db = sum dy."""
    _unfused("Conv", a)
    _check_need("Conv", need)
    f = _window_fields("Conv", a, in_shapes, out_shape, n)
    f.update(groups=a.get("groups", 1), algo=0)
    return _emit("Conv", "conv", "nd_conv_bwd_params", f, need, a, in_shapes[:1])


@train_forward("Conv")
def conv_train_forward(a, in_shapes, out_shape, n):
    """Conv's forward in a training step: w = the params block (weight, then bias)."""
    _unfused("Conv", a)
    f = _window_fields("Conv", a, in_shapes, out_shape, n)
    f.update(groups=a.get("groups", 1), algo=0)
    call = KernelCall("nd_conv_train_fwd_f32", "nd_conv_bwd_params", f,
                      _ws("nd_conv_train_fwd_ws_floats", "nd_conv_bwd_params", f), weights=(None, None))
    return TrainForward(call, ("x0",), w="params")


@backward("ConvTranspose")
def conv_transpose(a, in_shapes, out_shape, n, need):
    """ConvTranspose: dx is the forward conv of dy, dW Conv's dW with x and dy swapped."""
    _unfused("ConvTranspose", a)
    _check_need("ConvTranspose", need)
    f = _window_fields("ConvTranspose", a, in_shapes, out_shape, n)
    f.update(groups=a.get("groups", 1))
    return _emit("ConvTranspose", "convtranspose", "nd_convtranspose_bwd_params", f, need, a, in_shapes)


@backward("Local")
def local(a, in_shapes, out_shape, n, need):
    """Local: per-position GEMMs; weights (OH*OW, OC, C*KH*KW), bias (OC, OH, OW)."""
    _unfused("Local", a)
    _check_need("Local", need)
    f = _window_fields("Local", a, in_shapes, out_shape, n)
    return _emit("Local", "local", "nd_local_bwd_params", f, need, a, in_shapes)


@backward("FC")
def fc(a, in_shapes, out_shape, n, need):
    """FC on the flattened input: dx (the input's shape) = dy . W, dW = dy^T . x, db = sum dy."""
    _unfused("FC", a)
    _check_need("FC", need)
    fwd = builder("FC")(dict(a, act="none"), [tuple(in_shapes[0])], tuple(out_shape), n)
    f = dict(n=n, in_features=fwd.fields["in_features"], out_features=fwd.fields["out_features"],
             bias=int(bool(a.get("bias", True))), threads=max(1, _lib.max_threads()))
    return _emit("FC", "fc", "nd_fc_bwd_params", f, need, a, in_shapes)
