"""The C training kernels of the pools, BatchNorm, LRN and Dropout against the float64 oracles.

Each rule (netdsl/train/bwd_pool.py) is run through netdsl.train.check (one arena, the output
prefilled with NaN so a skipped cell shows) on odd shapes — every window form (stride, ONNX
pads on one side, ceil_mode, dilation), ties, planes and pixel blocks that end partway — on
every ISA this CPU has (the kernels are plain C; the ISA must not change them).
Tolerances (float32 kernels vs float64 oracles on float32 inputs):
  max/min/stochastic routing  exact cell choice; a cell's sum of <= 9 dy values: 1e-6 abs + rel
  avg pooling                 dy / count, summed over <= 9 windows: 1e-6 abs + rel
  BatchNorm                   sums in double, mean and 1/std saved as float32 (6e-8 relative
                              each, times |mean|/std <= 3 here): 2e-6 abs + rel, y and dx alike
  LRN                         powf and float window sums over <= 9 channels: 1e-5 abs + rel
  Dropout                     the kernel's mask is reproduced exactly (csrc/nd_random.h in numpy);
                              y and dx are one float32 product each: bitwise
NaN must appear exactly where the oracle has NaN. The random draws are also checked on their
own terms: Dropout keeps 1 - p of the values within 5 binomial standard deviations; a
StochasticPool window picks cell i with frequency p_i = a+_i / sum(a+) within 5 standard
deviations, and its mean over samples is the inference output (OpSpec.reference).
"""
from __future__ import annotations

import zlib

import numpy as np
import pytest

from netdsl import ops
from netdsl.runtime import lib as L
from netdsl.runtime.executor import KernelError, PlanError
from netdsl.train import ref_pool as RP
from netdsl.train.check import run_bwd, run_train_forward
from netdsl.train.registry import backward_rule, grad_reference, train_forward_rule

pytestmark = pytest.mark.skipif(not L.available(), reason="C kernels not built: python netdsl/runtime/_build.py")
ISAS = L.supported_isas() if L.available() else []


@pytest.fixture(params=ISAS)
def isa(request):
    with L.using_isa(request.param):
        yield request.param


def prepare(op, shape, **kw):
    spec = ops.get(op)
    a = spec.resolve(spec.bind((), kw), [tuple(shape)])
    return spec, a, tuple(spec.infer(a, [tuple(shape)]))


def rng_for(case):
    return np.random.default_rng(zlib.crc32(case.encode()))


def check(got, want, case, tol):
    got = np.asarray(got, np.float64).reshape(np.shape(want))
    want = np.asarray(want, np.float64)
    same = (got == want) | (np.isnan(got) & np.isnan(want))
    with np.errstate(invalid="ignore"):
        diff = np.where(same, 0.0, np.abs(got - want))
        bad = ~(same | (diff <= tol + tol * np.abs(want)))
    if bad.any():
        i = tuple(np.argwhere(bad)[0])
        pytest.fail(f"{case}: {bad.sum()} of {bad.size} cells off (tol {tol:g}), max diff "
                    f"{np.nan_to_num(diff, nan=np.inf).max():.3g}; e.g. at {i}: got {got[i]!r}, want {want[i]!r}")


def bwd_of(op, a, shape, out, n, need="dx0"):
    (b,) = [r for r in backward_rule(op)(a, [shape], out, n, {need}) if r.out == need]
    return b


def seeded(tf, seed):
    tf.call.fields["seed"] = seed
    return tf


# ---------------------------------------------------------------- window and global pools

WINDOW = [
    (dict(kernel=2), (3, 7, 9), 2),
    (dict(kernel=3, stride=2, pad=1, ceil_mode=True), (2, 9, 8), 3),
    (dict(kernel=(3, 2), stride=(1, 3), pad=(1, 0, 0, 1)), (2, 7, 11), 2),
    (dict(kernel=3, stride=1, pad=2), (2, 5, 7), 1),                      # pad > k/2 (ONNX)
    (dict(kernel=2, stride=1, pad=(0, 0, 1, 1)), (1, 5, 7), 2),           # Darknet's maxpool
    (dict(kernel=3, stride=(2, 1), dilation=(2, 3), pad=(2, 1, 1, 3), ceil_mode=True), (2, 9, 11), 2),
    (dict(kernel=(2, 3), stride=2, dilation=2, pad=(1, 2, 2, 1), ceil_mode=True), (2, 9, 10), 1),
]


