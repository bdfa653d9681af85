"""Plan-time params for Conv, ConvTranspose and Local (csrc/kernels/conv*.h).

Field conventions shared by the three structs: the input is (n, c, h, w) with
the batch included; output (oc, oh, ow); kernel (kh, kw), stride (sh, sw),
dilation (dh, dw); pads (pad_t, pad_l, pad_b, pad_r) — input padding for
Conv/Local, output cropping for ConvTranspose; `act` is the fused activation,
an `nd_act` code read from the C header through cffi (act_code); `threads` is the thread count the workspace is sized for
(the kernels never use more). Workspace sizes come from the C side
(nd_<op>_ws_floats) so the two never disagree.

Conv weights may be prepacked once into GEMM panels: KernelCall.extra
["prepack_weight"](weight) -> (packed array, field updates); the executor
applies it when it builds its records. Skipping it is always correct.
"""
from __future__ import annotations


import numpy as np

from .. import lib as _lib
from ..executor import PlanError, check_int64
from . import KernelCall, check_window, kparams

def act_code(a, op="this layer"):
    """The `nd_act` code (csrc/nd_common.h) of a node's fused activation `a["act"]`: the
    activation table names the enum (netdsl/ops/activations.py, c_enum), cffi gives its value."""
    from ...ops import activations
    try:
        return getattr(_lib.lib, activations.c_enum(a.get("act", "none")))
    except (ValueError, TypeError) as e:
        raise PlanError(f"{op}: {e}") from None


def _window_fields(a, in_shape, out_shape, n, op="Conv", transposed=False):
    c, h, w = in_shape
    oc, oh, ow = out_shape
    (kh, kw), (sh, sw), (dh, dw) = a["kernel"], a["stride"], a.get("dilation", (1, 1))
    t, l, b, r = a["pad"]
    f = dict(n=n, c=c, h=h, w=w, oc=oc, oh=oh, ow=ow, kh=kh, kw=kw, sh=sh, sw=sw, dh=dh, dw=dw,
             pad_t=t, pad_l=l, pad_b=b, pad_r=r, threads=max(1, _lib.max_threads()))
    check_int64("input", n, c, h, w)
    check_int64("output", n, oc, oh, ow)
    check_int64("window", c, kh, kw, oh, ow, max(kh, kw) * max(dh, dw) + 1)
    check_int64("patches", n, oh, ow, c, kh, kw)
    check_int64("local workspace", f["threads"], n, c, kh, kw)
    if transposed:     # the windows run over the input: y[iy*sh - pt + i*dh]
        check_window(op, "H", oh, h, kh, sh, dh, t, b)
        check_window(op, "W", ow, w, kw, sw, dw, l, r)
    else:
        check_window(op, "H", h, oh, kh, sh, dh, t, b)
        check_window(op, "W", w, ow, kw, sw, dw, l, r)
    return f


def _ws(fn_name, struct, fields):
    p = _lib.ffi.new(f"{struct} *", fields)
    ws = int(getattr(_lib.lib, fn_name)(p))
    if ws < 0:
        raise PlanError(f"{struct}: the kernel rejects these sizes ({fields})")
    return ws


def _weights(a):
    return ("weight", "bias" if a.get("bias", True) else None)


@kparams("Conv")
def conv(a, in_shapes, out_shape, n):
    f = _window_fields(a, in_shapes[0], out_shape, n)
    f.update(groups=a.get("groups", 1), act=act_code(a, "Conv"), w_packed_mr=0, residual=int(bool(a.get("residual"))),
             algo=0)
    if f["residual"] and (len(in_shapes) != 2 or tuple(in_shapes[1]) != tuple(out_shape)):
        raise PlanError(f"a residual Conv needs a second input shaped like its output {out_shape}")
    check_int64("weight", f["oc"], f["c"] // f["groups"], f["kh"], f["kw"])
    ws = _ws("nd_conv_ws_floats", "nd_conv_params", f)

    def prepack_weight(weight):
        """Weight (OC, C/g, KH, KW) -> GEMM panels for the ISA in use: A panels, or B
        panels of W^T when the kernel takes the transposed GEMM (the choice follows the
        fields the call will run with, so a changed `algo` packs to match)."""
        fields = {k: v for k, v in call.fields.items() if k != "w_packed_mr"}
        updates = {}
        if fields["algo"] in (0, 4) and not np.isfinite(weight).all():
            # Winograd's transform would spread a NaN/inf weight over every output of its
            # filter; the GEMM keeps the direct products' pattern (the workspace covers both)
            fields["algo"] = updates["algo"] = 1
        ffi, lib = _lib.ffi, _lib.lib
        mr = int(lib.nd_gemm_mr())
        p = ffi.new("nd_conv_params *", fields)
        size = int(lib.nd_conv_packed_w_floats(p, mr))
        if size <= 0 or weight.size != fields["oc"] * (fields["c"] // fields["groups"]) * fields["kh"] * fields["kw"]:
            return weight, {}
        buf = np.empty(size + 16, np.float32)      # 64-byte aligned: the micro-kernel streams its panels
        start = (-buf.ctypes.data % 64) // 4
        out = buf[start:start + size]
        src = np.ascontiguousarray(weight, dtype=np.float32)
        st = lib.nd_conv_pack_w(p, ffi.from_buffer("float[]", out), ffi.from_buffer("float[]", src), mr)
        if st != 0:
            return weight, {}
        return out, {**updates, "w_packed_mr": mr}

    call = KernelCall("nd_conv_f32", "nd_conv_params", f, ws, weights=_weights(a),
                      extra={"prepack_weight": prepack_weight})
    return call


@kparams("ConvTranspose")
def conv_transpose(a, in_shapes, out_shape, n):
    f = _window_fields(a, in_shapes[0], out_shape, n, "ConvTranspose", transposed=True)
    f.update(groups=a.get("groups", 1), act=act_code(a, "ConvTranspose"))
    check_int64("weight", f["c"], f["oc"] // f["groups"], f["kh"], f["kw"])
    check_int64("column buffer", f["oc"] // f["groups"], f["kh"], f["kw"], f["h"], f["w"])
    ws = _ws("nd_convtranspose_ws_floats", "nd_convtranspose_params", f)
    return KernelCall("nd_convtranspose_f32", "nd_convtranspose_params", f, ws, weights=_weights(a))


@kparams("Local")
def local(a, in_shapes, out_shape, n):
    f = _window_fields(a, in_shapes[0], out_shape, n, "Local")
    f.update(act=act_code(a, "Local"))
    check_int64("weight", f["oh"], f["ow"], f["oc"], f["c"], f["kh"], f["kw"])
    ws = _ws("nd_local_ws_floats", "nd_local_params", f)
    return KernelCall("nd_local_f32", "nd_local_params", f, ws, weights=_weights(a))


__all__ = ["act_code", "conv", "conv_transpose", "local"]
