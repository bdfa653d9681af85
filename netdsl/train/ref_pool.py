"""Float64 numpy oracles of the pools', BatchNorm's, LRN's and Dropout's training passes.

Registered with @grad_ref (registry.py): MaxPool, MinPool, AvgPool, StochasticPool,
GlobalAvgPool, GlobalMaxPool, BatchNorm (training mode: batch statistics), LRN, Dropout.
Each takes (a, xs, params, y, dy) with xs batched NCHW and returns ([dx0], {param: grad}).
Ops whose training forward draws random numbers take the draw as given, in
params["saved"], exactly the block their training forward wrote after y:
    StochasticPool  the sampled tap of each window, (N, C, OH, OW): i*kw + j (-1: none)
    Dropout         the scale of each value, x's shape: 0 (dropped) or 1/(1-p)

Also here, the training forwards themselves (not registered; the tests hold the C kernels
to them): `stochastic_sample` and `dropout_scale` reproduce the kernels' draws exactly
(the counter-based generator of csrc/nd_random.h, in numpy uint64), `batchnorm_train`
gives y, the saved statistics and the updated running statistics.

Window geometry is written out here from the definition (netdsl/ops/pool.py): output
(oy, ox), tap (i, j) reads input row oy*sh - pad_t + i*dh and column ox*sw - pad_l + j*dw
and takes part only on a real cell. Max/min windows route dy to the winner, PyTorch's
max_pool2d rule: the first extreme in scan order (row by row), the last NaN if the window
has one. Not here: eval-mode (frozen) BatchNorm gradients.
"""
from __future__ import annotations

import numpy as np

from .registry import grad_ref

MOMENTUM = 0.1      # BatchNorm's running-statistics momentum (PyTorch's default) when the op has none


# ---------------------------------------------------------------- window geometry

def _axis(size, out, k, s, d, p0):
    """(out, k) input index of each tap along one axis, and whether it is a real cell."""
    idx = np.arange(out)[:, None] * s - p0 + np.arange(k)[None, :] * d
    return idx, (idx >= 0) & (idx < size)


def _geometry(a, x_shape, y_shape):
    """Per output (oy, ox) and tap t = i*kw + j: rows, cols (OH, OW, K) and validity."""
    (kh, kw), (sh, sw), (t, l, _, _) = a["kernel"], a["stride"], a["pad"]
    dh, dw = a.get("dilation") or (1, 1)
    h, w = x_shape[2:]
    oh, ow = y_shape[2:]
    ri, rv = _axis(h, oh, kh, sh, dh, t)
    ci, cv = _axis(w, ow, kw, sw, dw, l)
    rows = np.broadcast_to(ri[:, None, :, None], (oh, ow, kh, kw)).reshape(oh, ow, kh * kw)
    cols = np.broadcast_to(ci[None, :, None, :], (oh, ow, kh, kw)).reshape(oh, ow, kh * kw)
    valid = (rv[:, None, :, None] & cv[None, :, None, :]).reshape(oh, ow, kh * kw)
    return rows, cols, valid


def _gather(x, rows, cols, valid):
    """x's tap values (N, C, OH, OW, K); 0 on padding (masked by `valid` wherever it matters)."""
    return x[:, :, np.where(valid, rows, 0), np.where(valid, cols, 0)]


def _scatter(x_shape, rows, cols, sel, g):
    """dx (x_shape) with g[n, c, oy, ox, t] added at the input cell of tap t wherever sel
    (both (N, C, OH, OW, K)) holds: the scatter-add of overlapping windows."""
    dx = np.zeros(x_shape)
    nn, cc, oy, ox, t = np.nonzero(sel)
    np.add.at(dx, (nn, cc, rows[oy, ox, t], cols[oy, ox, t]), g[sel])
    return dx


def _one_hot(tap, k):
    """(..., K) mask of tap (-1: none)."""
    return (tap[..., None] == np.arange(k)) & (tap[..., None] >= 0)