def _wid(c):
    kw, shape, n = c
    return "-".join(f"{k}{v}" for k, v in kw.items()).replace(" ", "") + f"-n{n}-" + "x".join(map(str, shape))


def _pool_case(op, kw, shape, n, ties, **extra):
    spec, a, out = prepare(op, shape, **kw, **extra)
    rng = rng_for(f"{op}{kw}{shape}{ties}{extra}")
    x = (rng.integers(-2, 3, (n, *shape)) if ties else rng.standard_normal((n, *shape))).astype(np.float32)
    dy = rng.standard_normal((n, *out)).astype(np.float32)
    return a, out, x, dy


@pytest.mark.parametrize("op", ["MaxPool", "MinPool"])
@pytest.mark.parametrize("ties", [False, True], ids=["distinct", "ties"])
@pytest.mark.parametrize("case", WINDOW, ids=_wid)
def test_max_min_pool_bwd_kernel(case, ties, op, isa):
    kw, shape, n = case
    a, out, x, dy = _pool_case(op, kw, shape, n, ties)
    got = run_bwd(bwd_of(op, a, shape, out, n), {"x0": x, "dy": dy})
    (want,), _ = grad_reference(op)(a, [x.astype(np.float64)], {}, None, dy.astype(np.float64))
    check(got, want, f"{op} {_wid(case)} {isa}", 1e-6)


@pytest.mark.parametrize("op", ["MaxPool", "MinPool"])
@pytest.mark.parametrize("case", WINDOW, ids=_wid)
def test_max_min_pool_bwd_many_nans_and_ties(case, op):
    """Windows with NaNs in several rows and ties among the rest: the kernel takes each row's
    winner, then the rows' (a later NaN, else the first strict extreme), which must be the
    whole window's scan-order winner, as the reference scans it."""
    kw, shape, n = case
    a, out, x, dy = _pool_case(op, kw, shape, n, True)
    rng = rng_for(f"nans{op}{kw}{shape}")
    x[rng.random(x.shape) < 0.3] = np.nan
    got = run_bwd(bwd_of(op, a, shape, out, n), {"x0": x, "dy": dy})
    (want,), _ = grad_reference(op)(a, [x.astype(np.float64)], {}, None, dy.astype(np.float64))
    check(got, want, f"{op} {_wid(case)} NaNs", 1e-6)


# the vector path's shapes: ResNet's 3x3/2 (the fixed-tap bodies), blocks of output rows that
# end partway (rows per block = 512 lanes / row length), dilation and stride 3 (the run-time
# bodies), edge-replicated padding on every side, and a row too wide for a block (the scalar scan)
VEC_WINDOW = [
    (dict(kernel=3, stride=2, pad=1), (6, 16, 16), 2),
    (dict(kernel=3, stride=2, pad=1, ceil_mode=True), (5, 70, 41), 1),
    (dict(kernel=2, stride=2, ceil_mode=True), (6, 13, 9), 2),
    (dict(kernel=3, stride=3, dilation=2, pad=(2, 1, 2, 2), ceil_mode=True), (6, 17, 23), 1),
    (dict(kernel=(2, 4), stride=1, pad=(1, 2, 0, 1)), (6, 9, 11), 1),
    (dict(kernel=3, stride=1, pad=1), (6, 3, 600), 1),
]


def _regimes(x, rng):
    """One kind of window per plane, where the vector path's max-then-tap logic could slip:
    all equal; -inf with a few finite cells; NaN in some windows only; +0/-0 ties; +inf ties;
    small integers (many ties); plain normals in the rest."""
    c = x.shape[1]
    x[:, 0 % c] = 1.0
    x[:, 1 % c] = np.where(rng.random(x[:, 1 % c].shape) < 0.1, rng.standard_normal(x[:, 1 % c].shape), -np.inf)
    x[:, 2 % c] = np.where(rng.random(x[:, 2 % c].shape) < 0.05, np.nan, x[:, 2 % c])
    x[:, 3 % c] = np.where(rng.random(x[:, 3 % c].shape) < 0.5, -0.0, 0.0)
    x[:, 4 % c] = np.where(rng.random(x[:, 4 % c].shape) < 0.3, np.inf, rng.integers(-1, 2, x[:, 4 % c].shape))
    x[:, 5 % c] = rng.integers(-1, 2, x[:, 5 % c].shape)
    return x


