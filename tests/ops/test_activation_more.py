"""Clip / ReLU6 / Hardtanh, HardSigmoid, HardSwish, SiLU / Swish, GELU and Mish: hand values,
the C kernels on every ISA against the float64 numpy reference (NaN, +-inf, -0.0, huge and
tiny values included), PyTorch when it is installed, and the fused epilogues (Conv, FC,
ConvTranspose) against the same graph unfused.

Measured max error of the kernels against the float64 reference on x in [-100, 100]
(tests/ops/test_activation_more.py: test_kernel_on_a_wide_grid, portable and AVX2): ReLU6,
Clip exact; HardSigmoid, HardSwish <= 1.5 ulp (one add, one divide, one multiply); SiLU 1.4e-7
relative (AVX2: a Cephes exp polynomial, ~1 ulp; portable: expf); Mish 2.9e-7; GELU (erfc)
9.4e-7; GELU tanh form 1.1e-6 (the float32 rounding of x + 0.044715 x³ inside the exp). The
tolerances below sit a few times above those.
"""
from __future__ import annotations

import math
import textwrap

import numpy as np
import pytest

import netdsl
from netdsl import ops
from netdsl.ops import activations as acts
from netdsl.runtime import lib as L

from conftest import check, kernel_vs_reference

NEW_OPS = ("Clip", "ReLU6", "Hardtanh", "HardSigmoid", "HardSwish", "SiLU", "GELU", "Mish")
LN3 = math.log(3.0)


# ---------------------------------------------------------------- by hand

X = np.array([[-7.0, -3.0, -1.5, -0.5, 0.0, 0.5, 1.5, 3.0, 7.0]])


@pytest.mark.parametrize("op, kw, expected", [
    pytest.param("ReLU6", {}, [0, 0, 0, 0, 0, 0.5, 1.5, 3, 6], id="relu6"),
    pytest.param("Clip", dict(min=-1.0, max=2.0), [-1, -1, -1, -0.5, 0, 0.5, 1.5, 2, 2], id="clip"),
    pytest.param("Clip", dict(min=0.0), [0, 0, 0, 0, 0, 0.5, 1.5, 3, 7], id="clip-min-only"),
    pytest.param("Clamp", dict(max=0.5), [-7, -3, -1.5, -0.5, 0, 0.5, 0.5, 0.5, 0.5], id="clamp-max-only"),
    pytest.param("Clip", dict(min=1.0, max=-1.0), [-1] * 9, id="clip-min-above-max-gives-max"),
    pytest.param("Hardtanh", {}, [-1, -1, -1, -0.5, 0, 0.5, 1, 1, 1], id="hardtanh"),
    pytest.param("HardTanh", dict(min_val=-2.0, max_val=0.25), [-2, -2, -1.5, -0.5, 0, 0.25, 0.25, 0.25, 0.25],
                 id="hardtanh-bounds"),
    # relu6(x + 3) / 6
    pytest.param("HardSigmoid", {}, [0, 0, 0.25, 2.5 / 6, 0.5, 3.5 / 6, 0.75, 1, 1], id="hardsigmoid"),
    # ONNX's defaults: 0.2 x + 0.5
    pytest.param("HardSigmoid", dict(alpha=0.2, beta=0.5), [0, 0, 0.2, 0.4, 0.5, 0.6, 0.8, 1, 1],
                 id="hardsigmoid-onnx"),
    # x relu6(x + 3) / 6
    pytest.param("HardSwish", {}, [0, 0, -0.375, -2.5 / 12, 0, 3.5 / 12, 1.125, 3, 7], id="hardswish"),
])
def test_piecewise_by_hand(nd, op, kw, expected):
    nd.close(nd.run(op, X, **kw)[0], expected, atol=1e-15)


def test_piecewise_on_a_random_map_by_hand(nd):
    x = np.random.default_rng(7).standard_normal((2, 3, 4, 5)) * 5
    nd.close(nd.run("ReLU6", x), np.where(x < 0, 0, np.where(x > 6, 6, x)), atol=0)
    nd.close(nd.run("Clip", x, -1.0, 2.5), np.where(x < -1, -1, np.where(x > 2.5, 2.5, x)), atol=0)
    nd.close(nd.run("Hardtanh", x), np.where(x < -1, -1, np.where(x > 1, 1, x)), atol=0)
    r6 = np.where(x < -3, 0, np.where(x > 3, 6, x + 3))
    nd.close(nd.run("HardSwish", x), x * r6 / 6, atol=1e-15)
    nd.close(nd.run("HardSigmoid", x), r6 / 6, atol=1e-15)


