"""Pooling: MaxPool, AvgPool, MinPool, StochasticPool, GlobalAvgPool, GlobalMaxPool.

Layout: (N, C, H, W) in and out; every channel is pooled on its own.
Window ops follow PyTorch's pooling rules: stride defaults to the kernel,
`dilation` spaces the window's taps (a k-tap window spans (k-1)·d + 1 input
cells; output sizes use that span, as PyTorch's max_pool2d does), and
ceil_mode adds a last partial window only if it starts inside the input or
its left padding. Padding follows the ONNX rule, which is looser than
PyTorch's pad <= k/2: any padding, on each side separately
((top, left, bottom, right): Darknet's size-2 stride-1 maxpool is
pad=(0, 0, 1, 1)), as long as every window still holds at least one real
input cell; a window of only padding would have no value to give. AvgPool's
count_include_pad divides by the window's taps that lie in the padded input
(the window clipped to input + padding, as PyTorch does under ceil_mode; the
cells a ceil_mode window hangs past the padding never count), and without it
by the taps on real input cells. With dilation that is the count of taps,
not of the cells the window spans.

StochasticPool is the *inference* rule of stochastic pooling (Zeiler &
Fergus; the lecture's s_j = sum(p_i a_i)): the expected value of the cell that
training-time sampling would pick. The lecture's p_i = a_i / sum(a) is a
probability only for non-negative a (it follows a ReLU), so netdsl takes the
selection probability from the positive part a+ = max(a, 0):
    p_i = a+_i / sum(a+),   output = sum(p_i a_i) = sum(a+^2) / sum(a+),
which is the lecture's rule wherever the input is non-negative. A cell <= 0 is
never picked; a window with no positive cell gives 0; a +inf cell gives +inf; a
NaN cell gives NaN. Padded cells count as absent. (Without the clamp, windows
whose values sum to nearly 0 divide by that cancellation and the result is
noise.) Training samples instead (netdsl/train/bwd_pool.py, csrc/kernels/train_pool.c):
one cell per window with probability p_i, seeded by the step (a counter-based draw: the
same seed gives the same picks on any thread count); y is the picked value and the
gradient goes to that cell alone. A window with no positive cell gives 0 and no gradient,
a NaN cell is picked (NaN), a +inf cell takes all the probability, as above. The sample's
expectation is this op's output.

MACs are 0 for every op here: pooling multiplies nothing, and the papers'
operation counts (which netdsl reproduces) count conv and FC layers only.
"""
from __future__ import annotations

import numpy as np

from . import register
from .attrs import Attr, OpError, bool_, optional, padding, pair
from .geometry import (dilated, need_rank, pad_nchw, resolve_pads, shape_str, spatial_out, window_arith,
                       window_fit_note, window_out, windows)
from .spec import OpSpec


