"""The C backward kernels of Conv, ConvTranspose, Local and FC (csrc/kernels/train_conv.c) against
the float64 oracles (netdsl/train/ref_conv.py), run the way a training plan runs them: the
@backward rule's KernelCall in an arena (netdsl.train.check.run_bwd, output prefilled with
NaN so a cell the kernel skips shows up), on every ISA this CPU has, at batch 1 and 3.

Tolerance: each gradient value is a float32 sum of `terms` products (dx: og*KH*KW; dW and db:
batch*OH*OW; FC/Local likewise), whose rounding grows like eps32 * sqrt(terms) relative to
the size of the partial sums, which are O(sqrt(terms)) for N(0,1) data. So
    |kernel - ref| <= 2e-5 * sqrt(terms) * max(1, max|ref|)
(the forward Winograd tests' bound: the stride-1 dx may run Winograd) leaves ~100x headroom
over eps32 yet fails on any wrong or missing tap (an O(1) change).

The cases reach every path (a test below checks it): dx as a conv of dy (Winograd 3x3 over
enough tiles, the plain GEMM otherwise, 1x1,
grouped, depthwise, dilated, asymmetric pads), GEMM + col2im (strided, pads >= the kernel,
and forced on a stride-1 case), direct depthwise (strided, channel multiplier 2); dW by
im2col GEMM over pixel blocks running across images, 1x1 reading x in place (32x32 maps), direct
depthwise; stride > kernel and windows that leave the bottom/right input unread; kernels
cut to the taps that read the image (1x1 and 2x2 maps with padding).
The training forward (nd_conv_train_fwd_f32: weights packed per call, taps cut the same way)
is checked against OpSpec.reference in float64 with the same bound (terms = taps per output).
"""
from __future__ import annotations

import math
import zlib

import numpy as np
import pytest

from netdsl import ops
from netdsl.runtime import lib as L

if not L.available():
    pytest.skip("C kernels not built: python netdsl/runtime/_build.py", allow_module_level=True)

from netdsl.train.check import run_bwd
from netdsl.train.registry import backward_rule, grad_reference

ISAS = ("portable", "avx2", "avx512")


@pytest.fixture(params=ISAS)
def isa(request):
    """Every ISA level this CPU runs (netdsl.runtime.lib.using_isa); the others skip."""
    if request.param not in L.supported_isas():
        pytest.skip(f"this CPU has no {request.param}")
    with L.using_isa(request.param):
        yield request.param


