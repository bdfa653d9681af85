"""PReLU (netdsl/ops/prelu.py, csrc/kernels/prelu.c): the reference against hand-computed
values and against torch.nn.PReLU (skipped without torch), the C kernel on every ISA with
NaN, ±inf and -0.0 in the input, and the op through the language, the summary, the runtime
at -O0 and -O3 and a compiled bundle. (Every sample also runs in test_op_kernels.py.)

Tolerance: y = a·x is one float32 multiply, within half an ulp (6e-8 relative) of the
float64 product of the same float32 numbers; x > 0 is a copy, exact.
"""
from __future__ import annotations

import numpy as np
import pytest

import netdsl
from netdsl.compiler import compile_model
from netdsl.errors import NetDSLError
from netdsl.runtime import lib as L

from conftest import check, kcall, kernel_plan

needs_kernels = pytest.mark.skipif(not L.available(), reason="C kernels not built")


# ---------------------------------------------------------------- reference

def test_reference_by_hand(nd):
    x = np.array([[[[-2.0, -0.5, 0.0, 3.0]], [[-4.0, 1.0, -1.0, 0.5]]]])        # (1, 2, 1, 4)
    w = {"weight": np.array([0.25, -1.0])}
    want = np.array([[[[-0.5, -0.125, 0.0, 3.0]], [[4.0, 1.0, 1.0, 0.5]]]])
    nd.close(nd.run("PReLU", x, weights=w), want)
    shared = nd.run("PReLU", x, 1, weights={"weight": np.array([0.5])})
    nd.close(shared, np.array([[[[-1.0, -0.25, 0.0, 3.0]], [[-2.0, 1.0, -0.5, 0.5]]]]))


def test_reference_on_vectors_and_non_finite(nd):
    x = np.array([[np.nan, -np.inf, np.inf, -3.0]])                              # (1, 4): 4 channels
    y = nd.run("PReLU", x, weights={"weight": np.array([0.25, 0.5, 2.0, -1.0])})
    assert np.isnan(y[0, 0]) and y[0, 1] == -np.inf and y[0, 2] == np.inf and y[0, 3] == 3.0


def test_init_and_params_follow_pytorch(nd):
    spec, a, out = nd.prepare("PReLU", [(8, 5, 5)])
    assert spec.params(a, [(8, 5, 5)]) == {"weight": (8,)} and out == (8, 5, 5)
    np.testing.assert_array_equal(spec.init(a, [(8, 5, 5)], None)["weight"], np.full(8, 0.25, np.float32))
    assert nd.n_params("PReLU", [(8, 5, 5)], 1) == 1


def test_reference_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 5, 4, 6)).astype(np.float32)
    for k in (5, 1):
        m = torch.nn.PReLU(num_parameters=k)
        with torch.no_grad():
            m.weight.copy_(torch.from_numpy(rng.standard_normal(k).astype(np.float32)))
        want = m(torch.from_numpy(x)).detach().numpy()
        net = netdsl.parse(f"input x: 5x4x6\nPReLU({k})")
        net.load_state_dict({"prelu1.weight": m.weight.detach().numpy()})
        np.testing.assert_allclose(net.reference(x), want, rtol=1e-6, atol=0)
        if L.available():
            np.testing.assert_allclose(net(x), want, rtol=1e-6, atol=0)


# ---------------------------------------------------------------- the C kernel

def _special(x):
    flat = x.reshape(-1)
    flat[:5] = [np.nan, np.inf, -np.inf, -0.0, 0.0]
    return x


@needs_kernels
@pytest.mark.parametrize("inplace", [False, True], ids=["out", "inplace"])
@pytest.mark.parametrize("shape,k", [((3, 5, 7, 9), 5), ((1, 17, 13, 3), 1), ((3, 13), 13), ((1, 1, 1, 5), 1),
                                     ((2, 3, 40, 41), 3), ((2, 8, 64, 65), 8)],
                         ids=["n3-c5-h7-w9", "n1-c17-shared", "n3-f13", "n1-c1-h1-w5", "n2-c3-h40-w41",
                              "n2-c8-h64-w65-threads"])
