"""The int8 numerics, in numpy: the oracle every C path is tested against, bit for bit.

Scheme (post-training static quantization, as ONNX Runtime's QDQ and TensorRT do it):
- weights: per output channel, symmetric int8 in [-127, 127]: s_w[m] = max|W[m]| / 127,
  Wq = round(W / s_w). (-128 is never used, so a sum of two products fits in int16 and
  the sign of every weight can be flipped without overflow.)
- activations (a Conv's or FC's input): per tensor, asymmetric uint8: x_q = clamp(round(x / s
  + z), 0, 255), real value s (x_q - z); z = 0 for a range that starts at 0 (after a ReLU).
  Rounding is half to even (C: the 1.5·2^23 trick; numpy: rint); NaN quantizes to z (int8
  has no NaN: a NaN input reads as 0 there — the one place the int8 path does not keep NaN).
  The arithmetic is float32: v = x * (1/s) (one rounding), v + z (one rounding), clamp, round.
- accumulation: int32, exact: acc = sum_k Wq[m,k] x_q[k]; padding reads z (the real 0), so
  acc - z * sum_k Wq[m,k] is the sum over real values exactly (the correction `comp` is
  precomputed per channel at load).
- epilogue (float32, each step rounded to float32, in this order in every path):
  y = (float)(acc - comp[m]) * (s_x * s_w[m]) + bias[m]  [+ residual]  then act.
  Activations between layers stay float32: the next layer's quantization happens as it
  packs its input (docs/QUANTIZE.md says why).
"""
from __future__ import annotations

import numpy as np

QMAX_W = 127


def weight_qparams(w: np.ndarray):
    """Per-output-channel symmetric int8: (Wq int8 (OC, ...), scale float32 (OC,))."""
    w = np.asarray(w, np.float32)
    flat = w.reshape(w.shape[0], -1)
    amax = np.abs(flat).max(axis=1) if flat.size else np.zeros(w.shape[0], np.float32)
    amax = np.where(np.isfinite(amax), amax, 0).astype(np.float32)
    scale = np.where(amax > 0, amax / np.float32(QMAX_W), np.float32(1.0)).astype(np.float32)
    q = np.rint(flat / scale[:, None])
    q = np.clip(np.nan_to_num(q), -QMAX_W, QMAX_W).astype(np.int8)
    return q.reshape(w.shape), scale


def dequantize_weight(wq, scale):
    """float32 Wq * s_w (per output channel)."""
    shp = (-1,) + (1,) * (np.ndim(wq) - 1)
    return (np.asarray(wq, np.float32) * np.asarray(scale, np.float32).reshape(shp)).astype(np.float32)


def act_qparams(lo: float, hi: float):
    """uint8 (scale, zero point) for the range [lo, hi] (widened to hold 0, so that zero
    padding is exact; a zero-width range gets scale 1)."""
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise ValueError(f"activation range [{lo}, {hi}] is not finite")
    if hi - lo <= 0:
        return 1.0, 0
    scale = np.float32((hi - lo) / 255.0)
    zero = int(np.clip(np.rint(-lo / scale), 0, 255))
    return float(scale), zero


def quantize_act(x: np.ndarray, scale: float, zero: int) -> np.ndarray:
    """x (float32) -> uint8, exactly as the C packing does it (see the module docstring)."""
    inv = np.float32(1.0) / np.float32(scale)
    v = np.asarray(x, np.float32) * inv
    v = v + np.float32(zero)
    v = np.where(np.isnan(v), np.float32(zero), v)
    v = np.clip(v, np.float32(0), np.float32(255))
    return np.rint(v).astype(np.uint8)


def dequantize_act(q: np.ndarray, scale: float, zero: int) -> np.ndarray:
    return ((q.astype(np.float32) - np.float32(zero)) * np.float32(scale)).astype(np.float32)