@pytest.mark.parametrize("op", ["MaxPool", "MinPool"])
@pytest.mark.parametrize("case", VEC_WINDOW, ids=_wid)
def test_max_min_pool_bwd_kernel_window_regimes(case, op, isa):
    """Every ISA's body against the oracle on planes of all-equal, -inf, sparse-NaN, signed-zero,
    +inf and integer windows: the winner (first extreme in scan order, last NaN) must be the
    oracle's cell exactly, at the map's edges (padding copies) and inside."""
    kw, shape, n = case
    spec, a, out = prepare(op, shape, **kw)
    rng = rng_for(f"regimes{op}{kw}{shape}")
    x = _regimes(rng.standard_normal((n, *shape)), rng).astype(np.float32)
    dy = rng.standard_normal((n, *out)).astype(np.float32)
    got = run_bwd(bwd_of(op, a, shape, out, n), {"x0": x, "dy": dy})
    (want,), _ = grad_reference(op)(a, [x.astype(np.float64)], {}, None, dy.astype(np.float64))
    check(got, want, f"{op} {_wid(case)} regimes {isa}", 1e-6)


@pytest.mark.parametrize("include", [True, False], ids=["include_pad", "exclude_pad"])
@pytest.mark.parametrize("case", WINDOW, ids=_wid)
def test_avg_pool_bwd_kernel(case, include, isa):
    kw, shape, n = case
    a, out, x, dy = _pool_case("AvgPool", kw, shape, n, False, count_include_pad=include)
    got = run_bwd(bwd_of("AvgPool", a, shape, out, n), {"dy": dy})
    (want,), _ = grad_reference("AvgPool")(a, [x.astype(np.float64)], {}, None, dy.astype(np.float64))
    check(got, want, f"AvgPool {_wid(case)} {include} {isa}", 1e-6)


@pytest.mark.parametrize("op", ["GlobalAvgPool", "GlobalMaxPool"])
@pytest.mark.parametrize("shape,n", [((3, 5, 7), 2), ((1, 1, 1), 3), ((5, 13, 11), 1)])
def test_global_pool_bwd_kernel(op, shape, n, isa):
    spec, a, out = prepare(op, shape)
    rng = rng_for(f"{op}{shape}")
    x = rng.integers(0, 4, (n, *shape)).astype(np.float32)          # ties for the max
    dy = rng.standard_normal((n, *out)).astype(np.float32)
    got = run_bwd(bwd_of(op, a, shape, out, n), {"x0": x, "dy": dy})
    (want,), _ = grad_reference(op)(a, [x.astype(np.float64)], {}, None, dy.astype(np.float64))
    check(got, want, f"{op}{shape}", 1e-6)


def test_pool_bwd_nan_flows_where_the_derivative_does():
    """NaN in x wins its window (the last NaN, PyTorch); NaN in dy reaches the cells its
    window feeds (the winner for max, every real tap for avg) and nowhere else."""
    kw, shape, n = WINDOW[1]
    for op in ("MaxPool", "MinPool", "AvgPool"):
        a, out, x, dy = _pool_case(op, kw, shape, n, True)
        x[0, 0, 2, 3] = x[1, 1, 4, 4] = x[1, 1, 4, 5] = np.nan
        dy[0, 1, 2, 2] = np.nan
        got = run_bwd(bwd_of(op, a, shape, out, n), {"x0": x, "dy": dy})
        (want,), _ = grad_reference(op)(a, [x.astype(np.float64)], {}, None, dy.astype(np.float64))
        nan_cells = np.isnan(want).sum()
        assert nan_cells == (1 if op != "AvgPool" else 9), f"{op}: the oracle has {nan_cells} NaN cells"
        check(got, want, f"{op} NaN", 1e-6)


def test_pool_bwd_threads_do_not_change_the_result():
    kw, shape = dict(kernel=3, stride=2, pad=1), (16, 64, 63)
    for op in ("MaxPool", "AvgPool"):
        a, out, x, dy = _pool_case(op, kw, shape, 2, True)
        b = bwd_of(op, a, shape, out, 2)
        env = {"x0": x, "dy": dy}
        assert np.array_equal(run_bwd(b, env, threads=1), run_bwd(b, env, threads=2)), op