# (op, attrs, input shape, forced dx algo or 0)
CASES = [
    ("Conv", dict(out_channels=16, kernel=3, pad=1), (16, 32, 32), 0),          # dx: Winograd at n=3
    ("Conv", dict(out_channels=16, kernel=3, pad=1), (16, 32, 32), 2),          # same, GEMM + col2im
    ("Conv", dict(out_channels=16, kernel=3, pad=1), (16, 12, 12), 0),          # too few tiles: folded GEMM
    ("Conv", dict(out_channels=5, kernel=3, stride=2, pad=1), (3, 9, 7), 0),
    ("Conv", dict(out_channels=4, kernel=(3, 2), pad=(1, 2, 0, 1), dilation=(2, 3), bias=False), (3, 11, 13), 0),
    ("Conv", dict(out_channels=6, kernel=3, pad=1, groups=2), (4, 7, 7), 0),
    ("Conv", dict(out_channels=6, kernel=3, pad=(2, 0, 1, 1), groups=6), (6, 9, 8), 0),   # depthwise, stride 1
    ("Conv", dict(out_channels=6, kernel=3, stride=2, pad=1, groups=6), (6, 9, 9), 0),    # depthwise, strided
    ("Conv", dict(out_channels=8, kernel=(3, 5), stride=(1, 2), pad=(2, 1, 0, 2), groups=4), (4, 8, 9), 0),
    ("Conv", dict(out_channels=8, kernel=3, pad=1, groups=4), (4, 6, 7), 0),    # depthwise x2, stride 1
    ("Conv", dict(out_channels=7, kernel=1), (5, 5, 7), 0),                     # 1x1, small map: folded
    ("Conv", dict(out_channels=9, kernel=1), (6, 32, 32), 0),                   # 1x1, x read in place
    ("Conv", dict(out_channels=3, kernel=1, stride=3), (2, 8, 7), 0),           # stride > kernel
    ("Conv", dict(out_channels=3, kernel=2, stride=3, pad=(0, 0, 1, 2)), (2, 10, 9), 0),
    ("Conv", dict(out_channels=3, kernel=2, pad=(2, 1, 2, 0)), (2, 5, 6), 0),   # pad >= kernel: col2im
    ("Conv", dict(out_channels=4, kernel=5), (3, 5, 5), 0),                     # one output pixel
    ("Conv", dict(out_channels=24, kernel=3, pad=1), (64, 5, 5), 0),            # dx: the transposed GEMM
    ("Conv", dict(out_channels=4, kernel=3, stride=2, pad=1), (3, 40, 60), 0),  # 20x30: 2 + 1 images per GEMM
    ("Conv", dict(out_channels=6, kernel=3, pad=1), (5, 1, 1), 0),            # 1x1 map: only the centre tap
    ("Conv", dict(out_channels=6, kernel=3, stride=2, pad=1), (5, 2, 2), 0),  # 2x2 taps of 3x3 read the image
    ("ConvTranspose", dict(out_channels=3, kernel=4, stride=2, pad=1), (2, 5, 5), 0),
    ("ConvTranspose", dict(out_channels=4, kernel=3, stride=3, output_padding=2), (3, 5, 3), 0),
    ("ConvTranspose", dict(out_channels=3, kernel=(3, 5), stride=(2, 1), pad=(1, 0, 0, 2), dilation=2,
                           bias=False), (2, 5, 7), 0),
    ("ConvTranspose", dict(out_channels=4, kernel=2, stride=2, groups=2), (4, 3, 5), 0),
    ("ConvTranspose", dict(out_channels=6, kernel=3, stride=2, pad=(1, 0, 2, 1), output_padding=(1, 2),
                           dilation=(1, 3), groups=3), (3, 4, 5), 0),
    ("ConvTranspose", dict(out_channels=16, kernel=3, pad=1), (16, 12, 12), 0),   # stride 1, 3x3
    ("ConvTranspose", dict(out_channels=3, kernel=3, stride=2, groups=3), (3, 4, 4), 0),  # depthwise adjoint
    ("Local", dict(out_channels=3, kernel=3), (2, 5, 7), 0),
    ("Local", dict(out_channels=4, kernel=(3, 2), stride=2, pad=(1, 0, 2, 1), dilation=(1, 2), bias=False),
     (3, 7, 9), 0),
    ("FC", dict(out_features=5), (7,), 0),
    ("FC", dict(out_features=3, bias=False), (2, 3, 5), 0),
    ("FC", dict(out_features=37), (3, 5, 9), 0),
]


def case_id(c):
    op, kw, shape, algo = c
    s = f"{op}-{'x'.join(map(str, shape))}-" + "-".join(f"{k}{v}" for k, v in kw.items()).replace(" ", "")
    return s + (f"-algo{algo}" if algo else "")


def plan(op, kw, shape, n, algo=0):
    """(spec, attrs, out shape, {gradient: Bwd}) as a training plan builds them."""
    spec = ops.get(op)
    a = spec.resolve(spec.bind((), kw), [tuple(shape)])
    out = tuple(spec.infer(a, [tuple(shape)]))
    bwds = {b.out: b for b in backward_rule(op)(a, [tuple(shape)], out, n, {"dx0", "dparams"})}
    assert set(bwds) == {"dx0", "dparams"}
    if algo:
        call = bwds["dx0"].call
        call.fields["algo"] = algo
        call.ws_floats = int(L.lib.nd_conv_bwd_data_ws_floats(L.ffi.new("nd_conv_bwd_params *", call.fields)))
    return spec, a, out, bwds


def data(spec, a, shape, out, n, case):
    rng = np.random.default_rng(zlib.crc32(case.encode()))
    x = rng.standard_normal((n, *shape)).astype(np.float32)
    params = {k: rng.standard_normal(s).astype(np.float32) for k, s in spec.params(a, [tuple(shape)]).items()}
    dy = rng.standard_normal((n, *out)).astype(np.float32)
    return x, params, dy


