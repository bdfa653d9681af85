"""Conv and Local (netdsl/ops/conv.py) against the lectures' worked examples,
a naive loop over output pixels, and PyTorch when installed."""
import numpy as np
import pytest
from hypothesis import assume, given, settings, strategies as st

from netdsl.ops import OpError


def test_lecture_binary_5x5_with_x_kernel(nd, as_nchw):
    x = as_nchw([[1, 1, 1, 0, 0],
                 [0, 1, 1, 1, 0],
                 [0, 0, 1, 1, 1],
                 [0, 0, 1, 1, 0],
                 [0, 1, 1, 0, 0]])
    w = {"weight": np.array([[1.0, 0, 1], [0, 1, 0], [1, 0, 1]])[None, None]}
    y = nd.run("Conv", x, 1, 3, bias=False, weights=w)
    nd.close(y[0, 0], [[4, 3, 4], [2, 4, 3], [2, 3, 4]])


def test_lecture_5x5_ones_diagonal_kernel(nd, as_nchw):
    x = as_nchw(np.arange(1, 26).reshape(5, 5))
    w = {"weight": np.array([[1.0, 0], [0, 1]])[None, None], "bias": np.zeros(1)}
    y = nd.run("Conv", x, 1, 2, weights=w)
    nd.close(y[0, 0], [[8, 10, 12, 14], [18, 20, 22, 24], [28, 30, 32, 34], [38, 40, 42, 44]])


def test_lecture_32x32x3_ten_5x5_filters_pad2(nd):
    spec, a, out = nd.prepare("Conv", [(3, 32, 32)], 10, 5, stride=1, pad=2)
    assert out == (10, 32, 32)
    assert nd.n_params("Conv", [(3, 32, 32)], 10, 5, pad=2) == 760       # (5·5·3 + 1)·10
    assert spec.explain(a, [(3, 32, 32)], out) == [
        "H: (32 + 2·2 − 5)/1 + 1 = 32", "params: (5·5·3 + 1)·10 = 760  (76 per filter)"]


@pytest.mark.parametrize("shape, args, kw, out", [
    pytest.param((3, 7, 7), (1, 3), {}, (1, 5, 5), id="7x7-k3-s1"),
    pytest.param((3, 7, 7), (1, 3), {"stride": 2}, (1, 3, 3), id="7x7-k3-s2"),
    pytest.param((3, 7, 7), (1, 3), {"pad": 1}, (1, 7, 7), id="7x7-k3-p1-keeps-size"),
    pytest.param((3, 227, 227), (96, 11), {"stride": 4}, (96, 55, 55), id="alexnet-conv1"),
    pytest.param((3, 224, 224), (64, 7), {"stride": 2, "pad": 3}, (64, 112, 112), id="resnet-stem"),
    pytest.param((1, 13, 17), (2, 3), {"stride": 2, "pad": "same"}, (2, 7, 9), id="same-s2-odd"),
    pytest.param((1, 7, 7), (1, 3), {"dilation": 2}, (1, 3, 3), id="dilation2-keff5"),
    pytest.param((4, 9, 6), (2, (3, 1)), {"stride": (2, 1)}, (2, 4, 6), id="rect-k3x1-s2x1"),
])
def test_conv_output_shape(nd, shape, args, kw, out):
    assert nd.prepare("Conv", [shape], *args, **kw)[2] == out


def test_conv_128_to_64_3x3_no_bias_params(nd):
    assert nd.n_params("Conv", [(128, 28, 28)], 64, 3, pad=1, bias=False) == 73_728


def test_conv_macs(nd):
    spec, a, out = nd.prepare("Conv", [(3, 32, 32)], 10, 5, pad=2)
    assert spec.macs(a, [(3, 32, 32)], out) == 10 * 32 * 32 * 5 * 5 * 3     # 768,000
    spec, a, out = nd.prepare("Conv", [(32, 16, 16)], 32, 3, pad=1, groups=32)
    assert spec.macs(a, [(32, 16, 16)], out) == 32 * 16 * 16 * 9           # depthwise


def test_dilation_window_and_values(nd):
    spec, a, out = nd.prepare("Conv", [(1, 7, 7)], 1, 3, dilation=2)
    assert spec.window(a, [(1, 7, 7)]) == (5, 5, 1, 1)
    x = np.random.default_rng(0).standard_normal((1, 1, 7, 7))
    w = {"weight": np.zeros((1, 1, 3, 3)), "bias": np.zeros(1)}
    w["weight"][0, 0, 2, 2] = 1.0           # the last tap reads 4 pixels down and right
    nd.close(nd.run("Conv", x, 1, 3, dilation=2, weights=w)[0, 0], x[0, 0, 4:, 4:])


def test_depthwise_equals_per_channel_convs(nd):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 4, 6, 5))
    w = {"weight": rng.standard_normal((4, 1, 3, 3)), "bias": rng.standard_normal(4)}
    assert nd.n_params("Conv", [(4, 6, 5)], 4, 3, groups=4) == 4 * 9 + 4
    y = nd.run("Conv", x, 4, 3, groups=4, weights=w)
    for c in range(4):
        yc = nd.run("Conv", x[:, c:c + 1], 1, 3,
                    weights={"weight": w["weight"][c:c + 1], "bias": w["bias"][c:c + 1]})
        nd.close(y[:, c:c + 1], yc)


