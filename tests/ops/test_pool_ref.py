"""Pooling references against hand arithmetic (the lecture's examples), a naive
per-window loop written from PyTorch's definitions, and PyTorch itself when installed."""
import numpy as np
import pytest
from hypothesis import assume, given, settings, strategies as st

from netdsl.ops import OpError

LECTURE = [[1, 1, 2, 3],
           [4, 6, 6, 8],
           [3, 1, 1, 0],
           [1, 2, 2, 4]]


@pytest.mark.parametrize("op, expected", [
    pytest.param("MaxPool", [[6, 8], [3, 4]], id="lecture-max"),
    pytest.param("AvgPool", [[3, 4.75], [1.75, 1.75]], id="lecture-avg"),
    pytest.param("MinPool", [[1, 2], [1, 0]], id="lecture-min"),
    # sum(a^2)/sum(a) per block: 54/12, (4+9+36+64)/19, (9+1+1+4)/7, (1+0+4+16)/7
    pytest.param("StochasticPool", [[4.5, 113 / 19], [15 / 7, 3]], id="lecture-stochastic"),
])
def test_lecture_4x4_pool_2x2_stride2(nd, as_nchw, op, expected):
    nd.close(nd.run(op, as_nchw(LECTURE), 2, stride=2)[0, 0], expected)


def test_aliases_and_default_stride_is_kernel(nd, as_nchw):
    for name in ("Pool", "MaxPool2d", "MAXPOOL"):
        nd.close(nd.run(name, as_nchw(LECTURE))[0, 0], [[6, 8], [3, 4]])
    _, a, out = nd.prepare("AveragePool", [(1, 4, 4)], 2)
    assert a["stride"] == (2, 2) and out == (1, 2, 2)


def test_lecture_conv_then_maxpool(nd, as_nchw):
    """5x5 input 1..25, kernel [[1,0],[0,1]] stride 1, then 2x2 max pool."""
    x = as_nchw(np.arange(1, 26).reshape(5, 5))
    w = {"weight": np.array([[[[1.0, 0], [0, 1]]]])}
    y = nd.run("Conv", x, 1, 2, bias=False, weights=w)
    nd.close(y[0, 0], [[8, 10, 12, 14], [18, 20, 22, 24], [28, 30, 32, 34], [38, 40, 42, 44]])
    nd.close(nd.run("MaxPool", y, 2)[0, 0], [[20, 24], [40, 44]])


# ---------------------------------------------------------------- shapes

@pytest.mark.parametrize("shape, args, kw, out", [
    pytest.param((3, 224, 224), (2,), {}, (3, 112, 112), id="vgg-224-k2s2"),
    pytest.param((3, 7, 7), (2,), {}, (3, 3, 3), id="odd7-k2s2-floor"),
    pytest.param((3, 7, 7), (2,), {"ceil_mode": True}, (3, 4, 4), id="odd7-k2s2-ceil"),
    pytest.param((64, 112, 112), (3,), {"stride": 2, "pad": 1}, (64, 56, 56), id="resnet-k3s2p1"),
    pytest.param((96, 55, 55), (3,), {"stride": 2}, (96, 27, 27), id="alexnet-k3s2-overlap"),
    pytest.param((1, 6, 6), (3,), {"stride": 2, "pad": 1, "ceil_mode": True}, (1, 4, 4), id="h6-k3s2p1-ceil"),
    pytest.param((1, 5, 5), (3,), {"stride": 3, "pad": 1, "ceil_mode": True}, (1, 2, 2),
                 id="ceil-last-window-starting-in-padding-dropped"),
    pytest.param((1, 5, 5), (3,), {"stride": 1, "pad": "same"}, (1, 5, 5), id="same-k3s1"),
    pytest.param((1, 5, 5), (2,), {"stride": 2, "pad": "same"}, (1, 3, 3), id="same-k2s2-odd"),
    pytest.param((2, 7, 5), ((3, 2),), {"stride": (2, 1)}, (2, 3, 4), id="rect-k3x2-s2x1"),
])
def test_pool_output_shape(nd, shape, args, kw, out):
    assert nd.prepare("MaxPool", [shape], *args, **kw)[2] == out
    if shape[1] <= 40:                      # run() also checks the reference agrees with infer
        x = np.random.default_rng(0).standard_normal((2, *shape))
        for op in ("MaxPool", "AvgPool", "MinPool", "StochasticPool"):
            nd.run(op, x, *args, **kw)