def terms(op, a, shape, out, n):
    """Products summed into one value of (dx, dW): the tolerance's sqrt(terms)."""
    if op == "FC":
        return out[0], n
    kh, kw = a["kernel"]
    g = a.get("groups", 1)
    if op == "Conv":
        return out[0] // g * kh * kw, n * out[1] * out[2]
    if op == "ConvTranspose":
        return out[0] // g * kh * kw, n * shape[1] * shape[2]
    return out[0] * kh * kw, n


def check(got, want, t, what):
    """|got - want| <= 2e-5 sqrt(t) max(1, max|want|) where want is finite; NaN and +-inf exactly
    where want has them."""
    got, want = np.asarray(got, np.float64).reshape(want.shape), np.asarray(want, np.float64)
    for name, fn in (("NaN", np.isnan), ("+inf", np.isposinf), ("-inf", np.isneginf)):
        g, w = fn(got), fn(want)
        assert (g == w).all(), (f"{what}: {name} at {np.argwhere(g & ~w)[:5].tolist()} (unwritten or spread), "
                                f"missing at {np.argwhere(w & ~g)[:5].tolist()}")
    fin = np.isfinite(want)
    tol = 2e-5 * math.sqrt(max(t, 1)) * max(1.0, float(np.abs(want[fin]).max(initial=0.0)))
    diff = float(np.abs(got[fin] - want[fin]).max(initial=0.0))
    assert diff <= tol, f"{what}: max abs diff {diff:.3g} > tol {tol:.3g}"


def run_case(op, kw, shape, n, algo, case, poison=None, threads=0):
    spec, a, out, bwds = plan(op, kw, shape, n, algo)
    x, params, dy = data(spec, a, shape, out, n, case)
    if poison is not None:
        poison(dy)
    flat = np.concatenate([params[k].ravel() for k in spec.params(a, [tuple(shape)])])
    env = {"dy": dy, "x0": x, "params": flat}
    dx = run_bwd(bwds["dx0"], env, out_floats=x.size, threads=threads)
    dp = run_bwd(bwds["dparams"], env, threads=threads)
    p64 = {k: v.astype(np.float64) for k, v in params.items()}
    y = spec.reference(a, [x.astype(np.float64)], p64)
    want_dx, want_dp = grad_reference(op)(a, [x.astype(np.float64)], p64, y, dy.astype(np.float64))
    t_dx, t_dw = terms(op, a, shape, out, n)
    check(dx, want_dx[0], t_dx, f"{case} dx")
    off = 0
    for k in spec.params(a, [tuple(shape)]):
        size = params[k].size
        check(dp[off:off + size], want_dp[k], t_dw, f"{case} d{k}")
        off += size
    assert off == dp.size
    return bwds


@pytest.mark.parametrize("n", [1, 3])
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_backward_kernels_match_the_oracle(case, n, isa):
    op, kw, shape, algo = case
    run_case(op, kw, shape, n, algo, f"{case_id(case)}-n{n}-{isa}")


@pytest.mark.parametrize("case", [c for c in CASES if c[0] in ("Conv", "ConvTranspose")][::3], ids=case_id)
def test_one_thread_gives_the_same_gradients(case):
    """The kernels on one thread (the blocked dW then has a single partial; the default run
    above uses every thread the workspace was sized for)."""
    op, kw, shape, algo = case
    run_case(op, kw, shape, 3, algo, case_id(case) + "-t1", threads=1)


