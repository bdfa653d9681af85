"""The float64 gradient oracles of netdsl/train/ref_pool.py against independent ones.

(1) Central finite differences (float64, step 1e-6) of the forward: OpSpec.reference for the
    pools and LRN (max/min on inputs with no ties, values at least 1e-2 apart, so the step
    never changes a winner); for the training-mode forwards the training function itself:
    BatchNorm's batch-statistics forward (ref_pool.batchnorm_train), StochasticPool and
    Dropout with the draw held fixed. Tolerance 1e-6 absolute + relative (the FD error is
    ~1e-9 here; a wrong routing is off by a whole dy).
(2) torch.autograd (float64, CPU) where torch has the op: max/avg pooling with PyTorch's
    padding limits (max pooling WITH ties and NaNs: the winner rule is PyTorch's, first
    maximum in scan order, last NaN), min pooling as -max_pool2d(-x), the global pools as
    adaptive pools, local_response_norm (even sizes too), batch_norm(training=True) including
    its running statistics (momentum 0.1, unbiased variance). Tolerance 1e-10.
"""
from __future__ import annotations

import zlib

import numpy as np
import pytest

from netdsl import ops
from netdsl.train import ref_pool as RP
from netdsl.train.registry import grad_reference

FD_STEP = 1e-6


def prepare(op, shapes, **kw):
    spec = ops.get(op)
    shapes = [tuple(s) for s in shapes]
    a = spec.resolve(spec.bind((), kw), shapes)
    return spec, a, tuple(spec.infer(a, shapes))


def fd_grad(f, x):
    """d sum(f(x)) / dx by central differences, one element at a time (f includes the dy weights)."""
    g = np.zeros_like(x)
    flat, gf = x.reshape(-1), g.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + FD_STEP
        up = f(x)
        flat[i] = old - FD_STEP
        down = f(x)
        flat[i] = old
        gf[i] = (up - down) / (2 * FD_STEP)
    return g


def close(got, want, case, tol=1e-6):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, f"{case}: shape {got.shape} != {want.shape}"
    same = (got == want) | (np.isnan(got) & np.isnan(want))
    with np.errstate(invalid="ignore"):
        diff = np.where(same, 0.0, np.abs(got - want))
    bad = ~(same | (diff <= tol + tol * np.abs(want)))
    assert not bad.any(), f"{case}: max diff {np.nan_to_num(diff, nan=np.inf).max():.3g} at {np.argwhere(bad)[:3].tolist()}"


def distinct(rng, shape):
    """Values with no ties, at least 1e-2 apart (a random order of 0, 0.01, 0.02, ...), centred."""
    k = int(np.prod(shape))
    return (rng.permutation(k).reshape(shape) - k / 2) * 1e-2


def window_cases():
    """(op, attrs, shape) for every sample of the window pools: stride, pad (ONNX's looser rule,
    asymmetric), ceil_mode, dilation; AvgPool with count_include_pad both ways."""
    out = []
    for op in ("MaxPool", "MinPool", "AvgPool"):
        for s in ops.get(op).samples:
            kw, shapes = s[0], s[1]
            out.append((op, dict(kw), tuple(shapes[0])))
    out.append(("AvgPool", dict(kernel=3, stride=2, pad=1, ceil_mode=True, count_include_pad=True), (2, 8, 7)))
    out.append(("AvgPool", dict(kernel=(3, 2), stride=1, dilation=(1, 2), pad=(1, 2, 0, 1)), (2, 5, 7)))
    return out


def _id(c):
    op, kw, shape = c
    return f"{op}-" + "-".join(f"{k}{v}" for k, v in kw.items()).replace(" ", "") + "-" + "x".join(map(str, shape))


