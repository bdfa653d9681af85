"""netdsl.viz.rf: the exact receptive field (support) of one output position.

Oracle: the numpy reference executor. A pixel is in the support exactly when perturbing it
changes the output value; the networks are linear except MaxPool, and each pixel is pushed
by a large amount (1e6) both ways, so a reached pixel always moves the value (random weights)."""
import numpy as np
import pytest

import netdsl
from netdsl.errors import NetDSLError
from netdsl.runtime.reference import init_weights, run_reference
from netdsl.viz.rf import describe, support

BRANCHY = """
input x: 1x16x16
stem:Conv(4, 3, pad=1)
[ a1:Conv(4, 3, stride=2, pad=2, dilation=2) | a2:AvgPool(2) ] - cat:Concat
[ b1:Conv(8, 3, pad=1, groups=2) | Identity ] - add:Add
p:MaxPool(3, 2, pad=1)
dc:ConvTranspose(4, 3, stride=2, pad=1)
up:Upsample(scale=2, mode=bilinear)
pd:Pad(1, mode=reflect) - cr:Crop(size=12, offset=(1, 3))
[ pd | cr ] - sized:Crop
[ cr | sized ] - Concat
last:Conv(2, 3, pad=(0, 1, 2, 1))
"""
FUSED = """
input x: 1x16x16
[ Identity | r:Conv(2, 3, stride=2, pad=1) ] - fused:Conv(2, 1, stride=2, residual=true)
"""


def _changed(m, layer, at, channel=0):
    """Input pixels whose perturbation changes `layer`'s value at (channel, *at): the oracle."""
    g = m.graph.copy()
    g.outputs = {"y": layer}
    w = init_weights(g, seed=3)
    rng = np.random.default_rng(1)
    c, h, wd = g[g.inputs[0]].shape
    x0 = rng.standard_normal((1, c, h, wd))
    xs = np.repeat(x0, 2 * h * wd + 1, axis=0)
    for k in range(h * wd):
        xs[1 + 2 * k, :, k // wd, k % wd] += 1e6
        xs[2 + 2 * k, :, k // wd, k % wd] -= 1e6
    y = run_reference(g, w, xs)["y"][:, channel, at[0], at[1]]
    moved = np.abs(y[1:] - y[0]) > 1e-9 * (1 + abs(y[0]))
    return moved.reshape(h * wd, 2).any(axis=1).reshape(h, wd)


@pytest.mark.parametrize("layer,at", [("last", (5, 6)), ("last", (0, 11)), ("add", (3, 4)),
                                      ("p", (0, 0)), ("cr", (7, 2)),
                                      ("sized", (3, 3)), ("fused", (2, 3))])
def test_support_equals_perturbation_oracle(layer, at):
    m = netdsl.parse(FUSED if layer == "fused" else BRANCHY)
    counts = support(m, layer, at=at)
    assert counts.shape == (16, 16)
    np.testing.assert_array_equal(counts > 0, _changed(m, layer, at))


def test_three_3x3_see_as_far_as_one_7x7():
    three = netdsl.parse("input x: 1x16x16\nc1:Conv(2, 3) - c2:Conv(2, 3) - c3:Conv(2, 3)")
    one = netdsl.parse("input x: 1x16x16\nc:Conv(2, 7)")
    a, b = support(three, "c3", at=(4, 5)), support(one, "c", at=(4, 5))
    np.testing.assert_array_equal(a > 0, b > 0)
    np.testing.assert_array_equal(a > 0, _changed(three, "c3", (4, 5)))
    ys, xs = np.nonzero(a)
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == (4, 10, 5, 11)
    assert describe(three.graph, "c3", (4, 5), a)["rf"] == (7, 7) == tuple(one.graph["c"].rf)
    # one 7x7: every tap once; three 3x3: per axis the paths are [1 1 1] convolved three times
    assert set(np.unique(b[b > 0])) == {1}
    tri = np.convolve(np.convolve([1, 1, 1], [1, 1, 1]), [1, 1, 1])
    np.testing.assert_array_equal(a[4:11, 5:12], np.outer(tri, tri))
    assert a[7, 8] == a.max() > a[4, 5] == 1


def test_corner_is_clipped_at_the_padding():
    m = netdsl.parse("input x: 1x16x16\nc1:Conv(2, 3, pad=1) - c2:Conv(2, 3, pad=1) - c3:Conv(2, 3, pad=1)")
    counts = support(m, "c3", at=(0, 0))
    np.testing.assert_array_equal(counts > 0, _changed(m, "c3", (0, 0)))
    info = describe(m.graph, "c3", (0, 0), counts)
    assert info["support"] == (4, 4) and info["reached"] == 16 and info["rf"] == (7, 7)


def test_global_layers_see_everything():
    m = netdsl.load("lenet5")
    assert (support(m, "C5") > 0).all() and (support(m, "F6", at=(0, 0)) > 0).all()


def test_bad_layer_and_position():
    m = netdsl.parse(BRANCHY)
    with pytest.raises(NetDSLError) as e:
        support(m, "lsat")
    assert "did you mean" in e.value.render() and "last" in e.value.render()
    with pytest.raises(NetDSLError) as e:
        support(m, "last", at=(12, 0))
    assert "outside last's output map (12x12)" in e.value.render()


def test_cli_rf_draws_the_support(tmp_path, capsys):
    PIL = pytest.importorskip("PIL.Image")
    from netdsl.cli import main
    from netdsl.viz.rf import CENTRE, MIN_SIDE, WINDOW
    net = tmp_path / "b.net"
    net.write_text(BRANCHY)
    out = tmp_path / "rf.png"
    assert main(["rf", str(net), "--layer", "last", "--at", "5,6", "-o", str(out)]) == 0
    said = capsys.readouterr().out
    counts = support(netdsl.parse(BRANCHY), "last", at=(5, 6))
    assert f"{int((counts > 0).sum())} of 256 input pixels" in said
    img = np.asarray(PIL.open(out).convert("RGB")).astype(int)
    zoom = -(-MIN_SIDE // 16)
    top = img.shape[0] - 6 - 16 * zoom
    seen = img[top + zoom // 2::zoom, 6 + zoom // 2::zoom][:16, :16]
    red = seen[..., 0] - seen[..., 1] > 30
    lines = (seen == WINDOW).all(-1) | (seen == CENTRE).all(-1)
    np.testing.assert_array_equal(red[~lines], (counts > 0)[~lines])
    # errors reach the user as messages, not tracebacks
    assert main(["rf", str(net), "--layer", "lats", "-o", str(out)]) == 1
    assert "did you mean 'last'" in capsys.readouterr().err
    assert main(["rf", str(net), "--layer", "last", "--at", "3,12", "-o", str(out)]) == 1
    assert "outside last's output map (12x12)" in capsys.readouterr().err