class _Pool(OpSpec):
    """A k×k window slid over each channel; subclasses say how a window reduces."""
    output_sign = "inputs"     # a max, min, mean or sample of non-negative values
    arity = 1
    fill = 0.0   # value of padded cells (and of the cells past the edge under ceil_mode)
    attrs = (
        Attr("kernel", pair, 2, "window size: 2 or 3x2"),
        Attr("stride", optional(pair), None, "step between windows; the kernel size if not given"),
        Attr("pad", padding, 0, "same, valid, p, (ph, pw) or (top, left, bottom, right)"),
        Attr("ceil_mode", bool_, False, "round the output size up (a last, partial window)"),
        Attr("dilation", pair, 1, "spacing between window taps: 2 or 2x1"),
    )

    def example(self):
        return f"{self.name}(2, stride=2)"

    def resolve(self, a, shapes):
        need_rank(shapes[0], (3,), self.name)
        a = dict(a)
        a["stride"] = a["stride"] or a["kernel"]
        a["dilation"] = a.get("dilation") or (1, 1)
        k_eff = dilated(a["kernel"], a["dilation"])
        a["pad"] = resolve_pads(a["pad"], shapes[0][1:], k_eff, a["stride"])
        t, l, b, r = a["pad"]
        for axis, size, k, d, s_, p0, p1 in ((0, shapes[0][1], a["kernel"][0], a["dilation"][0], a["stride"][0], t, b),
                                             (1, shapes[0][2], a["kernel"][1], a["dilation"][1], a["stride"][1], l, r)):
            self._check_windows(axis, size, k, d, s_, p0, p1, a["ceil_mode"], a["pad"])
        return a

    def _check_windows(self, axis, size, k, d, s, p0, p1, ceil_mode, pads):
        """OpError unless every window along one axis has a tap on a real input cell."""
        bad = _empty_window(size, k, d, s, p0, p1, ceil_mode)
        if bad is None:
            return
        where, side = ("row", ("top", "bottom")) if axis == 0 else ("column", ("left", "right"))
        o, first = bad
        taps = "cell" if k == 1 else f"{k} taps" + (f" {d} apart" if d > 1 else "")
        last = first + (k - 1) * d
        best0 = p0                      # the most each side may have, the other side unpadded
        while best0 > 0 and _empty_window(size, k, d, s, best0, 0, ceil_mode) is not None:
            best0 -= 1
        best1 = p1
        while best1 > 0 and _empty_window(size, k, d, s, 0, best1, ceil_mode) is not None:
            best1 -= 1
        raise OpError(f"{self.name} pad {_pad_text(pads)} leaves a window of only padding: output {where} {o} "
                      f"reads {where}s {first}..{last} ({taps}), none of them among the input's {where}s "
                      f"0..{size - 1}: every window must hold at least one real input cell", attr="pad",
                      hint=f"use {side[0]} pad at most {best0} and {side[1]} pad at most {best1} here "
                           f"(pad=same picks a valid amount)")

    def infer(self, a, shapes):
        need_rank(shapes[0], (3,), self.name)
        oh, ow = spatial_out(self.name, shapes[0], self._k_eff(a), a["stride"], a["pad"], a["ceil_mode"])
        return (shapes[0][0], oh, ow)

    @staticmethod
    def _k_eff(a):
        return dilated(a["kernel"], a.get("dilation") or (1, 1))

    def window(self, a, shapes):
        return (*self._k_eff(a), *a["stride"])

    def explain(self, a, shapes, out):
        c, h, w = shapes[0]
        (kh, kw), (sh, sw), (t, l, b, r) = self._k_eff(a), a["stride"], a["pad"]
        same = (h, kh, sh, t, b) == (w, kw, sw, l, r)
        lines = [f"H: {window_arith(h, kh, sh, t, b, out[1], a['ceil_mode'])}"]
        if not same:
            lines.append(f"W: {window_arith(w, kw, sw, l, r, out[2], a['ceil_mode'])}")
        (dh, dw) = a.get("dilation") or (1, 1)
        if (dh, dw) != (1, 1):
            k0, k1 = a["kernel"]
            lines.append(f"dilation {dh}x{dw}: the {k0}x{k1} window's taps span "
                         f"({k0} − 1)·{dh} + 1 = {kh} rows and ({k1} − 1)·{dw} + 1 = {kw} columns")
        notes = [window_fit_note(h, kh, sh, t, b, a["ceil_mode"], axis=2 if same else 0)]
        if not same:
            notes.append(window_fit_note(w, kw, sw, l, r, a["ceil_mode"], axis=1))
        return lines + [n for n in notes if n]

    # -- reference
    def _windows(self, a, x):
        """(N, C, OH, OW, KH, KW) view of x padded with `fill`, including ceil_mode's overhang."""
        n, c, h, w = x.shape
        (kh, kw), (sh, sw), (t, l, b, r) = self._k_eff(a), a["stride"], a["pad"]
        oh = window_out(h, kh, sh, t, b, a["ceil_mode"])
        ow = window_out(w, kw, sw, l, r, a["ceil_mode"])
        extra_h = max((oh - 1) * sh + kh - (h + t + b), 0)
        extra_w = max((ow - 1) * sw + kw - (w + l + r), 0)
        xp = pad_nchw(x, (t, l, b + extra_h, r + extra_w), self.fill)
        return windows(xp, a["kernel"], a["stride"], a.get("dilation") or (1, 1))[:, :, :oh, :ow]

    samples = (
        (dict(kernel=2), [(3, 7, 9)]),                       # odd sizes: the last row/column dropped
        (dict(kernel=3, stride=2, pad=1, ceil_mode=True), [(2, 9, 8)]),
        (dict(kernel=(3, 2), stride=(1, 3), pad=(1, 0, 0, 1)), [(2, 7, 11)]),
        (dict(kernel=2, ceil_mode=True), [(3, 5, 7)]),
        (dict(kernel=3, stride=1, pad=2), [(2, 5, 7)]),              # pad > k/2: the ONNX rule
        (dict(kernel=2, stride=1, pad=(0, 0, 1, 1)), [(2, 5, 7)]),   # Darknet's size-2 stride-1 maxpool
        (dict(kernel=3, stride=(2, 1), dilation=(2, 3), pad=(2, 1, 1, 3), ceil_mode=True), [(2, 9, 11)]),
    )


