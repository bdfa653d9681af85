"""Helpers for the op reference tests (tests/ops/test_*_ref.py).

`nd` (a session fixture, so hypothesis tests may use it) bundles:
    nd.prepare(op, shapes, *args, **kw) -> (spec, attrs, out_shape)   bind + resolve + infer
    nd.run(op, xs, *args, weights=None, **kw) -> y   the numpy reference on batched arrays,
        after checking that its output shape is (N, *infer(...)) and its dtype is kept
    nd.close(actual, expected, atol)   assert, printing the max difference
    nd.n_params(op, shapes, *args, **kw) -> int
"""
from __future__ import annotations

import math
import types

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
