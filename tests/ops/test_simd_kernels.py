"""The per-ISA row primitives (csrc/nd_simd.h: csrc/kernels/simd.c, simd_avx2.c) through the
kernels that use them: max/min/avg pool, global pools, BatchNorm + act, Add/Mul + ReLU,
ReLU/LeakyReLU/PReLU, and the tabled Upsample paths.

Two oracles per case, on every ISA the CPU has (the `isa` fixture):
- the op's numpy reference in float64 (netdsl/ops/*.py `reference`), exact where the kernel
  only selects or copies, with the tolerances of test_kernels_simple.py where it rounds;
- the portable C path, bit for bit: nd_simd.h promises the same float operations in the
  same order on every ISA (a vector body that reordered a sum or fused a multiply-add
  would differ here in the last bit, and NaN lost by a max_ps operand order would show as
  a number where the portable path has NaN).
Inputs carry NaN, +inf and -inf at scattered positions (so some land in every vector lane,
in the scalar tails, and on the stride-2 even/odd lanes) and widths chosen around the
8-float vector: 1, 7, 8, 9, 17, 31, 112 (ResNet's stem).
"""
from __future__ import annotations

import numpy as np
import pytest

from conftest import check, kcall, kernel_plan, kernel_vs_reference as run, rng_for

_k = pytest.importorskip("netdsl._kernels", reason="C kernels not built: python netdsl/runtime/_build.py")
lib = _k.lib


def _with_non_finite(x, rng, frac=0.03):
    x = np.array(x, np.float64)
    flat = x.reshape(-1)
    k = max(1, int(flat.size * frac))
    idx = rng.choice(flat.size, size=min(flat.size, 3 * k), replace=False)
    flat[idx[:k]] = np.nan
    flat[idx[k:2 * k]] = np.inf
    flat[idx[2 * k:]] = -np.inf
    return x


def _portable(fn):
    from netdsl.runtime import lib as L
    with L.using_isa("portable"):
        return fn()


def _same_bits(got, ref, case):
    """got == ref bit for bit (NaN payloads aside: any NaN matches any NaN)."""
    g, r = np.asarray(got, np.float32), np.asarray(ref, np.float32)
    both_nan = np.isnan(g) & np.isnan(r)
    same = (g.view(np.uint32) == r.view(np.uint32)) | both_nan
    if not same.all():
        i = np.unravel_index(np.argmax(~same), g.shape)
        pytest.fail(f"{case}: {(~same).sum()} cells differ from the portable path, e.g. at {i}: "
                    f"{g[i]!r} vs portable {r[i]!r}")


# ---------------------------------------------------------------- window max / min pools

POOLS = [  # (H, W), kwargs
    ((112, 112), dict(kernel=3, stride=2, pad=1)),               # ResNet / DenseNet stem
    ((28, 31), dict(kernel=3, stride=1, pad=1)),                 # GoogLeNet's branch pool, odd width
    ((17, 17), dict(kernel=3, stride=2, ceil_mode=True)),        # GoogLeNet's ceil-mode pools
    ((9, 9), dict(kernel=2, stride=2)),                          # VGG / U-Net 2x2, odd: last column dropped
    ((16, 40), dict(kernel=2, stride=2)),
    ((13, 37), dict(kernel=5, stride=2, pad=2)),
    ((11, 29), dict(kernel=3, stride=3, pad=1)),                 # stride 3: the scalar row path
    ((8, 8), dict(kernel=1, stride=1)),
    ((7, 7), dict(kernel=(3, 2), stride=(1, 2), pad=(1, 0, 1, 1))),
    ((1, 9), dict(kernel=(1, 3), stride=(1, 2), pad=(0, 1, 0, 1))),
]


def _pid(hw, kw):
    return f"{hw[0]}x{hw[1]}-" + "-".join(f"{k}{v}" for k, v in kw.items()).replace(" ", "")


@pytest.mark.parametrize("op", ["MaxPool", "MinPool", "AvgPool", "AvgPool-cip"])
@pytest.mark.parametrize("hw,kw", POOLS, ids=[_pid(*p) for p in POOLS])
@pytest.mark.parametrize("non_finite", [False, True], ids=["finite", "nan-inf"])
def test_window_pool(op, hw, kw, non_finite, isa, request):
    case = request.node.callspec.id
    rng = rng_for(case)
    x = rng.standard_normal((2, 3, *hw))
    if non_finite:
        x = _with_non_finite(x, rng)
    if op.startswith("AvgPool"):
        kw = {**kw, "count_include_pad": op.endswith("cip")}
        op = "AvgPool"
    with np.errstate(invalid="ignore"):         # inf - inf in the oracle's window sums
        got, want = run(op, kw, [x])
    if op == "AvgPool":
        # a float32 sum of <= 25 terms |x| < 6, rows first then columns, then one division:
        # as test_kernels_simple.py's AvgPool bound
        check(got, want, case, atol=1e-5, rtol=1e-6)
    else:
        check(got, want, case)                  # a selected input value (or 0 / NaN): exact
    if isa != "portable":
        _same_bits(got, _portable(lambda: run(op, kw, [x])[0]), case)