# dW split by input channels (each thread owns whole dW columns): blocks inside one image with dy
# read in place (1 thread: 45x9 taps make ~2600-pixel blocks, two per 64x64 map) or across images
# on dy gathered whole (more threads: fewer taps each, longer blocks; 2x2 maps); 3 threads split
# 45 channels 15/15/15, 2 threads 22/23.
CHAN_CASES = [
    ("Conv", dict(out_channels=24, kernel=3, pad=1), (45, 64, 64), 0),
    ("Conv", dict(out_channels=40, kernel=3, pad=1), (45, 2, 2), 0),
    ("Conv", dict(out_channels=40, kernel=3, pad=1, bias=False), (45, 1, 1), 0),
]


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("case", CHAN_CASES, ids=case_id)
def test_dw_split_by_channels_at_any_thread_count(case, threads):
    """The channel-split dW and every other kernel with the workspace sized for `threads` and
    run on that many (more threads than this machine's cores is still a valid team)."""
    op, kw, shape, algo = case
    spec, a, out, bwds = plan(op, kw, shape, 3, algo)
    for b in bwds.values():
        b.call.fields["threads"] = threads
        fn = "nd_conv_bwd_data_ws_floats" if b.out == "dx0" else "nd_conv_bwd_params_ws_floats"
        b.call.ws_floats = int(getattr(L.lib, fn)(L.ffi.new("nd_conv_bwd_params *", b.call.fields)))
    x, params, dy = data(spec, a, shape, out, 3, case_id(case))
    flat = np.concatenate([params[k].ravel() for k in spec.params(a, [tuple(shape)])])
    env = {"dy": dy, "x0": x, "params": flat}
    dx = run_bwd(bwds["dx0"], env, out_floats=x.size, threads=threads)
    dp = run_bwd(bwds["dparams"], env, threads=threads)
    p64 = {k: v.astype(np.float64) for k, v in params.items()}
    y = spec.reference(a, [x.astype(np.float64)], p64)
    want_dx, want_dp = grad_reference(op)(a, [x.astype(np.float64)], p64, y, dy.astype(np.float64))
    t_dx, t_dw = terms(op, a, shape, out, 3)
    check(dx, want_dx[0], t_dx, f"{case_id(case)}-t{threads} dx")
    off = 0
    for k in spec.params(a, [tuple(shape)]):
        check(dp[off:off + params[k].size], want_dp[k], t_dw, f"{case_id(case)}-t{threads} d{k}")
        off += params[k].size


# dx by GEMM + col2im with >= 8 images per GEMM (maps up to ~11x11 at batch >= 8): the GEMM's
# columns run pixel-major (the images of a pixel side by side) and col2im adds into a per-channel
# tile that is transposed into dx. Strided, dilated with asymmetric pads, grouped, pads >= the
# kernel, 1x1 strided, the trimmed 3x3 on 2x2 maps, and 11x11 (9 images per GEMM, then 1).
PM_CASES = [
    ("Conv", dict(out_channels=16, kernel=3, pad=1), (8, 4, 4), 0),
    ("Conv", dict(out_channels=12, kernel=3, pad=1), (10, 2, 2), 0),
    ("Conv", dict(out_channels=5, kernel=3, stride=2, pad=1), (3, 9, 7), 0),
    ("Conv", dict(out_channels=4, kernel=(3, 2), pad=(1, 2, 0, 1), dilation=(2, 3), bias=False), (3, 6, 7), 0),
    ("Conv", dict(out_channels=6, kernel=3, pad=1, groups=2), (4, 7, 7), 0),
    ("Conv", dict(out_channels=3, kernel=2, pad=(2, 1, 2, 0)), (2, 5, 6), 0),
    ("Conv", dict(out_channels=3, kernel=1, stride=3), (2, 8, 7), 0),
    ("Conv", dict(out_channels=6, kernel=3, pad=1), (4, 11, 11), 0),
]


@pytest.mark.parametrize("threads", [1, 0])
@pytest.mark.parametrize("case", PM_CASES, ids=case_id)
def test_pixel_major_folds(case, threads, isa):
    op, kw, shape, algo = case
    run_case(op, kw, shape, 10, algo, f"{case_id(case)}-pm-{isa}-t{threads}", threads=threads)


@pytest.mark.parametrize("case", PM_CASES[:2], ids=case_id)
def test_pixel_major_folds_nan(case):
    op, kw, shape, algo = case

    def poison(dy):
        v = dy.reshape(dy.shape[0], dy.shape[1], -1)
        v[0, 0, 0] = np.nan
        v[-1, -1, -1] = np.inf
        v[4, 1, 3] = -np.inf

    with np.errstate(invalid="ignore"):
        run_case(op, kw, shape, 10, algo, case_id(case) + "-pm-nan", poison)


def _algos(kind):
    fn = getattr(L.lib, f"nd_conv_bwd_{kind}_algo")
    got = set()
    for op, kw, shape, algo in CASES:
        if op == "Conv":
            for n in (1, 3):
                _, _, _, bwds = plan(op, kw, shape, n, algo)
                got.add(int(fn(L.ffi.new("nd_conv_bwd_params *", bwds["dx0" if kind == "data" else "dparams"]
                                         .call.fields))))
    return got


def test_the_cases_reach_every_conv_path():
    assert _algos("data") == {1, 2, 3, 4}, "dx: 1 conv of dy, 2 GEMM + col2im, 3 direct depthwise, 4 Winograd"
    assert _algos("params") == {1, 2, 3}, "dW: 1 im2col GEMM, 2 1x1 in place, 3 direct depthwise"


