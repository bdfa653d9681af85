"""Helpers for the op tests in tests/ops: numpy references and C kernels.

`nd` (a session fixture, so hypothesis tests may use it) bundles:
    nd.prepare(op, shapes, *args, **kw) -> (spec, attrs, out_shape)   bind + resolve + infer
    nd.run(op, xs, *args, weights=None, **kw) -> y   the numpy reference on batched arrays,
        after checking that its output shape is (N, *infer(...)) and its dtype is kept
    nd.close(actual, expected, atol)   assert, printing the max difference
    nd.n_params(op, shapes, *args, **kw) -> int

and, for the C kernel tests (imported: `from conftest import ...`), the `isa` fixture
(every ISA the CPU has) and kernel_plan / kcall / kernel_vs_reference / check / rng_for.
"""
from __future__ import annotations

import math
import types
import zlib

import numpy as np
import pytest

from netdsl import ops


def prepare(name, shapes, *args, **kw):
    spec = ops.get(name)
    shapes = [tuple(s) for s in shapes]
    a = spec.resolve(spec.bind(args, kw), shapes)
    return spec, a, spec.infer(a, shapes)


def run(name, xs, *args, weights=None, seed=0, **kw):
    xs = [np.asarray(x) for x in (xs if isinstance(xs, (list, tuple)) else [xs])]
    xs = [x if x.dtype.kind == "f" else x.astype(np.float64) for x in xs]
    shapes = [x.shape[1:] for x in xs]
    spec, a, out = prepare(name, shapes, *args, **kw)
    if weights is None:
        weights = spec.init(a, shapes, np.random.default_rng(seed))
    y = spec.reference(a, xs, weights)
    assert y.shape == (xs[0].shape[0], *out), f"{name}: reference gives {y.shape}, infer says {out}"
    if all(x.dtype == np.float32 for x in xs) and all(v.dtype == np.float32 for v in weights.values()):
        assert y.dtype == np.float32, f"{name}: float32 in, {y.dtype} out"
    return y


def close(actual, expected, atol=1e-9, rtol=1e-7):
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    assert actual.shape == expected.shape, f"shape {actual.shape} != {expected.shape}"
    diff = np.abs(actual - expected)
    ok = diff <= atol + rtol * np.abs(expected)
    assert ok.all(), f"max difference {diff.max():.3g}\nactual:\n{actual}\nexpected:\n{expected}"


def n_params(name, shapes, *args, **kw):
    spec, a, _ = prepare(name, shapes, *args, **kw)
    return sum(math.prod(s) for s in spec.params(a, [tuple(s) for s in shapes]).values())


@pytest.fixture(scope="session")
def nd():
    return types.SimpleNamespace(prepare=prepare, run=run, close=close, n_params=n_params)


def grid(x):
    """A hand-written 2-D list -> a (1, 1, H, W) float64 batch."""
    return np.asarray(x, np.float64)[None, None]


@pytest.fixture(scope="session")
def as_nchw():
    return grid


# ---------------------------------------------------------------- C kernel helpers
# One copy, shared by test_kernels_*.py, test_op_kernels.py and the op tests
# (`from conftest import kernel_plan, kcall, check, ...`). Nothing here imports the compiled
# extension at import time: a checkout without it still collects, and the kernel tests skip.

ISAS = ("portable", "avx2", "avx512")


@pytest.fixture(params=ISAS)
def isa(request):
    """Run the test once per ISA level (netdsl.runtime.lib.using_isa); levels this CPU lacks skip."""
    from netdsl.runtime import lib as L
    if not L.available():
        pytest.skip("C kernels not built: python netdsl/runtime/_build.py")
    if request.param not in L.supported_isas():
        pytest.skip(f"this CPU has no {request.param}")
    with L.using_isa(request.param):
        yield request.param


def ptr(arr, ctype="const float *"):
    """A cffi pointer to a numpy array's data (NULL for None)."""
    from netdsl.runtime import lib as L
    return L.ffi.NULL if arr is None else L.ffi.cast(ctype, L.ffi.from_buffer(arr))


