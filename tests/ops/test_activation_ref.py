"""Activations against hand values; softmax's invariants and its stability on huge logits."""
import warnings

import numpy as np
import pytest

from netdsl import ops

X = np.array([[-2.0, -0.5, 0.0, 0.5, 3.0]])


@pytest.mark.parametrize("op, kw, expected", [
    pytest.param("ReLU", {}, [0, 0, 0, 0.5, 3], id="relu"),
    pytest.param("LeakyReLU", {}, [-0.02, -0.005, 0, 0.5, 3], id="leaky-default-0.01"),
    pytest.param("LeakyReLU", {"slope": 0.2}, [-0.4, -0.1, 0, 0.5, 3], id="leaky-0.2"),
    pytest.param("Tanh", {}, np.tanh(X[0]), id="tanh"),
    pytest.param("Sigmoid", {}, [1 / (1 + np.e ** 2), 1 / (1 + np.e ** 0.5), 0.5,
                                 1 / (1 + np.e ** -0.5), 1 / (1 + np.e ** -3)], id="sigmoid"),
])
def test_elementwise_by_hand(nd, op, kw, expected):
    nd.close(nd.run(op, X, **kw)[0], expected, atol=1e-12)


def test_elementwise_flags_and_shapes(nd):
    for op in ("ReLU", "LeakyReLU", "Sigmoid", "Tanh"):
        assert {"elementwise", "inplace_ok"} <= ops.get(op).flags
        x = np.random.default_rng(0).standard_normal((2, 3, 5, 7)).astype(np.float32)
        assert nd.run(op, x).dtype == np.float32


def test_sigmoid_extremes_do_not_overflow(nd):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        nd.close(nd.run("Sigmoid", np.array([[-1000.0, 1000.0]]))[0], [0.0, 1.0])


def test_softmax_by_hand(nd):
    nd.close(nd.run("Softmax", np.array([[0.0, np.log(3.0)]]))[0], [0.25, 0.75])


def test_softmax_rows_sum_to_one(nd):
    x = np.random.default_rng(1).standard_normal((4, 10)) * 5
    y = nd.run("SM", x)
    nd.close(y.sum(axis=1), np.ones(4))
    assert (y > 0).all()


def test_softmax_per_pixel_over_channels(nd):
    x = np.random.default_rng(2).standard_normal((2, 5, 3, 4))
    y = nd.run("SoftMax", x)
    nd.close(y.sum(axis=1), np.ones((2, 3, 4)))
    nd.close(y[1, :, 2, 3], nd.run("Softmax", x[1:2, :, 2, 3])[0])


def test_softmax_is_stable_with_large_inputs(nd):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        big = nd.run("Softmax", np.array([[1000.0, 1001.0, 1002.0]]))
        small = nd.run("Softmax", np.array([[0.0, 1.0, 2.0]]))
        nd.close(big, small, atol=1e-15)
        ls = nd.run("LogSoftmax", np.array([[1000.0, 1001.0, 1002.0], [-1e4, 0.0, 1e4]]))
    assert np.isfinite(ls).all()
    nd.close(ls[0], np.log(small[0]), atol=1e-12)
    nd.close(ls[1], [-2e4, -1e4, 0.0], atol=1e-9)


def test_log_softmax_is_log_of_softmax(nd):
    x = np.random.default_rng(3).standard_normal((3, 6, 2, 2))
    nd.close(nd.run("LogSoftmax", x), np.log(nd.run("Softmax", x)), atol=1e-12)


def test_activations_match_torch(nd):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = np.random.default_rng(4).standard_normal((2, 5, 3, 3)) * 4
    t = torch.from_numpy(x)
    nd.close(nd.run("ReLU", x), F.relu(t).numpy())
    nd.close(nd.run("LeakyReLU", x), F.leaky_relu(t, 0.01).numpy())
    nd.close(nd.run("Sigmoid", x), torch.sigmoid(t).numpy(), atol=1e-12)
    nd.close(nd.run("Tanh", x), torch.tanh(t).numpy(), atol=1e-12)
    nd.close(nd.run("Softmax", x), F.softmax(t, dim=1).numpy(), atol=1e-12)
    nd.close(nd.run("LogSoftmax", x), F.log_softmax(t, dim=1).numpy(), atol=1e-12)