def test_same_pads_resolve_to_four_ints(nd):
    _, a, _ = nd.prepare("MaxPool", [(1, 5, 5)], 2, stride=2, pad="same")
    assert a["pad"] == (0, 0, 1, 1)


def test_window_is_kernel_and_stride(nd):
    spec, a, _ = nd.prepare("MaxPool", [(1, 8, 8)], 3, stride=2, pad=1)
    assert spec.window(a, [(1, 8, 8)]) == (3, 3, 2, 2)


def test_explain_shows_lecture_formula(nd):
    spec, a, out = nd.prepare("MaxPool", [(64, 224, 224)], 2)
    assert spec.explain(a, [(64, 224, 224)], out) == ["H: (224 − 2)/2 + 1 = 112"]
    spec, a, out = nd.prepare("MaxPool", [(1, 7, 7)], 2, ceil_mode=True)
    assert spec.explain(a, [(1, 7, 7)], out) == ["H: ⌈(7 − 2)/2⌉ + 1 = 4", "stride 2 does not fit the input "
                                                 "evenly: ceil_mode adds a last, partial window over the last row and column"]


def test_pools_have_no_params_or_macs(nd):
    for op in ("MaxPool", "AvgPool", "MinPool", "StochasticPool", "GAP", "GMP"):
        spec, a, out = nd.prepare(op, [(8, 4, 4)])
        assert spec.params(a, [(8, 4, 4)]) == {} and spec.macs(a, [(8, 4, 4)], out) == 0


# ---------------------------------------------------------------- padding and ceil_mode, by hand

X4 = np.arange(1, 17).reshape(4, 4)     # [[1..4], [5..8], [9..12], [13..16]]


@pytest.mark.parametrize("include, expected", [
    # k3 s2 p1 ceil on 4x4: windows rows {0,1}, {1,2,3}, {3}(+1 pad row); same for columns.
    # counted cells with padding: 3, 3, 2 (the overhang past the padding never counts)
    pytest.param(True, [[14 / 9, 30 / 9, 12 / 6], [57 / 9, 99 / 9, 36 / 6], [27 / 6, 45 / 6, 16 / 4]],
                 id="count_include_pad-true"),
    # only real pixels: 2, 3, 1
    pytest.param(False, [[14 / 4, 30 / 6, 12 / 2], [57 / 6, 99 / 9, 36 / 3], [27 / 2, 45 / 3, 16 / 1]],
                 id="count_include_pad-false"),
])
def test_avgpool_k3s2p1_ceil_by_hand(nd, as_nchw, include, expected):
    y = nd.run("AvgPool", as_nchw(X4), 3, stride=2, pad=1, ceil_mode=True, count_include_pad=include)
    nd.close(y[0, 0], expected)


@pytest.mark.parametrize("include, expected", [
    pytest.param(True, [[1 / 4, 5 / 4], [11 / 4, 28 / 4]], id="count_include_pad-true"),
    pytest.param(False, [[1, 5 / 2], [11 / 2, 28 / 4]], id="count_include_pad-false"),
])
def test_avgpool_3x3_k2s2p1_by_hand(nd, as_nchw, include, expected):
    x = as_nchw([[1, 2, 3], [4, 5, 6], [7, 8, 9]])
    nd.close(nd.run("AvgPool", x, 2, stride=2, pad=1, count_include_pad=include)[0, 0], expected)


def test_avgpool_ceil_overhang_not_counted_even_with_include_pad(nd, as_nchw):
    x = as_nchw([[1, 2, 3], [4, 5, 6], [7, 8, 9]])
    y = nd.run("AvgPool", x, 2, ceil_mode=True, count_include_pad=True)
    nd.close(y[0, 0], [[12 / 4, 9 / 2], [15 / 2, 9]])


def test_maxpool_ceil_padding_never_wins(nd, as_nchw):
    y = nd.run("MaxPool", -as_nchw(X4), 3, stride=2, pad=1, ceil_mode=True)
    nd.close(y[0, 0], [[-1, -2, -4], [-5, -6, -8], [-13, -14, -16]])
    y = nd.run("MinPool", as_nchw(X4), 3, stride=2, pad=1, ceil_mode=True)
    nd.close(y[0, 0], [[1, 2, 4], [5, 6, 8], [13, 14, 16]])


def test_stochastic_pool_zero_window_and_padding(nd, as_nchw):
    x = as_nchw([[0, 0, 1, 3], [0, 0, 0, 0]])
    nd.close(nd.run("StochasticPool", x, 2)[0, 0], [[0, (1 + 9) / 4]])
    # 1x1 input padded by 1 on each side: every 2x2 window holds the one real 2 -> 2, not a diluted mean
    nd.close(nd.run("StochasticPool", as_nchw([[2]]), 2, stride=1, pad=1)[0, 0], [[2, 2], [2, 2]])