def _winner(vals, valid, largest):
    """Tap index of each window's winner: the last NaN, else the first max (min) in scan order."""
    k = vals.shape[-1]
    isnan = np.isnan(vals) & valid
    fill = -np.inf if largest else np.inf
    v = np.where(valid & ~isnan, vals, fill)
    ext = v.max(axis=-1, keepdims=True) if largest else v.min(axis=-1, keepdims=True)
    cand = valid & ~isnan & (v == ext)
    first = np.argmax(cand, axis=-1)
    last_nan = k - 1 - np.argmax(isnan[..., ::-1], axis=-1)
    return np.where(isnan.any(axis=-1), last_nan, first)


def _extreme(largest):
    def ref(a, xs, params, y, dy):
        x = np.asarray(xs[0], np.float64)
        dy = np.asarray(dy, np.float64)
        rows, cols, valid = _geometry(a, x.shape, dy.shape)
        tap = _winner(_gather(x, rows, cols, valid), valid, largest)
        sel = _one_hot(tap, valid.shape[-1])
        return [_scatter(x.shape, rows, cols, sel, np.broadcast_to(dy[..., None], sel.shape))], {}
    return ref


grad_ref("MaxPool")(_extreme(True))
grad_ref("MinPool")(_extreme(False))


@grad_ref("AvgPool")
def avgpool(a, xs, params, y, dy):
    """dy / count to every real tap, count the taps inside the padded input
    (count_include_pad) or on real cells."""
    x_shape = np.shape(xs[0])
    dy = np.asarray(dy, np.float64)
    (kh, kw), (sh, sw), (t, l, b, r) = a["kernel"], a["stride"], a["pad"]
    dh, dw = a.get("dilation") or (1, 1)
    h, w = x_shape[2:]
    oh, ow = dy.shape[2:]
    counts = []
    for size, out, k, s, d, p0, p1 in ((h, oh, kh, sh, dh, t, b), (w, ow, kw, sw, dw, l, r)):
        idx, real = _axis(size, out, k, s, d, p0)
        inside = (idx >= -p0) & (idx < size + p1) if a.get("count_include_pad", True) else real
        counts.append(inside.sum(axis=1))
    div = np.outer(*counts).astype(np.float64)
    rows, cols, valid = _geometry(a, x_shape, dy.shape)
    sel = np.broadcast_to(valid, (*dy.shape[:2], *valid.shape))
    g = np.broadcast_to((dy / div)[..., None], sel.shape)
    return [_scatter(x_shape, rows, cols, sel, g)], {}


@grad_ref("StochasticPool")
def stochasticpool(a, xs, params, y, dy):
    """dy to the tap the training forward sampled (params["saved"]); nothing for -1."""
    x_shape = np.shape(xs[0])
    dy = np.asarray(dy, np.float64)
    tap = np.asarray(params["saved"]).reshape(dy.shape).astype(np.int64)
    rows, cols, valid = _geometry(a, x_shape, dy.shape)
    sel = _one_hot(tap, valid.shape[-1])
    return [_scatter(x_shape, rows, cols, sel, np.broadcast_to(dy[..., None], sel.shape))], {}


@grad_ref("GlobalAvgPool")
def globalavgpool(a, xs, params, y, dy):
    x_shape = np.shape(xs[0])
    hw = x_shape[2] * x_shape[3]
    return [np.broadcast_to(np.asarray(dy, np.float64).reshape(*x_shape[:2], 1, 1) / hw, x_shape).copy()], {}


@grad_ref("GlobalMaxPool")
def globalmaxpool(a, xs, params, y, dy):
    x = np.asarray(xs[0], np.float64)
    n, c = x.shape[:2]
    flat = x.reshape(n, c, -1)
    tap = _winner(flat, np.ones_like(flat, bool), True)
    dx = np.zeros_like(flat)
    np.put_along_axis(dx, tap[..., None], np.asarray(dy, np.float64).reshape(n, c, 1), axis=2)
    return [dx.reshape(x.shape)], {}


