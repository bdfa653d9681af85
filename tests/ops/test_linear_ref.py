"""FC: parameter arithmetic of the lectures, auto-flatten order, hand values, PyTorch."""
import numpy as np
import pytest

from netdsl.ops import OpError


def test_fc_4x4x16_to_10_params(nd):
    assert nd.n_params("FC", [(16, 4, 4)], 10, bias=False) == 2_560
    assert nd.n_params("Dense", [(16, 4, 4)], 10) == 2_570
    spec, a, out = nd.prepare("Linear", [(16, 4, 4)], 10)
    assert out == (10,) and a["in_features"] == 256
    assert spec.params(a, [(16, 4, 4)]) == {"weight": (10, 256), "bias": (10,)}
    assert spec.explain(a, [(16, 4, 4)], out) == ["flatten 16x4x4 = 256 inputs", "(256 + 1)·10 = 2,570 params"]


def test_fc_stretches_32x32x3_to_3072(nd):
    spec, a, out = nd.prepare("FullyConnected", [(3, 32, 32)], 10)
    assert a["in_features"] == 3072 and spec.macs(a, [(3, 32, 32)], out) == 30_720
    assert spec.window(a, [(3, 32, 32)]) == (32, 32, 32, 32)
    spec, a, out = nd.prepare("FC", [(4096,)], 1000, bias=False)
    assert spec.window(a, [(4096,)]) == (1, 1, 1, 1)
    assert spec.explain(a, [(4096,)], out) == ["4096·1000 = 4,096,000 params (no bias)"]


def test_fc_by_hand(nd):
    w = {"weight": np.array([[1.0, 1.0], [2.0, -1.0]]), "bias": np.array([0.5, -3.0])}
    y = nd.run("FC", np.array([[1.0, 2.0]]), 2, weights=w)
    nd.close(y, [[3.5, -3.0]])
    nd.close(nd.run("FC", np.array([[1.0, 2.0]]), 2, act="relu", weights=w), [[3.5, 0.0]])


def test_fc_flattens_channel_major(nd):
    x = np.arange(2 * 3 * 2 * 2, dtype=np.float64).reshape(2, 3, 2, 2)
    w = {"weight": np.eye(12)}
    nd.close(nd.run("FC", x, 12, bias=False, weights=w), x.reshape(2, 12))


def test_fc_needs_out_features(nd):
    with pytest.raises(OpError) as e:
        nd.prepare("FC", [(10,)])
    assert "out_features" in e.value.message and "FC(10)" in e.value.hint


def test_fc_float32(nd):
    x = np.random.default_rng(0).standard_normal((2, 8, 3, 3)).astype(np.float32)
    assert nd.run("FC", x, 5).dtype == np.float32


def test_fc_matches_torch(nd):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 4, 5, 5))
    w = {"weight": rng.standard_normal((7, 100)), "bias": rng.standard_normal(7)}
    ref = torch.nn.functional.linear(torch.from_numpy(x).flatten(1), torch.from_numpy(w["weight"]),
                                     torch.from_numpy(w["bias"]))
    nd.close(nd.run("FC", x, 7, weights=w), ref.numpy(), atol=1e-10)