def test_max_pool_nan_in_every_lane(isa):
    """One NaN per plane, at every column of a 3x3/s2 pool's 8-wide blocks and tail: each
    NaN reaches exactly the outputs whose window holds it (the numpy reference's answer)."""
    w = 37
    x = np.zeros((1, w, 5, w))
    for c in range(w):
        x[0, c, 2, c] = np.nan
    got, want = run("MaxPool", dict(kernel=3, stride=2, pad=1), [x])
    assert np.isnan(want).sum() > w             # the oracle itself puts NaN where expected
    check(got, want, "nan-every-lane")


# ---------------------------------------------------------------- global pools

@pytest.mark.parametrize("op", ["GlobalMaxPool", "GlobalAvgPool"])
@pytest.mark.parametrize("hw", [(1, 1), (1, 7), (3, 3), (4, 4), (7, 7), (1, 17), (14, 14)],
                         ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("non_finite", [False, True], ids=["finite", "nan-inf"])
def test_global_pool(op, hw, non_finite, isa, request):
    case = request.node.callspec.id
    rng = rng_for(case)
    x = rng.standard_normal((2, 19, *hw))
    if non_finite:
        x = _with_non_finite(x, rng, 0.01)
    with np.errstate(invalid="ignore"):         # inf - inf in the oracle's sum
        got, want = run(op, {}, [x])
    # max selects: exact; the mean: a float32 sum of <= 196 terms |x| < 6 in 8 lanes then a
    # tree, ~sqrt(196) * 6e-8 relative in practice, 2e-5 bound as test_kernels_simple.py
    check(got, want, case, atol=0 if op == "GlobalMaxPool" else 1e-6, rtol=0 if op == "GlobalMaxPool" else 2e-5)
    if isa != "portable":
        _same_bits(got, _portable(lambda: run(op, {}, [x])[0]), case)


# ---------------------------------------------------------------- BatchNorm + act

@pytest.mark.parametrize("act", ["NONE", "RELU", "LEAKYRELU", "SIGMOID"])
@pytest.mark.parametrize("shape", [(1, 3, 1, 1), (2, 5, 3, 3), (1, 4, 7, 9), (2, 3, 17, 17)],
                         ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("inplace", [False, True], ids=["out", "inplace"])
def test_batchnorm_act(shape, act, inplace, isa, request):
    case = request.node.callspec.id
    rng = rng_for(case)
    c = shape[1]
    x = _with_non_finite(rng.standard_normal(shape) * 2, rng)
    params = {"weight": (rng.standard_normal(c) + 1).astype(np.float32),
              "bias": rng.standard_normal(c).astype(np.float32),
              "running_mean": rng.standard_normal(c).astype(np.float32),
              "running_var": rng.uniform(0.01, 4, c).astype(np.float32)}

    def fuse(kc):
        kc.fields["act"] = getattr(lib, f"ND_ACT_{act}")

    def go():
        return run("BatchNorm", {"eps": 1e-3}, [x.copy()], params, inplace=0 if inplace else None, tweak=fuse)
    got, want = go()
    with np.errstate(invalid="ignore", over="ignore"):
        if act == "RELU":
            want = np.where(want < 0, 0.0, want)                       # NaN stays NaN
        elif act == "LEAKYRELU":
            want = np.where(want < 0, want * 0.01, want)
        elif act == "SIGMOID":
            want = 1.0 / (1.0 + np.exp(-want))
    # as test_kernels_simple.py's BatchNorm (two roundings of |x*s|, |t| <= ~200), plus the
    # vectorized sigmoid of the epilogues (a few ulp)
    check(got, want, case, atol=2e-5, rtol=1e-5)
    if isa != "portable" and act != "SIGMOID":   # sigmoid: libm on portable, the ISA table's act_vec else
        _same_bits(got, _portable(lambda: go()[0]), case)


# ---------------------------------------------------------------- Add / Mul (+ReLU)

_SAME = [[(2, 3, 5, 13)] * 2, [(1, 4, 23, 23)] * 3]
_BCAST = [[(2, 5, 9, 9), (2, 5, 1, 1)], [(1, 7, 1, 1), (1, 7, 11, 3)]]    # Mul only: an SE gate
ELTWISE = [(op, s) for op in ("Add", "Mul") for s in _SAME] + [("Mul", s) for s in _BCAST]


@pytest.mark.parametrize("op,shapes", ELTWISE,
                         ids=[f"{op}-" + "+".join("x".join(map(str, t)) for t in s) for op, s in ELTWISE])
@pytest.mark.parametrize("relu", [False, True], ids=["plain", "relu"])
def test_eltwise(op, shapes, relu, isa, request):
    case = request.node.callspec.id
    rng = rng_for(case)
    xs = [_with_non_finite(rng.standard_normal(s), rng) for s in shapes]

    def fuse(kc):
        kc.fields["act"] = lib.ND_ACT_RELU if relu else lib.ND_ACT_NONE
    got, want = run(op, {}, xs, tweak=fuse)
    if relu:
        want = np.where(want < 0, 0.0, want)
    check(got, want, case, atol=3e-6, rtol=1e-6)
    if isa != "portable":
        _same_bits(got, _portable(lambda: run(op, {}, xs, tweak=fuse)[0]), case)


# ---------------------------------------------------------------- ReLU / LeakyReLU / PReLU

@pytest.mark.parametrize("op,kw", [("ReLU", {}), ("LeakyReLU", {}), ("LeakyReLU", {"slope": 0.3}),
                                   ("LeakyReLU", {"slope": 0.0})],
                         ids=["ReLU", "LeakyReLU", "LeakyReLU0.3", "LeakyReLU0"])
@pytest.mark.parametrize("n", [1, 7, 8, 9, 31, 40000])
def test_relu_family(op, kw, n, isa, request):
    case = request.node.callspec.id
    rng = rng_for(case)
    x = _with_non_finite(rng.standard_normal((1, n)) * 3, rng)
    x.reshape(-1)[:2] = [-0.0, 0.0][:n]
    got, want = run(op, kw, [x])
    check(got, want, case, atol=0, rtol=1.2e-7)
    if op == "ReLU":      # exactly the input or +0: the sign of a -0 input is kept (x < 0 fails)
        g = got.reshape(-1)
        assert np.signbit(g[0]) == np.signbit(x.reshape(-1)[0]) or g[0] != 0
    if isa != "portable":
        _same_bits(got, _portable(lambda: run(op, kw, [x])[0]), case)


@pytest.mark.parametrize("shape,k", [((2, 3, 1, 9), 3), ((1, 5, 7, 7), 1), ((1, 2, 64, 33), 2)],
                         ids=["1x9", "shared-7x7", "64x33"])
def test_prelu_lanes(shape, k, isa, request):
    case = request.node.callspec.id
    rng = rng_for(case)
    x = _with_non_finite(rng.standard_normal(shape), rng).astype(np.float32)
    spec, a, out_shape, kc = kernel_plan("PReLU", {"num_parameters": k}, [shape[1:]], shape[0])
    w = (rng.standard_normal(k) * 0.5).astype(np.float32)
    got = kcall(kc, [x], x.shape, w)
    want = np.asarray(spec.reference(a, [x.astype(np.float64)], {"weight": w.astype(np.float64)}))
    check(got, want, case, atol=0, rtol=6e-8)
    if isa != "portable":
        _same_bits(got, _portable(lambda: kcall(kc, [x], x.shape, w)), case)


# ---------------------------------------------------------------- Upsample, tabled and wide

@pytest.mark.parametrize("mode", [{"mode": "nearest"}, {"mode": "bilinear"},
                                  {"mode": "bilinear", "align_corners": True}],
                         ids=["nearest", "bilinear", "bilinear-ac"])
@pytest.mark.parametrize("shape,size", [((1, 2, 5, 7), (11, 16)), ((2, 3, 8, 8), (16, 16)),
                                        ((1, 1, 3, 1100), (5, 2200)), ((1, 2, 9, 6), (4, 3))],
                         ids=["odd", "x2", "wide-untabled", "down"])
def test_upsample_paths(shape, size, mode, isa, request):
    """Output rows up to 2048 wide take the tabled paths (column taps once, rows reused),
    wider ones the per-pixel loop: both against the reference, non-finite inputs included."""
    case = request.node.callspec.id
    rng = rng_for(case)
    x = _with_non_finite(rng.standard_normal(shape), rng, 0.01)
    with np.errstate(invalid="ignore"):
        got, want = run("Upsample", {"size": size, **mode}, [x])
    check(got, want, case, atol=0 if mode["mode"] == "nearest" else 3e-6)
