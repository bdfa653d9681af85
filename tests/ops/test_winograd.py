"""Winograd F(4x4,3x3) convolution (csrc/kernels/conv_winograd.c) against the Conv spec's
numpy reference (float64), on every ISA, forced (algo 4) and on auto.

Tolerance: the transforms' coefficients (up to 8 in A^T, 5 in B^T) scale the float32
rounding of the 36 products; measured at C = 512 the error is ~4e-6 relative to the
output's size (the direct GEMM: ~5e-7). The bound used, 2e-5 * sqrt(9C) * max(1, |ref|),
is still 100x below what one wrong tap or a wrong transform coefficient moves (>= 1e-2).
"""
from __future__ import annotations

import math

import numpy as np
import pytest

import netdsl
from netdsl.runtime import lib as L
from netdsl.runtime.executor import Program, Step

from conftest import kernel_plan

if not L.available():
    pytest.skip("C kernels not built: python netdsl/runtime/_build.py", allow_module_level=True)


def run_conv(kwargs, shape, n, algo, x=None, w=None, residual=None, seed=0):
    """(kernel output, float64 reference, the call's final fields) for one Conv."""
    spec, a, out_shape, call = kernel_plan("Conv", kwargs, [tuple(shape)], n)
    rng = np.random.default_rng(seed)
    if x is None:
        x = rng.standard_normal((n, *shape)).astype(np.float32)
    if w is None:
        w = spec.init(a, [tuple(shape)], rng)
        if "bias" in w:
            w["bias"] = rng.standard_normal(w["bias"].shape).astype(np.float32)
    ref = spec.reference(a, [x.astype(np.float64)], {k: v.astype(np.float64) for k, v in w.items()})
    call.fields["algo"] = algo
    out_floats = n * math.prod(out_shape)
    ins, sizes, arena_floats = [out_floats], [x.size], out_floats + x.size
    if residual is not None:
        call.fields["residual"] = 1
        ins.append(arena_floats)
        sizes.append(residual.size)
        arena_floats += residual.size
        ref = ref + residual.astype(np.float64)
    call.ws_floats = int(L.lib.nd_conv_ws_floats(L.ffi.new("nd_conv_params *", call.fields)))
    prog = Program([Step(call, 0, ins, w["weight"], w.get("bias"), out_floats=out_floats, in_floats=sizes)],
                   arena_floats)
    arena = prog.new_arena()
    arena[:out_floats] = np.nan
    arena[out_floats:out_floats + x.size] = x.ravel()
    if residual is not None:
        arena[out_floats + x.size:] = residual.ravel()
    prog.run(arena, prog.new_ws())
    rec = L.ffi.cast("nd_conv_params *", prog.records[0].params)
    fields = {k: int(getattr(rec, k)) for k in ("algo", "w_packed_mr")}
    return arena[:out_floats].reshape(n, *out_shape).copy(), ref, fields


def tol(c, ref):
    return 2e-5 * math.sqrt(9 * c) * max(1.0, float(np.abs(ref).max()))


# (n, c, h, w, oc, pad, act)
CASES = [
    (1, 16, 8, 8, 16, 1, "relu"),             # 2x2 tiles, exact fit
    (2, 17, 13, 11, 19, 1, "none"),           # partial tiles on both edges, odd channels, batch
    (1, 32, 14, 14, 64, 1, "leakyrelu"),      # ResNet/DenseNet-like 14x14
    (3, 8, 7, 9, 5, 0, "sigmoid"),            # no padding, OC < MR
    (1, 3, 5, 5, 17, 1, "tanh"),              # one tile row, C = 3
    (1, 5, 9, 10, 7, (0, 2, 1, 1), "none"),   # asymmetric pads (t, l, b, r)
    (2, 16, 96, 96, 16, 1, "relu"),           # 1152 tiles: more than one chunk
    (1, 64, 28, 28, 128, 1, "none"),          # channels past one GEMM K block
]


def case_id(c):
    n, ch, h, w, oc, pad, act = c
    return f"n{n}c{ch}_{h}x{w}_oc{oc}_p{pad}_{act}"


@pytest.mark.parametrize("case", CASES, ids=[case_id(c) for c in CASES])
def test_winograd_forced(case, isa):       # isa: the fixture in tests/ops/conftest.py
    n, c, h, w, oc, pad, act = case
    got, ref, fields = run_conv(dict(out_channels=oc, kernel=3, pad=pad, act=act), (c, h, w), n, 4)
    assert fields["algo"] == 4 and fields["w_packed_mr"] > 0
    assert np.isfinite(got).all(), "a cell not written"
    assert np.abs(got - ref).max() <= tol(c, ref)


