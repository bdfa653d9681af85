"""Issue 9's shape-op arguments: `axis` on Softmax, LogSoftmax, Concat and Flatten (PyTorch /
ONNX numbering, batch = 0), per-channel broadcasting in Add, `dilation` on the window pools and
the pool padding rule (any pad, per side, while every window holds a real input cell).

Oracles: numpy written here by hand (loops over windows, np.concatenate, explicit
exp/sum), PyTorch's functional ops and ONNX Runtime / the ONNX reference evaluator (each
skipped when not installed). The C kernels run on every ISA (the `isa` fixture) with NaN in
the input; every new sample also runs in test_op_kernels.py.
"""
from __future__ import annotations

import numpy as np
import pytest

import netdsl
from netdsl.errors import NetDSLError
from netdsl.passes import optimize
from netdsl.runtime import lib as L
from netdsl.runtime.plan import lower

from conftest import check, kcall, kernel_plan, rng_for

needs_kernels = pytest.mark.skipif(not L.available(), reason="C kernels not built")


def _err(src):
    with pytest.raises(NetDSLError) as e:
        netdsl.parse(src, "bad.net")
    return e.value.render()


def _kernel(op, kwargs, xs):
    """The C kernel on float32 inputs, and the op's float64 reference, for one case."""
    xs = [np.ascontiguousarray(x, np.float32) for x in xs]
    n = xs[0].shape[0]
    spec, a, out, kc = kernel_plan(op, kwargs, [x.shape[1:] for x in xs], n)
    want = spec.reference(a, [x.astype(np.float64) for x in xs], {})
    return kcall(kc, xs, (n, *out)), np.asarray(want, np.float64), a


# ---------------------------------------------------------------- Softmax / LogSoftmax axis

def _softmax_by_hand(x, axis):
    """exp(x - max) / sum, one slice at a time along `axis` (a loop, not the spec's code)."""
    x = np.moveaxis(x.astype(np.float64), axis, -1)
    out = np.empty_like(x)
    for idx in np.ndindex(x.shape[:-1]):
        v = x[idx]
        e = np.exp(v - v.max())
        out[idx] = e / e.sum()
    return np.moveaxis(out, -1, axis)


@needs_kernels
@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax"])
@pytest.mark.parametrize("shape,axis", [((2, 3, 5, 7), 1), ((2, 3, 5, 7), 2), ((2, 3, 5, 7), 3),
                                        ((2, 3, 5, 7), -1), ((2, 3, 5, 7), -2), ((3, 4, 9), -1),
                                        ((2, 70, 3, 2), 2), ((1, 2, 3, 300), -1)],
                         ids=["c", "h", "w", "last", "h-neg", "rank2-last", "wide-h", "long-w"])
def test_softmax_axis_kernel(op, shape, axis, isa):
    x = rng_for(f"{op}{shape}{axis}").standard_normal(shape).astype(np.float32) * 4
    x.flat[7] = np.nan                              # one NaN: its slice along the axis only
    got, want, a = _kernel(op, {"axis": axis}, [x])
    ax = a["axis"]
    by_hand = _softmax_by_hand(x, ax)
    if op == "LogSoftmax":
        with np.errstate(divide="ignore"):
            by_hand = np.log(by_hand)
    check(want, by_hand, f"{op}-ref", atol=1e-12, rtol=1e-9)
    check(got, by_hand, f"{op}-kernel", atol=2e-6, rtol=2e-6)
    nan = np.isnan(got)
    sl = list(np.unravel_index(7, shape))
    sl[ax] = slice(None)
    assert nan[tuple(sl)].all() and nan.sum() == shape[ax]


def test_softmax_axis_matches_torch():
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(1).standard_normal((2, 3, 4, 5)).astype(np.float32)
    for axis in (1, 2, 3, -1, -3):
        for op, fn in (("Softmax", torch.nn.functional.softmax), ("LogSoftmax", torch.nn.functional.log_softmax)):
            m = netdsl.parse(f"input x: 3x4x5\n{op}(axis={axis})")
            want = fn(torch.from_numpy(x), dim=axis).numpy()
            np.testing.assert_allclose(m.reference(x), want, rtol=1e-5, atol=1e-6)
            if L.available():
                np.testing.assert_allclose(m(x), want, rtol=1e-5, atol=1e-6)