def test_smooth_ones_by_hand(nd):
    x = np.array([[0.0, LN3, -LN3, 1.0, -1.0, 30.0]])
    # sigmoid(ln 3) = 3/4; tanh(softplus(ln 3)) = tanh(ln 4) = 15/17; Φ(1) = 0.8413447460685429
    phi1 = 0.8413447460685429
    nd.close(nd.run("SiLU", x)[0], [0, 0.75 * LN3, -0.25 * LN3, 1 / (1 + math.e ** -1), -1 / (1 + math.e),
                                    30 / (1 + math.exp(-30))], atol=1e-14)
    nd.close(nd.run("Swish", x), nd.run("SiLU", x), atol=0)
    nd.close(nd.run("Mish", x)[0][:3], [0, LN3 * 15 / 17, -LN3 * math.tanh(math.log(4 / 3))], atol=1e-14)
    nd.close(nd.run("GELU", x)[0][[0, 3, 4, 5]], [0, phi1, -(1 - phi1), 30], atol=1e-14)
    u = math.sqrt(2 / math.pi) * (1 + 0.044715)
    nd.close(nd.run("GELU", x, approximate="tanh")[0][[0, 3, 4]],
             [0, 0.5 * (1 + math.tanh(u)), -0.5 * (1 - math.tanh(u))], atol=1e-14)


def test_specs_flags_aliases_and_epilogues(nd):
    for op in NEW_OPS:
        spec = ops.get(op)
        assert {"elementwise", "inplace_ok"} <= spec.flags and spec.preserves_nan, op
        x = np.random.default_rng(0).standard_normal((2, 3, 5, 7)).astype(np.float32)
        assert nd.run(op, x).dtype == np.float32
    assert ops.get("Swish") is ops.get("SiLU") and ops.get("Clamp") is ops.get("Clip")
    # the `act` each becomes when fused: only the bounds / parameters the epilogue has built in
    assert ops.get("ReLU6").epilogue({}) == "relu6"
    assert ops.get("Clip").epilogue(dict(min=0.0, max=6.0)) == "relu6"
    assert ops.get("Clip").epilogue(dict(min=0.0, max=5.0)) is None
    assert ops.get("Clip").epilogue(dict(min=0.0, max=None)) is None
    assert ops.get("Hardtanh").epilogue(dict(min_val=0.0, max_val=6.0)) == "relu6"
    assert ops.get("Hardtanh").epilogue(dict(min_val=-1.0, max_val=1.0)) is None
    assert ops.get("HardSigmoid").epilogue(dict(alpha=1 / 6, beta=0.5)) == "hardsigmoid"
    assert ops.get("HardSigmoid").epilogue(dict(alpha=0.2, beta=0.5)) is None
    # what torch.onnx.export writes for nn.Hardsigmoid: 1/6 rounded to float32
    assert ops.get("HardSigmoid").epilogue(dict(alpha=float(np.float32(1 / 6)), beta=0.5)) == "hardsigmoid"
    assert ops.get("GELU").epilogue(dict(approximate="none")) == "gelu"
    assert ops.get("GELU").epilogue(dict(approximate="tanh")) is None
    for op, name in (("HardSwish", "hardswish"), ("SiLU", "silu"), ("Mish", "mish")):
        assert ops.get(op).epilogue({}) == name


def _error(src):
    with pytest.raises(netdsl.NetDSLError) as e:
        netdsl.parse(textwrap.dedent(src))
    return str(e.value)


def test_bad_arguments_are_located_errors():
    msg = _error("input x: 3x5x5\nConv(4, 3) - Hardtanh(min_val=2, max_val=1)\n")
    assert "min_val 2.0 is greater than max_val 1.0" in msg and "2:" in msg and "lower bound first" in msg
    msg = _error("input x: 3x5x5\nGELU(approximate=erf)\n")
    assert "'approximate' must be one of none, tanh" in msg
    msg = _error("input x: 3x5x5\nClip(min=0, max=1e999)\n")
    assert "'max' must be a finite number" in msg


# ---------------------------------------------------------------- the kernels, every ISA