# ---------------------------------------------------------------- counter-based random numbers

_GOLD = np.uint64(0x9E3779B97F4A7C15)


def rand_uniform(seed, index):
    """csrc/nd_random.h nd_rand_uniform(seed, index) for an array of indices (float64, exact)."""
    with np.errstate(over="ignore"):
        z = np.uint64(seed) ^ (np.asarray(index, np.uint64) * _GOLD)
        z = z + _GOLD
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(40)).astype(np.float64) / 16777216.0


def stochastic_sample(a, x, seed):
    """StochasticPool's training forward: (y, taps) as nd_stochasticpool_train_f32 draws them.

    p_i = a+_i / sum(a+) over a window's real taps (a+ = max(a, 0)); u = rand_uniform(seed,
    flat output index); the pick is the first tap whose running sum of a+ exceeds u * sum.
    A NaN tap: the first NaN (y NaN); else a +inf tap: the first +inf; no positive tap: y = 0,
    tap -1."""
    x = np.asarray(x, np.float32)
    n, c = x.shape[:2]
    spec_out = _out_shape(a, x.shape)
    rows, cols, valid = _geometry(a, x.shape, (n, c, *spec_out))
    vals = _gather(x, rows, cols, valid).astype(np.float64)
    pos = np.where(valid & (vals > 0) & np.isfinite(vals), vals, 0.0)
    run = np.cumsum(pos, axis=-1)  # in scan order, as the kernel adds: the same doubles
    total = run[..., -1]
    u = rand_uniform(seed, np.arange(total.size)).reshape(total.shape)
    t = u * total
    over = (run > t[..., None]) & (pos > 0)
    pick = np.where(over.any(axis=-1), np.argmax(over, axis=-1), -1)
    k = vals.shape[-1]
    last_pos = np.where((pos > 0).any(axis=-1), k - 1 - np.argmax((pos > 0)[..., ::-1], axis=-1), -1)
    pick = np.where((pick < 0) & (total > 0), last_pos, pick)
    isnan = np.isnan(vals) & valid
    isinf = np.isposinf(vals) & valid
    pick = np.where(isinf.any(axis=-1), np.argmax(isinf, axis=-1), pick)
    pick = np.where(isnan.any(axis=-1), np.argmax(isnan, axis=-1), pick)
    y = np.where(pick >= 0, np.take_along_axis(vals, np.maximum(pick, 0)[..., None], -1)[..., 0], 0.0)
    return y, pick.astype(np.float64)


def _out_shape(a, x_shape):
    from ..ops.geometry import window_out
    (kh, kw), (sh, sw), (t, l, b, r) = a["kernel"], a["stride"], a["pad"]
    dh, dw = a.get("dilation") or (1, 1)
    return (window_out(x_shape[2], (kh - 1) * dh + 1, sh, t, b, a["ceil_mode"]),
            window_out(x_shape[3], (kw - 1) * dw + 1, sw, l, r, a["ceil_mode"]))


def stochastic_forward(a, x, taps):
    """y of StochasticPool's training forward for given taps: the sampled value, 0 for -1."""
    x = np.asarray(x, np.float64)
    taps = np.asarray(taps).astype(np.int64)
    rows, cols, valid = _geometry(a, x.shape, taps.shape)
    vals = _gather(x, rows, cols, valid)
    return np.where(taps >= 0, np.take_along_axis(vals, np.maximum(taps, 0)[..., None], -1)[..., 0], 0.0)


def dropout_scale(p, seed, shape):
    """Dropout's saved block as nd_dropout_train_f32 writes it: 1/(1-p) (float32) where
    rand_uniform(seed, flat index) >= p, else 0."""
    keep = rand_uniform(seed, np.arange(int(np.prod(shape)))).reshape(shape) >= np.float32(p)
    return np.where(keep, np.float32(1.0) / (np.float32(1.0) - np.float32(p)), np.float32(0.0))


