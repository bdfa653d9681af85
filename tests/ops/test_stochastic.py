"""StochasticPool on inputs that are not non-negative: one definition, every path.

The lecture's p_i = a_i / sum(a) is a probability only for a >= 0 (the layer follows a
ReLU). netdsl defines p_i = a+_i / sum(a+) with a+ = max(a, 0), so the output is
sum(a+^2) / sum(a+): 0 when no cell is positive, +inf when a cell is +inf, NaN when a cell
is NaN (netdsl/ops/pool.py). Before, the kernel and the reference both divided by the raw
sum, which cancels to nearly 0 after BN or Tanh: they disagreed by up to 3e-3 at batch 8.

First the definition on hand-computed windows (the oracle is arithmetic, not code), then
the C kernel against the numpy reference on every ISA, batch 1 and 8, with negative,
all-zero, all-negative and non-finite windows. Tolerance: both sums now add non-negative
terms (no cancellation) over <= 25 cells, each accurate to ~25 eps32 relative, so the
quotient is within ~50 * 6e-8 = 3e-6 relative of the float64 reference (5e-6 allowed).
"""
from __future__ import annotations

import zlib

import numpy as np
import pytest

import netdsl
from netdsl.runtime import lib as L

ISAS = L.supported_isas() if L.available() else []
needs_kernels = pytest.mark.skipif(not L.available(), reason="C kernels not built")


def _model(shape, layer="StochasticPool(2)"):
    return netdsl.parse(f"input x: {shape}\n{layer}")


# a 1x2x4 input = two 2x2 windows each, with StochasticPool(2)
HAND = [
    ("mixed-signs", [[-1, 2, 0.5, 0.5], [3, -4, 0.5, 0.5]], [(4 + 9) / 5, 0.5]),
    ("all-negative", [[-1, -2, -3, -1e-30], [-4, -5, -6, -7]], [0.0, 0.0]),
    ("all-zero-and-positive", [[0, 0, 1, 0], [0, 0, 0, 0]], [0.0, 1.0]),
    ("cancelling-sum", [[1, -1, 2, 1e-3], [1e-3, -1, -2, 0]], [(1 + 1e-6) / 1.001, (4 + 1e-6) / 2.001]),
    ("plus-inf", [[np.inf, 1, -np.inf, 2], [3, -1, 2, 0]], [np.inf, 2.0]),
    ("nan", [[np.nan, 1, -np.inf, -2], [3, 4, -2, 0]], [np.nan, 0.0]),
]


@pytest.mark.parametrize("cid,x,want", HAND, ids=[h[0] for h in HAND])
def test_definition_by_hand(cid, x, want):
    """The reference computes exactly the stated rule (oracle: the arithmetic written above)."""
    x = np.asarray(x, np.float64).reshape(1, 1, 2, 4)
    with np.errstate(invalid="ignore"):
        got = _model("1x2x4").reference(x).reshape(-1)
    np.testing.assert_allclose(got, want, rtol=1e-7, atol=0, equal_nan=True)   # inputs become float32
    for isa in ISAS:
        m = _model("1x2x4")
        with L.using_isa(isa):
            c = m(x.astype(np.float32)).reshape(-1)
        np.testing.assert_allclose(c, want, rtol=1e-6, atol=0, equal_nan=True, err_msg=f"{cid} {isa}")


def _inputs(kind, shape, rng):
    x = rng.standard_normal(shape)
    if kind == "shifted":          # mostly negative: many windows with no positive cell
        x = x - 1.5
    elif kind == "zeros":          # exact zeros and negatives: sums of exactly 0
        x = np.where(x > 0.5, x, np.where(x > 0, 0.0, x))
    elif kind == "nonfinite":
        flat = x.reshape(-1)
        for i, j in enumerate(range(0, flat.size, max(flat.size // 9, 1))):
            flat[j] = (np.nan, np.inf, -np.inf)[i % 3]
    return x.astype(np.float32)


WINDOWS = [("k2", "StochasticPool(2)"), ("k3-s2-p1", "StochasticPool(3, stride=2, pad=1)"),
           ("k3x2-s1-ceil", "StochasticPool((3, 2), stride=(1, 2), ceil_mode=true)"),
           ("k5-s3-p2", "StochasticPool(5, stride=3, pad=2)")]


@needs_kernels
@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("n", [1, 8])
@pytest.mark.parametrize("kind", ["normal", "shifted", "zeros", "nonfinite"])
@pytest.mark.parametrize("wid,layer", WINDOWS, ids=[w[0] for w in WINDOWS])
def test_kernel_matches_reference(wid, layer, kind, n, isa):
    rng = np.random.default_rng(zlib.crc32(f"{wid}-{kind}-{n}".encode()))
    x = _inputs(kind, (n, 3, 13, 11), rng)
    m = _model("3x13x11", layer)
    with L.using_isa(isa):
        got = m(x)
    with np.errstate(invalid="ignore"):
        want = m.reference(x)
    assert (np.isnan(got) == np.isnan(want)).all(), f"NaN masks differ: C {np.isnan(got).sum()}, ref {np.isnan(want).sum()}"
    np.testing.assert_allclose(got, want, rtol=5e-6, atol=1e-7, equal_nan=True,
                               err_msg=f"{wid}-{kind}-n{n}-{isa}")
    if kind == "shifted":
        assert (want == 0).any() and (want > 0).any(), "the case must hold windows with and without positives"


@needs_kernels
@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("before", ["BN", "Tanh"])
def test_after_bn_or_tanh_at_O3_batch8(before, isa):
    """The issue's case: StochasticPool after a layer with negative outputs, -O3, batch 8."""
    src = f"input x: 3x16x16\nConv(8, 3, pad=1) - {before} - StochasticPool(2)"
    m = netdsl.parse(src)
    assert m.run_level == 3
    x = np.random.default_rng(7).standard_normal((8, 3, 16, 16)).astype(np.float32)
    with L.using_isa(isa):
        got = m(x)
    want = m.reference(x)
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6, err_msg=f"{before}-{isa}")
