"""nd_gemm_f32 (the driver under Conv/FC/ConvTranspose) vs numpy, every ISA path.

Sizes are the odd ones that break blocking: 1, 7, 13, 17, 31 (tails of every
micro-tile), 64, 129, 300 (past one MC/KC block), plus one case past NC.
Both storage orders of A and B, bias per row / column / none, every fused
activation, 1 and 2 threads (row and column thread splits, dot and axpy
small-M paths). Tolerance as in test_kernels_conv.py: float32 accumulation
error grows ~sqrt(K); 1e-5*sqrt(K) relative to max(1, |C|max) is ~100x eps32.
"""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from netdsl.runtime import lib as L

if not L.available():
    pytest.skip("C kernels not built: python netdsl/runtime/_build.py", allow_module_level=True)
ffi, lib = L.ffi, L.lib

SIZES = [1, 7, 13, 17, 31, 64, 129, 300]
ACTS = {lib.ND_ACT_NONE: lambda y: y, lib.ND_ACT_RELU: lambda y: np.maximum(y, 0),
        lib.ND_ACT_LEAKYRELU: lambda y: np.where(y >= 0, y, 0.01 * y),
        lib.ND_ACT_SIGMOID: lambda y: 1 / (1 + np.exp(-y)), lib.ND_ACT_TANH: np.tanh}
ACT_ORDER = sorted(ACTS)


def gemm(a, b, bias=None, bias_mode=0, act=lib.ND_ACT_NONE, trans_a=False, trans_b=False, threads=2, packed=False):
    m, k = (a.shape[1], a.shape[0]) if trans_a else a.shape
    n = b.shape[0] if trans_b else b.shape[1]
    p = ffi.new("nd_gemm_params *", dict(m=m, n=n, k=k, trans_a=trans_a, trans_b=trans_b,
                                         bias_mode=bias_mode, act=act, threads=threads))
    if packed:   # A prepacked for the ISA in use (what conv does with its weights)
        mr = lib.nd_gemm_mr()
        buf = np.empty(lib.nd_gemm_packed_a_floats(m, k, mr), np.float32)
        rs, cs = (1, m) if trans_a else (k, 1)
        assert lib.nd_gemm_pack_a(ffi.from_buffer("float[]", buf), ffi.from_buffer("float[]", a), m, k, rs, cs, mr) == 0
        a, p.a_packed_mr = buf, mr
    ws = np.empty(max(1, lib.nd_gemm_ws_floats(m, n, k, threads)), np.float32)
    c = np.full((m, n), np.nan, np.float32)
    ins = ffi.new("const float *[1]", [ffi.from_buffer("float[]", a)])
    st = lib.nd_gemm_f32(p, ffi.from_buffer("float[]", c), ins, ffi.from_buffer("float[]", b),
                         ffi.from_buffer("float[]", bias) if bias is not None else ffi.NULL,
                         ffi.from_buffer("float[]", ws))
    assert st == 0, f"status {st}"
    return c


def check(m, n, k, trans_a=False, trans_b=False, bias_mode=0, act=lib.ND_ACT_NONE, threads=2, packed=False, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((k, m) if trans_a else (m, k)).astype(np.float32)
    b = rng.standard_normal((n, k) if trans_b else (k, n)).astype(np.float32)
    bias = rng.standard_normal(m if bias_mode == 1 else n).astype(np.float32) if bias_mode else None
    ref = (a.T if trans_a else a).astype(np.float64) @ (b.T if trans_b else b).astype(np.float64)
    if bias_mode == 1:
        ref += bias[:, None]
    elif bias_mode == 2:
        ref += bias[None, :]
    ref = ACTS[act](ref)
    got = gemm(a, b, bias, bias_mode, act, trans_a, trans_b, threads, packed)
    diff = np.abs(got - ref).max() if ref.size else 0.0
    tol = 1e-5 * math.sqrt(max(k, 1)) * max(1.0, float(np.abs(ref).max()) if ref.size else 1.0)
    assert np.isfinite(got).all(), "NaN in C: a cell was not written"
    assert diff <= tol, f"m{m} n{n} k{k}: max abs diff {diff:.3g} > {tol:.3g}"


# every (M, N) pair; K, storage order, bias and act cycle so each appears with each size
CASES = []
for i, (m, n) in enumerate(itertools.product(SIZES, SIZES)):
    CASES.append((m, n, SIZES[(i * 3 + 1) % len(SIZES)], bool(i % 2), bool((i // 2) % 2), i % 3, ACT_ORDER[i % 5],
                  1 + (i // 4) % 2))


@pytest.mark.parametrize("case", CASES, ids=[f"m{c[0]}-n{c[1]}-k{c[2]}-ta{int(c[3])}-tb{int(c[4])}-b{c[5]}-act{c[6]}-t{c[7]}"
                                             for c in CASES])
def test_gemm_odd_sizes(case, isa):
    m, n, k, ta, tb, bm, act, th = case
    check(m, n, k, ta, tb, bm, act, th)


@pytest.mark.parametrize("case", [(200, 1100, 520), (5, 2100, 40), (700, 40, 9), (1, 4000, 300), (8, 3000, 700)],
                         ids=lambda c: "m{}-n{}-k{}".format(*c))
@pytest.mark.parametrize("threads", [1, 2])
def test_gemm_blocking(case, threads, isa):
    """Past every cache block (MC, KC, NC) and the small-M paths, both thread counts."""
    m, n, k = case
    check(m, n, k, bias_mode=1, act=lib.ND_ACT_RELU, threads=threads)
    check(m, n, k, trans_b=True, bias_mode=2, threads=threads, seed=1)


@pytest.mark.parametrize("m,k", [(1, 1), (13, 300), (129, 17)], ids=lambda v: str(v))
def test_gemm_prepacked_a(m, k, isa):
    check(m, 31, k, bias_mode=1, act=lib.ND_ACT_LEAKYRELU, packed=True)
    check(m, 7, k, trans_a=True, packed=True)


def test_gemm_k_zero_gives_bias(isa):
    check(7, 13, 0, bias_mode=2, act=lib.ND_ACT_RELU)


def test_gemm_rejects_bad_sizes():
    p = ffi.new("nd_gemm_params *", dict(m=-1, n=2, k=2, threads=1))
    x = np.zeros(16, np.float32)
    ins = ffi.new("const float *[1]", [ffi.from_buffer("float[]", x)])
    assert lib.nd_gemm_f32(p, ffi.from_buffer("float[]", x), ins, ffi.from_buffer("float[]", x), ffi.NULL,
                           ffi.from_buffer("float[]", x)) == lib.ND_EINVAL
