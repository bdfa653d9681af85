"""C kernels of the data-movement and element-wise ops vs their numpy references.

Covers csrc/kernels/{pool,activation,softmax,norm,merge,resize,pad}.c through
the same path the executor takes: spec.bind -> spec.resolve -> spec.infer ->
the kparams builder -> the params struct -> the kernel, compared with
spec.reference evaluated in float64 (so the oracle's own rounding is not in
the comparison). Grids use odd sizes (1, 5, 13, 17), channel counts 1/3/17,
batch 1 and 3; ids name the case; failures print the max abs difference.

Tolerances are per op family, each justified where it is set. Exact equality
is demanded wherever the kernel only selects or copies values.
"""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from netdsl.ops.attrs import OpError

# the shared kernel-test helpers (tests/ops/conftest.py)
from conftest import check, kcall, kernel_plan as plan, kernel_vs_reference as run, ptr as _ptr, rng_for

_k = pytest.importorskip("netdsl._kernels", reason="C kernels not built: python netdsl/runtime/_build.py")
ffi, lib = _k.ffi, _k.lib


# ---------------------------------------------------------------- window pools

POOL_SHAPES = [(1, 1, 1, 1), (1, 3, 5, 5), (3, 17, 13, 17), (1, 3, 17, 13), (3, 1, 13, 5), (1, 17, 5, 13)]
POOL_KERNELS = [1, 2, 3, 5, (3, 2)]
POOL_STRIDES = [1, 2, 3, (2, 1)]                       # 3 > kernel 1 and 2: gaps between windows
POOL_PADS = [0, 1, (0, 1, 1, 0), (1, 0, 0, 1), 2]      # asymmetric both ways


def _tag(v, sep="x"):
    if isinstance(v, tuple):
        return str(v[0]) if len(set(v)) == 1 else sep.join(map(str, v))
    return str(v)


def _pool_cases():
    out = []
    for (n, c, h, w), k, s, p, ceil in itertools.product(POOL_SHAPES, POOL_KERNELS, POOL_STRIDES,
                                                           POOL_PADS, (False, True)):
        kw = dict(kernel=k, stride=s, pad=p, ceil_mode=ceil)
        try:      # keep only what the language accepts: pad <= kernel/2, output not empty
            plan("MaxPool", kw, [(c, h, w)], n)
        except OpError:
            continue
        cid = f"n{n}-c{c}-h{h}-w{w}-k{_tag(k)}-s{_tag(s)}-p{_tag(p, ',')}" + ("-ceil" if ceil else "")
        out.append(pytest.param((n, c, h, w), kw, id=cid))
    return out


POOL_CASES = _pool_cases()


@pytest.mark.parametrize("shape,kw", POOL_CASES)
def test_maxpool(shape, kw, request):
    case = request.node.callspec.id
    got, want = run("MaxPool", kw, [rng_for(case).standard_normal(shape)])
    check(got, want, case)             # selects an input value: exact


# MinPool and StochasticPool share every line of window arithmetic with MaxPool and
# AvgPool (only the combine step differs), so a third / a half of the grid keeps the
# suite fast without losing a code path.
@pytest.mark.parametrize("shape,kw", POOL_CASES[::3])
def test_minpool(shape, kw, request):
    case = request.node.callspec.id
    got, want = run("MinPool", kw, [rng_for(case).standard_normal(shape)])
    check(got, want, case)


@pytest.mark.parametrize("cip", [True, False], ids=["cip", "nocip"])
@pytest.mark.parametrize("shape,kw", POOL_CASES)
def test_avgpool(shape, kw, cip, request):
    case = request.node.callspec.id
    x = rng_for(case).standard_normal(shape)
    got, want = run("AvgPool", {**kw, "count_include_pad": cip}, [x])
    # A float32 sum of <= 25 terms, |x| < 6: rounding <= 25 * 2^-24 * 6 * 25 / 25 ~ 1e-5 worst
    # case after the division; typical error is ~1e-7.
    check(got, want, case, atol=1e-5, rtol=1e-6)


