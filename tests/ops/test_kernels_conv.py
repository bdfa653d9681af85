"""C kernels of Conv (incl. groups/depthwise/dilation/asymmetric pads/fused act),
ConvTranspose, Local and FC vs their numpy references, on every ISA path.

Each case goes the way a plan does: spec.bind -> resolve -> infer -> the
kparams builder -> executor.Program (weights prepacked as the executor does)
-> one nd_run_plan call. The reference runs in float64 on the same float32
inputs, so only the kernel's rounding is measured.

Tolerance: a float32 dot product of K terms accumulates rounding like a
random walk, ~eps32 * sqrt(K) relative to the size of the terms (the GEMM
blocks K in slices and the order differs from numpy). With inputs ~N(0,1)
and He-scaled weights every output and every partial sum is O(1), so
|kernel - ref| <= 1e-5 * sqrt(K) * max(1, |ref|max) has ~100x headroom over
eps32 (6e-8) * sqrt(K) yet catches any wrong tap, which moves results by ~0.1.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from netdsl import ops
from netdsl.runtime import lib as L
from netdsl.runtime.executor import Program, Step, run_call
from netdsl.runtime.kparams import builder

from conftest import kernel_plan   # the `isa` fixture (every ISA the CPU has) is there too

if not L.available():
    pytest.skip("C kernels not built: python netdsl/runtime/_build.py", allow_module_level=True)

def check(op, kwargs, shape, n, k_terms, seed=0, prepack=True, algo=0):
    """Run op through kparams + executor and compare with the numpy reference.
    algo (Conv): force an algorithm (nd_conv_params.algo; 2 = transposed GEMM, 3 = direct)."""
    shapes = [tuple(shape)]
    spec, a, out_shape, call = kernel_plan(op, kwargs, shapes, n)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, *shape)).astype(np.float32)
    w = spec.init(a, shapes, rng)
    if "bias" in w:
        w["bias"] = rng.standard_normal(w["bias"].shape).astype(np.float32)
    ref = spec.reference(a, [x.astype(np.float64)], {k: v.astype(np.float64) for k, v in w.items()})
    if algo:
        call.fields["algo"] = algo
        call.ws_floats = int(L.lib.nd_conv_ws_floats(L.ffi.new("nd_conv_params *", call.fields)))
    wname, bname = call.weights
    out_floats = n * math.prod(out_shape)
    if prepack:
        got = run_call(call, [x], w.get(wname), w.get(bname) if bname else None, out_floats)
    else:
        prog = Program([Step(call, 0, [out_floats], w.get(wname), w.get(bname) if bname else None,
                             out_floats=out_floats, in_floats=[x.size])], out_floats + x.size,
                       prepack=False)
        arena = prog.new_arena()
        arena[:out_floats] = np.nan
        arena[out_floats:] = x.ravel()
        prog.run(arena, prog.new_ws())
        got = arena[:out_floats]
    got = got.reshape(n, *out_shape)
    tol = 1e-5 * math.sqrt(max(k_terms, 1)) * max(1.0, float(np.abs(ref).max()))
    diff = np.abs(got - ref)
    assert np.isfinite(got).all(), f"{op}: NaN/inf in the output (a cell not written?)"
    assert diff.max() <= tol, f"{op} {kwargs} on {n}x{shape}: max abs diff {diff.max():.3g} > tol {tol:.3g}"


# ----------------------------------------------------------------- Conv
# (n, c, h, w, oc, kernel, stride, pad, dilation, groups, act)
CONV = [
    (1, 1, 1, 1, 1, 1, 1, 0, 1, 1, "none"),
    (1, 3, 5, 5, 17, 3, 1, 1, 1, 1, "relu"),
    (3, 3, 13, 17, 64, 3, 2, 1, 1, 1, "none"),
    (1, 17, 13, 13, 17, 5, 1, 2, 1, 1, "leakyrelu"),
    (1, 3, 17, 17, 64, 7, 2, 3, 1, 1, "relu"),           # ResNet stem shape
    (3, 17, 13, 5, 3, (3, 5), 1, (1, 2, 1, 2), 1, 1, "none"),
    (1, 64, 5, 5, 64, 1, 1, 0, 1, 1, "relu"),            # 1x1: direct GEMM
    (3, 64, 13, 13, 17, 1, 1, 0, 1, 1, "sigmoid"),
    (1, 17, 13, 17, 64, 1, 2, 0, 1, 1, "none"),          # 1x1 strided: im2col path
    (1, 3, 13, 13, 17, 1, 3, 0, 1, 1, "none"),           # stride > kernel
    (1, 3, 17, 13, 5, 3, 3, 0, 1, 1, "tanh"),
    (1, 3, 13, 13, 3, 2, 3, 1, 1, 1, "none"),
    (1, 17, 13, 13, 17, 3, 1, (0, 1, 2, 0), 1, 1, "none"),  # asymmetric
    (3, 3, 5, 13, 17, 3, 2, (2, 0, 1, 3), 1, 1, "relu"),
    (1, 3, 5, 5, 3, 3, 1, 2, 1, 1, "none"),              # pad >= kernel/2
    (1, 3, 5, 5, 3, 3, 2, (3, 3, 3, 3), 1, 1, "none"),   # pad == kernel
    (1, 17, 17, 17, 17, 3, 1, 2, 2, 1, "none"),          # dilation 2
    (1, 3, 17, 13, 17, 5, 2, 3, 2, 1, "relu"),
    (1, 3, 13, 17, 17, (3, 5), 1, 0, (2, 1), 1, "none"),
    (1, 64, 13, 13, 64, 3, 1, 1, 1, 2, "relu"),          # groups 2
    (3, 64, 5, 5, 64, 1, 1, 0, 1, 2, "none"),
    (1, 64, 13, 13, 64, 3, 2, 1, 1, 32, "none"),         # many small groups (side by side)
    (1, 17, 13, 13, 17, 3, 1, 1, 1, 17, "relu"),         # depthwise
    (3, 64, 17, 13, 64, 3, 2, 1, 1, 64, "none"),
    (1, 3, 13, 13, 6, 5, 1, 2, 2, 3, "leakyrelu"),       # depthwise, multiplier 2, dilated
    (1, 17, 13, 17, 17, (3, 5), 3, (0, 2, 1, 0), 1, 17, "tanh"),
    (1, 64, 17, 17, 129, 3, 1, 1, 1, 1, "relu"),         # several M panels, K > one slice? no: 576
    (1, 64, 13, 13, 64, 5, 1, 2, 1, 1, "none"),          # K = 1600 > KC
    (1, 3, 1, 1, 17, 3, 1, 1, 1, 1, "none"),             # 1x1 image, all padding but the centre
    (1, 3, 9, 75, 17, 7, 2, 3, 1, 1, "relu"),            # stride 2, rows > 16 wide: two vector chunks
    (1, 2, 7, 70, 9, 3, 1, 1, 1, 1, "none"),             # stride 1, 32-wide runs padded at both ends
    (1, 3, 6, 11, 7, 5, 1, (2, 3, 1, 2), (1, 2), 1, "relu"),  # stride 1, AVX2's 8-wide copies: runs of 11/5, masked tails at both ends
    (2, 3, 9, 40, 17, (3, 5), 2, (1, 2, 0, 1), (1, 2), 1, "none"),  # stride 2, dilated, asymmetric
    (3, 5, 3, 3, 7, 3, 1, 1, 1, 1, "relu"),              # 3-wide runs: AVX-512 packs the panel by gathers
    (2, 4, 5, 4, 9, 3, 2, (1, 0, 1, 1), (2, 1), 1, "none"),   # gathers, strided, dilated, asymmetric
]


def conv_id(c):
    n, ch, h, w, oc, k, s, p, d, g, act = c
    f = lambda v: "x".join(map(str, v)) if isinstance(v, tuple) else str(v)  # noqa: E731
    return f"n{n}-c{ch}-h{h}-w{w}-oc{oc}-k{f(k)}-s{s}-p{f(p)}-d{f(d)}-g{g}-{act}"


@pytest.mark.parametrize("case", CONV, ids=[conv_id(c) for c in CONV])
def test_conv(case, isa):
    n, c, h, w, oc, k, s, p, d, g, act = case
    kk = k if isinstance(k, tuple) else (k, k)
    check("Conv", dict(out_channels=oc, kernel=k, stride=s, pad=p, dilation=d, groups=g, act=act,
                       bias=(oc % 2 == 1 or g > 1)), (c, h, w), n, c // g * kk[0] * kk[1])


# Depthwise (groups == C): conv_dw.c's register-blocked AVX-512 / AVX2 kernels (column
# stride 1 and 2, any dilation; 3x3 has its own instantiation) and the portable body (other
# column strides). Odd widths give masked tails of 16 (8) lanes, > 16 wide rows several
# chunks, pads 0 / 1 / asymmetric / past the kernel clip taps on both sides.
# (n, c, h, w, mult, kernel, stride, pad, dilation, act)
DEPTHWISE = [
    (1, 5, 7, 7, 1, 3, 1, 1, 1, "relu6"),                 # MobileNet's 7x7
    (1, 5, 14, 14, 1, 3, 2, 1, 1, "relu6"),
    (2, 3, 13, 13, 1, 3, 1, 0, 1, "none"),                # no padding
    (1, 3, 17, 17, 1, 3, 2, 1, 1, "relu"),                # one full chunk + a 1-lane tail (s1 would)
    (1, 3, 11, 17, 1, 3, 1, 1, 1, "leakyrelu"),           # 17 wide: 16 + 1 lanes
    (1, 3, 9, 40, 1, 3, 2, (0, 1, 1, 0), 1, "relu6"),     # stride 2, 20 outputs, asymmetric
    (1, 3, 6, 37, 1, 3, 1, (1, 0, 0, 1), 1, "none"),      # asymmetric, 3 chunks
    (1, 2, 9, 33, 1, 3, 2, (1, 1, 0, 0), 1, "relu"),      # stride 2, odd width, right edge unpadded
    (1, 3, 8, 70, 1, 3, 2, 1, 1, "hardswish"),            # wide stride 2, an activation as a pass
    (1, 4, 13, 13, 2, 3, 1, 1, 1, "sigmoid"),             # channel multiplier 2
    (2, 3, 13, 17, 3, 3, 2, 1, 1, "tanh"),                # multiplier 3, stride 2
    (1, 3, 13, 19, 1, 5, 1, 2, 1, "relu6"),               # 5x5 (generic KH, KW)
    (1, 3, 17, 21, 1, 5, 2, (2, 1, 2, 3), 1, "leakyrelu"),
    (1, 3, 13, 17, 1, (3, 5), 1, (1, 2, 1, 2), (2, 1), "none"),   # dilated rows
    (1, 3, 15, 23, 1, 3, 2, 2, 2, "relu"),                # dilated, stride 2
    (1, 3, 5, 5, 1, 3, 1, 3, 1, "none"),                  # pad == kernel: all-padding rows/cols
    (1, 3, 9, 9, 1, 3, 3, 1, 1, "relu"),                  # stride 3: portable body on every ISA
    (1, 3, 9, 14, 1, (3, 1), (1, 2), (1, 0, 1, 0), 1, "relu6"),  # strides differ per axis
    (1, 3, 4, 4, 1, 3, 2, 1, 1, "none"),                  # 2x2 output
    (1, 3, 1, 1, 1, 3, 1, 1, 1, "relu"),                  # 1x1 image: the centre tap only
]


def dw_id(c):
    n, ch, h, w, m, k, s, p, d, act = c
    f = lambda v: "x".join(map(str, v)) if isinstance(v, tuple) else str(v)  # noqa: E731
    return f"n{n}-c{ch}-h{h}-w{w}-m{m}-k{f(k)}-s{f(s)}-p{f(p)}-d{f(d)}-{act}"


@pytest.mark.parametrize("case", DEPTHWISE, ids=[dw_id(c) for c in DEPTHWISE])
def test_conv_depthwise(case, isa):
    n, c, h, w, m, k, s, p, d, act = case
    kk = k if isinstance(k, tuple) else (k, k)
    check("Conv", dict(out_channels=c * m, kernel=k, stride=s, pad=p, dilation=d, groups=c, act=act,
                       bias=True), (c, h, w), n, kk[0] * kk[1])


@pytest.mark.parametrize("case", DEPTHWISE[:9], ids=[dw_id(c) for c in DEPTHWISE[:9]])
def test_conv_depthwise_same_bits_every_isa(case):
    """conv_dw.c's vector kernels add the taps in the portable body's order with separate
    multiplies and adds, and skip padding taps, so every ISA gives the same bits."""
    isas = L.supported_isas()
    n, c, h, w, m, k, s, p, d, act = case
    shapes = [(c, h, w)]
    spec, a, out_shape, call = kernel_plan("Conv", dict(out_channels=c * m, kernel=k, stride=s, pad=p,
                                                        dilation=d, groups=c, act=act, bias=True),
                                           shapes, n)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    wt = spec.init(a, shapes, rng)
    wt["bias"] = rng.standard_normal(wt["bias"].shape).astype(np.float32)
    outs = []
    for isa in isas:
        with L.using_isa(isa):
            outs.append(run_call(call, [x], wt[call.weights[0]], wt[call.weights[1]],
                                 n * math.prod(out_shape)))
    for isa, o in zip(isas[1:], outs[1:]):
        assert np.array_equal(o.view(np.uint32), outs[0].view(np.uint32)), f"{isa} differs from {isas[0]}"


# Transposed GEMM (Y^T = im2col(X)^T . W^T, batch folded into the rows): forced on odd
# sizes (pixel and channel tails, batch > 1, strides, pads, dilation, every act), and
# the shapes where auto picks it (one output pixel; many channels on a 7x7 map at batch 3).
TRANSPOSED = [
    (1, 3, 5, 5, 17, 3, 1, 1, 1, 1, "relu"),
    (3, 3, 13, 17, 64, 3, 2, 1, 1, 1, "none"),
    (2, 17, 13, 13, 33, 5, 1, 2, 1, 1, "leakyrelu"),
    (3, 64, 5, 5, 65, 1, 1, 0, 1, 1, "sigmoid"),
    (2, 17, 13, 17, 31, 1, 2, 0, 1, 1, "tanh"),
    (1, 17, 17, 17, 17, 3, 1, 2, 2, 1, "none"),
    (3, 17, 13, 5, 3, (3, 5), 1, (1, 2, 1, 2), 1, 1, "relu"),
    (1, 64, 13, 13, 64, 5, 1, 2, 1, 1, "none"),          # K = 1600 > KC
    (5, 19, 2, 2, 33, 3, 1, 1, 1, 1, "relu"),            # 2x2 maps (runs of 2: gathers), odd K rows
    (3, 7, 1, 3, 20, 3, 1, 1, 1, 1, "none"),             # one-row maps
    (2, 6, 4, 4, 18, 3, 2, (0, 1, 1, 0), 1, 1, "none"),  # 2x2 outputs, strided
]
AUTO_TRANSPOSED = [
    (9, 16, 5, 5, 120, 5, 1, 0, 1, 1, "tanh"),           # LeNet-5 C5 at batch 9: one output pixel
    (3, 64, 7, 7, 160, 3, 1, 1, 1, 1, "relu"),           # 7x7 map, 147 pixels in the batch
]


@pytest.mark.parametrize("prepack", [False, True], ids=["plain-weights", "prepacked"])
@pytest.mark.parametrize("case", TRANSPOSED, ids=[conv_id(c) for c in TRANSPOSED])
def test_conv_transposed_gemm(case, prepack, isa):
    n, c, h, w, oc, k, s, p, d, g, act = case
    kk = k if isinstance(k, tuple) else (k, k)
    check("Conv", dict(out_channels=oc, kernel=k, stride=s, pad=p, dilation=d, groups=g, act=act,
                       bias=oc % 2 == 1), (c, h, w), n, c * kk[0] * kk[1], prepack=prepack, algo=2)


@pytest.mark.parametrize("case", AUTO_TRANSPOSED, ids=[conv_id(c) for c in AUTO_TRANSPOSED])
def test_conv_auto_transposed(case, isa):
    n, c, h, w, oc, k, s, p, d, g, act = case
    check("Conv", dict(out_channels=oc, kernel=k, stride=s, pad=p, act=act, bias=True), (c, h, w), n,
          c * k * k)


# The kernel covers the whole unpadded image at batch <= 8: N x OC dot products on the
# raw weights (conv_fc), with K tails off every vector width.
FC_LIKE = [
    (1, 16, 5, 5, 120, 5, 1, 0, 1, 1, "tanh"),           # LeNet-5 C5
    (8, 3, 7, 5, 17, (7, 5), 1, 0, 1, 1, "relu"),
    (3, 1, 1, 1, 5, 1, 2, 0, 1, 1, "sigmoid"),           # 1x1 kernel on a 1x1 image
    (2, 13, 3, 3, 33, 3, 3, 0, 1, 1, "none"),
]


@pytest.mark.parametrize("case", FC_LIKE, ids=[conv_id(c) for c in FC_LIKE])
def test_conv_fc_like(case, isa):
    n, c, h, w, oc, k, s, p, d, g, act = case
    kk = k if isinstance(k, tuple) else (k, k)
    check("Conv", dict(out_channels=oc, kernel=k, stride=s, pad=p, act=act, bias=oc % 2 == 1), (c, h, w), n,
          c * kk[0] * kk[1])


# Small stride-1 convs run direct on AVX-512 (no packing; conv_row), the GEMM elsewhere:
# channel tails (OC % 8), rows of 8..70 pixels (one chunk, two, a pair plus one), padding
# on every side, dilation, a vertical stride, every epilogue.
DIRECT = [
    (1, 1, 32, 32, 6, 5, 1, 0, 1, 1, "tanh"),            # LeNet-5 C1
    (8, 6, 14, 14, 16, 5, 1, 0, 1, 1, "tanh"),           # LeNet-5 C3, batch 8 (threads)
    (1, 3, 9, 70, 9, 3, 1, 1, 1, 1, "relu"),
    (2, 5, 11, 19, 17, (3, 5), 1, (2, 1, 0, 3), (1, 2), 1, "leakyrelu"),
    (1, 4, 12, 8, 3, 3, (2, 1), 1, 1, 1, "sigmoid"),
    (3, 2, 6, 33, 8, (1, 4), 1, (0, 2, 0, 1), 1, 1, "none"),
    (1, 40, 14, 14, 32, 3, 1, 1, 1, 1, "relu"),          # thin (DenseNet growth conv): direct past 1M MACs
    (2, 19, 9, 28, 31, 3, 1, 1, 1, 1, "none"),
]


@pytest.mark.parametrize("algo", [0, 3], ids=["auto", "forced"])
@pytest.mark.parametrize("case", DIRECT, ids=[conv_id(c) for c in DIRECT])
def test_conv_direct(case, algo, isa):
    n, c, h, w, oc, k, s, p, d, g, act = case
    kk = k if isinstance(k, tuple) else (k, k)
    check("Conv", dict(out_channels=oc, kernel=k, stride=s, pad=p, dilation=d, act=act, bias=oc % 2 == 1),
          (c, h, w), n, c * kk[0] * kk[1], algo=algo)


# algo 3 forces the direct kernel where the auto rule would not take it: wide OC (several
# panels plus a tail), 7-pixel and 1-pixel rows, a 1x1 kernel, K past the GEMM's KC.
FORCED_DIRECT = [
    (2, 17, 7, 7, 41, 3, 1, 1, 1, 1, "relu"),
    (1, 64, 13, 13, 64, 5, 1, 2, 1, 1, "none"),
    (1, 9, 5, 1, 17, (3, 1), 1, (1, 0, 1, 0), 1, 1, "tanh"),
    (3, 64, 5, 5, 65, 1, 1, 0, 1, 1, "sigmoid"),
    (20, 1, 32, 32, 6, 5, 1, 0, 1, 1, "tanh"),          # output past 64K floats: the act pass per row
    (3, 2, 40, 40, 17, 3, 1, 1, 1, 1, "sigmoid"),       # (smaller outputs take it once at the end)
]


@pytest.mark.parametrize("case", FORCED_DIRECT, ids=[conv_id(c) for c in FORCED_DIRECT])
def test_conv_direct_forced(case, isa):
    n, c, h, w, oc, k, s, p, d, g, act = case
    kk = k if isinstance(k, tuple) else (k, k)
    check("Conv", dict(out_channels=oc, kernel=k, stride=s, pad=p, dilation=d, act=act, bias=oc % 2 == 1),
          (c, h, w), n, c * kk[0] * kk[1], algo=3)


# Stride 2 along rows, direct (AVX-512's conv_row_s2: the image split into even / odd columns
# first): auto for the image stems (<= 4 input channels, rows >= 8 wide), forced (algo 3) on
# the rest; odd widths (the halves differ by one), pads on every side, dilation, kernels 1..7
# wide, a vertical stride of 1 and of 2 (a 1x1/2 skips rows when splitting), channel tails.
STRIDE2 = [
    (1, 3, 64, 64, 24, 7, 2, 3, 1, 1, "relu"),           # a ResNet stem, smaller
    (2, 3, 27, 29, 17, 3, 2, 1, 1, 1, "relu6"),          # MobileNet's stem; odd H and W, batch 2
    (1, 1, 29, 33, 8, (3, 5), 2, (2, 1, 0, 3), (1, 2), 1, "leakyrelu"),
    (1, 3, 20, 37, 8, 3, 2, 1, 1, 1, "relu"),            # 19-wide rows: 59% of 32 lanes, the GEMM
    (1, 4, 20, 64, 9, (1, 7), (1, 2), (0, 3, 0, 2), 1, 1, "tanh"),
    (2, 3, 16, 31, 8, 1, 2, 0, 1, 1, "none"),
    (1, 9, 15, 30, 20, 3, 2, 1, 1, 1, "sigmoid"),        # auto: the GEMM (9 channels)
    (1, 20, 13, 29, 33, 1, 2, 0, 1, 1, "relu"),
    (1, 3, 9, 9, 8, 3, 2, 1, 1, 1, "none"),              # 5-wide rows: auto takes the GEMM
]


@pytest.mark.parametrize("algo", [0, 3], ids=["auto", "forced"])
@pytest.mark.parametrize("case", STRIDE2, ids=[conv_id(c) for c in STRIDE2])
def test_conv_direct_stride2(case, algo, isa):
    n, c, h, w, oc, k, s, p, d, g, act = case
    kk = k if isinstance(k, tuple) else (k, k)
    kw = dict(out_channels=oc, kernel=k, stride=s, pad=p, dilation=d, act=act, bias=oc % 2 == 1)
    check("Conv", kw, (c, h, w), n, c * kk[0] * kk[1], algo=algo)
    # the rule itself: on AVX-512 the stems take the direct kernel (3) where their rows fill
    # >= 75% of the 16-lane chunks, the rest the GEMM (1)
    spec, a, out_shape, call = kernel_plan("Conv", kw, [(c, h, w)], n)
    got = L.lib.nd_conv_algo(L.ffi.new("nd_conv_params *", call.fields), 8)
    ow = out_shape[2]
    if isa == "avx512" and algo == 0:
        assert got == (3 if c <= 4 and ow >= 8 and 4 * ow >= 3 * (-(-ow // 16) * 16) else 1), (case, got)


# algo 1 forces the im2col GEMM where auto would take Winograd or the direct kernel: its
# panels' runs (masks per run and kj, computed once per panel on AVX-512) on every side of
# the padding, 16-lane chunks full and partial, strides 1 and 2.
IM2COL = [
    (1, 16, 20, 45, 24, 3, 1, 1, 1, 1, "relu"),
    (2, 5, 17, 33, 9, (3, 5), 1, (2, 1, 0, 3), (1, 2), 1, "none"),
    (1, 12, 30, 30, 16, 3, 2, 1, 1, 1, "leakyrelu"),
    (1, 7, 13, 64, 8, 7, 1, 3, 1, 1, "none"),
]


@pytest.mark.parametrize("case", IM2COL, ids=[conv_id(c) for c in IM2COL])
def test_conv_im2col_gemm(case, isa):
    n, c, h, w, oc, k, s, p, d, g, act = case
    kk = k if isinstance(k, tuple) else (k, k)
    check("Conv", dict(out_channels=oc, kernel=k, stride=s, pad=p, dilation=d, act=act, bias=True),
          (c, h, w), n, c * kk[0] * kk[1], algo=1)


@pytest.mark.parametrize("hw", [14, 56])
def test_thin_small_conv_direct_not_winograd(hw, isa):
    # DenseNet's 128->32 growth conv: with AVX-512's packed weights (MR 8) the 14x14 one is
    # left to the direct kernel, the 56x56 one keeps Winograd; AVX2's (MR 6) keep Winograd
    kw = dict(out_channels=32, kernel=3, stride=1, pad=1, act="none", bias=True)
    check("Conv", kw, (128, hw, hw), 1, 128 * 9)
    spec, a, out_shape, call = kernel_plan("Conv", kw, [(128, hw, hw)], 1)
    p = L.ffi.new("nd_conv_params *", call.fields)
    assert L.lib.nd_conv_algo(p, 6) == 4
    if isa == "avx512":
        assert L.lib.nd_conv_algo(p, 8) == (3 if hw == 14 else 4)


@pytest.mark.parametrize("prepack", [False, True], ids=["plain-weights", "prepacked"])
def test_conv_weight_layouts(prepack, isa):
    check("Conv", dict(out_channels=31, kernel=3, stride=1, pad=1, act="relu"), (17, 13, 13), 3, 17 * 9,
          prepack=prepack)


@pytest.mark.parametrize("algo", [0, 2], ids=["gemm", "transposed"])
def test_conv_prepacked_for_another_isa(algo):
    """Weights prepacked for one MR (A panels) or NR (transposed: B panels) and run
    under another ISA are repacked, not misread."""
    isas = L.supported_isas()
    if len(isas) < 2:
        pytest.skip("one ISA only")
    spec = ops.get("Conv")
    shapes = [(17, 13, 13)]
    a = spec.resolve(spec.bind((), dict(out_channels=31, kernel=3, pad=1)), shapes)
    out_shape = spec.infer(a, shapes)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, *shapes[0])).astype(np.float32)
    w = spec.init(a, shapes, rng)
    ref = spec.reference(a, [x.astype(np.float64)], {k: v.astype(np.float64) for k, v in w.items()})
    with L.using_isa(isas[-1]):
        call = builder("Conv")(a, shapes, out_shape, 2)
        if algo:
            call.fields["algo"] = algo
            call.ws_floats = int(L.lib.nd_conv_ws_floats(L.ffi.new("nd_conv_params *", call.fields)))
        of = 2 * math.prod(out_shape)
        prog = Program([Step(call, 0, [of], w["weight"], w["bias"], out_floats=of, in_floats=[x.size])],
                       of + x.size)
    with L.using_isa(isas[0]):
        arena = prog.new_arena()
        arena[of:] = x.ravel()
        prog.run(arena, prog.new_ws())
    diff = np.abs(arena[:of].reshape(ref.shape) - ref).max()
    assert diff < 1e-4, f"max abs diff {diff:.3g}"


# ----------------------------------------------------------------- ConvTranspose
# (n, c, h, w, oc, kernel, stride, pad, output_padding, dilation, groups, act)
DECONV = [
    (1, 3, 5, 5, 17, 4, 2, 1, 0, 1, 1, "none"),          # exact 2x upsampling
    (3, 17, 5, 13, 3, 2, 2, 0, 0, 1, 1, "relu"),
    (1, 17, 1, 1, 64, 3, 1, 0, 0, 1, 1, "none"),
    (1, 3, 13, 5, 17, 3, 3, 1, 2, 1, 1, "sigmoid"),      # output_padding
    (1, 3, 5, 5, 17, 1, 3, 0, 1, 1, 1, "none"),          # stride > kernel: holes
    (1, 3, 5, 13, 3, (3, 5), (2, 1), (1, 0, 0, 2), 0, 1, 1, "none"),  # asymmetric crop
    (1, 17, 5, 5, 17, 3, 2, 1, 1, 2, 1, "tanh"),         # dilation 2
    (3, 64, 5, 5, 64, 4, 2, 1, 0, 1, 2, "relu"),         # groups 2
    (1, 17, 13, 13, 17, 3, 1, 1, 0, 1, 17, "none"),      # depthwise
]


def deconv_id(c):
    f = lambda v: "x".join(map(str, v)) if isinstance(v, tuple) else str(v)  # noqa: E731
    n, ch, h, w, oc, k, s, p, op, d, g, act = c
    return f"n{n}-c{ch}-h{h}-w{w}-oc{oc}-k{f(k)}-s{f(s)}-p{f(p)}-op{op}-d{d}-g{g}-{act}"


@pytest.mark.parametrize("case", DECONV, ids=[deconv_id(c) for c in DECONV])
def test_conv_transpose(case, isa):
    n, c, h, w, oc, k, s, p, op, d, g, act = case
    kk = k if isinstance(k, tuple) else (k, k)
    check("ConvTranspose", dict(out_channels=oc, kernel=k, stride=s, pad=p, output_padding=op,
                                dilation=d, groups=g, act=act), (c, h, w), n, c // g * kk[0] * kk[1])


# ----------------------------------------------------------------- Local
LOCAL = [
    (1, 3, 5, 5, 17, 3, 1, 0, 1),
    (3, 17, 13, 13, 3, 3, 2, 1, 1),
    (1, 3, 13, 17, 5, (3, 5), 3, (0, 1, 2, 1), 2),
]


@pytest.mark.parametrize("case", LOCAL, ids=[f"n{c[0]}-c{c[1]}-h{c[2]}-w{c[3]}-oc{c[4]}-k{c[5]}-s{c[6]}-p{c[7]}-d{c[8]}"
                                             .replace("(", "").replace(")", "").replace(", ", "x")
                                             for c in LOCAL])
def test_local(case, isa):
    n, c, h, w, oc, k, s, p, d = case
    kk = k if isinstance(k, tuple) else (k, k)
    check("Local", dict(out_channels=oc, kernel=k, stride=s, pad=p, dilation=d), (c, h, w), n,
          c * kk[0] * kk[1])


# ----------------------------------------------------------------- FC
# (n, input shape, out, act): n <= 8 takes the dot path, n > 8 the packed GEMM
FCS = [
    (1, (1,), 1, "none"),
    (1, (300,), 17, "relu"),
    (3, (17, 5, 5), 129, "none"),
    (8, (64,), 31, "sigmoid"),
    (9, (129,), 64, "relu"),
    (31, (3, 13, 13), 7, "tanh"),
    (64, (300,), 300, "leakyrelu"),
]


@pytest.mark.parametrize("case", FCS, ids=[f"n{c[0]}-in{'x'.join(map(str, c[1]))}-out{c[2]}-{c[3]}" for c in FCS])
def test_fc(case, isa):
    n, shape, out, act = case
    check("FC", dict(out_features=out, act=act, bias=out != 31), shape, n, math.prod(shape))