def test_softmax_axis_explain_names_the_axis():
    m = netdsl.parse("input x: 3x4x5\nSoftmax(axis=-1)")
    assert "axis 3 (width): 5 values" in m.explain()
    m = netdsl.parse("input x: 3x4x5\nLogSoftmax")
    assert "the 3 channels (per pixel)" in m.explain()


@pytest.mark.parametrize("src,msg,hint", [
    ("input x: 3x4x5\nSoftmax(axis=0)", "Softmax axis=0 is the batch axis of (N, 3, 4, 5)",
     "1 (channels), 2 (height), 3 (width)"),
    ("input x: 3x4x5\nLogSoftmax(axis=-4)", "LogSoftmax axis=-4 is the batch axis", "1 (channels)"),
    ("input x: 3x4x5\nSoftmax(axis=4)", "Softmax axis=4 is out of range for input (N, 3, 4, 5) of rank 4: "
     "axes go from 1 to 3 (or -3 to -1)", "the batch (axis 0)"),
    ("input x: 10\nSoftmax(axis=2)", "axes go from 1 to 1 (or -1 to -1)", "axis 1 is the features"),
    ("input x: 3x4x5\nSoftmax(axis=1.5)", "'axis' must be an integer, got 1.5", None),
])
def test_bad_softmax_axis_is_a_located_error(src, msg, hint):
    text = _err(src)
    assert msg in text and "bad.net:2:" in text, text
    if hint:
        assert "hint:" in text and hint in text, text


# ---------------------------------------------------------------- Concat axis

@needs_kernels
@pytest.mark.parametrize("axis,shapes", [(2, [(3, 5, 7), (3, 2, 7), (3, 1, 7)]), (3, [(3, 5, 7), (3, 5, 2)]),
                                         (-1, [(2, 3, 4), (2, 3, 1)]), (-2, [(4, 6), (1, 6)]),
                                         (1, [(3, 5, 7), (2, 5, 7)])],
                         ids=["h", "w", "last", "rank2-first", "channels"])
@pytest.mark.parametrize("n", [1, 3])
def test_concat_axis_kernel(axis, shapes, n, isa):
    rng = rng_for(f"cat{axis}{shapes}{n}")
    xs = [rng.standard_normal((n, *s)).astype(np.float32) for s in shapes]
    xs[-1].flat[0] = np.nan
    got, want, a = _kernel("Concat", {"axis": axis}, xs)
    by_hand = np.concatenate([x.astype(np.float64) for x in xs], axis=a["axis"])
    check(want, by_hand, "ref")
    check(got, by_hand, "kernel")                  # a copy: exact, NaN included


def test_concat_axis_shapes_and_explain():
    m = netdsl.parse("input x: 3x8x8\n[ Conv(4, 3, pad=1) | Conv(4, 3, pad=(1, 0)) ] - c:Concat(axis=3)")
    assert m.graph["c"].shape == (4, 8, 14)
    assert "8 + 6 = 14 width" in m.explain()


def test_concat_axis_errors():
    text = _err("input x: 3x8x8\n[ Conv(4, 3, pad=1) | Conv(5, 3, pad=1) ] - Concat(axis=2)")
    assert "Concat inputs differ in size off the joined axis 2 (height): 4x8 vs 5x8" in text, text
    assert "Concat(axis=2) joins the height" in text
    text = _err("input x: 3x8x8\n[ Conv(4, 3, pad=1) | Conv(4, 3, pad=1) ] - Concat(axis=0)")
    assert "Concat axis=0 is the batch axis" in text and "cannot join or mix samples" in text
    assert "bad.net:2:" in text and "hint:" in text