@pytest.mark.parametrize("shape,kw", POOL_CASES[::2])
def test_stochasticpool(shape, kw, request):
    case = request.node.callspec.id
    x = np.maximum(rng_for(case).standard_normal(shape), 0)   # post-ReLU: half zeros, some all-zero windows
    got, want = run("StochasticPool", kw, [x])
    # sum(a^2)/sum(a) of <= 25 non-negative terms: each sum is accurate to 25 eps relative
    # (no cancellation), so the quotient to ~50 * 6e-8 = 3e-6 relative.
    check(got, want, case, atol=1e-7, rtol=5e-6)


@pytest.mark.parametrize("op", ["MaxPool", "AvgPool", "StochasticPool"])
@pytest.mark.parametrize("kw", [dict(kernel=3, stride=1, pad=1), dict(kernel=2, ceil_mode=True),
                                dict(kernel=(3, 2), stride=(1, 3), pad=(1, 0, 0, 1))],
                         ids=["k3-s1-p1", "k2-s2-ceil", "k3x2-s1x3-p1,0,0,1"])
def test_pool_wide_rows(op, kw, request):
    """Rows wider than the kernel's 256-column chunk: chunk seams inside and at the edges."""
    case = request.node.callspec.id
    x = np.abs(rng_for(case).standard_normal((3, 2, 5, 601)))
    got, want = run(op, kw, [x])
    check(got, want, case, atol=1e-5, rtol=5e-6)     # as test_avgpool / test_stochasticpool


@pytest.mark.parametrize("op", ["MaxPool", "MinPool", "AvgPool"])
@pytest.mark.parametrize("shape", [(1, 6, 28, 28), (3, 16, 10, 10), (2, 3, 7, 9), (1, 2, 2, 2)],
                         ids=["lenet-s2", "lenet-s4", "odd", "one-window"])
def test_pool_2x2(op, shape, request):
    """The 2x2/s2 unpadded fast path, on even and odd (dropped last row/column) planes."""
    case = request.node.callspec.id
    got, want = run(op, dict(kernel=2, stride=2), [rng_for(case).standard_normal(shape)])
    check(got, want, case, atol=1e-6, rtol=1e-6)


def test_pool_propagates_nan():
    x = np.zeros((1, 1, 4, 4), np.float32)
    x[0, 0, 1, 1] = np.nan
    got, want = run("MaxPool", dict(kernel=2), [x])
    check(got, want, "nan")


# ---------------------------------------------------------------- global pools

GLOBAL_SHAPES = [(1, 1, 1, 1), (3, 3, 5, 5), (1, 17, 13, 17), (3, 17, 1, 13), (1, 3, 17, 1), (3, 1, 56, 56)]


def _sid(s):
    return "n{}-c{}-h{}-w{}".format(*s) if len(s) == 4 else "n{}-f{}".format(*s)


@pytest.mark.parametrize("op", ["GlobalAvgPool", "GlobalMaxPool"])
@pytest.mark.parametrize("shape", GLOBAL_SHAPES, ids=_sid)
def test_global_pool(op, shape):
    case = f"{op}-{_sid(shape)}"
    x = rng_for(case).standard_normal(shape) + 3.0
    got, want = run(op, {}, [x])
    # max is exact; the mean of up to 3136 values near 3 in 8 float32 lanes: each lane sums
    # <= 392 terms, error <= 392 * 6e-8 relative ~ 2.4e-5 worst case, ~1e-6 typical.
    check(got, want, case, rtol=0 if op == "GlobalMaxPool" else 2e-5)


# ---------------------------------------------------------------- element-wise activations

ACT_SHAPES = [(1, 1), (3, 17), (1, 1000), (3, 3, 5, 13), (1, 17, 17, 13), (3, 1, 1, 1), (2, 64, 32, 33)]


def _act_input(case, shape):
    x = rng_for(case).standard_normal(shape) * 4
    flat = x.reshape(-1)
    flat[:6] = [0.0, -0.0, 100.0, -100.0, 30.0, -30.0][:flat.size]   # saturation and signed zero
    return x


@pytest.mark.parametrize("inplace", [False, True], ids=["out", "inplace"])
@pytest.mark.parametrize("op,kw", [("ReLU", {}), ("LeakyReLU", {}), ("LeakyReLU", {"slope": 0.2}),
                                   ("Sigmoid", {}), ("Tanh", {})],
                         ids=["ReLU", "LeakyReLU", "LeakyReLU0.2", "Sigmoid", "Tanh"])