@pytest.mark.parametrize("case", window_cases(), ids=_id)
def test_window_pool_ref_vs_finite_differences(case):
    op, kw, shape = case
    spec, a, out = prepare(op, [shape], **kw)
    rng = np.random.default_rng(zlib.crc32(_id(case).encode()))
    n = 2
    x = distinct(rng, (n, *shape)) if op != "AvgPool" else rng.standard_normal((n, *shape))
    dy = rng.standard_normal((n, *out))
    (dx,), dp = grad_reference(op)(a, [x], {}, None, dy)
    assert dp == {}
    fd = fd_grad(lambda v: float((spec.reference(a, [v], {}) * dy).sum()), x)
    close(dx, fd, _id(case))


@pytest.mark.parametrize("op,shape", [("GlobalAvgPool", (3, 5, 7)), ("GlobalMaxPool", (3, 5, 7)),
                                      ("GlobalMaxPool", (1, 1, 1)), ("GlobalAvgPool", (2, 4, 3))])
def test_global_pool_ref_vs_finite_differences(op, shape):
    spec, a, out = prepare(op, [shape])
    rng = np.random.default_rng(3)
    x = distinct(rng, (2, *shape))
    dy = rng.standard_normal((2, *out))
    (dx,), _ = grad_reference(op)(a, [x], {}, None, dy)
    close(dx, fd_grad(lambda v: float((spec.reference(a, [v], {}) * dy).sum()), x), f"{op}{shape}")


LRN_CASES = [dict(), dict(size=2, alpha=1e-2, beta=0.5, k=2.0), dict(size=1, alpha=0.7, beta=1.5, k=1.0),
             dict(size=4, alpha=0.9, beta=0.75, k=1.0), dict(size=3, alpha=2.0, beta=0.3, k=0.5),
             dict(size=9, alpha=1.0, beta=0.75, k=1.0)]        # size 9 > C = 7: every window clipped


@pytest.mark.parametrize("kw", LRN_CASES, ids=lambda kw: "-".join(f"{k}{v}" for k, v in kw.items()) or "default")
def test_lrn_ref_vs_finite_differences(kw):
    shape = (7, 3, 4)
    spec, a, out = prepare("LRN", [shape], **kw)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, *shape))
    dy = rng.standard_normal((2, *out))
    (dx,), _ = grad_reference("LRN")(a, [x], {}, None, dy)
    close(dx, fd_grad(lambda v: float((spec.reference(a, [v], {}) * dy).sum()), x), f"LRN{kw}")


@pytest.mark.parametrize("shape,n,offset", [((3, 5, 7), 4, 0.0), ((7,), 5, 0.0), ((2, 1, 1), 3, 0.0),
                                            ((2, 3, 3), 2, 50.0)])
def test_batchnorm_ref_vs_finite_differences(shape, n, offset):
    """dx, dweight, dbias of the batch-statistics forward (ref_pool.batchnorm_train), by FD."""
    spec, a, out = prepare("BatchNorm", [shape], eps=1e-3)
    rng = np.random.default_rng(7)
    c = shape[0]
    x = rng.standard_normal((n, *shape)) * 1.5 + offset
    p = {"weight": rng.standard_normal(c), "bias": rng.standard_normal(c)}
    dy = rng.standard_normal((n, *out))
    (dx,), dp = grad_reference("BatchNorm")(a, [x], p, None, dy)

    def f(v, w=None, b=None):
        q = {"weight": p["weight"] if w is None else w, "bias": p["bias"] if b is None else b}
        return float((RP.batchnorm_train(a, v, q)[0] * dy).sum())
    case = f"BN{shape} n{n}"
    close(dx, fd_grad(f, x.copy()), case, tol=1e-5 if offset else 1e-6)
    close(dp["weight"], fd_grad(lambda w: f(x, w=w), p["weight"].copy()), case)
    close(dp["bias"], fd_grad(lambda b: f(x, b=b), p["bias"].copy()), case)