def test_groups_must_divide_channels(nd):
    with pytest.raises(OpError) as e:
        nd.prepare("Conv", [(6, 8, 8)], 8, 3, groups=4)
    assert e.value.attr == "groups" and e.value.hint


def test_conv_shrinks_to_zero(nd):
    with pytest.raises(OpError) as e:
        nd.prepare("Conv", [(3, 3, 3)], 8, 5)
    assert "shrinks to zero" in e.value.message and "(3 − 5)/1 + 1" in e.value.message
    assert "pad=same" in e.value.hint


def test_conv_unknown_argument_did_you_mean(nd):
    with pytest.raises(OpError) as e:
        nd.prepare("Conv", [(3, 8, 8)], 8, 3, strides=2)
    assert "did you mean 'stride'?" in e.value.hint


def test_fc_equals_conv_covering_the_whole_input(nd):
    """FC 4x4x16 -> 10 has 2,560 weights; so does Conv(10, 4) on 16x4x4 — and they compute the same."""
    assert nd.n_params("FC", [(16, 4, 4)], 10, bias=False) == 2_560
    assert nd.n_params("Conv", [(16, 4, 4)], 10, 4, bias=False) == 2_560
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 16, 4, 4))
    wconv = rng.standard_normal((10, 16, 4, 4))
    yc = nd.run("Conv", x, 10, 4, bias=False, weights={"weight": wconv})
    yf = nd.run("FC", x, 10, bias=False, weights={"weight": wconv.reshape(10, -1)})
    nd.close(yc.reshape(3, 10), yf, atol=1e-12)


def test_local_vs_conv_parameter_count(nd):
    """Same layer (3x32x32, ten 5x5 filters): unshared weights cost conv count × OH·OW."""
    conv = nd.n_params("Conv", [(3, 32, 32)], 10, 5)
    local = nd.n_params("Local", [(3, 32, 32)], 10, 5)
    assert conv == 760
    assert local == conv * 28 * 28 == 595_840
    spec, a, out = nd.prepare("LCL", [(3, 32, 32)], 10, 5)
    assert "595,840" in spec.explain(a, [(3, 32, 32)], out)[-1]


def test_local_with_shared_weights_equals_conv(nd):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 6, 7))
    wc = rng.standard_normal((4, 3, 3, 3))
    yc = nd.run("Conv", x, 4, 3, bias=False, weights={"weight": wc})
    wl = np.broadcast_to(wc.reshape(1, 4, 27), (4 * 5, 4, 27))
    nd.close(nd.run("Local", x, 4, 3, bias=False, weights={"weight": wl}), yc, atol=1e-12)


def naive_conv(x, wt, b, stride, pads, dil, groups):
    n, c, h, w = x.shape
    oc, cg, kh, kw = wt.shape
    t, l, bo, r = pads
    xp = np.pad(x, ((0, 0), (0, 0), (t, bo), (l, r)))
    oh = (h + t + bo - (kh - 1) * dil[0] - 1) // stride[0] + 1
    ow = (w + l + r - (kw - 1) * dil[1] - 1) // stride[1] + 1
    y = np.zeros((n, oc, oh, ow))
    og = oc // groups
    for o in range(oc):
        g = o // og
        for i in range(oh):
            for j in range(ow):
                acc = 0.0
                for ci in range(cg):
                    for u in range(kh):
                        for v in range(kw):
                            acc = acc + wt[o, ci, u, v] * xp[:, g * cg + ci, i * stride[0] + u * dil[0],
                                                             j * stride[1] + v * dil[1]]
                y[:, o, i, j] = acc + (b[o] if b is not None else 0)
    return y


@settings(max_examples=40, deadline=None)
@given(h=st.integers(3, 9), w=st.integers(3, 9), groups=st.sampled_from([1, 2]),
       k=st.integers(1, 3), s=st.integers(1, 2), p=st.integers(0, 2), d=st.integers(1, 2),
       bias=st.booleans(), seed=st.integers(0, 99))
def test_conv_matches_naive_loop(nd, h, w, groups, k, s, p, d, bias, seed):
    assume(min(h, w) + 2 * p >= (k - 1) * d + 1)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, 4, h, w))
    wt = {"weight": rng.standard_normal((2 * groups, 4 // groups, k, k))}
    if bias:
        wt["bias"] = rng.standard_normal(2 * groups)
    y = nd.run("Conv", x, 2 * groups, k, stride=s, pad=p, dilation=d, groups=groups, bias=bias, weights=wt)
    nd.close(y, naive_conv(x, wt["weight"], wt.get("bias"), (s, s), (p, p, p, p), (d, d), groups), atol=1e-10)


def test_conv_matches_torch(nd):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 6, 13, 17))
    w = {"weight": rng.standard_normal((4, 3, 3, 3)), "bias": rng.standard_normal(4)}
    y = nd.run("Conv", x, 4, 3, stride=2, pad=1, dilation=2, groups=2, weights=w)
    ref = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(w["weight"]),
                                     torch.from_numpy(w["bias"]), stride=2, padding=1, dilation=2, groups=2)
    nd.close(y, ref.numpy(), atol=1e-10)