@pytest.mark.parametrize("shape", ACT_SHAPES, ids=_sid)
def test_activation(op, kw, shape, inplace, request):
    case = request.node.callspec.id
    x = _act_input(case, shape)
    got, want = run(op, kw, [x], inplace=0 if inplace else None)
    # ReLU is exact; LeakyReLU is one float32 multiply by the float32-rounded slope
    # (0.5 ulp + 0.5 ulp vs the float64 oracle);
    # expf/tanhf are within ~1 ulp and the sigmoid's add and divide add 1 ulp more:
    # 4 ulp = 2.4e-7 relative. The spec's sigmoid oracle is (1 + tanh(x/2))/2, which cancels
    # in float64 for x << 0 (absolute error ~1e-16 on values ~1e-13): hence an absolute floor.
    tol = {"ReLU": (0, 0), "LeakyReLU": (0, 1.2e-7), "Sigmoid": (1e-15, 2.4e-7)}.get(op, (1e-37, 2.4e-7))
    check(got, want, case, *tol)


# ---------------------------------------------------------------- softmax

SOFTMAX_SHAPES = [(1, 1), (3, 17), (1, 1000), (3, 1, 5, 5), (3, 3, 5, 13), (1, 17, 17, 13), (1, 21, 64, 65)]


@pytest.mark.parametrize("inplace", [False, True], ids=["out", "inplace"])
@pytest.mark.parametrize("scale", [1.0, 30.0], ids=["logits", "large"])
@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax"])
@pytest.mark.parametrize("shape", SOFTMAX_SHAPES, ids=_sid)
def test_softmax(op, shape, scale, inplace, request):
    case = request.node.callspec.id
    x = rng_for(case).standard_normal(shape) * scale + (1000.0 if scale > 1 else 0.0)  # exp(1000) overflows unless shifted
    got, want = run(op, {}, [x], inplace=0 if inplace else None)
    if op == "Softmax":
        # expf ~1 ulp per term; the float32 sum of <= 1000 terms in [0, 1] is off by <= C eps
        # relative in theory, ~sqrt(C) eps in practice; 1e-5 relative covers C = 1000 with margin.
        check(got, want, case, atol=1e-9, rtol=1e-5)
    else:
        # x - max is exact-ish (one rounding of |x| <= ~1120: 6e-5 absolute for the "large" case),
        # log(sum) adds ~1e-6; so 1e-4 absolute for large inputs, 2e-6 for unit logits.
        check(got, want, case, atol=1.2e-4 if scale > 1 else 2e-6, rtol=1e-6)


# ---------------------------------------------------------------- BatchNorm, LRN

BN_SHAPES = [(1, 1), (3, 17), (1, 1, 5, 5), (3, 3, 13, 17), (1, 17, 5, 13)]


def _bn_params(c, rng):
    return {"weight": rng.standard_normal(c) + 1, "bias": rng.standard_normal(c),
            "running_mean": rng.standard_normal(c), "running_var": rng.uniform(0.01, 4, c)}


@pytest.mark.parametrize("relu", [False, True], ids=["plain", "relu"])
@pytest.mark.parametrize("shape", BN_SHAPES, ids=_sid)
def test_batchnorm(shape, relu, request):
    case = request.node.callspec.id
    rng = rng_for(case)
    x = rng.standard_normal(shape) * 2
    params = {k: v.astype(np.float32) for k, v in _bn_params(shape[1], rng).items()}

    def fuse(kc):
        kc.fields["act"] = lib.ND_ACT_RELU if relu else lib.ND_ACT_NONE           # what a fusion pass would set
    got, want = run("BatchNorm", {"eps": 1e-3}, [x], params, tweak=fuse)
    if relu:
        want = np.maximum(want, 0)
    # scale and shift are each rounded once to float32, then x*s + t rounds twice:
    # ~4 ulp of the largest intermediate (|x*s|, |t| <= ~200): 1e-5 relative + 2e-5 absolute.
    check(got, want, case, atol=2e-5, rtol=1e-5)


