"""ConvTranspose: the output-size formula, hand-computed scatters, and the
adjoint identity <deconv(x), y> = <x, conv(y)> with Conv's reference as oracle."""
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import assume, given, settings, strategies as st

from netdsl.ops import OpError


@pytest.mark.parametrize("hw, args, kw, out_hw", [
    # (H − 1)·s − 2p + d·(k − 1) + output_padding + 1
    pytest.param(7, (4,), {"stride": 2, "pad": 1}, 14, id="k4s2p1-doubles"),
    pytest.param(7, (2,), {"stride": 2}, 14, id="k2s2-unet-upconv"),
    pytest.param(7, (3,), {"stride": 2, "pad": 1, "output_padding": 1}, 14, id="k3s2p1-op1"),
    pytest.param(7, (3,), {"stride": 2, "pad": 1}, 13, id="k3s2p1"),
    pytest.param(7, (64,), {"stride": 32, "pad": 16}, 224, id="fcn32s"),
    pytest.param(5, (3,), {}, 7, id="k3s1-grows-by-2"),
    pytest.param(4, (3,), {"dilation": 2}, 8, id="dilation2"),
])
def test_deconv_output_size_formula(nd, hw, args, kw, out_hw):
    assert nd.prepare("Deconv", [(8, hw, hw)], 4, *args, **kw)[2] == (4, out_hw, out_hw)


def test_deconv_params_are_pytorch_layout(nd):
    spec, a, out = nd.prepare("ConvTranspose2d", [(64, 7, 7)], 32, 4, stride=2, pad=1, groups=2)
    assert spec.params(a, [(64, 7, 7)]) == {"weight": (64, 16, 4, 4), "bias": (32,)}
    assert nd.n_params("UpConv", [(64, 7, 7)], 32, 4, stride=2, pad=1, groups=2) == 64 * 16 * 16 + 32
    assert spec.macs(a, [(64, 7, 7)], out) == 64 * 7 * 7 * 16 * 4 * 4
    assert spec.explain(a, [(64, 7, 7)], out) == [
        "H: (7 − 1)·2 − 2·1 + 1·(4 − 1) + 0 + 1 = 14", "params: 64·16·4·4 + 32 = 16,416"]


def test_deconv_window_in_input_units(nd):
    spec, a, _ = nd.prepare("Deconv", [(8, 7, 7)], 4, 4, stride=2, pad=1)
    assert spec.window(a, [(8, 7, 7)]) == (2, 2, Fraction(1, 2), Fraction(1, 2))
    spec, a, _ = nd.prepare("Deconv", [(8, 7, 7)], 4, 3)
    assert spec.window(a, [(8, 7, 7)]) == (3, 3, 1, 1)


def test_deconv_stride2_ones_kernel_repeats_pixels(nd, as_nchw):
    w = {"weight": np.ones((1, 1, 2, 2)), "bias": np.zeros(1)}
    y = nd.run("Deconv", as_nchw([[1, 2], [3, 4]]), 1, 2, stride=2, weights=w)
    nd.close(y[0, 0], [[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]])


def test_deconv_stride1_overlapping_scatter_by_hand(nd, as_nchw):
    w = {"weight": np.ones((1, 1, 2, 2)), "bias": np.array([0.5])}
    y = nd.run("Deconv", as_nchw([[1, 2], [3, 4]]), 1, 2, weights=w)
    nd.close(y[0, 0], np.array([[1, 3, 2], [4, 10, 6], [3, 7, 4]]) + 0.5)
    # pad=1 crops one pixel from every border; output_padding adds a zero(+bias) row/column
    y = nd.run("Deconv", as_nchw([[1, 2], [3, 4]]), 1, 2, pad=(1, 1, 0, 0), weights=w)
    nd.close(y[0, 0], np.array([[10, 6], [7, 4]]) + 0.5)


def test_deconv_output_padding_adds_bottom_right(nd, as_nchw):
    w = {"weight": np.ones((1, 1, 1, 1)), "bias": np.zeros(1)}
    y = nd.run("Deconv", as_nchw([[1, 2], [3, 4]]), 1, 1, stride=2, output_padding=1, weights=w)
    nd.close(y[0, 0], [[1, 0, 2, 0], [0, 0, 0, 0], [3, 0, 4, 0], [0, 0, 0, 0]])