def kernel_plan(op, kwargs, shapes, n, args=()):
    """(spec, resolved attrs, output shape, KernelCall) as the planner builds them:
    bind -> resolve -> infer -> the op's kparams builder, for batch n."""
    from netdsl.runtime.kparams import builder
    spec = ops.get(op)
    shapes = [tuple(s) for s in shapes]
    a = spec.resolve(spec.bind(tuple(args), kwargs), shapes)
    out_shape = tuple(spec.infer(a, shapes))
    fn = builder(op)
    assert fn is not None, f"{op} has no kparams builder"
    return spec, a, out_shape, fn(a, shapes, out_shape, n)


def kernel_weights(call, params):
    """The (w, bias) arrays the kernel gets for a node's parameter dict: what
    runtime.session.Session passes (prepare_weights when the builder asks for it)."""
    params = params or {}
    prep = call.extra.get("prepare_weights")
    if prep is not None:
        return prep(params)
    wname, bname = (tuple(call.weights) + (None, None))[:2]
    return (params.get(wname) if wname else None), (params.get(bname) if bname else None)


def kcall(kc, xs, out_shape, w=None, bias=None, out=None):
    """Fill kc's params struct and call its kernel directly on float32 inputs; returns out.

    `out` may be one of `xs` (in-place); otherwise it starts as NaN, so a cell the kernel
    does not write fails the comparison. Inputs stay alive in `xs` during the call.
    """
    from netdsl.runtime import lib as L
    ffi, lib = L.ffi, L.lib
    p = ffi.new(kc.struct + " *", kc.fields)
    if out is None:
        out = np.full(out_shape, np.nan, np.float32)
    ins = ffi.new("const float *[]", [ptr(x) for x in xs])
    ws = np.empty(kc.ws_floats, np.float32) if kc.ws_floats else None
    status = getattr(lib, kc.symbol)(p, ptr(out, "float *"), ins, ptr(w), ptr(bias), ptr(ws, "float *"))
    assert status == lib.ND_OK, f"{kc.symbol} returned status {status}"
    return out


def kernel_vs_reference(op, kwargs, xs, params=None, inplace=None, tweak=None):
    """Kernel output (float32, direct call) and the float64 reference for one case.
    tweak(kc) may change the KernelCall first (what a fusion pass would set)."""
    xs = [np.ascontiguousarray(x, np.float32) for x in xs]
    n = xs[0].shape[0]
    spec, a, out_shape, kc = kernel_plan(op, kwargs, [tuple(x.shape[1:]) for x in xs], n)
    if tweak:
        tweak(kc)
    w = bias = None
    if "prepare_weights" in kc.extra:
        w, bias = kc.extra["prepare_weights"](params)
    x64 = [x.astype(np.float64) for x in xs]
    p64 = {k: np.asarray(v, np.float64) for k, v in (params or {}).items()}
    want = spec.reference(a, x64, p64)
    got = kcall(kc, xs, (n, *out_shape), w, bias, out=None if inplace is None else xs[inplace])
    return got, np.asarray(want, np.float64).reshape(got.shape)


def check(got, want, case, atol=0.0, rtol=0.0):
    """Assert |got - want| <= atol + rtol*|want| everywhere (NaN only where want is NaN,
    ±inf only where want has the same inf); the failure names the case and the max difference."""
    assert got.shape == want.shape, f"{case}: shape {got.shape} != {want.shape}"
    g = got.astype(np.float64)
    same = (g == want) | (np.isnan(g) & np.isnan(want))
    with np.errstate(invalid="ignore"):           # inf - inf, 0·inf: those cells are `same` or bad
        diff = np.where(same, 0.0, np.abs(g - want))
        bad = ~(same | (diff <= atol + rtol * np.abs(want)))
    if bad.any():
        off = np.where(bad, np.nan_to_num(diff, nan=np.inf), -1.0)   # NaN where a number is due: inf off
        i = np.unravel_index(np.argmax(off), got.shape)
        pytest.fail(f"{case}: max abs diff {off.max():.3g} "
                    f"(atol {atol:g}, rtol {rtol:g}); {bad.sum()} of {bad.size} cells off, "
                    f"e.g. at {i}: got {got[i]!r}, want {want[i]!r}")


def rng_for(case):
    """A generator seeded by the case id: reruns and single-case runs see the same data."""
    return np.random.default_rng(zlib.crc32(case.encode()))