def test_batchnorm_inplace():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 5, 7, 7)).astype(np.float32)
    params = {k: v.astype(np.float32) for k, v in _bn_params(5, rng).items()}
    got, want = run("BatchNorm", {}, [x], params, inplace=0)
    check(got, want, "inplace", atol=2e-5, rtol=1e-5)


LRN_CASES = [((1, 1, 5, 5), dict(size=5)), ((3, 3, 13, 17), dict(size=2)), ((3, 17, 5, 13), dict(size=5)),
             ((1, 17, 13, 17), dict(size=3, alpha=1e-2, beta=0.5, k=2.0)),
             ((1, 17, 1, 1), dict(size=1, alpha=0.5, beta=1.0, k=1.0)),
             ((1, 96, 27, 27), dict(size=5, alpha=1e-4, beta=0.75, k=2.0))]   # AlexNet's norm1


@pytest.mark.parametrize("shape,kw", LRN_CASES,
                         ids=[f"{_sid(s)}-size{kw['size']}" + ("-custom" if len(kw) > 1 else "")
                              for s, kw in LRN_CASES])
def test_lrn(shape, kw, request):
    case = request.node.callspec.id
    x = rng_for(case).standard_normal(shape) * 3
    got, want = run("LRN", kw, [x])
    # <= 5 squares summed, then powf (~1 ulp) and one multiply: ~8 ulp = 5e-7 relative.
    check(got, want, case, atol=1e-7, rtol=1e-6)


# ---------------------------------------------------------------- Concat, Add, Mul

CONCAT_CASES = [[(1, 1, 1, 1), (1, 3, 1, 1)], [(3, 3, 5, 13), (3, 17, 5, 13)],
                [(1, 1, 13, 17), (1, 3, 13, 17), (1, 17, 13, 17)], [(3, 17), (3, 1), (3, 1000)],
                [(3, 3, 5, 5)] * 5]


def _mid(shapes):
    n = shapes[0][0]
    rest = "+".join("x".join(map(str, s[1:])) for s in shapes)
    return f"n{n}-{rest}"


@pytest.mark.parametrize("shapes", CONCAT_CASES, ids=_mid)
def test_concat(shapes):
    rng = rng_for(_mid(shapes))
    got, want = run("Concat", {}, [rng.standard_normal(s) for s in shapes])
    check(got, want, _mid(shapes))    # a copy: exact


ELTWISE_CASES = [[(1, 1, 1, 1)] * 2, [(3, 3, 5, 13)] * 2, [(1, 17, 13, 17)] * 3, [(3, 17)] * 2,
                 [(3, 5, 33, 33)] * 4]


@pytest.mark.parametrize("relu", [False, True], ids=["plain", "relu"])
@pytest.mark.parametrize("inplace", [None, 0, 1], ids=["out", "in0", "in1"])
@pytest.mark.parametrize("shapes", ELTWISE_CASES, ids=_mid)
def test_add(shapes, inplace, relu, request):
    case = request.node.callspec.id
    rng = rng_for(case)

    def fuse(kc):
        kc.fields["act"] = lib.ND_ACT_RELU if relu else lib.ND_ACT_NONE
    got, want = run("Add", {}, [rng.standard_normal(s) for s in shapes], inplace=inplace, tweak=fuse)
    if relu:
        want = np.maximum(want, 0)
    # <= 3 float32 additions of |x| < 6: 3 * 0.5 ulp(24) ~ 3e-6 absolute.
    check(got, want, case, atol=3e-6, rtol=1e-7)


MUL_CASES = [[(1, 1, 1, 1)] * 2, [(3, 3, 5, 13)] * 2, [(3, 17, 13, 17), (3, 17, 1, 1)],
             [(1, 17, 1, 1), (1, 17, 13, 17)], [(3, 3, 5, 13), (3, 3), (3, 3, 5, 13)], [(3, 17)] * 3,
             [(1, 3), (1, 3, 5, 5)]]


@pytest.mark.parametrize("shapes", MUL_CASES, ids=_mid)
def test_mul(shapes):
    rng = rng_for(_mid(shapes))
    got, want = run("Mul", {}, [rng.standard_normal(s) for s in shapes])
    # <= 2 float32 products: ~1 ulp relative each vs the float64 oracle.
    check(got, want, _mid(shapes), atol=1e-30, rtol=2.4e-7)