def test_kernel(shape, k, inplace, isa):
    rng = np.random.default_rng(shape[1])
    x = _special(rng.standard_normal(shape).astype(np.float32) * 3)
    w = rng.standard_normal(k).astype(np.float32)            # negative slopes too
    spec, a, out_shape, kc = kernel_plan("PReLU", {"num_parameters": k}, [shape[1:]], shape[0])
    want = spec.reference(a, [x.astype(np.float64)], {"weight": w.astype(np.float64)})
    got = kcall(kc, [x], shape, w, None, out=x if inplace else None)
    check(got, want, f"{shape}-k{k}", rtol=6e-8)
    assert np.isnan(got.reshape(-1)[0]), "NaN must stay NaN"
    assert np.signbit(got.reshape(-1)[3]) == np.signbit(want.reshape(-1)[3]), "a·(-0) is a signed zero"


@needs_kernels
def test_kernel_refuses_a_slope_count_that_is_neither_c_nor_1():
    _, _, _, kc = kernel_plan("PReLU", {}, [(4, 3, 3)], 1)
    kc.fields["nw"] = 3
    x = np.zeros((1, 4, 3, 3), np.float32)
    with pytest.raises(AssertionError, match="status 1"):
        kcall(kc, [x], x.shape, np.ones(3, np.float32))


# ---------------------------------------------------------------- the op in the language and the runtime

NET = """input x: 3x11x9
Conv(8, 3) - PReLU - Conv(8, 3, pad=1) - BN - PReLU(1) - GAP - Flatten - FC(10) - PReLU
"""


def _trained(m, seed=1):
    rng = np.random.default_rng(seed)
    d = {}
    for k, v in m.state_dict().items():
        d[k] = (rng.uniform(0.5, 2.0, v.shape) if k.endswith("running_var")
                else v + 0.3 * rng.standard_normal(v.shape)).astype(np.float32)
    m.load_state_dict(d)
    return m


def test_language_summary_and_state_dict():
    m = netdsl.parse(NET, "p.net")
    sd = m.state_dict()
    assert sd["prelu1.weight"].shape == (8,) and sd["prelu2.weight"].shape == (1,)
    assert sd["prelu3.weight"].shape == (10,) and np.all(sd["prelu1.weight"] == 0.25)
    # 3·3·3·8 + 8 + 8 | 3·3·8·8 + 8 + 2·8 | 1 | 8·10 + 10 + 10
    assert m.total_params == (216 + 8 + 8) + (576 + 8 + 16) + 1 + (80 + 10 + 10)
    assert "prelu1" in m.summary() and "PReLU" in m.summary()


def test_a_wrong_slope_count_is_a_located_error():
    with pytest.raises(NetDSLError) as e:
        netdsl.parse("input x: 3x8x8\nConv(8, 3) - PReLU(3)", "bad.net")
    text = e.value.render()
    assert "bad.net:2:" in text and "PReLU at prelu1: 3 slopes (num_parameters=3) but the input has 8 channels" in text
    assert "^" in text and "PReLU(1)" in text


@pytest.mark.parametrize("arg,msg", [("0", "'num_parameters' must be channels (one slope per channel) or 1"),
                                     ("slopes", "'num_parameters' must be channels"),
                                     ("num_parameters=channels", None)])
def test_slope_argument(arg, msg):
    src = f"input x: 4x5x5\nPReLU({arg})"
    if msg is None:
        assert netdsl.parse(src).state_dict()["prelu1.weight"].shape == (4,)
        return
    with pytest.raises(NetDSLError) as e:
        netdsl.parse(src, "bad.net")
    text = e.value.render()
    assert msg in text and "bad.net:2:7" in text and "hint:" in text


@needs_kernels
@pytest.mark.parametrize("level", [0, 3])
def test_runtime_matches_the_reference(level):
    m = _trained(netdsl.parse(NET, "p.net"))
    m.run_level = level
    x = np.random.default_rng(2).standard_normal((3, 3, 11, 9)).astype(np.float32)
    x[1, 0, 4, 4] = np.nan
    want = m.reference(x)
    got = m(x)
    assert np.isnan(got[1]).all() and not np.isnan(got[[0, 2]]).any()   # NaN stays in its sample
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)          # float32 convs: K <= 72 terms


@needs_kernels
def test_bundle_round_trip(tmp_path):
    m = _trained(netdsl.parse(NET, "p.net"))
    path = str(tmp_path / "p.netc")
    compile_model(m, path, 3)                   # loads the bundle back and checks it first
    m2 = netdsl.load(path)
    x = np.random.default_rng(3).standard_normal((2, 3, 11, 9)).astype(np.float32)
    assert np.array_equal(m2(x), m(x))          # m runs the same -O3 graph and weights
    np.testing.assert_allclose(m2(x), m.reference(x), rtol=1e-5, atol=1e-5)
