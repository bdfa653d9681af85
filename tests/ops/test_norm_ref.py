"""BatchNorm (inference formula) and LRN (PyTorch LocalResponseNorm) by hand."""
import numpy as np
import pytest

from netdsl.ops import OpError

BN_W = {"weight": np.array([2.0, 1.0]), "bias": np.array([0.0, 3.0]),
        "running_mean": np.array([1.0, -1.0]), "running_var": np.array([4.0, 0.25])}


def test_batchnorm_formula_by_hand_on_vectors(nd):
    x = np.array([[5.0, 0.0], [1.0, -1.5]])
    # ch0: (x − 1)/2·2 + 0 ; ch1: (x + 1)/0.5·1 + 3   (eps tiny)
    y = nd.run("BN", x, eps=1e-12, weights=BN_W)
    nd.close(y, [[4.0, 5.0], [0.0, 2.0]], atol=1e-9)


def test_batchnorm_on_feature_maps_uses_eps(nd):
    x = np.full((1, 2, 2, 3), 3.0)
    y = nd.run("BatchNorm2d", x, weights=BN_W)
    nd.close(y[0, 0], np.full((2, 3), (3 - 1) / np.sqrt(4 + 1e-5) * 2))
    nd.close(y[0, 1], np.full((2, 3), (3 + 1) / np.sqrt(0.25 + 1e-5) + 3))


def test_batchnorm_params_buffers_and_init(nd):
    spec, a, out = nd.prepare("BatchNorm", [(64, 56, 56)])
    shapes = [(64, 56, 56)]
    assert out == (64, 56, 56)
    assert spec.params(a, shapes) == {"weight": (64,), "bias": (64,)}
    assert spec.buffers(a, shapes) == {"running_mean": (64,), "running_var": (64,)}
    init = spec.init(a, shapes, np.random.default_rng(0))
    assert (init["weight"] == 1).all() and (init["bias"] == 0).all()
    assert (init["running_mean"] == 0).all() and (init["running_var"] == 1).all()
    x = np.random.default_rng(1).standard_normal((2, 64, 3, 3)).astype(np.float32)
    nd.close(nd.run("BN", x), x / np.sqrt(1 + 1e-5), atol=1e-6)     # fresh BN is (almost) identity


def test_batchnorm_rejects_bad_eps_and_rank(nd):
    with pytest.raises(OpError):
        nd.prepare("BN", [(4, 3, 3)], eps=0)
    with pytest.raises(OpError):
        nd.prepare("BN", [(4, 3)])


def test_lrn_by_hand_size2(nd):
    # size 2: channels c−1..c; alpha/size = 1; y = x / (1 + Σ x²)
    x = np.array([1.0, 2.0, 3.0]).reshape(1, 3, 1, 1)
    y = nd.run("LRN", x, size=2, alpha=2.0, beta=1.0, k=1.0)
    nd.close(y.ravel(), [1 / 2, 2 / 6, 3 / 14])


def test_lrn_by_hand_size3_sqrt(nd):
    # size 3: channels c−1..c+1; alpha/size = 1; beta 0.5
    x = np.array([1.0, 2.0, 3.0]).reshape(1, 3, 1, 1)
    y = nd.run("LocalResponseNorm", x, size=3, alpha=3.0, beta=0.5, k=1.0)
    nd.close(y.ravel(), [1 / np.sqrt(6), 2 / np.sqrt(15), 3 / np.sqrt(14)])


def test_lrn_defaults_alexnet(nd):
    spec, a, out = nd.prepare("LRN", [(96, 55, 55)])
    assert (a["size"], a["alpha"], a["beta"], a["k"]) == (5, 1e-4, 0.75, 1.0)
    x = np.full((1, 7, 1, 1), 10.0)
    # middle channel sees 5 channels: 1 + 1e-4/5·500 = 1.01; edge channel 0 sees 3: 1.006
    y = nd.run("LRN", x).ravel()
    nd.close([y[3], y[0]], [10 / 1.01 ** 0.75, 10 / 1.006 ** 0.75], atol=1e-12)


def test_norms_match_torch(nd):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 7, 4, 5))
    ref = torch.nn.functional.local_response_norm(torch.from_numpy(x), 5, 1e-2, 0.75, 2.0)
    nd.close(nd.run("LRN", x, alpha=1e-2, k=2.0), ref.numpy(), atol=1e-12)
    w = {"weight": rng.random(7), "bias": rng.random(7), "running_mean": rng.random(7),
         "running_var": rng.random(7) + 0.5}
    t = {k: torch.from_numpy(v) for k, v in w.items()}
    ref = torch.nn.functional.batch_norm(torch.from_numpy(x), t["running_mean"], t["running_var"],
                                         t["weight"], t["bias"], False, 0.1, 1e-5)
    nd.close(nd.run("BN", x, weights=w), ref.numpy(), atol=1e-12)