NAN_CASES = [c for c in CASES if case_id(c) in {
    "Conv-16x32x32-out_channels16-kernel3-pad1", "Conv-3x9x7-out_channels5-kernel3-stride2-pad1",
    "Conv-6x9x9-out_channels6-kernel3-stride2-pad1-groups6", "Conv-6x9x8-out_channels6-kernel3-pad(2,0,1,1)-groups6",
    "ConvTranspose-2x5x5-out_channels3-kernel4-stride2-pad1", "Local-2x5x7-out_channels3-kernel3",
    "FC-3x5x9-out_features37", "Conv-5x1x1-out_channels6-kernel3-pad1"}]


@pytest.mark.parametrize("case", NAN_CASES, ids=case_id)
def test_a_nan_in_dy_reaches_exactly_the_gradients_it_feeds(case):
    """One NaN and one inf in dy (at a corner, so padded taps are involved): the NaN pattern of
    every gradient is the float64 oracle's (products formed, never selected away)."""
    op, kw, shape, algo = case

    def poison(dy):
        v = dy.reshape(dy.shape[0], dy.shape[1], -1)
        v[0, 0, 0] = np.nan
        v[-1, -1, -1] = np.inf

    with np.errstate(invalid="ignore"):
        run_case(op, kw, shape, 3, algo, case_id(case) + "-nan", poison)   # n=3: Winograd for the 3x3


def test_the_nan_cases_are_all_found():
    assert len(NAN_CASES) == 8


def test_rules_refuse_fused_layers_and_unknown_gradients():
    from netdsl.runtime.executor import PlanError
    spec = ops.get("Conv")
    a = spec.resolve(spec.bind((), dict(out_channels=2, kernel=3, act="relu")), [(2, 5, 5)])
    with pytest.raises(PlanError, match="fused activation"):
        backward_rule("Conv")(a, [(2, 5, 5)], (2, 3, 3), 1, {"dx0"})
    a = spec.resolve(spec.bind((), dict(out_channels=2, kernel=3)), [(2, 5, 5)])
    with pytest.raises(PlanError, match="no gradient dx1"):
        backward_rule("Conv")(a, [(2, 5, 5)], (2, 3, 3), 1, {"dx1"})
    assert [b.out for b in backward_rule("Conv")(a, [(2, 5, 5)], (2, 3, 3), 1, {"dparams"})] == ["dparams"]


def test_bad_params_are_refused_by_the_kernels():
    ffi, lib = L.ffi, L.lib
    _, _, _, bwds = plan("Conv", dict(out_channels=4, kernel=3), (2, 5, 5), 1)
    f = dict(bwds["dx0"].call.fields, groups=3)          # 3 does not divide 2 channels
    assert lib.nd_conv_bwd_data_ws_floats(ffi.new("nd_conv_bwd_params *", f)) == -1
    assert lib.nd_conv_bwd_params_f32(ffi.new("nd_conv_bwd_params *", f), ffi.NULL, ffi.NULL, ffi.NULL,
                                      ffi.NULL, ffi.NULL) == lib.ND_EINVAL


FWD_CASES = [
    ("Conv", dict(out_channels=16, kernel=3, pad=1), (16, 32, 32)),          # Winograd at n=3 (192 tiles)
    ("Conv", dict(out_channels=16, kernel=3, pad=1), (16, 12, 12)),          # the GEMM, prepacked
    ("Conv", dict(out_channels=40, kernel=3, pad=1), (36, 4, 4)),            # small map: transposed GEMM
    ("Conv", dict(out_channels=6, kernel=3, pad=1), (5, 1, 1)),              # cut to the centre tap
    ("Conv", dict(out_channels=6, kernel=3, stride=2, pad=1), (5, 2, 2)),    # cut to 2x2 taps
    ("Conv", dict(out_channels=8, kernel=(3, 5), stride=(1, 2), pad=(2, 1, 0, 2), groups=4), (4, 8, 9)),
    ("Conv", dict(out_channels=6, kernel=3, stride=2, pad=1, groups=6), (6, 9, 9)),   # depthwise
    ("Conv", dict(out_channels=4, kernel=5, bias=False), (3, 5, 5)),         # one output pixel
    ("Conv", dict(out_channels=8, kernel=3, pad=1), (8, 20, 20)),            # direct (AVX-512)
]


