"""Non-finite values through every C kernel, on every ISA: NaN stays NaN, and +-inf
gives what the numpy reference (float64) gives — the same rule as PyTorch.

Each case is a one-layer network written in the language (so a fused activation
is written as `act=relu` on the layer itself, not left to a pass) run at -O0 on
the C runtime, against `Model.reference` on the same input. The input is
standard normal with NaN, +inf and -inf at scattered positions (first and last
cells, tile tails, padding borders). The check is in two steps: the NaN masks
must be identical (a NaN turned into a number, or a number turned into NaN, is a
failure by itself), then the remaining values must agree to 1e-4 relative plus
1e-4 absolute (float32 accumulation of <= 153-term sums of |x| <= ~4 values and
|w| <= ~1, against a float64 oracle; +-inf must match exactly, which
assert_allclose checks).

Layer shapes pick each kernel path: GEMM with tails (17 channels, 13 columns),
1x1 pointwise, depthwise, grouped, direct (LeNet-sized), the transposed GEMM
(7x7 map), the FC-like conv, FC at batch 1/3 (dot path) and 11 (micro-kernel).
"""
from __future__ import annotations

import os
import re

import numpy as np
import pytest

import netdsl
from netdsl.runtime import lib as L

if not L.available():
    pytest.skip("C kernels not built: python netdsl/runtime/_build.py", allow_module_level=True)

ISAS = L.supported_isas()