def _im2col(xq, kh, kw, sh, sw, dh, dw, pads, zero, oh, ow):
    """uint8 (N, C, H, W) -> (N, OH*OW, C*KH*KW) int64 patches, padding = zero point."""
    n, c, h, w = xq.shape
    t, l, b, r = pads
    xp = np.full((n, c, h + t + b, w + l + r), zero, np.int64)
    xp[:, :, t:t + h, l:l + w] = xq
    cols = np.empty((n, c, kh, kw, oh, ow), np.int64)
    for i in range(kh):
        for j in range(kw):
            cols[:, :, i, j] = xp[:, :, i * dh:i * dh + sh * (oh - 1) + 1:sh, j * dw:j * dw + sw * (ow - 1) + 1:sw]
    return cols.reshape(n, c * kh * kw, oh * ow).transpose(0, 2, 1)


def epilogue(acc, comp, scale, bias, residual=None, act="none"):
    """int64 acc (N, OC, ...) -> float32 output: the C epilogue step by step in float32."""
    shp = (1, -1) + (1,) * (acc.ndim - 2)
    v = (acc - comp.reshape(shp).astype(np.int64)).astype(np.int32).astype(np.float32)
    v = v * scale.astype(np.float32).reshape(shp)
    v = v + bias.astype(np.float32).reshape(shp)
    if residual is not None:
        v = v + residual.astype(np.float32)
    return apply_act(v, act)


def apply_act(v, act):
    if act in ("none", None):
        return v
    if act == "relu":
        return np.where(v < 0, np.float32(0), v)
    if act == "relu6":
        return np.minimum(np.where(v < 0, np.float32(0), v), np.float32(6))
    raise ValueError(f"the int8 reference has no activation {act!r}")


def qconv_reference(x, wq, w_scale, bias, in_scale, in_zero, kernel, stride=(1, 1), dilation=(1, 1),
                    pads=(0, 0, 0, 0), residual=None, act="none"):
    """Quantized Conv (groups 1): x float32 (N, C, H, W), wq int8 (OC, C, KH, KW) -> float32
    (N, OC, OH, OW). The input is quantized with (in_scale, in_zero) first."""
    kh, kw = kernel
    sh, sw = stride
    dh, dw = dilation
    t, l, b, r = pads
    n, c, h, w = x.shape
    oc = wq.shape[0]
    oh = (h + t + b - dh * (kh - 1) - 1) // sh + 1
    ow = (w + l + r - dw * (kw - 1) - 1) // sw + 1
    xq = quantize_act(x, in_scale, in_zero)
    cols = _im2col(xq, kh, kw, sh, sw, dh, dw, pads, in_zero, oh, ow)        # (N, P, K)
    w2 = wq.reshape(oc, -1).astype(np.int64)
    acc = np.einsum("npk,mk->nmp", cols, w2).reshape(n, oc, oh, ow)
    comp = np.int64(in_zero) * w2.sum(axis=1)
    scale = (np.float32(in_scale) * w_scale.astype(np.float32)).astype(np.float32)
    b_ = np.zeros(oc, np.float32) if bias is None else bias
    return epilogue(acc, comp, scale, b_, residual, act)


def qfc_reference(x, wq, w_scale, bias, in_scale, in_zero, act="none"):
    """Quantized FC: x float32 (N, IN...) read as (N, IN), wq int8 (OUT, IN) -> (N, OUT)."""
    xq = quantize_act(x.reshape(x.shape[0], -1), in_scale, in_zero).astype(np.int64)
    w2 = wq.reshape(wq.shape[0], -1).astype(np.int64)
    acc = xq @ w2.T
    comp = np.int64(in_zero) * w2.sum(axis=1)
    scale = (np.float32(in_scale) * w_scale.astype(np.float32)).astype(np.float32)
    b_ = np.zeros(wq.shape[0], np.float32) if bias is None else bias
    return epilogue(acc, comp, scale, b_, None, act)