@settings(max_examples=80, deadline=None)
@given(h=st.integers(1, 6), w=st.integers(1, 6), k=st.integers(1, 4), s=st.integers(1, 3),
       p=st.integers(0, 2), d=st.integers(1, 2), groups=st.sampled_from([1, 2]),
       op=st.integers(0, 2), seed=st.integers(0, 99))
def test_deconv_is_the_adjoint_of_conv(nd, h, w, k, s, p, d, groups, op, seed):
    op = min(op, s - 1)
    assume((min(h, w) - 1) * s - 2 * p + (k - 1) * d + op + 1 > 0)
    rng = np.random.default_rng(seed)
    cin, cout = 2 * groups, 3 * groups
    weight = rng.standard_normal((cin, cout // groups, k, k))
    x = rng.standard_normal((2, cin, h, w))
    kw = dict(stride=s, pad=p, dilation=d, groups=groups, bias=False)
    y = nd.run("ConvTranspose", x, cout, k, output_padding=op, weights={"weight": weight}, **kw)
    z = rng.standard_normal(y.shape)
    back = nd.run("Conv", z, cin, k, weights={"weight": weight}, **kw)      # same array: (cin, cout/g, k, k)
    assert back.shape == x.shape
    nd.close((y * z).sum(), (x * back).sum(), atol=1e-9, rtol=1e-9)


def test_deconv_rejects_same_padding(nd):
    with pytest.raises(OpError) as e:
        nd.prepare("Deconv", [(8, 7, 7)], 4, 4, stride=2, pad="same")
    assert e.value.attr == "pad" and "kernel=4, stride=2, pad=1" in e.value.hint


def test_deconv_output_padding_must_be_below_stride(nd):
    with pytest.raises(OpError) as e:
        nd.prepare("Deconv", [(8, 7, 7)], 4, 3, stride=2, output_padding=2)
    assert e.value.attr == "output_padding"


def test_deconv_nonpositive_output(nd):
    with pytest.raises(OpError) as e:
        nd.prepare("Deconv", [(8, 1, 1)], 4, 1, pad=1)
    assert "(1 − 1)·1 − 2·1 + 1·(1 − 1) + 0 + 1 = -1" in e.value.message


def test_deconv_matches_torch(nd):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 4, 5, 6))
    w = {"weight": rng.standard_normal((4, 3, 3, 3)), "bias": rng.standard_normal(6)}
    y = nd.run("ConvTranspose", x, 6, 3, stride=2, pad=1, output_padding=1, dilation=2, groups=2, weights=w)
    ref = torch.nn.functional.conv_transpose2d(
        torch.from_numpy(x), torch.from_numpy(w["weight"]), torch.from_numpy(w["bias"]),
        stride=2, padding=1, output_padding=1, groups=2, dilation=2)
    nd.close(y, ref.numpy(), atol=1e-10)


def test_deconv_matches_torch_on_random_shapes(nd):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(8)
    for _ in range(60):
        h, w = (int(v) for v in rng.integers(1, 7, 2))
        k, s, d, p = (tuple(int(v) for v in rng.integers(lo, hi, 2)) for lo, hi in ((1, 5), (1, 4), (1, 3), (0, 3)))
        g = int(rng.integers(1, 3))
        op = tuple(int(rng.integers(0, max(ss, dd))) for ss, dd in zip(s, d))
        if min((n - 1) * ss - 2 * pp + dd * (kk - 1) + o + 1
               for n, ss, pp, dd, kk, o in zip((h, w), s, p, d, k, op)) <= 0:
            continue
        x = rng.standard_normal((2, 2 * g, h, w))
        wt = {"weight": rng.standard_normal((2 * g, 3, *k)), "bias": rng.standard_normal(3 * g)}
        y = nd.run("ConvTranspose", x, 3 * g, k, stride=s, pad=p, output_padding=op, dilation=d, groups=g,
                   weights=wt)
        ref = torch.nn.functional.conv_transpose2d(
            torch.from_numpy(x), torch.from_numpy(wt["weight"]), torch.from_numpy(wt["bias"]), s, p, op, g, d)
        assert np.allclose(y, ref.numpy(), atol=1e-10), f"h{h}-w{w}-k{k}-s{s}-p{p}-d{d}-g{g}-op{op}"