# ---------------------------------------------------------------- BatchNorm, LRN, Dropout

def _bn_axes(x):
    return (0,) + tuple(range(2, x.ndim))


def _pc(v, x):
    return np.asarray(v, np.float64).reshape(1, -1, *([1] * (x.ndim - 2)))


def batchnorm_train(a, x, params, buffers=None, momentum=MOMENTUM):
    """BatchNorm's training forward in float64: (y, mean, inv_std, running_mean', running_var').

    Batch mean and biased variance normalize; the running statistics move by `momentum`
    towards the mean and the UNBIASED variance (torch.nn.functional.batch_norm(training=True))."""
    x = np.asarray(x, np.float64)
    ax = _bn_axes(x)
    m = x.size // x.shape[1]
    mean = x.mean(axis=ax)
    var = ((x - _pc(mean, x)) ** 2).mean(axis=ax)
    inv = 1.0 / np.sqrt(var + a["eps"])
    y = (x - _pc(mean, x)) * _pc(inv, x) * _pc(params["weight"], x) + _pc(params["bias"], x)
    rm = rv = None
    if buffers is not None:
        rm = (1 - momentum) * np.asarray(buffers["running_mean"], np.float64) + momentum * mean
        rv = (1 - momentum) * np.asarray(buffers["running_var"], np.float64) + momentum * var * m / (m - 1)
    return y, mean, inv, rm, rv


@grad_ref("BatchNorm")
def batchnorm(a, xs, params, y, dy):
    """Training mode (batch statistics): dx, dweight = sum(dy xhat), dbias = sum(dy)."""
    x = np.asarray(xs[0], np.float64)
    dy = np.asarray(dy, np.float64)
    ax = _bn_axes(x)
    m = x.size // x.shape[1]
    mean = x.mean(axis=ax)
    inv = 1.0 / np.sqrt(((x - _pc(mean, x)) ** 2).mean(axis=ax) + a["eps"])
    xhat = (x - _pc(mean, x)) * _pc(inv, x)
    sdy, sdyx = dy.sum(axis=ax), (dy * xhat).sum(axis=ax)
    dx = _pc(np.asarray(params["weight"], np.float64) * inv, x) * (dy - _pc(sdy, x) / m - xhat * _pc(sdyx, x) / m)
    return [dx], {"weight": sdyx, "bias": sdy}


@grad_ref("LRN")
def lrn(a, xs, params, y, dy):
    """dx_j = dy_j D_j^-b - 2 (alpha/size) b x_j sum_{c: j in W(c)} dy_c x_c D_c^(-b-1)."""
    x = np.asarray(xs[0], np.float64)
    dy = np.asarray(dy, np.float64)
    size, alpha, beta, k = a["size"], a["alpha"], a["beta"], a["k"]
    c = x.shape[1]
    lo, hi = size // 2, (size - 1) // 2
    sq = np.pad(x * x, ((0, 0), (lo, hi), (0, 0), (0, 0)))
    d = k + alpha / size * sum(sq[:, i:i + c] for i in range(size))      # D_c, window [c-lo, c+hi]
    t = dy * x * d ** (-beta - 1)
    tp = np.pad(t, ((0, 0), (hi, lo), (0, 0), (0, 0)))                   # j's readers: c in [j-hi, j+lo]
    back = sum(tp[:, i:i + c] for i in range(size))
    return [dy * d ** -beta - 2 * alpha / size * beta * x * back], {}


@grad_ref("Dropout")
def dropout(a, xs, params, y, dy):
    """dx = dy * saved (the scale the training forward drew: 0 or 1/(1-p))."""
    return [np.asarray(dy, np.float64) * np.asarray(params["saved"], np.float64).reshape(np.shape(dy))], {}
