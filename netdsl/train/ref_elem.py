"""Float64 numpy oracles of the element-wise, merge and shape ops' backward (bwd_elem.py).

Each is the textbook derivative, written with PyTorch's choices where the derivative is
not defined or not finite, so that an oracle, a C kernel and torch.autograd agree on every
input, NaN and inf included:

    at a kink        ReLU, LeakyReLU, PReLU: x = 0 takes the negative side; Clip (torch.clamp)
                     passes dy at its bounds, ReLU6 / Hardtanh (hardtanh_backward) give 0
                     there; HardSigmoid gives 0 at ±3, HardSwish 0 at -3 and dy at 3
    a NaN input      fails every comparison: ReLU passes dy, LeakyReLU and PReLU dy·slope,
                     Clip, ReLU6, Hardtanh, HardSigmoid give 0, HardSwish NaN (x/3 + 1/2),
                     and it is NaN wherever it is multiplied (Sigmoid, SiLU, PReLU's slope
                     gradient, ...). PyTorch's vectorized kernels decide: its scalar tail
                     loops disagree with them for Hardtanh/ReLU6 and HardSwish at NaN
    a NaN in dy      flows wherever the derivative multiplies it, including by 0 (Mul with a
                     zero operand, a bilinear tap of weight 0); where PyTorch selects a 0
                     (ReLU below 0, Clip outside its bounds) it stays 0

Tensors are batched like OpSpec.reference's (N, ...); y is the forward output (the oracles
of ops whose PyTorch backward reads the output use it: Sigmoid, Tanh, Softmax, LogSoftmax).
Crop's second input only gives a size: its gradient is zeros (the output does not depend
on its values). Nothing here is vectorized for speed: the oracles are for tests.
"""
from __future__ import annotations

import math

import numpy as np

from ..ops.activations import is_sixth
from ..ops.resize import _source_index
from .registry import grad_ref

_E = dict(invalid="ignore", over="ignore", divide="ignore")


def _one(fn):
    """An oracle of a parameterless one-input op from dx = fn(a, x, y, dy)."""
    def ref(a, xs, params, y, dy):
        with np.errstate(**_E):
            return [fn(a, np.asarray(xs[0], np.float64), np.asarray(y, np.float64), np.asarray(dy, np.float64))], {}
    return ref


def _sigmoid(x):
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


grad_ref("ReLU")(_one(lambda a, x, y, g: np.where(x <= 0, 0.0, g)))
grad_ref("LeakyReLU")(_one(lambda a, x, y, g: np.where(x > 0, g, g * a["slope"])))
grad_ref("Sigmoid")(_one(lambda a, x, y, g: g * (1 - y) * y))
grad_ref("Tanh")(_one(lambda a, x, y, g: g * (1 - y * y)))


def _clip(a, x, y, g):
    ok = np.ones(x.shape, bool)
    if a.get("min") is not None:
        ok &= x >= a["min"]
    if a.get("max") is not None:
        ok &= x <= a["max"]
    return np.where(ok, g, 0.0)


def _hardtanh(lo, hi):
    return lambda a, x, y, g: np.where((x > lo(a)) & (x < hi(a)), g, 0.0)


grad_ref("Clip")(_one(_clip))
grad_ref("ReLU6")(_one(_hardtanh(lambda a: 0.0, lambda a: 6.0)))
grad_ref("Hardtanh")(_one(_hardtanh(lambda a: a["min_val"], lambda a: a["max_val"])))


def _hardsigmoid(a, x, y, g):
    if is_sixth(a["alpha"]) and a["beta"] == 0.5:       # the forward's relu6(x + 3) / 6
        return np.where((x > -3) & (x < 3), g / 6, 0.0)
    t = a["alpha"] * x + a["beta"]
    return np.where((t > 0) & (t < 1), g * a["alpha"], 0.0)


def _silu(a, x, y, g):
    s = _sigmoid(x)
    return g * s * (1 + x * (1 - s))


_erfc = np.vectorize(math.erfc, otypes=[np.float64])


def _gelu(a, x, y, g):
    if a.get("approximate") == "tanh":
        kb, kk = math.sqrt(2 / math.pi), 0.044715
        t = np.tanh(kb * (x + kk * x ** 3))
        return g * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * kb * (1 + 3 * kk * x * x))
    cdf = 0.5 * (_erfc(-x / math.sqrt(2)) if x.size else x)
    pdf = np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)
    return g * (cdf + x * pdf)


def _mish(a, x, y, g):
    s = _sigmoid(x)
    t = np.tanh(np.logaddexp(0, x))
    return g * (t + x * s * (1 - t * t))


grad_ref("HardSigmoid")(_one(_hardsigmoid))
grad_ref("HardSwish")(_one(lambda a, x, y, g: np.where(x <= -3, 0.0, np.where(x >= 3, g, g * (x / 3 + 0.5)))))
grad_ref("SiLU")(_one(_silu))
grad_ref("GELU")(_one(_gelu))
grad_ref("Mish")(_one(_mish))