def _wide_grid():
    """(1, N) float32: a dense [-30, 30] sweep, [-100, 100], the exp range edges, huge, tiny,
    -0.0, NaN and +-inf."""
    x = np.concatenate([np.linspace(-30, 30, 6001), np.linspace(-100, 100, 401),
                        [-88.9, -88.5, -87.4, -87.3, 88.3, 88.4, 88.8, 89.0, 1e-30, -1e-30, 3e38, -3e38, 1e30,
                         -1e30, -0.0, np.nan, np.inf, -np.inf, np.nan]])
    return x.astype(np.float32)[None]


# (op, attrs, atol, rtol): the measured max errors (module docstring) times ~2-4
KERNEL_CASES = [
    ("ReLU6", {}, 0.0, 0.0),
    ("Clip", dict(min=-0.5, max=1.25), 0.0, 0.0),
    ("Clip", dict(min=0.0), 0.0, 0.0),
    ("Clip", dict(max=-2.5), 0.0, 0.0),
    ("Clip", dict(min=1.0, max=-1.0), 0.0, 0.0),
    ("Hardtanh", {}, 0.0, 0.0),
    ("HardSigmoid", {}, 0.0, 1.5e-7),
    ("HardSigmoid", dict(alpha=0.2, beta=0.5), 1.2e-7, 1.2e-7),    # alpha = 0.2 rounded to float32
    ("HardSwish", {}, 1e-37, 2.4e-7),
    ("SiLU", {}, 1e-35, 4e-7),
    ("Mish", {}, 1e-35, 8e-7),
    ("GELU", {}, 1e-12, 2e-6),       # x << 0: erfc(-x/√2) carries the rounding of x/√2 times x²
    ("GELU", dict(approximate="tanh"), 1e-12, 3e-6),
]


@pytest.mark.parametrize("inplace", [False, True], ids=["out", "inplace"])
@pytest.mark.parametrize("op,attrs,atol,rtol", KERNEL_CASES,
                         ids=[f"{c[0]}-{','.join(f'{k}={v}' for k, v in c[1].items()) or 'default'}"
                              for c in KERNEL_CASES])
def test_kernel_on_a_wide_grid(op, attrs, atol, rtol, inplace, isa):
    x = _wide_grid()
    with np.errstate(invalid="ignore", over="ignore"):
        got, want = kernel_vs_reference(op, attrs, [x], inplace=0 if inplace else None)
    check(got, want, f"{isa}-{op}{attrs}", atol=atol, rtol=rtol)


def test_non_finite_values_follow_pytorch(isa):
    """NaN stays NaN everywhere; -inf·0 is NaN for the x-times ones (as PyTorch), their +inf is
    +inf; the bounded ones saturate."""
    x = np.array([[np.nan, np.inf, -np.inf]], np.float32)
    want = {"ReLU6": [np.nan, 6, 0], "Hardtanh": [np.nan, 1, -1], "HardSigmoid": [np.nan, 1, 0],
            "HardSwish": [np.nan, np.inf, np.nan], "SiLU": [np.nan, np.inf, np.nan],
            "GELU": [np.nan, np.inf, np.nan], "Mish": [np.nan, np.inf, np.nan]}
    for op, w in want.items():
        got, ref = kernel_vs_reference(op, {}, [x])
        np.testing.assert_array_equal(got[0], np.array(w, np.float32), err_msg=f"{isa} {op}")
        np.testing.assert_array_equal(ref[0], np.array(w), err_msg=f"reference {op}")


# ---------------------------------------------------------------- PyTorch