def nonfinite_input(shape, seed=0):
    """Standard normal float32 with NaN / +inf / -inf at scattered positions."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(np.float32)
    flat = x.reshape(-1)
    n = flat.size
    picks = sorted({0, n - 1, n // 2, n // 3, (2 * n) // 3, n // 7, (5 * n) // 7, n // 11})
    for i, j in enumerate(picks):
        flat[j] = (np.nan, np.inf, -np.inf)[i % 3]
    return x


def assert_same_nonfinite(got, want, what):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    gn, wn = np.isnan(got), np.isnan(want)
    if (gn != wn).any():
        i = tuple(int(v) for v in np.argwhere(gn != wn)[0])
        pytest.fail(f"{what}: NaN mask differs in {(gn != wn).sum()} of {got.size} cells "
                    f"(C NaN {gn.sum()}, reference NaN {wn.sum()}); e.g. at {i}: C {got[i]!r}, "
                    f"reference {want[i]!r}")
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4, equal_nan=True, err_msg=what)


def run_both(src, x, isa, level=0):
    """C output (model run at `level` with ISA `isa`, fresh session) and reference output."""
    m = netdsl.parse(src)
    m.run_level = level
    with L.using_isa(isa):
        got = m(x)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):   # the oracle meets inf - inf
        want = m.reference(x)
    return got, want


ACTS = ["relu", "leakyrelu", "sigmoid", "tanh"]
DW_ACTS = ["none", "relu6"]   # the rest of conv_dw.c's in-register activations

# (case id, input CxHxW, batch, layer text with {act})
WINDOW_LAYERS = [
    ("conv-gemm", "5x13x13", 2, "Conv(17, 3, pad=1, act={act})"),
    ("conv-stride2", "3x17x13", 1, "Conv(17, 3, stride=2, pad=1, act={act})"),
    ("conv-1x1", "16x7x9", 2, "Conv(33, 1, act={act})"),
    ("conv-depthwise", "8x13x13", 1, "Conv(8, 3, pad=1, groups=8, act={act})"),
    ("conv-dw-7x7", "8x7x7", 1, "Conv(8, 3, pad=1, groups=8, act={act})"),
    ("conv-dw-stride2", "4x14x37", 1, "Conv(4, 3, stride=2, pad=1, groups=4, act={act})"),
    ("conv-dw-wide", "3x9x41", 2, "Conv(6, 3, pad=(0, 1, 1, 0), groups=3, act={act})"),
    ("conv-grouped", "8x9x9", 2, "Conv(16, 3, pad=1, groups=2, act={act})"),
    ("conv-direct", "3x12x28", 1, "Conv(6, 5, act={act})"),
    ("conv-transposed", "64x7x7", 2, "Conv(160, 3, pad=1, act={act})"),
    ("conv-fc-like", "16x5x5", 2, "Conv(120, 5, act={act})"),
    ("fc-dot", "37", 3, "FC(19, act={act})"),
    ("fc-tiles", "37", 11, "FC(19, act={act})"),
    ("deconv", "5x7x7", 2, "Deconv(6, 4, stride=2, pad=1, act={act})"),
]


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("cid,shape,n,layer", WINDOW_LAYERS, ids=[c[0] for c in WINDOW_LAYERS])
def test_fused_activation_keeps_nonfinite(cid, shape, n, layer, act, isa):
    check_window_layer(cid, shape, n, layer, act, isa, "the activation")


def check_window_layer(cid, shape, n, layer, act, isa, where):
    """One WINDOW_LAYERS case on a NaN/inf input: the kernel's non-finite cells are the reference's."""
    dims = tuple(int(v) for v in shape.split("x"))
    x = nonfinite_input((n, *dims), seed=len(cid))
    got, want = run_both(f"input x: {shape}\n{layer.format(act=act)}", x, isa)
    assert np.isnan(want).any(), f"the case must put a NaN into {where}"
    assert_same_nonfinite(got, want, f"{cid}-{act}-{isa}")


DW_LAYERS = [c for c in WINDOW_LAYERS if c[0].startswith("conv-dw")]


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("act", DW_ACTS)
@pytest.mark.parametrize("cid,shape,n,layer", DW_LAYERS, ids=[c[0] for c in DW_LAYERS])
def test_depthwise_keeps_nonfinite(cid, shape, n, layer, act, isa):
    check_window_layer(cid, shape, n, layer, act, isa, "the output")


SIMPLE_LAYERS = [
    ("relu", "5x13x13", "ReLU"), ("leakyrelu", "5x13x13", "LeakyReLU(0.1)"),
    ("sigmoid", "5x13x13", "Sigmoid"), ("tanh", "5x13x13", "Tanh"),
    ("bn-relu", "5x13x13", "BN(act=relu)"), ("bn", "5x13x13", "BN"),
    ("maxpool", "5x13x13", "MaxPool(3, stride=2, pad=1)"), ("maxpool-2x2", "5x12x12", "MaxPool(2)"),
    ("minpool", "5x13x13", "MinPool(3, stride=2)"), ("avgpool", "5x13x13", "AvgPool(3, stride=2, pad=1)"),
    ("stochasticpool", "5x13x13", "StochasticPool(3, stride=2, pad=1)"),
    ("gap", "5x13x13", "GAP"), ("gmp", "5x13x13", "GlobalMaxPool"),
    ("softmax", "17x3x5", "Softmax"), ("logsoftmax", "17x3x5", "LogSoftmax"),
    ("softmax-vector", "37", "Softmax"), ("lrn", "17x5x5", "LRN(5)"),
    ("upsample-nearest", "5x7x7", "Upsample(2)"), ("upsample-bilinear", "5x7x7", "Upsample(2, mode=bilinear)"),
]
# The resize reference blends neighbours as x0*(1-f) + x1*f even for nearest (f = 0), so an
# inf input gives inf*0 = NaN there while the kernel (like PyTorch) copies inf; resize is
# therefore checked with NaN only.
NAN_ONLY = {"upsample-bilinear"}      # bilinear weighs a neighbour by 0: 0·inf = NaN, in both


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("cid,shape,layer", SIMPLE_LAYERS, ids=[c[0] for c in SIMPLE_LAYERS])
def test_kernel_keeps_nonfinite(cid, shape, layer, isa):
    dims = tuple(int(v) for v in shape.split("x"))
    x = nonfinite_input((2, *dims), seed=len(cid))
    if cid in NAN_ONLY:
        x[np.isinf(x)] = np.nan
    got, want = run_both(f"input x: {shape}\n{layer}", x, isa)
    assert_same_nonfinite(got, want, f"{cid}-{isa}")


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("shape", ["5x13x13", "37"])
def test_add_relu_keeps_nonfinite(shape, isa):
    dims = tuple(int(v) for v in shape.split("x"))
    x = nonfinite_input((2, *dims), seed=3)
    src = f"input x: {shape}\na = x - Tanh\n[ x | a ] - Add(act=relu)"
    got, want = run_both(src, x, isa)
    assert np.isnan(want).any()
    assert_same_nonfinite(got, want, f"add-relu-{shape}-{isa}")


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("act", ACTS)
def test_local_fused_activation_keeps_nonfinite(act, isa):
    """Local has no `act` in the language (no pass fuses into it yet), but its kernel takes
    one: its params are built as the planner does, with the act code set, and compared with
    the reference Local followed by the activation's reference."""
    from netdsl import ops
    from netdsl.ops.conv import apply_act
    from netdsl.runtime.kparams import builder
    from netdsl.runtime.kparams.conv import act_code
    ffi, lib = L.ffi, L.lib
    x = nonfinite_input((2, 3, 7, 7), seed=5)
    spec = ops.get("Local")
    a = spec.resolve(spec.bind((5, 3), {"pad": 1}), [(3, 7, 7)])
    out_shape = tuple(spec.infer(a, [(3, 7, 7)]))
    w = spec.init(a, [(3, 7, 7)], np.random.default_rng(0))
    kc = builder("Local")(a, [(3, 7, 7)], out_shape, 2)
    kc.fields["act"] = act_code({"act": act})
    with np.errstate(invalid="ignore", over="ignore"):
        want = apply_act(spec.reference(a, [x.astype(np.float64)], {k: v.astype(np.float64) for k, v in w.items()}),
                         act)
    weight, bias = (np.ascontiguousarray(w[k], np.float32) for k in ("weight", "bias"))
    out = np.full((2, *out_shape), 7.0, np.float32)
    ws = np.empty(max(kc.ws_floats, 1), np.float32)
    ins = ffi.new("const float *[1]", [ffi.from_buffer("float[]", x)])
    with L.using_isa(isa):
        st = lib.nd_local_f32(ffi.new("nd_local_params *", kc.fields), ffi.from_buffer("float[]", out), ins,
                              ffi.from_buffer("float[]", weight), ffi.from_buffer("float[]", bias),
                              ffi.from_buffer("float[]", ws))
    assert st == lib.ND_OK
    assert np.isnan(want).any()
    assert_same_nonfinite(out, want, f"local-{act}-{isa}")