@grad_ref("PReLU")
def prelu(a, xs, params, y, dy):
    x, g = np.asarray(xs[0], np.float64), np.asarray(dy, np.float64)
    w = np.asarray(params["weight"], np.float64)
    slope = w.reshape((1, -1) + (1,) * (x.ndim - 2))
    with np.errstate(**_E):
        dx = np.where(x > 0, g, slope * g)
        per = np.where(x > 0, 0.0, x * g)
    axes = (0,) + tuple(range(2, x.ndim)) if w.size > 1 else tuple(range(x.ndim))
    return [dx], {"weight": per.sum(axis=axes).reshape(w.shape)}


@grad_ref("Softmax")
def softmax(a, xs, params, y, dy):
    ax = a.get("axis", 1)
    with np.errstate(**_E):
        return [y * (dy - (dy * y).sum(axis=ax, keepdims=True))], {}


@grad_ref("LogSoftmax")
def log_softmax(a, xs, params, y, dy):
    ax = a.get("axis", 1)
    with np.errstate(**_E):
        return [dy - np.exp(y) * dy.sum(axis=ax, keepdims=True)], {}


def _unbroadcast(g, x):
    """g (the output's shape) summed down to x's shape, as the forward broadcast x up: a rank-2
    (N, C) operand of a map is (N, C, 1, 1); axes where x has 1 and g more are summed."""
    xb = x.reshape(*x.shape, 1, 1) if x.ndim == 2 and g.ndim == 4 else x
    axes = tuple(i for i in range(g.ndim) if xb.shape[i] == 1 and g.shape[i] != 1)
    return g.sum(axis=axes, keepdims=True).reshape(x.shape)


def _as_out(x, g):
    return x.reshape(*x.shape, 1, 1) if x.ndim == 2 and g.ndim == 4 else x


@grad_ref("Add")
def add(a, xs, params, y, dy):
    g = np.asarray(dy, np.float64)
    return [_unbroadcast(g, np.asarray(x)) for x in xs], {}


@grad_ref("Mul")
def mul(a, xs, params, y, dy):
    g = np.asarray(dy, np.float64)
    xs = [np.asarray(x, np.float64) for x in xs]
    out = []
    with np.errstate(**_E):
        for i, x in enumerate(xs):
            p = g
            for j, o in enumerate(xs):
                if j != i:
                    p = p * _as_out(o, g)
            out.append(_unbroadcast(np.broadcast_to(p, g.shape), x))
    return out, {}


@grad_ref("Concat")
def concat(a, xs, params, y, dy):
    ax = a.get("axis", 1)
    cuts = np.cumsum([x.shape[ax] for x in xs])[:-1]
    return [np.array(d, np.float64) for d in np.split(np.asarray(dy, np.float64), cuts, axis=ax)], {}


@grad_ref("Slice")
def slice_(a, xs, params, y, dy):
    dx = np.zeros(xs[0].shape, np.float64)
    dx[:, a["start"]:a["stop"]] = dy
    return [dx], {}


@grad_ref("Upsample")
def upsample(a, xs, params, y, dy):
    """The transpose of the forward's gather: every output pixel adds dy·weight to its taps."""
    x, g = xs[0], np.asarray(dy, np.float64)
    h, w = x.shape[2:]
    oh, ow = a["size"]
    r0, r1, fr = _source_index(oh, h, a["mode"], a["align_corners"])
    c0, c1, fc = _source_index(ow, w, a["mode"], a["align_corners"])
    dx = np.zeros(x.shape, np.float64)
    R0, R1, C0, C1 = r0[:, None], r1[:, None], c0[None, :], c1[None, :]
    if a["mode"] == "nearest":
        np.add.at(dx, (slice(None), slice(None), np.broadcast_to(R0, (oh, ow)), np.broadcast_to(C0, (oh, ow))), g)
        return [dx], {}
    fr, fc = fr[:, None], fc[None, :]
    with np.errstate(**_E):
        for rows, wr in ((R0, 1 - fr), (R1, fr)):
            for cols, wc in ((C0, 1 - fc), (C1, fc)):
                idx = (slice(None), slice(None), np.broadcast_to(rows, (oh, ow)), np.broadcast_to(cols, (oh, ow)))
                np.add.at(dx, idx, g * (wr * wc))
    return [dx], {}


@grad_ref("Pad")
def pad(a, xs, params, y, dy):
    """Pad the index grid the way the forward pads the values; each output pixel adds its dy
    to the input pixel whose index it holds (constant borders hold none)."""
    x, g = xs[0], np.asarray(dy, np.float64)
    n, c, h, w = x.shape
    t, l, b, r = a["pad"]
    idx = np.arange(h * w).reshape(h, w)
    widths = ((t, b), (l, r))
    if a["mode"] == "constant":
        src = np.pad(idx, widths, constant_values=-1)
    else:
        src = np.pad(idx, widths, mode="reflect" if a["mode"] == "reflect" else "edge")
    keep = src.ravel() >= 0
    dx = np.zeros((n, c, h * w), np.float64)
    np.add.at(dx, (slice(None), slice(None), src.ravel()[keep]), g.reshape(n, c, -1)[:, :, keep])
    return [dx.reshape(x.shape)], {}


@grad_ref("Crop")
def crop(a, xs, params, y, dy):
    (y0, x0), (oh, ow) = a["offset"], a["size"]
    dx = np.zeros(xs[0].shape, np.float64)
    dx[:, :, y0:y0 + oh, x0:x0 + ow] = dy
    return [dx] + [np.zeros(x.shape, np.float64) for x in xs[1:]], {}