def test_concat_axis_matches_torch():
    torch = pytest.importorskip("torch")
    m = netdsl.parse("input x: 3x6x6\na = Conv(4, 3, pad=1)\nb = x - Conv(4, 1)\n[ a | b ] - Concat(axis=-2)")
    x = np.random.default_rng(3).standard_normal((2, 3, 6, 6)).astype(np.float32)
    sd = m.state_dict()
    t = {k: torch.from_numpy(v) for k, v in sd.items()}
    xt = torch.from_numpy(x)
    ya = torch.nn.functional.conv2d(xt, t["conv1.weight"], t["conv1.bias"], padding=1)
    yb = torch.nn.functional.conv2d(xt, t["conv2.weight"], t["conv2.bias"])
    want = torch.cat([ya, yb], dim=-2).numpy()
    np.testing.assert_allclose(m.reference(x), want, rtol=1e-5, atol=1e-5)
    if L.available():
        np.testing.assert_allclose(m(x), want, rtol=1e-5, atol=1e-5)


CAT_NET = """input x: 3x8x8
a = Conv(4, 3, pad=1)
b = x - Conv(4, 1)
h = [ a | b ] - Concat(axis={axis})
h - ReLU
"""


@pytest.mark.parametrize("axis,elided", [(1, True), (-3, True), (2, False), (3, False), (-1, False)])
def test_concat_elision_only_on_the_channel_axis(axis, elided):
    """Batch-1 elision lays the producers' outputs end to end: right only for channels (axis
    1); along H or W the slices interleave, so the copy must stay (and compute the right thing)."""
    m = netdsl.parse(CAT_NET.format(axis=axis))
    for level in (0, 3):
        g, _, _ = optimize(m.graph, None, level=level)
        plan = lower(g, 1, kernels=False)
        assert bool(plan.elided) == elided, (axis, level, plan.elided)
    if L.available():
        x = np.random.default_rng(4).standard_normal((1, 3, 8, 8)).astype(np.float32)
        for level in (0, 3):
            m.run_level = level
            np.testing.assert_allclose(m(x), m.reference(x), rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- Flatten axis

@pytest.mark.parametrize("axis,out", [(1, (105,)), (2, (3, 35)), (3, (3, 5, 7)), (-1, (3, 5, 7)),
                                      (-2, (3, 35)), (-3, (105,))])
def test_flatten_axis_shapes_match_torch(axis, out, nd):
    spec, a, got = nd.prepare("Flatten", [(3, 5, 7)], axis=axis)
    assert tuple(got) == out
    x = np.arange(2 * 105, dtype=np.float64).reshape(2, 3, 5, 7)
    y = nd.run("Flatten", x, axis=axis)
    np.testing.assert_array_equal(y.reshape(-1), x.reshape(-1))     # a view: C-major order kept
    torch = pytest.importorskip("torch")
    assert tuple(torch.nn.Flatten(start_dim=axis)(torch.zeros(2, 3, 5, 7)).shape) == (2, *out)


def test_flatten_axis_in_a_network():
    """(C, H·W) per sample, then Softmax over the last axis (a spatial softmax per channel),
    through the C runtime at -O0 and -O3."""
    m = netdsl.parse("input x: 3x5x7\nConv(4, 3, pad=1) - f:Flatten(axis=2) - s:Softmax(axis=-1)")
    assert m.graph["f"].shape == (4, 35) and m.graph["s"].shape == (4, 35)
    assert "4x5x7 → 4x35" in m.explain()
    x = np.random.default_rng(5).standard_normal((2, 3, 5, 7)).astype(np.float32)
    want = m.reference(x)
    np.testing.assert_allclose(want.sum(axis=-1), 1.0, rtol=1e-6)
    if L.available():
        for level in (0, 3):
            m.run_level = level
            np.testing.assert_allclose(m(x), want, rtol=1e-5, atol=1e-6)


def test_flatten_axis_errors():
    text = _err("input x: 3x5x7\nFlatten(axis=0)")
    assert "Flatten axis=0 is the batch axis of (N, 3, 5, 7)" in text and "bad.net:2:" in text
    text = _err("input x: 3x5x7\nFlatten(axis=5)")
    assert "Flatten axis=5 is out of range" in text


# ---------------------------------------------------------------- Add broadcasting

@needs_kernels
@pytest.mark.parametrize("shapes", [[(3, 5, 7), (3, 1, 1)], [(3, 1, 1), (3, 5, 7)], [(3,), (3, 5, 7)],
                                    [(3, 5, 7), (3,), (3, 5, 7)], [(6, 20, 30), (6, 1, 1)]],
                         ids=["map-c11", "c11-map", "c-map", "map-c-map", "threads"])
@pytest.mark.parametrize("act", ["none", "relu"])
def test_add_broadcast_kernel(shapes, act, isa):
    rng = rng_for(f"add{shapes}{act}")
    n = 2
    xs = [rng.standard_normal((n, *s)).astype(np.float32) for s in shapes]
    small = next(i for i, s in enumerate(shapes) if len(s) == 1 or s[1:] == (1, 1))
    xs[small].reshape(n, -1)[1, 2] = np.nan          # sample 1, channel 2: that whole plane
    got, want, _ = _kernel("Add", {"act": act}, xs)
    full = next(s for s in shapes if len(s) == 3 and s[1:] != (1, 1))
    by_hand = np.zeros((n, *full))
    for x in xs:
        by_hand += x.reshape(n, full[0], 1, 1) if x.ndim != 4 or x.shape[2:] == (1, 1) else x
    if act == "relu":
        by_hand = np.where(by_hand < 0, 0.0, by_hand)
    check(want, by_hand, "ref", rtol=1e-12)
    check(got, by_hand, "kernel", rtol=3e-7, atol=1e-6)
    assert np.isnan(got[1, 2]).all() and np.isnan(got).sum() == full[1] * full[2]


def test_add_broadcast_matches_torch_both_orders():
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(6).standard_normal((2, 4, 5, 5)).astype(np.float32)
    for net in ("input x: 4x5x5\nb = GAP\n[ x | b ] - Add", "input x: 4x5x5\nb = GAP\n[ b | x ] - Add"):
        m = netdsl.parse(net)
        xt = torch.from_numpy(x)
        want = (xt + torch.nn.functional.adaptive_avg_pool2d(xt, 1)).numpy()
        np.testing.assert_allclose(m.reference(x), want, rtol=1e-6, atol=1e-6)
        if L.available():
            np.testing.assert_allclose(m(x), want, rtol=1e-6, atol=1e-6)


def test_add_broadcast_explain_and_error():
    m = netdsl.parse("input x: 4x5x5\nb = GAP\n[ x | b ] - Add")
    assert "x2 is one value per channel, broadcast over the 5x5 map" in m.explain()
    text = _err("input x: 4x5x5\nb = GAP - FC(3)\n[ x | b ] - Add")
    assert "Add at add1: Add inputs differ in shape: 4x5x5 vs 3" in text and "bad.net:3:" in text


BCAST_RESIDUALS = {
    # a Conv's (C,H,W) output plus a per-channel (C,1,1) value
    "conv+gap": """input x: 4x6x6
        g = x - GAP
        c = x - Conv(4, 3, pad=1)
        [ c | g ] - Add - ReLU""",
    # a Conv whose output is (C,1,1), plus a full map
    "gapconv+map": """input x: 4x6x6
        m = x - Conv(4, 1)
        c = x - GAP - Conv(4, 1)
        [ m | c ] - Add - ReLU""",
    # the per-channel operand is a Conv on a 1x1 map, added to the input itself
    "map+conv11": """input x: 4x6x6
        c = x - GAP - Conv(4, 1)
        [ c | x ] - Add""",
}


@pytest.mark.parametrize("case", sorted(BCAST_RESIDUALS))
def test_broadcast_add_is_not_fused_as_a_residual(case):
    """conv(x) + r with r broadcast is no residual the Conv kernel can take (it adds r value by
    value): fuse_residual must leave the Add alone, and the network must still compute right."""
    import textwrap
    m = netdsl.parse(textwrap.dedent(BCAST_RESIDUALS[case]))
    g2, _, report = optimize(m.graph, None, level=3)
    assert report.totals()["fuse_residual"] == 0
    assert "Add" in [n.op for n in g2.nodes()]
    assert not any(n.attrs.get("residual") for n in g2.nodes() if n.op == "Conv")
    if L.available():
        x = np.random.default_rng(7).standard_normal((2, 4, 6, 6)).astype(np.float32)
        m.run_level = 3
        np.testing.assert_allclose(m(x), m.reference(x), rtol=1e-5, atol=1e-5)


def test_same_shape_add_still_fuses():          # the control: the rule itself is alive
    m = netdsl.parse("input x: 4x6x6\ns = x - Conv(4, 1)\nc = x - Conv(4, 3, pad=1)\n[ c | s ] - Add - ReLU")
    g2, _, report = optimize(m.graph, None, level=3)
    assert report.totals()["fuse_residual"] == 1 and "Add" not in [n.op for n in g2.nodes()]


@pytest.mark.parametrize("order", ["small-first", "small-second"])
def test_broadcast_add_in_place_only_over_the_full_operand(order):
    """The planner may write the sum over a dying input only when that input has the
    output's size: never over the (C,1,1) operand (it is 36 times too small)."""
    pair = "[ b | a ]" if order == "small-first" else "[ a | b ]"
    m = netdsl.parse(f"input x: 4x6x6\na = x - m:Conv(4, 1)\nb = x - GAP - g:Conv(4, 1)\n{pair} - s:Add\ns - ReLU")
    plan = lower(m.graph, 2, kernels=False)
    sizes = {n.name: int(np.prod(n.shape)) for n in m.graph.nodes()}
    for node, src in plan.inplace:
        assert sizes[src] == sizes[node], (node, src)
    assert ("s", "g") not in plan.inplace
    if order == "small-second":
        assert ("s", "m") in plan.inplace          # the full operand, dying here, is reused
    if L.available():
        x = np.random.default_rng(8).standard_normal((2, 4, 6, 6)).astype(np.float32)
        for level in (0, 3):
            m.run_level = level
            np.testing.assert_allclose(m(x), m.reference(x), rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- pools: dilation and padding

def _pool_by_hand(x, op, k, s, d, pads, ceil_mode=False, include_pad=True):
    """A loop over output cells and taps; the output size from PyTorch's formula."""
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (dh, dw), (t, l, b, r) = k, s, d, pads

    def size(L, k_, s_, d_, p0, p1):
        span = L + p0 + p1 - (d_ * (k_ - 1) + 1)
        o = (-(-span // s_) if ceil_mode else span // s_) + 1
        if ceil_mode and (o - 1) * s_ >= L + p0:
            o -= 1
        return o
    oh, ow = size(h, kh, sh, dh, t, b), size(w, kw, sw, dw, l, r)
    y = np.empty((n, c, oh, ow))
    for oy in range(oh):
        for ox in range(ow):
            rows = [oy * sh - t + i * dh for i in range(kh)]
            cols = [ox * sw - l + j * dw for j in range(kw)]
            real = [(i, j) for i in rows for j in cols if 0 <= i < h and 0 <= j < w]
            assert real, "a window of only padding"
            vals = np.stack([x[:, :, i, j] for i, j in real], axis=-1)
            if op == "MaxPool":
                y[:, :, oy, ox] = np.where(np.isnan(vals).any(-1), np.nan, vals.max(-1))
            elif op == "MinPool":
                y[:, :, oy, ox] = np.where(np.isnan(vals).any(-1), np.nan, vals.min(-1))
            else:
                if include_pad:
                    cnt = sum(1 for i in rows if -t <= i < h + b) * sum(1 for j in cols if -l <= j < w + r)
                else:
                    cnt = len(real)
                y[:, :, oy, ox] = vals.sum(-1) / cnt
    return y


POOL_CASES = [   # (kernel, stride, dilation, pads (t, l, b, r), ceil_mode)
    ((3, 3), (1, 1), (1, 1), (2, 2, 2, 2), False),          # MaxPool(3, pad=2): ONNX allows it
    ((2, 2), (1, 1), (1, 1), (0, 0, 1, 1), False),          # Darknet maxpool size=2 stride=1
    ((3, 3), (2, 2), (2, 2), (1, 1, 1, 1), False),
    ((3, 2), (2, 1), (2, 3), (2, 1, 1, 3), True),
    ((2, 3), (3, 2), (3, 1), (0, 2, 3, 0), True),
    ((3, 3), (1, 1), (1, 1), (2, 0, 0, 2), False),          # more pad than k/2 on one side only
]


@needs_kernels
@pytest.mark.parametrize("op", ["MaxPool", "MinPool", "AvgPool"])
@pytest.mark.parametrize("case", POOL_CASES, ids=[f"k{c[0]}s{c[1]}d{c[2]}p{c[3]}{'c' if c[4] else ''}"
                                                  for c in POOL_CASES])
def test_pool_dilation_and_pads_by_hand(op, case, isa):
    k, s, d, pads, ceil_mode = case
    x = rng_for(f"{op}{case}").standard_normal((2, 3, 9, 11)).astype(np.float32)
    x[1, 2, 4, 5] = x[1, 2, 3, 3] = np.nan          # (a dilated window may step over one of them)
    for include in ((True, False) if op == "AvgPool" else (True,)):
        kw = dict(kernel=k, stride=s, dilation=d, pad=pads, ceil_mode=ceil_mode)
        if op == "AvgPool":
            kw["count_include_pad"] = include
        got, want, _ = _kernel(op, kw, [x])
        by_hand = _pool_by_hand(x.astype(np.float64), op, k, s, d, pads, ceil_mode, include)
        check(want, by_hand, f"{op}-ref", rtol=1e-12)
        check(got, by_hand, f"{op}-kernel", rtol=1e-6, atol=1e-6)
        assert np.isnan(by_hand[1, 2]).any() and not np.isnan(by_hand[0]).any() and not np.isnan(by_hand[1, :2]).any()


def test_darknet_maxpool_size2_stride1_keeps_the_size():
    m = netdsl.parse("input x: 8x13x13\np:MaxPool(2, stride=1, pad=(0, 0, 1, 1))")
    assert m.graph["p"].shape == (8, 13, 13)
    x = np.random.default_rng(9).standard_normal((1, 8, 13, 13)).astype(np.float32)
    xp = np.pad(x, ((0, 0), (0, 0), (0, 1), (0, 1)), constant_values=-np.inf)
    want = np.maximum(np.maximum(xp[:, :, :-1, :-1], xp[:, :, 1:, :-1]), np.maximum(xp[:, :, :-1, 1:], xp[:, :, 1:, 1:]))
    np.testing.assert_array_equal(m.reference(x), want)
    if L.available():
        np.testing.assert_array_equal(m(x), want)


def test_pool_dilation_matches_torch():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = np.random.default_rng(10).standard_normal((2, 3, 11, 10)).astype(np.float32)
    for k, s, d, p, ceil in [(3, 1, 2, 1, False), (3, 2, (2, 3), (1, 0), True), (2, 2, 3, 1, True)]:
        pp = p if isinstance(p, tuple) else (p, p)
        m = netdsl.parse(f"input x: 3x11x10\nMaxPool({k}, stride={s}, dilation={d if isinstance(d, int) else 'x'.join(map(str, d))}, "
                         f"pad=({pp[0]}, {pp[1]}), ceil_mode={'true' if ceil else 'false'})")
        want = F.max_pool2d(torch.from_numpy(x), k, s, p, dilation=d, ceil_mode=ceil).numpy()
        np.testing.assert_array_equal(m.reference(x), want)
        if L.available():
            np.testing.assert_array_equal(m(x), want)


def test_large_pads_match_onnx():
    """ONNX allows pads past k/2 (PyTorch does not): compared with ONNX Runtime where it takes
    them (it needs pad < kernel) and with the ONNX reference evaluator (whose MaxPool, in onnx
    1.23, reads asymmetric pads in another order than the spec and ORT: only symmetric ones there)."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper
    from onnx.reference import ReferenceEvaluator
    ort = None
    try:
        import onnxruntime as ort
    except ImportError:
        pass
    x = np.random.default_rng(11).standard_normal((1, 2, 7, 8)).astype(np.float32)
    for op, onnx_op, extra in (("MaxPool", "MaxPool", {}), ("AvgPool", "AveragePool", {"count_include_pad": 1}),
                               ("AvgPool", "AveragePool", {"count_include_pad": 0})):
        for k, pads, d in [(3, (2, 2, 2, 2), 1), (3, (2, 0, 1, 2), 1), (2, (1, 1, 1, 1), 2), (3, (2, 2, 2, 2), 2)]:
            t, l, b, r = pads
            cip = f", count_include_pad={'true' if extra.get('count_include_pad') else 'false'}" if extra else ""
            m = netdsl.parse(f"input x: 2x7x8\n{op}({k}, stride=1, dilation={d}, pad=({t}, {l}, {b}, {r}){cip})")
            node = helper.make_node(onnx_op, ["x"], ["y"], kernel_shape=[k, k], strides=[1, 1], dilations=[d, d],
                                    pads=[t, l, b, r], **extra)
            graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x.shape)],
                                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
            model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
            model.ir_version = 9
            wants = []
            if onnx_op != "MaxPool" or (t, l) == (b, r):
                wants.append(ReferenceEvaluator(model).run(None, {"x": x})[0])
            if ort is not None and max(pads) < k:
                s = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
                wants.append(s.run(None, {"x": x})[0])
            assert wants
            for want in wants:
                np.testing.assert_allclose(m.reference(x), want, rtol=1e-6, atol=1e-6)
                if L.available():
                    np.testing.assert_allclose(m(x), want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("src,msg,hint", [
    ("input x: 3x8x8\nMaxPool(3, stride=1, pad=3)",
     "MaxPool pad 3 leaves a window of only padding: output row 0 covers padded rows 0..2 (3 taps), and the "
     "input's rows are 0..7: every window must hold at least one real input cell",
     "use top pad at most 2 and bottom pad at most 2 here"),
    ("input x: 3x8x8\nAvgPool(2, stride=1, pad=(0, 0, 0, 2))",
     "AvgPool pad (0, 0, 0, 2) leaves a window of only padding: output column 8 covers padded columns 8..9",
     "use left pad at most 0 and right pad at most 1 here"),
    ("input x: 3x1x8\nMaxPool(2, stride=1, dilation=(3, 1), pad=(2, 0, 2, 0))",
     "output row 0 covers padded rows 0..3 (2 taps 3 apart), and the input's rows are 0..0", None),
    ("input x: 3x8x8\nMaxPool(3, dilation=0)", "'dilation' must be at least 1", None),
    ("input x: 3x4x4\nMaxPool(3, dilation=3)", "the output height shrinks to zero: the window (7) is larger than "
     "the input (4): (4 − 7)/3 + 1 = 0", None),
])
def test_pool_pad_and_dilation_errors(src, msg, hint):
    text = _err(src)
    assert msg in text and "bad.net:2:" in text, text
    if hint:
        assert "hint:" in text and hint in text, text


def test_pool_explain_and_summary_arithmetic_is_true():
    m = netdsl.parse("input x: 3x11x10\np:MaxPool(3, stride=2, dilation=2, pad=1)")
    assert m.graph["p"].shape == (3, 5, 4)
    text = m.explain()
    assert "H: (11 + 2·1 − 5)/2 + 1 = 5" in text and "W: ⌊(10 + 2·1 − 5)/2⌋ + 1 = 4" in text, text
    assert "(3 − 1)·2 + 1 = 5 rows" in text
    assert "3x5x4" in m.summary()