def test_mul_inplace_full_operand():
    rng = np.random.default_rng(3)
    xs = [rng.standard_normal((3, 17, 13, 17)), rng.standard_normal((3, 17, 1, 1))]
    got, want = run("Mul", {}, xs, inplace=0)
    check(got, want, "se-gate-inplace", atol=1e-30, rtol=2.4e-7)


def test_eltwise_per_sample_broadcast():
    """bcast code 2 (one value per sample) has no spec yet; checked directly."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 5, 4, 4)).astype(np.float32)
    s = rng.standard_normal((3, 1, 1, 1)).astype(np.float32)
    _, _, _, kc = plan("Mul", {}, [(5, 4, 4), (5, 4, 4)], 3)
    kc.fields["bcast"] = [0, 2]
    check(kcall(kc, [x, s], x.shape), x.astype(np.float64) * s, "per-sample", rtol=6e-8)


# ---------------------------------------------------------------- Upsample, Pad, Crop

UPSAMPLE_SHAPES = [(1, 1, 1, 1), (3, 3, 5, 5), (1, 17, 13, 17), (3, 1, 5, 13)]
UPSAMPLE_SIZES = [dict(scale=1), dict(scale=2), dict(scale=3), dict(scale=(2, 3)),
                  dict(size=(7, 11)), dict(size=(3, 4)), dict(size=(1, 17))]    # odd ratios, shrinking
UPSAMPLE_MODES = [dict(mode="nearest"), dict(mode="bilinear"), dict(mode="bilinear", align_corners=True)]


def _upsample_cases():
    out = []
    for shape, sz, md in itertools.product(UPSAMPLE_SHAPES, UPSAMPLE_SIZES, UPSAMPLE_MODES):
        how = f"x{_tag(sz['scale'])}" if "scale" in sz else "to{}x{}".format(*sz["size"])
        mode = md["mode"] + ("-ac" if md.get("align_corners") else "")
        out.append(pytest.param(shape, {**sz, **md}, id=f"{_sid(shape)}-{how}-{mode}"))
    return out


@pytest.mark.parametrize("shape,kw", _upsample_cases())
def test_upsample(shape, kw, request):
    case = request.node.callspec.id
    x = rng_for(case).standard_normal(shape)
    got, want = run("Upsample", kw, [x])
    # nearest copies: exact. Bilinear: weights rounded once to float32, then three lerps of
    # |x| < 6 in float32 (~6 roundings of ~6 * 6e-8): 3e-6 absolute.
    check(got, want, case, atol=0 if kw["mode"] == "nearest" else 3e-6)


PAD_SHAPES = [(1, 1, 1, 1), (3, 3, 5, 5), (1, 17, 13, 17), (3, 1, 5, 13)]
PAD_PADS = [0, 1, (0, 1, 2, 3), (2, 0, 1, 0), 4]
PAD_MODES = [dict(mode="constant"), dict(mode="constant", value=-1.5), dict(mode="reflect"),
             dict(mode="replicate")]


def _pad_cases():
    out = []
    for shape, pad, md in itertools.product(PAD_SHAPES, PAD_PADS, PAD_MODES):
        kw = dict(pad=pad, **md)
        try:
            plan("Pad", kw, [shape[1:]], shape[0])
        except OpError:          # reflect needs pad < size
            continue
        mode = md["mode"] + (f"{md['value']:g}" if "value" in md else "")
        out.append(pytest.param(shape, kw, id=f"{_sid(shape)}-p{_tag(pad, ',')}-{mode}"))
    return out


@pytest.mark.parametrize("shape,kw", _pad_cases())
def test_pad(shape, kw, request):
    case = request.node.callspec.id
    got, want = run("Pad", kw, [rng_for(case).standard_normal(shape)])
    check(got, want, case)          # copies and a fill: exact


CROP_CASES = [((1, 1, 1, 1), dict(size=1)), ((3, 3, 13, 17), dict(size=(5, 13))),
              ((3, 3, 13, 17), dict(size=(5, 13), offset=(8, 0))), ((1, 17, 17, 13), dict(size=(1, 13))),
              ((1, 17, 17, 13), dict(size=(16, 5))), ((3, 1, 5, 5), dict(size=5))]


@pytest.mark.parametrize("shape,kw", CROP_CASES,
                         ids=[f"{_sid(s)}-to{_tag(kw['size'])}" + (f"-at{_tag(kw['offset'], ',')}"
                                                                    if "offset" in kw else "")
                              for s, kw in CROP_CASES])
def test_crop(shape, kw, request):
    case = request.node.callspec.id
    got, want = run("Crop", kw, [rng_for(case).standard_normal(shape)])
    check(got, want, case)          # a copy: exact


def test_crop_to_second_input():
    """U-Net's skip crop: centre-crop x to ref's H, W; ref itself is never read."""
    rng = np.random.default_rng(5)
    x, ref = rng.standard_normal((3, 4, 17, 13)), rng.standard_normal((3, 2, 10, 9))
    got, want = run("Crop", {}, [x, ref])
    check(got, want, "unet-crop")


# ---------------------------------------------------------------- through the executor

EXEC_CASES = [("MaxPool", dict(kernel=3, stride=2, pad=1, ceil_mode=True), [(3, 13, 17)]),
              ("AvgPool", dict(kernel=3, stride=2, pad=1, count_include_pad=False), [(3, 13, 17)]),
              ("GlobalAvgPool", {}, [(17, 5, 13)]), ("LeakyReLU", dict(slope=0.1), [(3, 5, 5)]),
              ("LogSoftmax", {}, [(17, 5, 13)]), ("BatchNorm", {}, [(17, 5, 13)]), ("LRN", {}, [(17, 5, 5)]),
              ("Concat", {}, [(3, 5, 5), (17, 5, 5), (1, 5, 5)]), ("Add", {}, [(3, 5, 5)] * 3),
              ("Mul", {}, [(17, 5, 13), (17, 1, 1)]), ("Upsample", dict(scale=2, mode="bilinear"), [(3, 5, 13)]),
              ("Pad", dict(pad=(1, 2, 0, 3), mode="reflect"), [(3, 5, 13)]), ("Crop", dict(size=3), [(3, 5, 13)])]


@pytest.mark.parametrize("op,kw,shapes", EXEC_CASES, ids=[c[0] for c in EXEC_CASES])
def test_through_executor(op, kw, shapes):
    """The executor's path (make_params by field name, nd_kernel_fn cast, arena offsets)
    must reach the same kernels: typedef'd struct names and array fields included."""
    from netdsl.runtime.executor import run_call
    rng = rng_for(op)
    n = 3
    xs = [rng.standard_normal((n, *s)).astype(np.float32) for s in shapes]
    spec, a, out_shape, kc = plan(op, kw, [tuple(s) for s in shapes], n)
    params = ({k: v.astype(np.float32) for k, v in _bn_params(shapes[0][0], rng).items()}
              if op == "BatchNorm" else {})
    w = bias = None
    if "prepare_weights" in kc.extra:
        w, bias = kc.extra["prepare_weights"](params)
    got = run_call(kc, xs, w, bias, n * math.prod(out_shape)).reshape(n, *out_shape)
    want = spec.reference(a, [x.astype(np.float64) for x in xs],
                          {k: v.astype(np.float64) for k, v in params.items()})
    check(got, want, op, atol=1.2e-4 if op == "LogSoftmax" else 2e-5, rtol=1e-5)   # loosest of the above


# ---------------------------------------------------------------- status codes

def test_non_positive_sizes_are_einval():
    _, _, _, kc = plan("MaxPool", dict(kernel=2), [(3, 4, 4)], 1)
    kc.fields["n"] = 0
    p = ffi.new(kc.struct + " *", kc.fields)
    x = np.zeros((1, 3, 4, 4), np.float32)
    ins = ffi.new("const float *[]", [_ptr(x)])
    assert lib.nd_maxpool_f32(p, _ptr(np.zeros(12, np.float32), "float *"), ins,
                              ffi.NULL, ffi.NULL, ffi.NULL) == lib.ND_EINVAL