# ---------------------------------------------------------------- StochasticPool

def _stoch(shape, n, kw, seed):
    spec, a, out = prepare("StochasticPool", shape, **kw)
    tf = seeded(train_forward_rule("StochasticPool")(a, [shape], out, n), seed)
    assert tf.seeded and tf.ins == ("x0",) and tf.saved_floats == n * int(np.prod(out))
    return spec, a, out, tf


@pytest.mark.parametrize("case", WINDOW, ids=_wid)
def test_stochastic_pool_train_and_bwd_kernels(case, isa):
    """The kernel's draw is the oracle's exactly (same counter-based numbers, same running sums);
    then dx goes to the saved taps. Includes windows with no positive cell, a NaN and a +inf."""
    kw, shape, n = case
    spec, a, out, tf = _stoch(shape, n, kw, seed=zlib.crc32(_wid(case).encode()))
    rng = rng_for("stoch" + _wid(case))
    x = rng.standard_normal((n, *shape)).astype(np.float32)
    x[0, 0, :3, :3] = -1.0                       # the first window: nothing positive
    x[-1, -1, 1:3, 0:2] = np.inf                 # 2x2 blocks: read under every stride / dilation parity
    x[-1, -1, 3:5, 4:6] = np.nan
    y, taps, _ = run_train_forward(tf, {"x0": x}, n * int(np.prod(out)))
    want_y, want_t = RP.stochastic_sample(a, x, tf.call.fields["seed"])
    assert np.array_equal(taps, want_t.reshape(-1)), f"{_wid(case)}: sampled taps differ"
    assert np.array_equal(y, want_y.reshape(-1).astype(np.float32), equal_nan=True)
    assert taps[0] == -1 and y[0] == 0.0
    assert np.isnan(y).any() and np.isposinf(y).any()
    dy = rng.standard_normal((n, *out)).astype(np.float32)
    got = run_bwd(bwd_of("StochasticPool", a, shape, out, n), {"dy": dy, "saved": taps})
    (want,), _ = grad_reference("StochasticPool")(a, [x.astype(np.float64)], {"saved": taps}, None,
                                                  dy.astype(np.float64))
    check(got, want, f"StochasticPool {_wid(case)}", 1e-6)


def test_stochastic_pool_frequencies_are_p():
    """One 2x2 window repeated over 20000 planes (independent counters): tap i is picked with
    frequency a+_i / sum(a+) within 5 binomial standard deviations; the negative cell never."""
    vals = np.array([-0.5, 0.1, 0.3, 0.6], np.float32)
    p = np.maximum(vals, 0) / np.maximum(vals, 0).sum()
    planes = 20000
    x = np.broadcast_to(vals.reshape(1, 1, 2, 2), (1, planes, 2, 2)).copy()
    for seed in (1, 2):
        spec, a, out, tf = _stoch((planes, 2, 2), 1, dict(kernel=2), seed)
        _, taps, _ = run_train_forward(tf, {"x0": x}, planes)
        counts = np.bincount(taps.astype(np.int64), minlength=4)
        bound = 5 * np.sqrt(planes * p * (1 - p)) + 1
        assert counts[0] == 0
        assert (np.abs(counts - planes * p) <= bound).all(), f"seed {seed}: {counts} vs {planes * p}"


def test_stochastic_pool_mean_is_the_inference_output():
    """E[y] = sum(p_i a_i), the inference rule (OpSpec.reference): 400 samples per window
    (the batch is 400 copies of one image), within 5 standard errors of the exact variance."""
    shape, reps = (2, 9, 8), 400
    spec, a, out, tf = _stoch(shape, reps, dict(kernel=3, stride=2, pad=1, ceil_mode=True), 9)
    img = np.abs(rng_for("mean").standard_normal((1, *shape))).astype(np.float32)
    x = np.repeat(img, reps, axis=0)
    y, _, _ = run_train_forward(tf, {"x0": x}, reps * int(np.prod(out)))
    y = y.reshape(reps, *out).astype(np.float64)
    mean_want = spec.reference(a, [img.astype(np.float64)], {})[0]
    second = RP._gather(img.astype(np.float64), *RP._geometry(a, img.shape, (1, *out)))[0]
    valid = RP._geometry(a, img.shape, (1, *out))[2]
    s1, s2 = (second * valid).sum(-1), (second ** 2 * valid).sum(-1)
    ey2 = (second ** 3 * valid).sum(-1) / s1                      # E[y^2] = sum(p a^2) = sum(a^3)/sum(a)
    sd = np.sqrt(np.maximum(ey2 - (s2 / s1) ** 2, 0) / reps)
    assert np.allclose(s2 / s1, mean_want)
    assert (np.abs(y.mean(0) - mean_want) <= 5 * sd + 1e-6).all()


