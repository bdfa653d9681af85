"""Every op with a C kernel, on every ISA, against its own numpy reference, on
shapes made from the op's `samples` (netdsl/ops/<op>.py): nothing to list here
when an op is added, and tests/unit/test_meta.py fails when an op with a kernel
has no case in CASES.

Each sample (attrs, input shapes) gives three cases: batch 1 as written, batch 3
as written, and batch 3 with every feature-map input grown by 4 rows and 2
columns (the samples use odd sizes, so the grown ones stay odd: other tails of
every vector width and of every window). A grown shape the op refuses
(a Reshape target, a sample that only fits one size) is left out; the sample as
written must always be valid. Ids name the case:
`portable-Conv-out_channels=4,kernel=3-in3x7x9-n1`.

A second test puts NaN, +inf and -inf into the first input (batch-3 cases) and holds
the kernel to the same reference: non-finite values must land where the oracle puts
them, never be replaced. (It found the nearest Upsample reference turning inf into NaN
by weighting with 0·inf, and the fused ReLU epilogues turning NaN into 0, since fixed.)

The path is the runtime's: bind -> resolve -> infer -> the op's kparams builder
-> executor.Program (params filled by field name, weights prepacked, the output
prefilled with NaN so a cell never written fails) -> one nd_run_plan call, with
the (w, bias) arrays Session would pass. The reference runs in float64 on the
same float32 inputs and weights, so only the kernel's rounding is measured.
Weights are the op's deterministic init, each value scaled by U(0.5, 1.5) and
each zero (biases, running means) replaced by N(0, 0.5²): signs are kept, so a
variance stays positive, and no weight is a trivial 0 or 1.

Tolerance: |kernel − reference| <= 1e-5 · sqrt(K) · max(1, max |reference|),
K = MACs per output value (1 for ops without MACs). A float32 sum of K terms
carries ~eps32·sqrt(K) relative error (eps32 = 6e-8), and libm's expf/tanhf/powf
~1 ulp, so this is ~100x above the rounding of any kernel here, yet a wrong tap,
a wrong window, a missed channel or a cell left unwritten moves a value by
~0.1–1. The per-family tests (test_kernels_*.py) pin tighter bounds — exact for
copies and selections — on bigger grids; this one proves every op, every ISA,
from the op's own declaration.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from netdsl import ops
from netdsl.ops.attrs import OpError
from netdsl.runtime.executor import run_call
from netdsl.runtime.kparams import builder

from conftest import check, kernel_plan, kernel_weights, rng_for


def _fmt(v):
    if isinstance(v, (tuple, list)):
        return "x".join(_fmt(x) for x in v)
    return str(v).lower() if isinstance(v, bool) else str(v)


def _grow(shapes):
    return [(s[0], s[1] + 4, s[2] + 2) if len(s) == 3 and s[1] > 1 and s[2] > 1 else tuple(s) for s in shapes]


def _valid(op, attrs, shapes):
    spec = ops.get(op)
    try:
        spec.infer(spec.resolve(spec.bind((), attrs), shapes), shapes)
    except OpError:
        return False
    return True


def kernel_cases():
    """pytest params (op, attrs, shapes, n, options) for every sample of every op with a kernel."""
    out = []
    for name, spec in sorted(ops.all_specs().items()):
        if builder(name) is None:
            continue
        for sample in spec.samples:
            attrs, shapes, opts = (tuple(sample) + ({},))[:3]
            shapes = [tuple(s) for s in shapes]
            tag = ",".join(f"{k}={_fmt(v)}" for k, v in attrs.items()) or "default"
            for n, grown in ((1, False), (3, False), (3, True)):
                ss = _grow(shapes) if grown else shapes
                if grown and (ss == shapes or not _valid(name, attrs, ss)):
                    continue
                cid = f"{name}-{tag}-in{'+'.join(_fmt(s) for s in ss)}-n{n}"
                out.append(pytest.param(name, attrs, ss, n, opts, id=cid))
    return out


CASES = kernel_cases()


def _weights(spec, a, shapes, rng):
    """The op's init (parameters and buffers), perturbed as the module docstring says."""
    w = spec.init(a, shapes, np.random.default_rng(0))
    out = {}
    for k, v in w.items():
        v = np.asarray(v, np.float64)
        v = np.where(v == 0, rng.normal(0, 0.5, v.shape), v * rng.uniform(0.5, 1.5, v.shape))
        out[k] = v.astype(np.float32)
    return out


@pytest.mark.parametrize("op,attrs,shapes,n,opts", CASES)
def test_kernel_matches_reference(op, attrs, shapes, n, opts, isa, request):
    _run_case(op, attrs, shapes, n, opts, request.node.callspec.id)


@pytest.mark.parametrize("op,attrs,shapes,n,opts", [p for p in CASES if p.values[3] == 3])
def test_kernel_propagates_non_finite(op, attrs, shapes, n, opts, isa, request):
    """NaN, +inf and -inf in the first input (batch 3) end up where the reference puts them:
    NaN stays NaN, and inf stays inf or becomes NaN exactly where the reference's arithmetic
    makes it one (inf - inf, 0·inf). The other cells are held to the same tolerance as above."""
    _run_case(op, attrs, shapes, n, opts, request.node.callspec.id, non_finite=True)


def _run_case(op, attrs, shapes, n, opts, case, non_finite=False):
    rng = rng_for(case)
    xs = [rng.standard_normal((n, *s)).astype(np.float32) * 2 for s in shapes]
    if opts.get("nonneg"):
        xs = [np.abs(x) for x in xs]
    if non_finite:
        flat = xs[0].reshape(-1)
        flat[flat.size // 2] = np.nan
        flat[flat.size // 3] = np.inf
        if not opts.get("nonneg"):
            flat[-1] = -np.inf
    spec, a, out_shape, call = kernel_plan(op, attrs, shapes, n)
    params = _weights(spec, a, shapes, rng)
    with np.errstate(invalid="ignore", over="ignore"):     # inf - inf in the oracle is the point
        want = spec.reference(a, [x.astype(np.float64) for x in xs],
                          {k: v.astype(np.float64) for k, v in params.items()})
    w, bias = kernel_weights(call, params)
    out_floats = n * math.prod(out_shape)
    got = run_call(call, xs, w, bias, out_floats).reshape(n, *out_shape)
    want = np.asarray(want, np.float64).reshape(got.shape)
    finite = np.isfinite(want)
    terms = max(1.0, spec.macs(a, shapes, out_shape) / max(1, math.prod(out_shape)))
    tol = 1e-5 * math.sqrt(terms) * max(1.0, float(np.abs(want[finite]).max(initial=0.0)))
    check(got, want, case, atol=tol)