def test_float32_stays_float32(nd):
    x = np.random.default_rng(1).random((2, 3, 9, 9)).astype(np.float32)
    for op in ("MaxPool", "AvgPool", "MinPool", "StochasticPool", "GAP", "GMP"):
        assert nd.run(op, x).dtype == np.float32


# ---------------------------------------------------------------- a naive oracle over random shapes

def naive_pool(x, kind, k, s, pads, ceil_mode, include_pad=True):
    """Loop over every output pixel, written from PyTorch's pooling definitions."""
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (t, l, b, r) = k, s, pads

    def out_len(size, k, s, p0, p1):
        span = size + p0 + p1 - k
        o = (-(-span // s) if ceil_mode else span // s) + 1
        if ceil_mode and (o - 1) * s >= size + p0:
            o -= 1
        return o

    oh, ow = out_len(h, kh, sh, t, b), out_len(w, kw, sw, l, r)
    y = np.zeros((n, c, oh, ow))
    for i in range(oh):
        for j in range(ow):
            y0, x0 = i * sh - t, j * sw - l
            y1, x1 = min(y0 + kh, h + b), min(x0 + kw, w + r)
            cells = x[:, :, max(y0, 0):min(y1, h), max(x0, 0):min(x1, w)]
            if kind == "max":
                y[:, :, i, j] = cells.max(axis=(2, 3))
            elif kind == "min":
                y[:, :, i, j] = cells.min(axis=(2, 3))
            elif kind == "avg":
                count = (y1 - y0) * (x1 - x0) if include_pad else cells.shape[2] * cells.shape[3]
                y[:, :, i, j] = cells.sum(axis=(2, 3)) / count
            else:
                tot = cells.sum(axis=(2, 3))
                y[:, :, i, j] = np.where(tot != 0, (cells ** 2).sum(axis=(2, 3)) / np.where(tot, tot, 1), 0)
    return y


OPS = {"max": "MaxPool", "min": "MinPool", "avg": "AvgPool", "stochastic": "StochasticPool"}


@settings(max_examples=150, deadline=None)
@given(kind=st.sampled_from(sorted(OPS)), h=st.integers(1, 13), w=st.integers(1, 13),
       kh=st.integers(1, 4), kw=st.integers(1, 4), sh=st.integers(1, 3), sw=st.integers(1, 3),
       pt=st.integers(0, 2), pl=st.integers(0, 2), pb=st.integers(0, 2), pr=st.integers(0, 2),
       ceil_mode=st.booleans(), include=st.booleans(), seed=st.integers(0, 99))
def test_pool_matches_naive_loop(nd, kind, h, w, kh, kw, sh, sw, pt, pl, pb, pr, ceil_mode, include, seed):
    pads = tuple(min(p, k // 2) for p, k in ((pt, kh), (pl, kw), (pb, kh), (pr, kw)))
    assume(h + pads[0] + pads[2] >= kh and w + pads[1] + pads[3] >= kw)
    x = np.random.default_rng(seed).random((2, 3, h, w))
    extra = {"count_include_pad": include} if kind == "avg" else {}
    y = nd.run(OPS[kind], x, (kh, kw), stride=(sh, sw), pad=pads, ceil_mode=ceil_mode, **extra)
    nd.close(y, naive_pool(x, kind, (kh, kw), (sh, sw), pads, ceil_mode, include), atol=1e-12)


# ---------------------------------------------------------------- global pooling

def test_global_pools(nd):
    x = np.arange(2 * 3 * 4 * 5, dtype=np.float64).reshape(2, 3, 4, 5)
    nd.close(nd.run("GAP", x), x.reshape(2, 3, 20).mean(-1)[..., None, None])
    nd.close(nd.run("GlobalMaxPool", x), x.reshape(2, 3, 20).max(-1)[..., None, None])
    spec, a, out = nd.prepare("AdaptiveAvgPool", [(512, 7, 7)])
    assert out == (512, 1, 1)
    assert spec.window(a, [(512, 7, 7)]) == (7, 7, 7, 7)
    assert spec.explain(a, [(512, 7, 7)], out) == ["mean over 7·7 = 49 values per channel: 512x7x7 → 512x1x1"]


# ---------------------------------------------------------------- errors

def test_zero_size_output_is_an_error_with_hint(nd):
    with pytest.raises(OpError) as e:
        nd.prepare("MaxPool", [(16, 1, 1)], 2)
    assert "shrinks to zero" in e.value.message and "⌊(1 − 2)/2⌋ + 1 = 0" in e.value.message
    assert "smaller kernel" in e.value.hint


def test_pad_more_than_half_the_kernel(nd):
    with pytest.raises(OpError) as e:
        nd.prepare("AvgPool", [(1, 8, 8)], 2, pad=2)
    assert e.value.attr == "pad" and "at most 1" in e.value.hint


def test_pool_on_a_vector_is_a_rank_error(nd):
    with pytest.raises(OpError) as e:
        nd.prepare("MaxPool", [(10,)], 2)
    assert "feature map" in e.value.message and e.value.hint


def test_unknown_argument_did_you_mean(nd):
    with pytest.raises(OpError) as e:
        nd.prepare("MaxPool", [(1, 4, 4)], 2, strid=2)
    assert e.value.attr == "strid" and "did you mean 'stride'?" in e.value.hint


def test_bad_choice_for_ceil_mode(nd):
    with pytest.raises(OpError) as e:
        nd.prepare("MaxPool", [(1, 4, 4)], 2, ceil_mode="maybe")
    assert e.value.attr == "ceil_mode"


# ---------------------------------------------------------------- PyTorch, when installed

@pytest.mark.parametrize("k, s, p, ceil_mode, include", [
    pytest.param(2, 2, 0, False, True, id="k2s2"),
    pytest.param(3, 2, 1, True, True, id="k3s2p1-ceil-incl"),
    pytest.param(3, 2, 1, True, False, id="k3s2p1-ceil-excl"),
    pytest.param(3, 3, 1, True, False, id="k3s3p1-ceil-excl"),
    pytest.param(3, 1, 1, False, False, id="k3s1p1-excl"),
])
def test_pools_match_torch(nd, k, s, p, ceil_mode, include):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    for h, w in ((13, 17), (8, 5)):
        x = np.random.default_rng(h).standard_normal((2, 3, h, w))
        t = torch.from_numpy(x)
        nd.close(nd.run("MaxPool", x, k, stride=s, pad=p, ceil_mode=ceil_mode),
                 F.max_pool2d(t, k, s, p, ceil_mode=ceil_mode).numpy())
        nd.close(nd.run("AvgPool", x, k, stride=s, pad=p, ceil_mode=ceil_mode, count_include_pad=include),
                 F.avg_pool2d(t, k, s, p, ceil_mode=ceil_mode, count_include_pad=include).numpy())
        nd.close(nd.run("MinPool", x, k, stride=s, pad=p, ceil_mode=ceil_mode),
                 -F.max_pool2d(-t, k, s, p, ceil_mode=ceil_mode).numpy())


def test_global_pools_match_torch(nd):
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(0).standard_normal((2, 5, 7, 3))
    nd.close(nd.run("GAP", x), torch.nn.functional.adaptive_avg_pool2d(torch.from_numpy(x), 1).numpy())
    nd.close(nd.run("GMP", x), torch.nn.functional.adaptive_max_pool2d(torch.from_numpy(x), 1).numpy())



def test_pools_match_torch_on_random_shapes(nd):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(7)
    for _ in range(100):
        h, w = (int(v) for v in rng.integers(1, 12, 2))
        k = tuple(int(v) for v in rng.integers(1, 5, 2))
        s = tuple(int(v) for v in rng.integers(1, 4, 2))
        p = tuple(int(rng.integers(0, kk // 2 + 1)) for kk in k)
        ceil, include = bool(rng.integers(2)), bool(rng.integers(2))
        if h + 2 * p[0] < k[0] or w + 2 * p[1] < k[1]:
            continue
        x = rng.standard_normal((2, 3, h, w))
        t = torch.from_numpy(x)
        case = f"h{h}-w{w}-k{k}-s{s}-p{p}-ceil{ceil}-incl{include}"
        y = F.max_pool2d(t, k, s, p, ceil_mode=ceil).numpy()
        assert np.allclose(nd.run("MaxPool", x, k, stride=s, pad=p, ceil_mode=ceil), y), case
        y = F.avg_pool2d(t, k, s, p, ceil_mode=ceil, count_include_pad=include).numpy()
        assert np.allclose(nd.run("AvgPool", x, k, stride=s, pad=p, ceil_mode=ceil,
                                  count_include_pad=include), y), case