def test_stochastic_pool_seed_and_threads():
    """Same seed: the same taps on 1 and 2 threads; another seed: other taps."""
    shape, n = (16, 64, 64), 2
    kw = dict(kernel=3, stride=2, pad=1)
    x = np.abs(rng_for("threads").standard_normal((n, *shape))).astype(np.float32)
    spec, a, out, tf = _stoch(shape, n, kw, 123)
    m = n * int(np.prod(out))
    _, t1, _ = run_train_forward(tf, {"x0": x}, m, threads=1)
    _, t2, _ = run_train_forward(tf, {"x0": x}, m, threads=2)
    assert np.array_equal(t1, t2)
    _, t3, _ = run_train_forward(seeded(tf, 124), {"x0": x}, m)
    assert (t1 != t3).mean() > 0.3


def test_stochastic_pool_bwd_refuses_a_tap_outside_the_window():
    shape, n = (1, 4, 4), 1
    spec, a, out = prepare("StochasticPool", shape, kernel=3, stride=1, pad=1)
    b = bwd_of("StochasticPool", a, shape, out, n)
    taps = np.full(int(np.prod(out)), 4.0, np.float32)
    taps[0] = 0.0                                  # tap (0, 0) of window (0, 0) is padding
    with pytest.raises(KernelError):
        run_bwd(b, {"dy": np.ones(out, np.float32), "saved": taps})
    taps[0] = 2.5
    with pytest.raises(KernelError):
        run_bwd(b, {"dy": np.ones(out, np.float32), "saved": taps})


# ---------------------------------------------------------------- BatchNorm

BN = [((3, 5, 7), 4, 0.0), ((7,), 5, 0.0), ((2, 1, 1), 3, 0.0), ((5, 13, 11), 2, 1.0), ((1, 3, 3), 1, 0.0)]


@pytest.mark.parametrize("shape,n,offset", BN, ids=lambda v: "x".join(map(str, v)) if isinstance(v, tuple) else str(v))
def test_batchnorm_train_and_bwd_kernels(shape, n, offset, isa):
    spec, a, out = prepare("BatchNorm", shape, eps=1e-4)
    c = shape[0]
    rng = rng_for(f"bn{shape}{n}")
    x = (rng.standard_normal((n, *shape)) * 2 + offset).astype(np.float32)
    p = {"weight": rng.standard_normal(c).astype(np.float32), "bias": rng.standard_normal(c).astype(np.float32)}
    buf = {"running_mean": rng.standard_normal(c).astype(np.float32),
           "running_var": (rng.random(c) + 0.5).astype(np.float32)}
    params = np.concatenate([p["weight"], p["bias"]])
    tf = train_forward_rule("BatchNorm")(a, [shape], out, n)
    assert tf.ins == ("x0", "buffers") and tf.w == "params" and tf.saved_floats == 2 * c
    y, saved, env = run_train_forward(tf, {"x0": x, "buffers": np.concatenate([buf["running_mean"],
                                                                               buf["running_var"]]),
                                           "params": params}, x.size)
    wy, mean, inv, rm, rv = RP.batchnorm_train(a, x, p, buf)
    case = f"BN{shape} n{n} {isa}"
    check(y, wy, case, 2e-6)
    check(saved, np.concatenate([mean, inv]), case, 2e-6)
    check(env["buffers"], np.concatenate([rm, rv]), case, 2e-6)
    dy = rng.standard_normal((n, *out)).astype(np.float32)
    (dx,), dp = grad_reference("BatchNorm")(a, [x.astype(np.float64)], p, None, dy.astype(np.float64))
    benv = {"x0": x, "dy": dy, "saved": saved, "params": params}
    check(run_bwd(bwd_of("BatchNorm", a, shape, out, n), benv), dx, case, 2e-6)
    check(run_bwd(bwd_of("BatchNorm", a, shape, out, n, "dparams"), benv),
          np.concatenate([dp["weight"], dp["bias"]]), case, 2e-6)