def test_stochastic_pool_ref_routes_to_the_given_tap():
    """dx of StochasticPool with the taps held fixed: FD of the training forward (the sampled value)."""
    shape = (2, 9, 8)
    spec, a, out = prepare("StochasticPool", [shape], kernel=3, stride=2, pad=1, ceil_mode=True)
    rng = np.random.default_rng(11)
    x = rng.standard_normal((2, *shape))
    x[0, 0, :2, :2] = -1.0                       # window (0, 0) has no positive cell: tap -1, no gradient
    _, taps = RP.stochastic_sample(a, x, seed=5)
    assert taps[0, 0, 0, 0] == -1 and (taps >= 0).sum() > taps.size // 2
    dy = rng.standard_normal((2, *out))
    (dx,), _ = grad_reference("StochasticPool")(a, [x], {"saved": taps}, None, dy)
    close(dx, fd_grad(lambda v: float((RP.stochastic_forward(a, v, taps) * dy).sum()), x), "stochastic")


def test_dropout_ref_vs_finite_differences():
    shape = (3, 4, 5)
    rng = np.random.default_rng(13)
    x = rng.standard_normal((2, *shape))
    scale = RP.dropout_scale(0.4, 77, x.shape).astype(np.float64)
    dy = rng.standard_normal(x.shape)
    (dx,), _ = grad_reference("Dropout")({"p": 0.4}, [x], {"saved": scale}, None, dy)
    close(dx, fd_grad(lambda v: float((v * scale * dy).sum()), x), "dropout")
    assert set(np.unique(scale)) == {0.0, np.float32(1 / np.float32(0.6))}


# ---------------------------------------------------------------- torch.autograd

def _torch_grad(fn, x):
    torch = pytest.importorskip("torch")
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    y = fn(xt)
    return xt, y


TORCH_POOL = [  # (attrs, shape): PyTorch's limits (symmetric pad <= half the window)
    (dict(kernel=2), (3, 7, 9)),
    (dict(kernel=3, stride=2, pad=1, ceil_mode=True), (2, 9, 8)),
    (dict(kernel=(3, 2), stride=(2, 1), pad=(1, 1)), (2, 7, 6)),
    (dict(kernel=3, stride=2, pad=1, dilation=2, ceil_mode=True), (2, 8, 9)),
    (dict(kernel=2, stride=2, ceil_mode=True), (2, 5, 7)),
]


def _sym(a):
    t, l, b, r = a["pad"]
    assert (t, l) == (b, r)
    return (t, l)