def test_match_torch(nd):
    """The references and the kernels (ISA in use) against torch.nn.functional, NaN and inf included."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = np.concatenate([np.random.default_rng(4).standard_normal(300) * 4,
                        [-100, -20, -3, 0, 3, 20, 100, np.nan, np.inf]]).astype(np.float32)[None]
    t = torch.from_numpy(x)
    cases = [("ReLU6", {}, F.relu6(t)), ("Clip", dict(min=-0.5, max=2.0), torch.clamp(t, -0.5, 2.0)),
             ("Hardtanh", {}, F.hardtanh(t)), ("Hardtanh", dict(min_val=-2.0, max_val=3.0), F.hardtanh(t, -2.0, 3.0)),
             ("HardSigmoid", {}, F.hardsigmoid(t)), ("HardSwish", {}, F.hardswish(t)), ("SiLU", {}, F.silu(t)),
             ("GELU", {}, F.gelu(t)), ("GELU", dict(approximate="tanh"), F.gelu(t, approximate="tanh")),
             ("Mish", {}, F.mish(t))]
    for op, kw, want in cases:
        # PyTorch computes in float32: a few ulp apart from the float64 reference
        with np.errstate(invalid="ignore"):
            np.testing.assert_allclose(nd.run(op, x, **kw), want.numpy(), rtol=1e-5, atol=1e-6, equal_nan=True,
                                       err_msg=op)
            if L.available():
                got, _ = kernel_vs_reference(op, kw, [x])
                np.testing.assert_allclose(got, want.numpy(), rtol=1e-5, atol=1e-6, equal_nan=True, err_msg=op)
    # ONNX HardSigmoid (alpha 0.2, beta 0.5) is torch's hardsigmoid only in name: ours takes both
    onnx_like = np.clip(0.2 * x.astype(np.float64) + 0.5, 0, 1)
    np.testing.assert_allclose(nd.run("HardSigmoid", x, alpha=0.2, beta=0.5), onnx_like, atol=1e-7, equal_nan=True)


def test_prelu_on_vectors_matches_torch():
    """PReLU (netdsl/ops/prelu.py) on (N, F) features, one slope per feature and one shared, as
    torch.nn.PReLU(num_parameters=F | 1) with its `weight` loaded (maps: tests/ops/test_prelu.py)."""
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(5).standard_normal((4, 7)).astype(np.float32)
    for k in (7, 1):
        m = torch.nn.PReLU(num_parameters=k)
        with torch.no_grad():
            m.weight.copy_(torch.linspace(-1.5, 0.75, k))
        want = m(torch.from_numpy(x)).detach().numpy()
        net = netdsl.parse(f"input x: 7\nPReLU({k})")
        net.load_state_dict({"prelu1.weight": m.weight.detach().numpy()})
        np.testing.assert_allclose(net.reference(x), want, rtol=1e-6, atol=0)
        if L.available():
            np.testing.assert_allclose(net(x), want, rtol=1e-6, atol=0)


# ---------------------------------------------------------------- fused epilogues

NEW_ACTS = ("relu6", "hardsigmoid", "hardswish", "silu", "gelu", "mish")

# (case id, input, batch, producer with {act} for its act argument): each kernel path of the
# producers that take `act` (GEMM with tails, 1x1, depthwise, direct, FC dot / tiles, the
# transposed conv, the sum, BN)
FUSE_LAYERS = [
    ("conv-gemm", "5x13x13", 2, "Conv(17, 3, pad=1{act})"),
    ("conv-1x1", "16x7x9", 2, "Conv(33, 1{act})"),
    ("conv-depthwise", "8x13x13", 1, "Conv(8, 3, pad=1, groups=8{act})"),
    ("conv-direct", "3x12x28", 1, "Conv(6, 5{act})"),
    ("fc-dot", "37", 3, "FC(19{act})"),
    ("fc-tiles", "37", 11, "FC(19{act})"),
    ("deconv", "5x7x7", 2, "Deconv(6, 4, stride=2, pad=1{act})"),
    ("add", "4x9x9", 2, "[ Conv(4, 3, pad=1) | Conv(4, 1) ] - Add({act})"),
    ("bn", "5x9x9", 2, "BN({act})"),
]


def _nonfinite(shape, seed):
    x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32) * 3
    flat = x[0].reshape(-1)          # sample 0 only: the others stay finite everywhere
    flat[[0, flat.size // 2, flat.size - 1]] = [np.nan, np.inf, -np.inf]
    return x


def _model(src, like=None, level=0):
    m = netdsl.parse(src)
    if like is not None:
        m.load_state_dict(like.state_dict())
    m.run_level = level
    return m


@pytest.mark.skipif(not L.available(), reason="C kernels not built")
@pytest.mark.parametrize("act", NEW_ACTS)
@pytest.mark.parametrize("cid,shape,n,layer", FUSE_LAYERS, ids=[c[0] for c in FUSE_LAYERS])
def test_fused_equals_unfused(cid, shape, n, layer, act):
    """layer(act=a) at -O0 gives exactly layer - A at -O0 on every ISA (the epilogue and the
    standalone kernel run the same code on the same values), NaN and inf included; the -O3
    graph of layer - A has A fused and gives the same values (to rounding: -O3 may also fuse
    the Add into a Conv as its residual)."""
    entry = acts.get(act)
    sep = "" if cid in ("add", "bn") else ", "
    fused_src = f"input x: {shape}\n{layer.format(act=f'{sep}act={act}')}"
    plain = layer.format(act="").replace("Add()", "Add").replace("BN()", "BN")
    op = entry.op
    unfused_src = f"input x: {shape}\n{plain} - {op}"
    dims = tuple(int(v) for v in shape.split("x"))
    x = _nonfinite((n, *dims), seed=len(cid) + len(act))
    for isa in L.supported_isas():
        with L.using_isa(isa):
            m0 = _model(unfused_src)
            want = m0(x)
            got = _model(fused_src, like=m0)(x)
            np.testing.assert_array_equal(got, want, err_msg=f"{cid} {act} {isa}: fused != unfused")
            assert np.isnan(want).any() and np.isfinite(want).any()
            m3 = _model(unfused_src, like=m0, level=3)
            np.testing.assert_allclose(m3(x), want, rtol=1e-5, atol=1e-5, equal_nan=True, err_msg=f"{cid} -O3 {isa}")
    from netdsl.passes import optimize
    g3 = optimize(m0.graph, None, level=3)[0]
    assert op not in {nd_.op for nd_ in g3.nodes()}, f"{op} was not fused at -O3"
    assert act in {nd_.attrs.get("act") for nd_ in g3.nodes()}
    with np.errstate(invalid="ignore", over="ignore"):
        ref = m0.reference(x)
    np.testing.assert_allclose(want, ref, rtol=1e-4, atol=1e-4, equal_nan=True, err_msg=f"{cid} vs reference")


@pytest.mark.parametrize("words, fused", [
    ("ReLU6", "relu6"), ("Clip(0, 6)", "relu6"), ("Clamp(min=0, max=6)", "relu6"), ("Hardtanh(0, 6)", "relu6"),
    ("Clip(0, 5)", None), ("Clip(min=0)", None), ("Hardtanh", None),
    ("HardSigmoid", "hardsigmoid"), ("HardSigmoid(alpha=0.2)", None), ("HardSigmoid(alpha=0.1666666716337204)", "hardsigmoid"), ("HardSwish", "hardswish"),
    ("SiLU", "silu"), ("Swish", "silu"), ("GELU", "gelu"), ("GELU(approximate=tanh)", None), ("Mish", "mish"),
])
def test_what_fuses_at_O3(words, fused):
    """A Conv followed by each form: fused as its `act` exactly when the epilogue has the form's
    parameters built in, else the layer stays (and the values still match the reference)."""
    from netdsl.passes import optimize
    m = netdsl.parse(f"input x: 3x7x7\nConv(4, 3) - {words}")
    g3 = optimize(m.graph, None, level=3)[0]
    conv = [nd_ for nd_ in g3.nodes() if nd_.op == "Conv"][0]
    assert conv.attrs.get("act", "none") == (fused or "none")
    assert len(list(g3.nodes())) == (2 if fused else 3)      # input, conv (, the activation)
    if L.available():
        m.run_level = 3
        x = np.random.default_rng(1).standard_normal((2, 3, 7, 7)).astype(np.float32) * 3
        np.testing.assert_allclose(m(x), m.reference(x), rtol=1e-4, atol=1e-5)


@pytest.mark.skipif(not L.available(), reason="C kernels not built")
@pytest.mark.parametrize("act", NEW_ACTS)
def test_winograd_epilogue(act, isa):
    """The Winograd conv (forced: algo 4) applies each new act in its output transform, with a
    residual too, against the Conv reference."""
    from test_winograd import run_conv, tol
    c, shape, n = 5, (5, 11, 13), 2
    got, ref, fields = run_conv(dict(out_channels=9, kernel=3, pad=1, act=act), shape, n, 4, seed=len(act))
    assert fields["algo"] == 4
    assert np.abs(got - ref).max() <= tol(c, ref)
    r = np.random.default_rng(3).standard_normal((n, 9, 11, 13)).astype(np.float32)
    _, lin, _ = run_conv(dict(out_channels=9, kernel=3, pad=1, act="none"), shape, n, 4, seed=len(act), residual=r)
    got, _, _ = run_conv(dict(out_channels=9, kernel=3, pad=1, act=act), shape, n, 4, seed=len(act), residual=r)
    ref = acts.get(act)(lin)          # y = act(conv + bias + r): the activation after the residual
    assert np.abs(got - ref).max() <= tol(c, ref)