def test_batchnorm_nan_stays_in_its_channel_and_threads_agree():
    shape, n = (4, 60, 70), 8              # above the kernels' threading threshold
    spec, a, out = prepare("BatchNorm", shape)
    rng = rng_for("bn-nan")
    x = rng.standard_normal((n, *shape)).astype(np.float32)
    x[3, 1, 5, 5] = np.nan
    dy = rng.standard_normal((n, *out)).astype(np.float32)
    dy[0, 2, 0, 0] = np.nan
    params = np.concatenate([np.ones(4), np.zeros(4)]).astype(np.float32)
    tf = train_forward_rule("BatchNorm")(a, [shape], out, n)
    env = {"x0": x, "buffers": np.concatenate([np.zeros(4), np.ones(4)]).astype(np.float32), "params": params}
    y1, s1, e1 = run_train_forward(tf, env, x.size, threads=1)
    y2, s2, e2 = run_train_forward(tf, env, x.size, threads=2)
    assert np.array_equal(y1, y2, equal_nan=True) and np.array_equal(s1, s2, equal_nan=True)
    assert np.array_equal(e1["buffers"], e2["buffers"], equal_nan=True)
    bad = np.isnan(y1.reshape(n, *shape)).any(axis=(0, 2, 3))
    assert bad.tolist() == [False, True, False, False]
    assert np.isnan(e1["buffers"]).tolist() == [False, True, False, False] * 2
    benv = {"x0": x, "dy": dy, "saved": s1, "params": params}
    dx = run_bwd(bwd_of("BatchNorm", a, shape, out, n), benv, threads=2).reshape(n, *shape)
    assert np.isnan(dx).all(axis=(0, 2, 3)).tolist() == [False, True, True, False]
    assert np.isfinite(dx[:, [0, 3]]).all()
    assert np.array_equal(dx.reshape(-1), run_bwd(bwd_of("BatchNorm", a, shape, out, n), benv, threads=1),
                          equal_nan=True)


# the kernels' block shapes: planes of >= 32 floats (a row with a 16-step and a scalar tail,
# several blocks of channels, a plane longer than the 2048 floats a float lane run takes),
# smaller planes (blocks of 256 positions, more than 16 images: several float runs), vectors;
# the second and third above the kernels' threading threshold (131072 values)
BN_PATHS = [((40, 7, 7), 6, 0.0), ((3, 50, 45), 20, 1.0), ((70, 3, 5), 140, 0.0), ((300,), 130, 1.0)]


@pytest.mark.parametrize("shape,n,offset", BN_PATHS, ids=lambda v: "x".join(map(str, v)) if isinstance(v, tuple) else str(v))
def test_batchnorm_kernel_paths_match_the_oracle_and_agree_across_isas_and_threads(shape, n, offset):
    spec, a, out = prepare("BatchNorm", shape, eps=1e-4)
    c = shape[0]
    rng = rng_for(f"bnpath{shape}{n}")
    x = (rng.standard_normal((n, *shape)) * 2 + offset).astype(np.float32)
    p = {"weight": rng.standard_normal(c).astype(np.float32), "bias": rng.standard_normal(c).astype(np.float32)}
    buf = {"running_mean": np.zeros(c, np.float32), "running_var": np.ones(c, np.float32)}
    params = np.concatenate([p["weight"], p["bias"]])
    dy = rng.standard_normal((n, *out)).astype(np.float32)
    tf = train_forward_rule("BatchNorm")(a, [shape], out, n)
    results = []
    for isa_name in ISAS:
        with L.using_isa(isa_name):
            for threads in (1, 2):
                env = {"x0": x, "buffers": np.concatenate([buf["running_mean"], buf["running_var"]]), "params": params}
                y, saved, e = run_train_forward(tf, env, x.size, threads=threads)
                benv = {"x0": x, "dy": dy, "saved": saved, "params": params}
                dx = run_bwd(bwd_of("BatchNorm", a, shape, out, n), benv, threads=threads)
                dp = run_bwd(bwd_of("BatchNorm", a, shape, out, n, "dparams"), benv, threads=threads)
                results.append((f"{isa_name} t{threads}", [y, saved, e["buffers"], dx, dp]))
    first = results[0][1]
    for name, r in results[1:]:
        for got, want in zip(r, first):
            assert np.array_equal(got, want, equal_nan=True), f"BN{shape} n{n}: {name} differs from {results[0][0]}"
    y, saved, bufs, dx, dp = first
    wy, mean, inv, rm, rv = RP.batchnorm_train(a, x, p, buf)
    case = f"BN{shape} n{n}"
    check(y, wy, case, 2e-6)
    check(saved, np.concatenate([mean, inv]), case, 2e-6)
    check(bufs, np.concatenate([rm, rv]), case, 2e-6)
    (wdx,), wdp = grad_reference("BatchNorm")(a, [x.astype(np.float64)], p, None, dy.astype(np.float64))
    check(dx, wdx, case, 2e-6)
    check(dp, np.concatenate([wdp["weight"], wdp["bias"]]), case, 2e-6)


