"""csrc/nd_math.h's float32 exp / tanh / sigmoid / erfc / Phi / normal density (through the test
kernel nd_fastmath_f32) and the activations built on them (the standalone kernels, the fused
epilogues, the training backward), on every ISA, against float64 numpy / math.

Measured max relative error over every float32 input (an exhaustive C harness calling the same
header, results >= 2^-126; portable and AVX-512 give the same bits): exp 8.0e-8 (0.97 ulp),
tanh 1.7e-7 (1.4 ulp), sigmoid 1.8e-7 (2.4 ulp), erfc 3.5e-7, Phi 4.4e-7, normal density
1.7e-7, SiLU 2.2e-7 and Mish 3.0e-7 (results > 1e-30; below, e^-|x| is itself subnormal and
only the absolute error, < 1e-43, is bounded), GELU 4.5e-7, GELU-tanh ~6e-8 |2u| (the float32
rounding of its argument u, as in PyTorch). The tolerances below sit just above those.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from netdsl.runtime import lib as L

from conftest import check, kernel_vs_reference

pytestmark = pytest.mark.skipif(not L.available(), reason="C kernels not built")

FM = {"exp": 0, "tanh": 1, "sigmoid": 2, "erfc": 3, "phi": 4, "pdf": 5}
TINY = float(np.finfo(np.float32).tiny)          # 2^-126
SUB = float(np.float32(2.0 ** -149))             # the smallest subnormal


def fm(name, x):
    """nd_fastmath_f32 on x (float32, any shape) on the ISA in use."""
    from netdsl.runtime.executor import run_call
    from netdsl.runtime.kparams import KernelCall
    x = np.ascontiguousarray(x, np.float32).ravel()
    call = KernelCall("nd_fastmath_f32", "nd_fastmath_params", dict(n=x.size, fn=FM[name]), weights=(None, None))
    return run_call(call, [x], out_floats=x.size)


_erfc = np.frompyfunc(math.erfc, 1, 1)


def ref(name, x):
    """float64 oracle of fm(name, x)."""
    x = np.asarray(x, np.float32).astype(np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        if name == "exp":
            return np.exp(x)
        if name == "tanh":
            return np.tanh(x)
        if name == "sigmoid":
            return np.where(x >= 0, 1 / (1 + np.exp(-np.abs(x))), np.exp(-np.abs(x)) / (1 + np.exp(-np.abs(x))))
        if name == "erfc":
            return _erfc(x).astype(np.float64)
        if name == "phi":
            return 0.5 * _erfc(-x / math.sqrt(2)).astype(np.float64)
        if name == "pdf":
            return np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)
    raise KeyError(name)


# max relative error where the result is normal, and the absolute error allowed below 2^-126
RTOL = {"exp": 1.0e-7, "tanh": 1.9e-7, "sigmoid": 2.0e-7, "erfc": 4.0e-7, "phi": 5.0e-7, "pdf": 2.0e-7}
ATOL = {"exp": SUB, "tanh": 0.0, "sigmoid": SUB, "erfc": 64 * SUB, "phi": 64 * SUB, "pdf": 4 * SUB}


def _grid(name):
    """A dense sweep of the function's live range, its branch / overflow edges (+- a few ulp),
    subnormals, +-0, huge values and a random sample of all bit patterns."""
    edges = {"exp": [88.72283, 88.7, 89.0, -87.33655, -103.97208, -104.0, -103.0, -88.0, 0.34657, 0.0],
             "tanh": [0.55, 9.01, 9.0, 44.0, 0.0, 1e-4],
             "sigmoid": [87.3, 88.72, -87.33, -88.72, -103.97, -104.0, 16.6, 0.0],
             "erfc": [0.5, 10.5, 10.0, 9.19, 3.0, 0.0],
             "phi": [0.5 * math.sqrt(2), 14.8, 14.0, 13.0, 5.0, 0.0],
             "pdf": [15.0, 14.0, 13.2, 0.0]}[name]
    lo, hi = {"exp": (-110, 92), "tanh": (-12, 12), "sigmoid": (-110, 40), "erfc": (-5, 11),
              "phi": (-15, 10), "pdf": (-15, 15)}[name]
    e = np.array(edges, np.float32)
    near = np.concatenate([np.nextafter(e, np.float32(np.inf)), np.nextafter(e, np.float32(-np.inf)), e])
    near = np.concatenate([near, -near])
    for _ in range(3):    # a few ulp either side
        near = np.concatenate([near, np.nextafter(near, np.float32(np.inf)), np.nextafter(near, np.float32(-np.inf))])
    bits = np.random.default_rng(FM[name]).integers(0, 2**32, 200_000, dtype=np.uint64).astype(np.uint32)
    rand = bits.view(np.float32)
    sub = np.array([SUB, 3 * SUB, 2.0 ** -130, TINY, 2.0 ** -100, 1e-30, 3e38, np.finfo(np.float32).max], np.float32)
    x = np.concatenate([np.linspace(lo, hi, 400_001, dtype=np.float32), near, sub, -sub, rand[np.isfinite(rand)]])
    return x.astype(np.float32)


@pytest.mark.parametrize("name", list(FM))
def test_accuracy_on_dense_grids(name, isa):
    x = _grid(name)
    got, want = fm(name, x).astype(np.float64), ref(name, x)
    assert np.isfinite(want).all() or name == "exp"
    with np.errstate(over="ignore"):
        over = np.isinf(want.astype(np.float32))      # rounds to inf in float32
    assert (got[over] == np.inf).all(), f"{isa} {name}: overflow not inf at {x[over][got[over] != np.inf][:5]}"
    fin = ~over
    err = np.abs(got[fin] - want[fin])
    bound = RTOL[name] * np.abs(want[fin]) + ATOL[name]
    bad = err > bound
    i = np.argmax(np.where(bad, err / np.maximum(np.abs(want[fin]), TINY), -1))
    assert not bad.any(), (f"{isa} {name}: x = {x[fin][i]!r} gives {got[fin][i]!r}, want {want[fin][i]!r} "
                           f"(rel {err[i] / max(abs(want[fin][i]), TINY):.3g})")
    normal = np.abs(want[fin]) >= TINY
    rel = (err[normal] / np.abs(want[fin][normal])).max()
    assert rel <= RTOL[name]


def test_special_values(isa):
    """NaN -> NaN; the limits at +-inf; signed zeros; tanh(x) = x exactly for tiny x;
    large finite inputs never give NaN."""
    nan, inf = np.nan, np.inf
    x = np.array([nan, inf, -inf, 0.0, -0.0, SUB, -SUB, 2.0 ** -130, 3e38, -3e38], np.float32)
    want = {"exp": [nan, inf, 0, 1, 1, 1, 1, 1, inf, 0],
            "tanh": [nan, 1, -1, 0.0, -0.0, SUB, -SUB, 2.0 ** -130, 1, -1],
            "sigmoid": [nan, 1, 0, 0.5, 0.5, 0.5, 0.5, 0.5, 1, 0],
            "erfc": [nan, 0, 2, 1, 1, 1, 1, 1, 0, 2],
            "phi": [nan, 1, 0, 0.5, 0.5, 0.5, 0.5, 0.5, 1, 0],
            "pdf": [nan, 0, 0, 1 / math.sqrt(2 * math.pi), 1 / math.sqrt(2 * math.pi)] + [float(np.float32(1 / math.sqrt(2 * math.pi)))] * 3 + [0, 0]}
    for name, w in want.items():
        got = fm(name, x)
        w = np.array(w, np.float32)
        np.testing.assert_array_equal(got, w, err_msg=f"{isa} {name}")
        if name == "tanh":   # the sign of zero
            assert np.array_equal(np.signbit(got[3:7]), [False, True, False, True])


def test_every_isa_gives_the_same_bits():
    """No FMA contraction (-std=c11) and the same operations in the same order: the three
    copies agree bit for bit (what lets fused and standalone activations agree exactly)."""
    isas = L.supported_isas()
    for name in FM:
        x = _grid(name)[::7]
        outs = []
        for isa in isas:
            with L.using_isa(isa):
                outs.append(fm(name, x).view(np.uint32))
        for isa, o in zip(isas[1:], outs[1:]):
            np.testing.assert_array_equal(o, outs[0], err_msg=f"{name}: {isa} != {isas[0]}")


# ---------------------------------------------------------------- the activations built on it

def _act_grid():
    return np.concatenate([np.linspace(-20, 20, 80_001), np.linspace(-120, 120, 2401),
                           [-88.8, -87.4, 88.8, 0.55, -0.55, 9.02, -9.02, 1e-40, -1e-40, -0.0, 3e38, -3e38,
                            np.nan, np.inf, -np.inf]]).astype(np.float32)[None]


@pytest.mark.parametrize("op,rtol", [("Tanh", RTOL["tanh"]), ("Sigmoid", RTOL["sigmoid"])])
def test_tanh_sigmoid_kernels(op, rtol, isa):
    """The standalone kernels (now nd_math.h, no libm) against the float64 reference; NaN and
    the limits at +-inf exactly."""
    x = _act_grid()
    with np.errstate(over="ignore", invalid="ignore"):
        got, want = kernel_vs_reference(op, {}, [x])
    # the op's numpy reference writes sigmoid as (1 + tanh(x/2)) / 2, which cancels for x << 0
    # (2e-6 relative at x = -23.5 even in float64): the oracle here is the two-sided form
    want = ref(op.lower(), x)
    check(got, want, f"{isa}-{op}", atol=SUB, rtol=rtol)
    assert np.isnan(got[0, -3]) and got[0, -2] == 1 and got[0, -1] == (-1 if op == "Tanh" else 0)


@pytest.mark.parametrize("act", ["tanh", "sigmoid", "silu", "gelu", "mish"])
def test_fused_epilogue_equals_standalone(act, isa):
    """FC(act=a) gives exactly FC - A: the epilogue (act_vec, set to kernels/fast_math.c's pass)
    and the standalone kernel run the same float32 math."""
    import netdsl
    from netdsl.ops import activations as acts
    op = acts.get(act).op
    x = (np.random.default_rng(2).standard_normal((3, 37)) * 4).astype(np.float32)
    x[0, :3] = [np.nan, np.inf, -np.inf]
    m0 = netdsl.parse(f"input x: 37\nFC(45) - {op}")
    m0.run_level = 0
    m1 = netdsl.parse(f"input x: 37\nFC(45, act={act})")
    m1.load_state_dict(m0.state_dict())
    m1.run_level = 0
    want = m0(x)
    np.testing.assert_array_equal(m1(x), want, err_msg=f"{isa} {act}")
    with np.errstate(over="ignore", invalid="ignore"):
        np.testing.assert_allclose(want[1:], m0.reference(x)[1:], rtol=1e-5, atol=1e-6)


def _bwd(name, dy, x):
    from netdsl.runtime.executor import run_call
    from netdsl.runtime.kparams import KernelCall
    code = {"silu": L.lib.ND_ACT_SILU, "gelu": L.lib.ND_ACT_GELU, "gelu_tanh": L.lib.ND_ACT_GELU_TANH,
            "mish": L.lib.ND_ACT_MISH}[name]
    call = KernelCall("nd_actfn_bwd_data_f32", "nd_actfn_bwd_params", dict(n=1, size=x.size, act=code),
                      weights=(None, None))
    return run_call(call, [dy, x], out_floats=x.size)


def _dact64(name, x):
    """float64 derivative of the activation (independent formulas) and the sum of its terms'
    magnitudes (what float32 rounding scales with: the derivative crosses 0 by cancellation)."""
    x = x.astype(np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        s = 1 / (1 + np.exp(-x))
        if name == "silu":
            a, b = s, s * x * (1 - s)
        elif name == "gelu":
            a, b = 0.5 * _erfc(-x / math.sqrt(2)).astype(np.float64), x * np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)
        elif name == "gelu_tanh":
            k = math.sqrt(2 / math.pi)
            t = np.tanh(k * (x + 0.044715 * x ** 3))
            a = 0.5 * (1 + t) if False else 1 / (1 + np.exp(-2 * k * (x + 0.044715 * x ** 3)))   # no cancellation
            b = 0.5 * x * (1 - t * t) * k * (1 + 3 * 0.044715 * x * x)
            b = 2 * x * a * (1 - a) * k * (1 + 3 * 0.044715 * x * x)
        elif name == "mish":
            t = np.tanh(np.logaddexp(0, x))
            a, b = t, x * s * (1 - t * t)
        else:
            raise KeyError(name)
    return a + b, np.abs(a) + np.abs(b)


@pytest.mark.parametrize("name", ["silu", "gelu", "gelu_tanh", "mish"])
def test_backward_kernels(name, isa):
    """The training backward of SiLU / GELU / Mish (nd_math.h's exp / Phi / density, vectorized)
    against float64 derivatives: dy = 1, so dx is the derivative itself."""
    x = np.concatenate([np.linspace(-12, 12, 48_001), [-30, -20, 20, 30]]).astype(np.float32)
    got = _bwd(name, np.ones_like(x), x).astype(np.float64)
    want, scale = _dact64(name, x)
    err = np.abs(got - want)
    # a few float32 roundings of the terms (GELU-tanh: of its argument u, ~6e-8 |2u| relative)
    tol = (1e-6 + (2.4e-7 * 2 * 0.8 * np.abs(x + 0.044715 * x ** 3) if name == "gelu_tanh" else 0)) * scale + 1e-30
    worst = np.argmax(err / tol)
    assert (err <= tol).all(), (name, x[worst], got[worst], want[worst], err[worst] / scale[worst])
    nf = _bwd(name, np.ones(3, np.float32), np.array([np.nan, np.inf, -np.inf], np.float32))
    assert np.isnan(nf[0])