@pytest.mark.parametrize("act", ["none", "relu"])
def test_winograd_residual(act, isa):
    n, c, h, w, oc = 2, 24, 18, 13, 24
    rng = np.random.default_rng(5)
    r = rng.standard_normal((n, oc, h, w)).astype(np.float32)
    _, ref, _ = run_conv(dict(out_channels=oc, kernel=3, pad=1, act="none"), (c, h, w), n, 4, residual=r)
    got, _, f = run_conv(dict(out_channels=oc, kernel=3, pad=1, act=act), (c, h, w), n, 4, residual=r)
    assert f["algo"] == 4
    if act == "relu":   # y = relu(conv + bias + r): the activation after the residual
        ref = np.maximum(ref, 0)
    assert np.abs(got - ref).max() <= tol(c, ref)


def test_winograd_matches_gemm_and_differs_only_by_rounding():
    """The same conv through the GEMM (algo 1) and Winograd: equal to rounding, yet not
    bit-identical (so the Winograd path really ran)."""
    kw = dict(out_channels=32, kernel=3, pad=1)
    a, ref, _ = run_conv(kw, (32, 20, 20), 1, 1)
    b, _, f = run_conv(kw, (32, 20, 20), 1, 4)
    assert f["algo"] == 4
    assert np.abs(a - b).max() <= tol(32, ref)
    assert not np.array_equal(a, b)


def test_auto_rule_takes_winograd_where_it_should():
    """algo 0 picks Winograd for a VGG/ResNet-sized 3x3 conv, not for a strided one or a
    1-channel input; the choice shows in the packed size (36 transformed panels + raw)."""
    def packed(kwargs, shape, n=1):
        _, _, _, call = kernel_plan("Conv", kwargs, [shape], n)
        p = L.ffi.new("nd_conv_params *", call.fields)
        return int(L.lib.nd_conv_packed_w_floats(p, 6)), call.fields
    size, f = packed(dict(out_channels=64, kernel=3, pad=1), (64, 56, 56))
    assert size == 36 * 66 * 64 + 64 * 64 * 9
    size, f = packed(dict(out_channels=64, kernel=3, pad=1, stride=2), (64, 56, 56))
    assert size == 66 * 64 * 9
    size, f = packed(dict(out_channels=64, kernel=3, pad=1), (1, 56, 56))
    assert size != 36 * 66 * 1 + 64 * 9


def nonfinite(shape, seed=3):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(np.float32)
    flat = x.reshape(-1)
    for i, v in zip(rng.choice(flat.size, 6, replace=False), [np.nan, np.inf, -np.inf] * 2):
        flat[i] = v
    flat[0], flat[-1] = np.nan, np.inf
    return x


@pytest.mark.parametrize("act", ["none", "relu"])
def test_winograd_nonfinite_inputs_keep_the_direct_pattern(act, isa):
    """A NaN/inf input must give NaN/inf exactly where a direct convolution does: the tiles
    whose patch is not finite are recomputed directly, the rest stay Winograd."""
    n, c, h, w, oc = 2, 16, 15, 17, 16
    x = nonfinite((n, c, h, w))
    got, ref, f = run_conv(dict(out_channels=oc, kernel=3, pad=1, act=act), (c, h, w), n, 4, x=x)
    assert f["algo"] == 4
    for test in (np.isnan, np.isposinf, np.isneginf):
        np.testing.assert_array_equal(test(got), test(ref))
    fin = np.isfinite(ref)
    assert fin.mean() > 0.5 and np.abs(got[fin] - ref[fin]).max() <= tol(c, ref[fin])


def test_nonfinite_weights_fall_back_to_the_gemm():
    n, c, h, w, oc = 1, 16, 12, 12, 16
    rng = np.random.default_rng(1)
    spec, a, _, _ = kernel_plan("Conv", dict(out_channels=oc, kernel=3, pad=1), [(c, h, w)], n)
    wts = spec.init(a, [(c, h, w)], rng)
    wts["weight"][3, 2, 1, 1] = np.inf
    got, ref, f = run_conv(dict(out_channels=oc, kernel=3, pad=1), (c, h, w), n, 0, w=wts)
    assert f["algo"] == 1
    for test in (np.isnan, np.isposinf, np.isneginf):
        np.testing.assert_array_equal(test(got), test(ref))


def test_zoo_vgg_block_end_to_end():
    """A VGG-style stack at the default -O3 (auto rule) against the model's own numpy reference."""
    m = netdsl.parse("input x: 16x32x32\nConv(32, 3, pad=1)-ReLU-Conv(32, 3, pad=1)-ReLU-Pool-Conv(64, 3, pad=1)-ReLU")
    x = np.random.default_rng(0).standard_normal((2, 16, 32, 32)).astype(np.float32)
    got, ref = m(x), m.reference(x)
    assert np.abs(got - ref).max() <= 1e-4 * max(1.0, float(np.abs(ref).max()))