def _pad_text(pads):
    t, l, b, r = pads
    if t == l == b == r:
        return str(t)
    if (t, l) == (b, r):
        return f"({t}, {l})"
    return f"({t}, {l}, {b}, {r})"


def _taps_in(start, k, d, lo, hi):
    """How many of the taps start, start+d, ..., start+(k-1)d lie in [lo, hi)."""
    i_lo = max(0, -(-(lo - start) // d))
    i_hi = min(k, -(-(hi - start) // d))
    return max(0, i_hi - i_lo)


def _empty_window(size, k, d, s, p0, p1, ceil_mode):
    """(output index, first tap's input index) of the first window along an axis with no
    tap on a real cell [0, size), or None. Windows start at o·s - p0 (negative: padding)."""
    out = window_out(size, (k - 1) * d + 1, s, p0, p1, ceil_mode)
    for o in range(out):
        start = o * s - p0
        if _taps_in(start, k, d, 0, size) == 0:
            return o, start
        if start >= size:
            break
    return None


@register
class MaxPool(_Pool):
    name = "MaxPool"
    aliases = ("Pool", "MaxPool2d", "MAXPOOL")
    doc = "Max pooling: the largest value in each window."
    fill = -np.inf

    def reference(self, a, xs, w):
        return self._windows(a, xs[0]).max(axis=(4, 5))


@register
class MinPool(_Pool):
    name = "MinPool"
    doc = "Min pooling: the smallest value in each window."
    fill = np.inf

    def reference(self, a, xs, w):
        return self._windows(a, xs[0]).min(axis=(4, 5))


@register
class AvgPool(_Pool):
    name = "AvgPool"
    aliases = ("AvgPool2d", "AveragePool")
    doc = "Average pooling: the mean of each window."
    linear = True
    attrs = _Pool.attrs + (
        Attr("count_include_pad", bool_, True, "padded zeros count in the divisor (PyTorch default)"),
    )

    def explain(self, a, shapes, out):
        lines = super().explain(a, shapes, out)
        kh, kw = a["kernel"]
        if any(a["pad"]) or a["ceil_mode"]:
            how = "padded zeros included" if a["count_include_pad"] else "only real pixels"
            lines.append(f"each output divides its window sum by the cells counted ({how}); "
                         f"{kh}·{kw} = {kh * kw} away from the edges")
        return lines

    def _divisor(self, size, k, d, s, p0, p1, n_out, include_pad):
        """Per-output tap counts along one axis: the taps inside the padded input
        [-p0, size + p1) (PyTorch's avg_pool2d divisor for d = 1), or on real cells."""
        lo, hi = (-p0, size + p1) if include_pad else (0, size)
        return np.array([_taps_in(o * s - p0, k, d, lo, hi) for o in range(n_out)])

    def reference(self, a, xs, w):
        x = xs[0]
        win = self._windows(a, x)
        total = win.sum(axis=(4, 5))
        (kh, kw), (sh, sw), (t, l, b, r) = a["kernel"], a["stride"], a["pad"]
        (gh, gw) = a.get("dilation") or (1, 1)
        n, c, oh, ow = total.shape
        dh = self._divisor(x.shape[2], kh, gh, sh, t, b, oh, a["count_include_pad"])
        dw = self._divisor(x.shape[3], kw, gw, sw, l, r, ow, a["count_include_pad"])
        return (total / np.outer(dh, dw)).astype(x.dtype, copy=False)

    samples = _Pool.samples + (
        (dict(kernel=3, stride=2, pad=1, count_include_pad=False), [(2, 7, 9)]),
        (dict(kernel=3, stride=1, pad=(2, 1, 0, 2), count_include_pad=False), [(2, 5, 6)]),
        (dict(kernel=(2, 3), stride=2, dilation=2, pad=(1, 2, 2, 1), ceil_mode=True, count_include_pad=False),
         [(2, 9, 10)]),
    )


@register
class StochasticPool(_Pool):
    name = "StochasticPool"
    doc = ("Stochastic pooling at inference: sum(p_i·a_i) per window with p_i = a+_i / sum(a+), "
           "a+ = max(a, 0) (0 if no cell is positive).")

    def explain(self, a, shapes, out):
        return super().explain(a, shapes, out) + [
            "each output: Σ p_i·a_i with p_i = a⁺_i / Σ a⁺, a⁺ = max(a, 0)  (= Σ a⁺² / Σ a⁺; "
            "0 if no a_i > 0; the lecture's a_i / Σ a for non-negative inputs)"]

    def reference(self, a, xs, w):
        x = xs[0]
        win = self._windows(a, x)                 # padded cells are 0: they add to neither sum
        pos = np.where(win < 0, 0, win)           # a+ = max(a, 0), NaN kept
        s1 = pos.sum(axis=(4, 5))
        with np.errstate(invalid="ignore"):
            s2 = (pos * pos).sum(axis=(4, 5))
            out = np.zeros_like(s1)
            np.divide(s2, s1, out=out, where=s1 != 0)   # NaN != 0: a NaN cell gives NaN
        out[np.isposinf(s1)] = np.inf             # a +inf cell takes all the probability
        return out

    samples = tuple((a, s, {"nonneg": True}) for a, s in _Pool.samples)   # p_i = a_i / Σ a assumes a ≥ 0


class _Global(OpSpec):
    output_sign = "inputs"
    arity = 1
    attrs = ()

    def infer(self, a, shapes):
        need_rank(shapes[0], (3,), self.name)
        return (shapes[0][0], 1, 1)

    def window(self, a, shapes):
        c, h, w = shapes[0]
        return (h, w, h, w)

    def explain(self, a, shapes, out):
        c, h, w = shapes[0]
        return [f"{self.what} over {h}·{w} = {h * w} values per channel: "
                f"{shape_str(shapes[0])} → {shape_str(out)}"]

    samples = (({}, [(3, 5, 7)]), ({}, [(1, 1, 1)]), ({}, [(2, 13, 11)]))


@register
class GlobalAvgPool(_Global):
    name = "GlobalAvgPool"
    aliases = ("GAP", "AdaptiveAvgPool")
    doc = "Global average pooling: one mean per channel, (C,H,W) -> (C,1,1)."
    linear = True
    what = "mean"

    def reference(self, a, xs, w):
        return xs[0].mean(axis=(2, 3), keepdims=True)


@register
class GlobalMaxPool(_Global):
    name = "GlobalMaxPool"
    aliases = ("GMP",)
    doc = "Global max pooling: one maximum per channel, (C,H,W) -> (C,1,1)."
    what = "max"

    def reference(self, a, xs, w):
        return xs[0].max(axis=(2, 3), keepdims=True)
