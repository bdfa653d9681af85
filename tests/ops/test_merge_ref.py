"""Concat, Add, Mul: shape rules, error messages that show every shape, values."""
import numpy as np
import pytest

from netdsl import ops
from netdsl.ops import OpError


def test_concat_inception_channels(nd):
    shapes = [(64, 28, 28), (128, 28, 28), (32, 28, 28), (32, 28, 28)]
    spec, a, out = nd.prepare("Concat", shapes)
    assert out == (256, 28, 28)
    assert spec.explain(a, shapes, out) == ["64 + 128 + 32 + 32 = 256 channels"]
    assert "merge" in spec.flags and spec.arity is None


def test_concat_values_keep_slot_order(nd):
    a, b = np.zeros((2, 1, 3, 3)), np.ones((2, 2, 3, 3))
    y = nd.run("Cat", [a, b])
    nd.close(y[:, 0], np.zeros((2, 3, 3)))
    nd.close(y[:, 1:], np.ones((2, 2, 3, 3)))
    nd.close(nd.run("Concat", [b, a])[:, 2], np.zeros((2, 3, 3)))
    nd.close(nd.run("Concat", [np.ones((1, 3)), np.zeros((1, 2))]), [[1, 1, 1, 0, 0]])


def test_concat_size_mismatch_message_shows_both_shapes(nd):
    with pytest.raises(OpError) as e:
        nd.prepare("Concat", [(64, 28, 28), (32, 14, 14)])
    assert "Concat inputs differ in size: 28x28 vs 14x14" in e.value.message
    assert "64x28x28" in e.value.message and "32x14x14" in e.value.message
    assert "Crop" in e.value.hint


def test_concat_lists_every_input(nd):
    with pytest.raises(OpError) as e:
        nd.prepare("Concat", [(8, 28, 28), (8, 28, 28), (8, 27, 28)])
    assert "28x28 vs 28x28 vs 27x28" in e.value.message
    assert "#1 8x28x28, #2 8x28x28, #3 8x27x28" in e.value.message


def test_concat_map_with_vector(nd):
    with pytest.raises(OpError) as e:
        nd.prepare("Concat", [(8, 2, 2), (32,)])
    assert "8x2x2" in e.value.message and "32" in e.value.message


def test_add_residual(nd):
    spec, a, out = nd.prepare("Residual", [(64, 56, 56), (64, 56, 56)])
    assert out == (64, 56, 56) and {"merge", "elementwise"} <= spec.flags
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal((2, 3, 4, 4)) for _ in range(3)]
    nd.close(nd.run("Sum", xs), xs[0] + xs[1] + xs[2])


def test_add_shape_mismatch_shows_both_shapes(nd):
    with pytest.raises(OpError) as e:
        nd.prepare("Add", [(64, 56, 56), (128, 28, 28)])
    assert "Add inputs differ in shape: 64x56x56 vs 128x28x28" in e.value.message
    assert "1x1 Conv" in e.value.hint


def test_merge_needs_two_inputs(nd):
    with pytest.raises(OpError):
        nd.prepare("Add", [(4, 2, 2)])


def test_mul_elementwise_and_squeeze_excite(nd):
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((2, 3, 4, 5)), rng.standard_normal((2, 3, 4, 5))
    nd.close(nd.run("Mul", [x, y]), x * y)
    s = rng.random((2, 3, 1, 1))
    assert nd.prepare("Mul", [(3, 4, 5), (3, 1, 1)])[2] == (3, 4, 5)
    nd.close(nd.run("Mul", [x, s]), x * s)
    nd.close(nd.run("Mul", [s, x]), x * s)
    assert nd.prepare("Mul", [(3,), (3, 4, 5)])[2] == (3, 4, 5)
    nd.close(nd.run("Mul", [x, s.reshape(2, 3)]), x * s)


def test_mul_mismatch(nd):
    with pytest.raises(OpError) as e:
        nd.prepare("Mul", [(3, 4, 5), (4, 1, 1)])
    assert "3x4x5 vs 4x1x1" in e.value.message


def test_merges_are_registered_with_arity_none():
    for name in ("Concat", "Add", "Mul"):
        assert ops.get(name).arity is None
