"""Flatten, Reshape, Identity, Dropout: views with shape rules and no data movement."""
import numpy as np
import pytest

from netdsl import ops
from netdsl.ops import OpError


def test_flatten_channel_major(nd):
    x = np.arange(2 * 16 * 4 * 4, dtype=np.float64).reshape(2, 16, 4, 4)
    spec, a, out = nd.prepare("Flatten", [(16, 4, 4)])
    assert out == (256,) and spec.window(a, [(16, 4, 4)]) == (4, 4, 4, 4)
    nd.close(nd.run("Flatten", x), x.reshape(2, 256))


def test_reshape_with_minus_one(nd):
    spec, a, out = nd.prepare("View", [(3136,)], (64, 7, -1))
    assert out == (64, 7, 7) and a["shape"] == (64, 7, 7)
    x = np.arange(2 * 3136, dtype=np.float64).reshape(2, 3136)
    nd.close(nd.run("Reshape", x, (64, 7, 7)), x.reshape(2, 64, 7, 7))
    spec, a, out = nd.prepare("Reshape", [(8, 4, 4)], (8, 16, 1))
    assert spec.window(a, [(8, 4, 4)]) == (4, 4, 4, 4)
    spec, a, out = nd.prepare("Reshape", [(8, 4, 4)], (-1, 4, 4))     # keeps the pixel grid
    assert out == (8, 4, 4) and spec.window(a, [(8, 4, 4)]) == (1, 1, 1, 1)


@pytest.mark.parametrize("shape, target, text", [
    pytest.param((8, 4, 4), (64, 3), "element count", id="count-differs"),
    pytest.param((8, 4, 4), (-1, 5), "not a multiple", id="minus-one-does-not-divide"),
    pytest.param((8, 4, 4), (-1, -1), "only once", id="two-minus-ones"),
    pytest.param((8, 4, 4), (0, 128), "positive", id="zero-size"),
])
def test_reshape_errors(nd, shape, target, text):
    with pytest.raises(OpError) as e:
        nd.prepare("Reshape", [shape], target)
    assert text in e.value.message


def test_identity_and_dropout_pass_through(nd):
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 4))
    nd.close(nd.run("Id", x), x)
    nd.close(nd.run("Dropout", x, 0.3), x)
    assert nd.prepare("Dropout", [(3, 4, 4)])[1]["p"] == 0.5
    with pytest.raises(OpError) as e:
        nd.prepare("Dropout", [(3, 4, 4)], 1.5)
    assert "[0, 1)" in e.value.message


def test_views_are_no_ops():
    for name in ("Flatten", "Reshape", "Identity", "Dropout"):
        assert "no_op" in ops.get(name).flags and ops.get(name).arity == 1