def test_infinities_through_activations():
    """+-inf through every fused activation: relu 0/inf, leaky -inf/inf, sigmoid exactly 0/1,
    tanh exactly -1/1 (a 1x1 conv with weight 1, bias 0 passes x through to the epilogue)."""
    x = np.array([np.inf, -np.inf, np.nan, 1.0, -1.0], np.float32).reshape(1, 1, 1, 5)
    want = {"relu": [np.inf, 0, np.nan, 1, 0], "leakyrelu": [np.inf, -np.inf, np.nan, 1, -0.01],
            "sigmoid": [1, 0, np.nan, 1 / (1 + np.exp(-1.0)), 1 / (1 + np.exp(1.0))],
            "tanh": [1, -1, np.nan, np.tanh(1.0), -np.tanh(1.0)]}
    for isa in ISAS:
        for act, w in want.items():
            m = netdsl.parse(f"input x: 1x1x5\nConv(1, 1, act={act})")
            m.load_state_dict({k: np.ones_like(v) if k.endswith("weight") else np.zeros_like(v)
                               for k, v in m.state_dict().items()})
            with L.using_isa(isa):
                got = m(x).reshape(-1)
            w = np.asarray(w, np.float64)
            assert (np.isnan(got) == np.isnan(w)).all(), f"{act}-{isa}: {got}"
            fin = ~np.isnan(w)
            assert (got[fin][:2] == w[fin][:2]).all(), f"{act}-{isa}: inf gives {got[:2]}, want {w[:2]}"
            np.testing.assert_allclose(got[fin], w[fin], rtol=1e-6, atol=1e-7, err_msg=f"{act}-{isa}")


# ---------------------------------------------------------------- end to end at -O3

RESIDUAL = """input x: 3x9x11
stem = x - Conv(8, 3, pad=1) - BN - ReLU
a = stem - Conv(8, 3, pad=1) - BN - ReLU - Conv(8, 3, pad=1) - BN
[ a | stem ] - Add - ReLU
"""