def fwd_case_id(c):
    return case_id((*c, 0))


def run_fwd(op, kw, shape, n, threads, nan_at=None):
    from netdsl.train.check import run_train_forward
    from netdsl.train.registry import train_forward_rule
    spec = ops.get(op)
    a = spec.resolve(spec.bind((), kw), [tuple(shape)])
    out = tuple(spec.infer(a, [tuple(shape)]))
    tf = train_forward_rule(op)(a, [tuple(shape)], out, n)
    x, params, _ = data(spec, a, shape, out, n, fwd_case_id((op, kw, shape)))
    if nan_at is not None:
        params["weight"][nan_at] = np.nan
    flat = np.concatenate([params[k].ravel() for k in spec.params(a, [tuple(shape)])])
    y, _, _ = run_train_forward(tf, {"x0": x, "params": flat}, n * math.prod(out), threads=threads)
    with np.errstate(invalid="ignore"):
        want = spec.reference(a, [x.astype(np.float64)], {k: v.astype(np.float64) for k, v in params.items()})
    kh, kwd = a["kernel"]
    return y, want, shape[0] // a.get("groups", 1) * kh * kwd


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("case", FWD_CASES, ids=fwd_case_id)
def test_training_forward_matches_the_reference(case, threads, isa):
    op, kw, shape = case
    y, want, t = run_fwd(op, kw, shape, 3, threads)
    check(y, want, t, f"{fwd_case_id(case)}-t{threads}-{isa} y")


def test_training_forward_keeps_a_nan_weight_in_a_dropped_tap():
    """A NaN in a tap that only multiplies padding still reaches its filter's outputs (the full
    conv runs when a dropped weight is not finite), as in the reference's products."""
    y, want, t = run_fwd("Conv", dict(out_channels=6, kernel=3, pad=1), (5, 1, 1), 3, 0, nan_at=(2, 1, 0, 0))
    assert np.isnan(want.reshape(3, 6)[:, 2]).all()
    check(y, want, t, "nan weight y")


def test_a_3x3_conv_on_a_1x1_map_runs_as_its_centre_tap():
    """The backward kernels take the cut conv's paths: dx as a 1x1 conv of dy (1) rather than the
    GEMM + col2im (2) the full 3x3 kernel would take on a 1-pixel map."""
    _, _, _, bwds = plan("Conv", dict(out_channels=6, kernel=3, pad=1), (5, 1, 1), 3)
    f = bwds["dx0"].call.fields
    assert L.lib.nd_conv_bwd_data_algo(L.ffi.new("nd_conv_bwd_params *", f)) == 1
    g = dict(f, h=3, w=3, oh=3, ow=3)     # a 3x3 map reads every tap: not cut, folded GEMM
    assert L.lib.nd_conv_bwd_data_algo(L.ffi.new("nd_conv_bwd_params *", g)) == 2


# Cut kernels big enough that trim_weights runs threaded over blocks of 256 planes, the last
# block partial: 190 x 170 planes (32300 = 126 * 256 + 44) x 9 taps > 2^18.
BIG_TRIM = [
    ("Conv", dict(out_channels=190, kernel=3, pad=1), (170, 1, 1)),             # centre tap
    ("Conv", dict(out_channels=190, kernel=3, stride=2, pad=1), (170, 2, 2)),   # 2x2 taps
]


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("case", BIG_TRIM, ids=fwd_case_id)
def test_cut_kernels_over_many_weight_blocks(case, threads):
    """Forward, dx and dW of a cut conv whose weights span many copy blocks, threaded or not;
    a NaN weight in a dropped tap of the partial last block still reaches its filter."""
    op, kw, shape = case
    y, want, t = run_fwd(op, kw, shape, 2, threads)
    check(y, want, t, f"{fwd_case_id(case)}-t{threads} y")
    run_case(op, kw, shape, 2, 0, f"{fwd_case_id(case)}-t{threads}", threads=threads)
    y, want, t = run_fwd(op, kw, shape, 2, threads, nan_at=(189, 169, 0, 0))
    assert np.isnan(want.reshape(2, 190, -1)[:, 189]).all()
    check(y, want, t, f"{fwd_case_id(case)}-t{threads} nan weight y")