@pytest.mark.parametrize("op", ["MaxPool", "MinPool"])
@pytest.mark.parametrize("kw,shape", TORCH_POOL, ids=[_id(("", k, s)) for k, s in TORCH_POOL])
def test_max_min_pool_ref_vs_torch_with_ties_and_nan(op, kw, shape):
    """Integers 0..3 (many ties in every window) and a few NaNs: the same cell gets dy as in PyTorch."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    spec, a, out = prepare(op, [shape], **kw)
    rng = np.random.default_rng(17)
    x = rng.integers(0, 4, (2, *shape)).astype(np.float64)
    x.reshape(-1)[rng.choice(x.size, 3, replace=False)] = np.nan
    dy = rng.standard_normal((2, *out))
    sign = 1.0 if op == "MaxPool" else -1.0
    xt, yt = _torch_grad(lambda v: sign * F.max_pool2d(sign * v, a["kernel"], a["stride"], _sym(a), a["dilation"],
                                                       ceil_mode=a["ceil_mode"]), x)
    assert yt.shape == (2, *out)
    yt.backward(torch.tensor(dy))
    (dx,), _ = grad_reference(op)(a, [x], {}, None, dy)
    close(dx, xt.grad.numpy(), f"{op} {kw}", tol=1e-10)


@pytest.mark.parametrize("include", [True, False])
@pytest.mark.parametrize("kw,shape", [c for c in TORCH_POOL if "dilation" not in c[0]],
                         ids=[_id(("", k, s)) for k, s in TORCH_POOL if "dilation" not in k])
def test_avg_pool_ref_vs_torch(kw, shape, include):
    torch = pytest.importorskip("torch")
    spec, a, out = prepare("AvgPool", [shape], count_include_pad=include, **kw)
    rng = np.random.default_rng(19)
    x = rng.standard_normal((2, *shape))
    dy = rng.standard_normal((2, *out))
    xt, yt = _torch_grad(lambda v: torch.nn.functional.avg_pool2d(v, a["kernel"], a["stride"], _sym(a),
                                                                  ceil_mode=a["ceil_mode"],
                                                                  count_include_pad=include), x)
    assert yt.shape == (2, *out)
    yt.backward(torch.tensor(dy))
    (dx,), _ = grad_reference("AvgPool")(a, [x], {}, None, dy)
    close(dx, xt.grad.numpy(), f"AvgPool {kw} include={include}", tol=1e-10)


@pytest.mark.parametrize("op", ["GlobalAvgPool", "GlobalMaxPool"])
def test_global_pools_ref_vs_torch(op):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(23)
    x = rng.integers(0, 3, (2, 3, 5, 4)).astype(np.float64)      # ties for the max
    x[1, 2, 3, 1] = np.nan
    dy = rng.standard_normal((2, 3, 1, 1))
    fn = (lambda v: F.adaptive_avg_pool2d(v, 1)) if op == "GlobalAvgPool" else (lambda v: F.adaptive_max_pool2d(v, 1))
    xt, yt = _torch_grad(fn, x)
    yt.backward(torch.tensor(dy))
    (dx,), _ = grad_reference(op)({}, [x], {}, None, dy)
    close(dx, xt.grad.numpy(), op, tol=1e-10)


@pytest.mark.parametrize("kw", LRN_CASES, ids=lambda kw: "-".join(f"{k}{v}" for k, v in kw.items()) or "default")
def test_lrn_ref_vs_torch(kw):
    torch = pytest.importorskip("torch")
    shape = (7, 3, 4)
    spec, a, out = prepare("LRN", [shape], **kw)
    rng = np.random.default_rng(29)
    x = rng.standard_normal((2, *shape))
    dy = rng.standard_normal((2, *out))
    xt, yt = _torch_grad(lambda v: torch.nn.functional.local_response_norm(v, a["size"], a["alpha"], a["beta"],
                                                                           a["k"]), x)
    yt.backward(torch.tensor(dy))
    (dx,), _ = grad_reference("LRN")(a, [x], {}, None, dy)
    close(dx, xt.grad.numpy(), f"LRN {kw}", tol=1e-10)


@pytest.mark.parametrize("shape,n", [((3, 5, 7), 4), ((6,), 5), ((2, 1, 1), 2)])
def test_batchnorm_train_ref_vs_torch(shape, n):
    """Forward, running statistics (momentum 0.1, unbiased variance) and every gradient."""
    torch = pytest.importorskip("torch")
    spec, a, out = prepare("BatchNorm", [shape])
    c = shape[0]
    rng = np.random.default_rng(31)
    x = rng.standard_normal((n, *shape)) * 2 + 0.5
    p = {"weight": rng.standard_normal(c), "bias": rng.standard_normal(c)}
    buf = {"running_mean": rng.standard_normal(c), "running_var": rng.random(c) + 0.5}
    dy = rng.standard_normal((n, *out))
    rm, rv = torch.tensor(buf["running_mean"]), torch.tensor(buf["running_var"])
    w = torch.tensor(p["weight"], requires_grad=True)
    b = torch.tensor(p["bias"], requires_grad=True)
    xt, yt = _torch_grad(lambda v: torch.nn.functional.batch_norm(v, rm, rv, w, b, training=True, momentum=0.1,
                                                                  eps=a["eps"]), x)
    yt.backward(torch.tensor(dy))
    y, mean, inv, rm2, rv2 = RP.batchnorm_train(a, x, p, buf)
    case = f"BN{shape} n{n}"
    close(y, yt.detach().numpy(), case, tol=1e-10)
    close(rm2, rm.numpy(), case, tol=1e-12)
    close(rv2, rv.numpy(), case, tol=1e-12)
    (dx,), dp = grad_reference("BatchNorm")(a, [x], p, None, dy)
    close(dx, xt.grad.numpy(), case, tol=1e-10)
    close(dp["weight"], w.grad.numpy(), case, tol=1e-10)
    close(dp["bias"], b.grad.numpy(), case, tol=1e-10)