@pytest.mark.parametrize("isa", ISAS)
def test_residual_net_O3_keeps_nan(isa):
    """Conv-BN-ReLU and Add-ReLU are fused at -O3 (BN folded, the add into the conv's
    accumulation, ReLU into the store): an all-NaN input gives all NaN, and one NaN
    pixel gives NaN on exactly the cells the reference says (its 7x7 receptive field)."""
    x = np.random.default_rng(1).standard_normal((2, 3, 9, 11)).astype(np.float32)
    x[0, 1, 4, 5] = np.nan
    got, want = run_both(RESIDUAL, x, isa, level=3)
    nan = np.isnan(want)
    assert 0 < nan.sum() < nan.size, "one NaN pixel must reach some outputs, not all"
    assert_same_nonfinite(got, want, f"one NaN pixel, {isa}")
    got, _ = run_both(RESIDUAL, np.full_like(x, np.nan), isa, level=3)
    assert np.isnan(got).all(), f"all-NaN input: {np.isnan(got).sum()} of {got.size} outputs are NaN"


def _resnet18_small():
    from netdsl.model import resolve_path
    path = resolve_path("resnet18")
    with open(path, encoding="utf-8") as f:
        src = f.read()
    src, k = re.subn(r"input x: 3x224x224", "input x: 3x32x32", src)
    assert k == 1
    return netdsl.parse(src, os.path.basename(path), path)


def test_resnet18_O3_nan_input():
    """The issue's reproduction, at 32x32 to stay fast: ResNet-18 at -O3 (the default) on
    an all-NaN input returned all zeros; with one NaN pixel the output is NaN exactly
    where the numpy reference has NaN (here: everywhere, through the global pool)."""
    x = np.random.default_rng(2).standard_normal((1, 3, 32, 32)).astype(np.float32)
    x[0, 2, 17, 9] = np.nan
    want = _resnet18_small().reference(x)
    for isa in ISAS:
        m = _resnet18_small()          # a fresh session: weights packed for this ISA
        assert m.run_level == 3
        with L.using_isa(isa):
            got = m(x)
            assert (np.isnan(got) == np.isnan(want)).all(), f"{isa}: {np.isnan(got).sum()} NaN, want {np.isnan(want).sum()}"
            got = m(np.full_like(x, np.nan))
            assert np.isnan(got).all(), f"{isa}: all-NaN input gives {np.isnan(got).sum()} NaN of {got.size}"


GEMM_SHAPES = [(1, 19, 7, False), (2, 40, 9, False), (7, 31, 13, True), (13, 37, 300, False), (13, 37, 0, True)]


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("m,n,k,trans_b", GEMM_SHAPES, ids=[f"m{m}-n{n}-k{k}-tb{int(t)}" for m, n, k, t in GEMM_SHAPES])
def test_gemm_epilogues_keep_nonfinite(m, n, k, trans_b, isa):
    """nd_gemm_f32 on every driver path (dot M<=8, axpy M<=2, packed micro-kernel, K = 0) with
    each fused activation: NaN/inf in A and in the bias reach the epilogue."""
    ffi, lib = L.ffi, L.lib
    a = nonfinite_input((m, k), seed=m) if k else np.zeros((m, 0), np.float32)
    b = np.random.default_rng(k).standard_normal((n, k) if trans_b else (k, n)).astype(np.float32)
    bias = nonfinite_input((n,), seed=n)
    with np.errstate(invalid="ignore", over="ignore"):
        ref = a.astype(np.float64) @ (b.T if trans_b else b).astype(np.float64) + bias[None, :]
    from netdsl.ops.conv import apply_act
    for act in ["none"] + ACTS:
        code = getattr(lib, f"ND_ACT_{act.upper()}")
        p = ffi.new("nd_gemm_params *", dict(m=m, n=n, k=k, trans_b=trans_b, bias_mode=2, act=code, threads=2))
        c = np.full((m, n), 7.0, np.float32)
        ws = np.empty(max(1, lib.nd_gemm_ws_floats(m, n, k, 2)), np.float32)
        ins = ffi.new("const float *[1]", [ffi.from_buffer("float[]", a if a.size else np.zeros(1, np.float32))])
        with L.using_isa(isa):
            st = lib.nd_gemm_f32(p, ffi.from_buffer("float[]", c), ins,
                                 ffi.from_buffer("float[]", b if b.size else np.zeros(1, np.float32)),
                                 ffi.from_buffer("float[]", bias), ffi.from_buffer("float[]", ws))
        assert st == lib.ND_OK
        with np.errstate(invalid="ignore", over="ignore"):
            want = apply_act(ref, act)
        assert_same_nonfinite(c, want, f"gemm m{m} n{n} k{k} {act} {isa}")
