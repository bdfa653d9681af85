"""Calibration observers: from the activations a layer sees on calibration data to the
range [lo, hi] its uint8 quantization covers (numerics.act_qparams turns it into scale and
zero point).

- minmax: the smallest and largest value seen (every value representable; one outlier
  stretches the step for all the others).
- percentile: the 0.01th and 99.99th percentiles of the values seen (p=99.99), from a
  histogram kept over all batches: outliers clip, the bulk gets a finer step.
- entropy: TensorRT's calibration (Migacz, "8-bit Inference with TensorRT", GTC 2017): a
  2048-bin histogram of |x|; for each candidate threshold T (bins 128 .. 2048) the
  distribution P clipped at T (the tail folded into the last bin) is compared with Q, P
  quantized to 128 levels (TensorRT's 8-bit magnitude range) and expanded back, and the T
  with the smallest KL(P || Q) wins. The range is then [max(lo, -T), min(hi, T)].

Each observer accumulates batch by batch (`observe`), so calibration data is streamed,
never held whole. The histogram's range is fixed by the first batch's max |x| and doubles
(merging bins pairwise) when a later batch goes past it, so the result does not depend on
how the data is cut into batches beyond that.
"""
from __future__ import annotations

import numpy as np

from ..bundle import QUANT_METHODS as METHODS     # the int8 bundle reader checks the method against it

BINS = 2048
LEVELS = 128


class Observer:
    def __init__(self, method: str = "minmax", percentile: float = 99.99):
        if method not in METHODS:
            raise ValueError(f"unknown calibration method {method!r}")
        self.method = method
        self.pct = percentile
        self.lo, self.hi = np.inf, -np.inf
        self.amax = 0.0
        self.hist = None          # of |x| over [0, amax], BINS bins
        self.neg = None           # same bins, values < 0 only (percentile needs the sign)
        self.count = 0

    def observe(self, x: np.ndarray):
        x = np.asarray(x, np.float32).ravel()
        x = x[np.isfinite(x)]
        if x.size == 0:
            return
        self.count += x.size
        self.lo = min(self.lo, float(x.min()))
        self.hi = max(self.hi, float(x.max()))
        if self.method == "minmax":
            return
        a = np.abs(x)
        m = float(a.max())
        if self.hist is None:
            self.amax = m if m > 0 else 1.0
            self.hist = np.zeros(BINS, np.int64)
            self.neg = np.zeros(BINS, np.int64)
        while m > self.amax:          # double the range: merge bins pairwise
            self.hist = np.concatenate([self.hist.reshape(-1, 2).sum(1), np.zeros(BINS // 2, np.int64)])
            self.neg = np.concatenate([self.neg.reshape(-1, 2).sum(1), np.zeros(BINS // 2, np.int64)])
            self.amax *= 2
        idx = np.minimum((a / self.amax * BINS).astype(np.int64), BINS - 1)
        self.hist += np.bincount(idx, minlength=BINS)
        self.neg += np.bincount(idx[x < 0], minlength=BINS)

    def range(self) -> tuple[float, float]:
        """The calibrated [lo, hi] (lo <= 0 <= hi is not required here; act_qparams widens)."""
        if self.count == 0:
            raise ValueError("no finite values observed")
        if self.method == "minmax" or self.hi == self.lo:
            return self.lo, self.hi
        width = self.amax / BINS
        if self.method == "percentile":
            pos = self.hist - self.neg
            q = self.pct / 100.0
            total = self.count
            # upper tail: positive values above the threshold hold at most (1-q) of everything
            hi = self._tail(pos, (1 - q) * total) * width if self.hi > 0 else self.hi
            lo = -self._tail(self.neg, (1 - q) * total) * width if self.lo < 0 else self.lo
            return max(self.lo, lo), min(self.hi, hi)
        # the first bin holds the exact zeros a ReLU makes (half of a post-ReLU tensor, or
        # more): zero is exact at every threshold, so they take no part in choosing one.
        # Counted, they dominate P and the search clips the tail hard (ResNet-18 on digits:
        # 69.7% top-1 agreement with them, tests/e2e/test_quant.py)
        h = self.hist.copy()
        h[0] = 0
        t = entropy_threshold(h) * width
        return max(self.lo, -t), min(self.hi, t)

    @staticmethod
    def _tail(h, allowed):
        """The smallest bin edge e such that the counts at or above e are <= allowed."""
        above = np.cumsum(h[::-1])[::-1]          # above[i] = count in bins i..end
        ok = np.nonzero(above <= allowed)[0]
        i = int(ok[0]) if ok.size else len(h)
        return max(i, 1)


def entropy_threshold(hist: np.ndarray, levels: int = LEVELS) -> int:
    """TensorRT's KL-divergence threshold over a histogram of |x|: returns the number of
    bins (the threshold is that many bin widths)."""
    hist = np.asarray(hist, np.float64)
    nb = len(hist)
    nz = np.nonzero(hist)[0]
    if nz.size == 0:
        return nb
    last = int(nz[-1]) + 1
    if last <= levels:
        return last                              # fewer occupied bins than levels: no loss
    best_i, best_kl = nb, np.inf
    for i in range(levels, nb + 1):
        p = hist[:i].copy()
        p[i - 1] += hist[i:].sum()               # the clipped tail folds into the last bin
        # Q: hist[:i] merged into `levels` groups, each spread evenly over its non-empty bins
        ref = hist[:i]
        edges = (np.arange(levels) * i) // levels
        sizes = np.diff(np.append(edges, i))
        nzs = ref > 0
        sums = np.add.reduceat(ref, edges)
        cnt = np.add.reduceat(nzs.astype(np.float64), edges)
        q = np.repeat(np.divide(sums, cnt, out=np.zeros(levels), where=cnt > 0), sizes) * nzs
        mask = p > 0
        if not (q[mask] > 0).all():
            continue                              # Q misses mass P has: infinite divergence
        ps, qs = p[mask] / p.sum(), q[mask] / q.sum()
        kl = float(np.sum(ps * np.log(ps / qs)))
        if kl < best_kl:
            best_kl, best_i = kl, i
    return best_i