def test_batchnorm_training_refusals():
    spec, a, out = prepare("BatchNorm", (3,))
    with pytest.raises(PlanError, match="more than one value per channel"):
        train_forward_rule("BatchNorm")(a, [(3,)], out, 1)
    spec, a, out = prepare("BatchNorm", (3, 4, 4), act="relu")
    with pytest.raises(PlanError, match="fused activation"):
        backward_rule("BatchNorm")(a, [(3, 4, 4)], out, 2, {"dx0"})


# ---------------------------------------------------------------- LRN

LRN = [
    (dict(), (7, 5, 5), 2),
    (dict(size=2, alpha=1e-2, beta=0.5, k=2.0), (3, 5, 7), 2),       # even: a lopsided window
    (dict(size=4, alpha=0.9, beta=0.75, k=1.0), (13, 9, 9), 1),       # the ring wraps; 81 pixels: 2 blocks
    (dict(size=1, alpha=0.5, beta=1.2, k=1.0), (3, 2, 3), 3),
    (dict(size=9, alpha=1.0, beta=0.75, k=1.0), (4, 3, 3), 2),        # size > C
    (dict(size=200, alpha=3.0, beta=0.75, k=1.0), (210, 5, 9), 1),    # 20-pixel blocks (the ring's room)
]


@pytest.mark.parametrize("case", LRN, ids=lambda c: "-".join(f"{k}{v}" for k, v in c[0].items()) + "-" + "x".join(map(str, c[1])))
def test_lrn_bwd_kernel(case, isa):
    kw, shape, n = case
    spec, a, out = prepare("LRN", shape, **kw)
    rng = rng_for(f"lrn{kw}{shape}")
    x = rng.standard_normal((n, *shape)).astype(np.float32)
    dy = rng.standard_normal((n, *out)).astype(np.float32)
    dy[0, shape[0] // 2, 1, 1] = np.nan          # reaches the channels whose window holds it, at that pixel
    got = run_bwd(bwd_of("LRN", a, shape, out, n), {"x0": x, "dy": dy})
    (want,), _ = grad_reference("LRN")(a, [x.astype(np.float64)], {}, None, dy.astype(np.float64))
    assert 1 <= np.isnan(want).sum() <= kw.get("size", 5)
    check(got, want, f"LRN {kw} {isa}", 1e-5)


def test_lrn_bwd_refuses_a_window_the_kernel_cannot_hold():
    spec, a, out = prepare("LRN", (5000, 1, 1), size=4097)
    with pytest.raises(PlanError, match="at most 4096"):
        backward_rule("LRN")(a, [(5000, 1, 1)], out, 1, {"dx0"})


# ---------------------------------------------------------------- Dropout

def _dropout(shape, n, p, seed):
    spec, a, out = prepare("Dropout", shape, p=p)
    tf = seeded(train_forward_rule("Dropout")(a, [shape], out, n), seed)
    assert tf.seeded and tf.saved_floats == n * int(np.prod(shape))
    return a, out, tf


@pytest.mark.parametrize("p", [0.0, 0.3, 0.5, 0.9])
def test_dropout_kernels(p, isa):
    shape, n = (3, 5, 7), 3
    a, out, tf = _dropout(shape, n, p, seed=1000 + int(p * 10))
    rng = rng_for(f"drop{p}")
    x = rng.standard_normal((n, *shape)).astype(np.float32)
    x[0, 0, 0, :3] = [np.nan, np.inf, -np.inf]
    y, saved, _ = run_train_forward(tf, {"x0": x}, x.size)
    want = RP.dropout_scale(p, tf.call.fields["seed"], x.shape)
    assert np.array_equal(saved, want.reshape(-1))
    with np.errstate(invalid="ignore"):
        assert np.array_equal(y, (x * want).reshape(-1), equal_nan=True)   # inf dropped: inf * 0 = NaN
    dy = rng.standard_normal(x.shape).astype(np.float32)
    dy.reshape(-1)[:20] = np.nan                  # NaN through a dropped value stays NaN (dy * 0)
    got = run_bwd(bwd_of("Dropout", a, shape, out, n), {"dy": dy, "saved": saved})
    (dx,), _ = grad_reference("Dropout")(a, [x.astype(np.float64)], {"saved": saved}, None, dy.astype(np.float64))
    assert np.array_equal(got, (dy * saved.reshape(dy.shape)).reshape(-1), equal_nan=True)   # one float32 product
    check(got, dx, f"dropout p={p}", 1e-7)
    assert np.isnan(got[:20]).all()


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_dropout_mask_statistics_seeds_and_threads(p):
    """Fraction kept = 1 - p within 5 binomial sd; the same seed gives the same mask on 1 and 2
    threads; a new seed a new mask (about 2p(1-p) of the values change)."""
    shape, n = (3, 300, 300), 2
    a, out, tf = _dropout(shape, n, p, seed=42)
    x = np.ones((n, *shape), np.float32)
    total = x.size
    _, m1, _ = run_train_forward(tf, {"x0": x}, total, threads=1)
    _, m2, _ = run_train_forward(tf, {"x0": x}, total, threads=2)
    assert np.array_equal(m1, m2)
    kept = int((m1 > 0).sum())
    assert abs(kept - total * (1 - p)) <= 5 * np.sqrt(total * p * (1 - p)), (kept, total * (1 - p))
    assert np.allclose(m1[m1 > 0], 1 / (1 - p), rtol=1e-7)
    _, m3, _ = run_train_forward(seeded(tf, 43), {"x0": x}, total)
    changed = ((m1 > 0) != (m3 > 0)).mean()
    assert abs(changed - 2 * p * (1 - p)) < 0.01, changed


# ---------------------------------------------------------------- what the rules emit

RULES = [("MaxPool", (2, 5, 7), dict(kernel=2)), ("MinPool", (2, 5, 7), dict(kernel=2)),
         ("AvgPool", (2, 5, 7), dict(kernel=2)), ("StochasticPool", (2, 5, 7), dict(kernel=2)),
         ("GlobalAvgPool", (2, 5, 7), {}), ("GlobalMaxPool", (2, 5, 7), {}), ("LRN", (4, 3, 3), {}),
         ("Dropout", (2, 5, 7), {}), ("BatchNorm", (2, 5, 7), {})]


@pytest.mark.parametrize("op,shape,kw", RULES, ids=[r[0] for r in RULES])
def test_rules_emit_exactly_the_gradients_asked_for(op, shape, kw):
    """One Bwd per needed gradient, each writing its whole output (dx: the input's size for the
    batch; dparams: the parameters' floats, no batch factor); nothing when nothing is needed."""
    spec, a, out = prepare(op, shape, **kw)
    rule = backward_rule(op)
    assert rule(a, [shape], out, 3, set()) == []
    (b,) = rule(a, [shape], out, 3, {"dx0"})
    assert b.out == "dx0" and b.out_floats == 3 * int(np.prod(shape))
    has_params = bool(spec.params(a, [shape]))
    got = rule(a, [shape], out, 3, {"dx0", "dparams"})
    assert [g.out for g in got] == (["dx0", "dparams"] if has_params else ["dx0"])
    if has_params:
        assert got[1].out_floats == sum(int(np.prod(s)) for s in spec.params(a, [shape]).values())
