"""Plan-time side of the int8 kernels (csrc/kernels/qconv.h): the params of a quantized Conv
or FC, and its weight blob, packed once at load for the ISA in use.

    fields = qconv_fields(attrs, in_shape, out_shape, n, in_scale, in_zero)   # nd_qconv_params
    blob = pack_weights(wq, w_scale, bias, in_scale, in_zero, kernel, layout) # float32 view of bytes
    call = qconv_call(...)                                                   # a KernelCall

Blob (bytes): A panels — for each panel of MR = 6 output channels, for each 4 k's, 6 x 4
values (int8 for layout 1, int16 for layout 2) with k = (tap, channel padded to cp) — then,
64-byte aligned, float32 scale[ocp] (= s_x * s_w[m]), float32 bias[ocp], int32 comp[ocp]
(= zero * sum_k Wq[m, k]).
"""
from __future__ import annotations

import math

import numpy as np

from ..runtime import lib as _lib
from ..runtime.executor import PlanError, check_int64
from ..runtime.kparams import KernelCall, check_window

MR = 6
MAX_KP = 32768          # csrc/kernels/qconv.c: int32 accumulators cannot overflow below this


def _cp(c):
    return -(-c // 4) * 4


def conv_geometry(op, attrs, in_shape, out_shape):
    """(c, h, w, oc, oh, ow, kh, kw, sh, sw, dh, dw, (t, l, b, r)) of a Conv, or of an FC read
    as a 1x1 conv over (IN, 1, 1)."""
    if op == "FC":
        c = math.prod(in_shape)
        return c, 1, 1, out_shape[0], 1, 1, 1, 1, 1, 1, 1, 1, (0, 0, 0, 0)
    c, h, w = in_shape
    oc, oh, ow = out_shape
    (kh, kw), (sh, sw) = attrs["kernel"], attrs["stride"]
    dh, dw = attrs.get("dilation", (1, 1))
    return c, h, w, oc, oh, ow, kh, kw, sh, sw, dh, dw, tuple(attrs["pad"])


def quantizable(op, attrs, in_shape):
    """None when this layer can run int8, else the reason it stays float32."""
    if op not in ("Conv", "FC"):
        return f"{op} has no int8 kernel"
    if op == "Conv" and attrs.get("groups", 1) != 1:
        return "grouped/depthwise Conv stays float32"
    if op == "Conv" and len(in_shape) != 3:
        return "not a 2-D Conv"
    g = conv_geometry(op, attrs, in_shape, (1, 1, 1) if op == "Conv" else (1,))
    if g[6] * g[7] * _cp(g[0]) > MAX_KP:
        return f"K = {g[6] * g[7] * _cp(g[0])} is past the int8 kernel's {MAX_KP}"
    return None


def pack_weights(wq, w_scale, bias, in_scale, in_zero, layout):
    """The nd_qconv blob as a float32 array (its bytes), and a_bytes."""
    wq = np.asarray(wq, np.int8)
    oc = wq.shape[0]
    if wq.ndim == 2:
        wq = wq.reshape(oc, -1, 1, 1)
    _, c, kh, kw = wq.shape
    cp = _cp(c)
    ocp = -(-oc // MR) * MR
    w = np.zeros((ocp, kh, kw, cp), np.int16 if layout == 2 else np.int8)
    w[:oc, :, :, :c] = wq.transpose(0, 2, 3, 1)
    kp = kh * kw * cp
    # (ocp, kp) -> panels (ocp/MR, kp/4, MR, 4)
    a = w.reshape(ocp // MR, MR, kp // 4, 4).transpose(0, 2, 1, 3)
    a_raw = np.ascontiguousarray(a).tobytes()
    a_bytes = -(-len(a_raw) // 64) * 64
    scale = np.zeros(ocp, np.float32)
    scale[:oc] = np.float32(in_scale) * np.asarray(w_scale, np.float32)
    b = np.zeros(ocp, np.float32)
    if bias is not None:
        b[:oc] = np.asarray(bias, np.float32)
    comp = np.zeros(ocp, np.int32)
    comp[:oc] = np.int64(in_zero) * wq.reshape(oc, -1).astype(np.int64).sum(axis=1)
    raw = a_raw + bytes(a_bytes - len(a_raw)) + scale.tobytes() + b.tobytes() + comp.tobytes()
    buf = np.empty(len(raw) // 4 + 16, np.float32)            # 64-byte aligned start
    start = (-buf.ctypes.data % 64) // 4
    out = buf[start:start + len(raw) // 4]
    out.view(np.uint8)[:] = np.frombuffer(raw, np.uint8)
    return out, a_bytes


def qconv_fields(op, attrs, in_shape, out_shape, n, in_scale, in_zero, act=0, residual=False, layout=None,
                 in_u8=False, out_q=None, res_q=None):
    """nd_qconv_params fields. in_u8: the input is already uint8 (the layer before wrote it);
    out_q: (scale, zero) to write the output as uint8 for the next int8 layers, or None;
    res_q: (scale, zero) of a uint8 residual, or None (float32)."""
    c, h, w, oc, oh, ow, kh, kw, sh, sw, dh, dw, (t, l, b, r) = conv_geometry(op, attrs, in_shape, out_shape)
    check_int64("input", n, c, h, w)
    check_int64("output", n, oc, oh, ow)
    check_int64("quantized input", n, h, w, _cp(c))
    check_window("QConv", "H", h, oh, kh, sh, dh, t, b)
    check_window("QConv", "W", w, ow, kw, sw, dw, l, r)
    layout = int(_lib.lib.nd_qconv_layout()) if layout is None else layout
    ocp = -(-oc // MR) * MR
    esz = 2 if layout == 2 else 1
    a_bytes = -(-(ocp * kh * kw * _cp(c) * esz) // 64) * 64
    return dict(n=n, c=c, h=h, w=w, oc=oc, oh=oh, ow=ow, kh=kh, kw=kw, sh=sh, sw=sw, dh=dh, dw=dw,
                pad_t=t, pad_l=l, pad_b=b, pad_r=r, cp=_cp(c), a_bytes=a_bytes,
                in_inv_scale=float(np.float32(1.0) / np.float32(in_scale)), in_zero=int(in_zero),
                act=int(act), residual=int(bool(residual)), threads=max(1, _lib.max_threads()),
                layout=layout, in_u8=int(bool(in_u8)), out_u8=int(out_q is not None),
                out_inv_scale=float(np.float32(1.0) / np.float32(out_q[0])) if out_q else 1.0,
                out_zero=int(out_q[1]) if out_q else 0, res_u8=int(res_q is not None),
                res_scale=float(res_q[0]) if res_q else 1.0, res_zero=int(res_q[1]) if res_q else 0)


def qconv_call(fields, wq, w_scale, bias, in_scale, in_zero, blob=None):
    """A KernelCall for nd_qconv_f32 whose weights are the packed blob (built here, or `blob`
    when the caller packed this layer for this layout already)."""
    p = _lib.ffi.new("nd_qconv_params *", fields)
    ws = int(_lib.lib.nd_qconv_ws_floats(p))
    if ws < 0:
        raise PlanError(f"nd_qconv_params: the int8 kernel rejects these sizes ({fields})")
    if blob is None:
        blob, a_bytes = pack_weights(wq, w_scale, bias, in_scale, in_zero, fields["layout"])
    else:
        a_bytes = fields["a_bytes"]
    if a_bytes != fields["a_bytes"]:
        raise PlanError(f"int8 blob layout mismatch: a_bytes {a_bytes} != {fields['a_bytes']}")
    return KernelCall("nd_qconv_f32", "nd_qconv_params", fields, ws, weights=(None, None),
                      extra={"prepare_weights": lambda params: (blob, None)}), blob
