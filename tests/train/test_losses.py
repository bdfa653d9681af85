"""The loss kernels (csrc/kernels/train_loss.c) against their float64 oracle (Loss.reference),
the oracle against central finite differences and torch.nn.functional, and the targets'
validation (bad labels are reported with the label, its index and K).

Tolerances (float32 kernel vs float64 oracle): loss relative 1e-5; d_output absolute
1e-6 / (positions in the mean), i.e. 1e-6 of the largest possible CE / BCE gradient entry
(MSE's gradient is unbounded: 1e-6 of its largest entry); the correct count exactly.
Oracle vs torch (both float64): 1e-10. Oracle vs central finite differences (step 1e-6,
float64): 1e-8 absolute, on gradients whose entries are 1e-3 .. 1.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from netdsl.errors import NetDSLError
from netdsl.runtime.executor import KernelError, run_call
from netdsl.train.losses import get_loss

RNG = np.random.default_rng


def _run(loss, x, t, out_shape, threads=0):
    """(d_output, loss, correct) of the C kernel; the out block is NaN-prefilled by run_call."""
    n = x.shape[0]
    out = run_call(loss.call(out_shape, n), [x, t], out_floats=loss.out_floats(out_shape, n), threads=threads)
    return out[:-2].reshape(x.shape), float(out[-2]), float(out[-1])


def _positions(loss, out_shape, n):
    return n * (math.prod(out_shape[1:]) if loss.name == "cross_entropy" else math.prod(out_shape))


def _check_kernel(loss, x, t, out_shape, threads=0):
    d, lv, cor = _run(loss, x, t, out_shape, threads)
    rl, rd, rc = loss.reference(x.astype(np.float64), t.astype(np.float64))
    assert abs(lv - rl) <= 1e-5 * max(1.0, abs(rl)), f"loss {lv} vs reference {rl}"
    tol = 1e-6 * max(1.0 / _positions(loss, out_shape, x.shape[0]), np.abs(rd).max())
    diff = np.abs(d - rd).max()
    assert diff <= tol, f"d_output max difference {diff:.3g} > {tol:.3g}"
    assert cor == rc, f"correct {cor} vs reference {rc}"
    return d, lv, cor


CE_CASES = [   # (out_shape, n, label_smoothing, logit scale)
    ((10,), 3, 0.0, 3.0),
    ((2,), 1, 0.0, 1.0),
    ((7,), 5, 0.2, 2.0),
    ((1000,), 2, 0.1, 5.0),
    ((5, 3, 4), 2, 0.1, 2.0),          # per-pixel, one block of positions
    ((3, 13, 17), 2, 0.0, 2.0),        # 221 positions: three full blocks of 64 and a partial one
    ((6, 1, 1), 4, 0.05, 2.0),
]


def _ce_data(out_shape, n, scale, seed=0):
    rng = RNG(seed)
    x = (rng.standard_normal((n, *out_shape)) * scale).astype(np.float32)
    y = rng.integers(0, out_shape[0], (n, *out_shape[1:]))
    return x, y


@pytest.mark.parametrize("out_shape,n,ls,scale", CE_CASES,
                         ids=[f"k{s[0]}-{'x'.join(map(str, s[1:])) or 'vec'}-n{n}-ls{ls}" for s, n, ls, _ in CE_CASES])
def test_cross_entropy_kernel_matches_reference(out_shape, n, ls, scale):
    loss = get_loss("cross_entropy", label_smoothing=ls)
    x, y = _ce_data(out_shape, n, scale)
    _check_kernel(loss, x, loss.prepare_targets(y, out_shape, n), out_shape)


@pytest.mark.parametrize("threads", [1, 2])
def test_cross_entropy_per_pixel_threaded(threads):
    """Past the kernel's threading threshold (32768 values), with 1 and 2 threads."""
    out_shape, n = (10, 40, 41), 2
    loss = get_loss("ce", label_smoothing=0.1)
    x, y = _ce_data(out_shape, n, 2.0, seed=3)
    _check_kernel(loss, x, loss.prepare_targets(y, out_shape, n), out_shape, threads)


@pytest.mark.parametrize("out_shape,n,ls,scale", CE_CASES[:1] + CE_CASES[2:3] + CE_CASES[4:5],
                         ids=["vec", "vec-smooth", "pixel-smooth"])
def test_cross_entropy_reference_matches_torch(out_shape, n, ls, scale):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    loss = get_loss("ce", label_smoothing=ls)
    x, y = _ce_data(out_shape, n, scale)
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    lt = F.cross_entropy(xt, torch.tensor(y), label_smoothing=ls)
    lt.backward()
    rl, rd, rc = loss.reference(x.astype(np.float64), y)
    assert abs(rl - lt.item()) <= 1e-10
    np.testing.assert_allclose(rd, xt.grad.numpy(), rtol=0, atol=1e-10)
    assert rc == int((xt.detach().argmax(1) == torch.tensor(y)).sum())


ELT_CASES = [   # (loss, out_shape, n)
    ("mse", (4, 3), 5),
    ("mse", (1,), 7),
    ("bce", (4, 3), 5),
    ("bce", (1,), 7),
    ("bce_with_logits", (2, 5, 3), 3),
]


def _elt_data(name, out_shape, n, seed=0):
    rng = RNG(seed)
    z = (rng.standard_normal((n, *out_shape)) * 3).astype(np.float32)
    t = rng.random((n, *out_shape)).astype(np.float32)
    if name.startswith("bce"):
        t[..., 0] = np.round(t[..., 0])             # hard 0/1 targets as well as soft ones
    return z, t


@pytest.mark.parametrize("name,out_shape,n", ELT_CASES,
                         ids=[f"{c[0]}-{'x'.join(map(str, c[1]))}-n{c[2]}" for c in ELT_CASES])
def test_elementwise_loss_kernel_matches_reference_and_torch(name, out_shape, n):
    loss = get_loss(name)
    z, t = _elt_data(name, out_shape, n)
    _check_kernel(loss, z, loss.prepare_targets(t, out_shape, n), out_shape)
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    zt = torch.tensor(z, dtype=torch.float64, requires_grad=True)
    f = F.mse_loss if name == "mse" else F.binary_cross_entropy_with_logits
    lt = f(zt, torch.tensor(t, dtype=torch.float64))
    lt.backward()
    rl, rd, _ = loss.reference(z.astype(np.float64), t.astype(np.float64))
    assert abs(rl - lt.item()) <= 1e-10
    np.testing.assert_allclose(rd, zt.grad.numpy(), rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", ["mse", "bce"])
@pytest.mark.parametrize("threads", [1, 2])
def test_elementwise_loss_threaded(name, threads):
    """Past the threading threshold (65536 values)."""
    out_shape, n = (17, 64, 32), 2
    loss = get_loss(name)
    z, t = _elt_data(name, out_shape, n, seed=5)
    _check_kernel(loss, z, loss.prepare_targets(t, out_shape, n), out_shape, threads)


FD_CASES = [("ce", {}, (5,), 3), ("ce", {"label_smoothing": 0.3}, (4,), 2),
            ("ce", {"label_smoothing": 0.1}, (3, 2, 3), 2), ("mse", {}, (3, 2), 2), ("bce", {}, (4,), 3)]


@pytest.mark.parametrize("name,kw,out_shape,n", FD_CASES,
                         ids=[f"{c[0]}-{'x'.join(map(str, c[2]))}-{c[1]}" for c in FD_CASES])
def test_reference_gradient_matches_finite_differences(name, kw, out_shape, n):
    loss = get_loss(name, **kw)
    rng = RNG(1)
    x = rng.standard_normal((n, *out_shape)) * 2
    if name == "ce":
        t = rng.integers(0, out_shape[0], (n, *out_shape[1:])).astype(np.float64)
    else:
        t = rng.random((n, *out_shape))
    _, d, _ = loss.reference(x, t)
    h, fd = 1e-6, np.zeros_like(x)
    for i in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[i] += h
        xm[i] -= h
        fd[i] = (loss.reference(xp, t)[0] - loss.reference(xm, t)[0]) / (2 * h)
    assert np.abs(fd - d).max() <= 1e-8, np.abs(fd - d).max()


def test_cross_entropy_is_stable_for_huge_logits():
    """Logits of +-1e4 (exp would overflow without the max subtraction): finite loss and
    gradient, equal to the oracle; BCE at |z| = 100 likewise."""
    loss = get_loss("ce")
    x = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4 - 1.0, 1e4]], np.float32)
    t = loss.prepare_targets([1, 2], (3,), 2)
    d, lv, cor = _check_kernel(loss, x, t, (3,))
    assert np.isfinite(lv) and np.isfinite(d).all() and abs(lv - 1e4) < 1 and cor == 1
    bce = get_loss("bce")
    z = np.array([[100.0, -100.0, 100.0, -100.0]], np.float32)
    d, lv, cor = _check_kernel(bce, z, bce.prepare_targets([[1, 0, 0, 1]], (4,), 1), (4,))
    assert abs(lv - 50.0) < 1e-4 and cor == 2


@pytest.mark.parametrize("name", ["ce", "mse", "bce"])
def test_nan_in_the_output_gives_a_nan_loss(name):
    """A NaN output value makes the loss NaN and its gradient NaN (torch does the same); the
    other samples' gradients are untouched (the mean's scale does not depend on them)."""
    loss = get_loss(name)
    out_shape, n = (4,), 3
    rng = RNG(2)
    x = rng.standard_normal((n, *out_shape)).astype(np.float32)
    t = rng.integers(0, 4, n) if name == "ce" else rng.random((n, *out_shape))
    t = loss.prepare_targets(t, out_shape, n)
    x[1, 2] = np.nan
    d, lv, _ = _run(loss, x, t, out_shape)
    assert math.isnan(lv)
    assert np.isnan(d[1, 2])
    if name == "ce":
        assert np.isnan(d[1]).all()                     # softmax spreads it over the row
    _, rd, _ = loss.reference(x.astype(np.float64), t.astype(np.float64))
    np.testing.assert_allclose(d[[0, 2]], rd[[0, 2]], rtol=0, atol=1e-6 / n)
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    xt = torch.tensor(x, dtype=torch.float64)
    if name == "ce":
        lt = F.cross_entropy(xt, torch.tensor(t, dtype=torch.int64))
    elif name == "mse":
        lt = F.mse_loss(xt, torch.tensor(t, dtype=torch.float64).reshape(n, 4))
    else:
        lt = F.binary_cross_entropy_with_logits(xt, torch.tensor(t, dtype=torch.float64).reshape(n, 4))
    assert math.isnan(lt.item())


def test_bad_labels_are_named_with_index_and_k():
    ce = get_loss("ce")
    with pytest.raises(NetDSLError) as e:
        ce.prepare_targets([0, 3, 9, 10, 2], (10,), 5)
    assert "label 10 at index 3 is outside [0, 10)" in str(e.value) and "K = 10" in str(e.value)
    with pytest.raises(NetDSLError, match=r"label -1 at index 0 is outside \[0, 4\)"):
        ce.prepare_targets(np.array([-1, 0]), (4,), 2)
    with pytest.raises(NetDSLError, match=r"label 2\.5 at index 1 is not an integer"):
        ce.prepare_targets(np.array([1.0, 2.5]), (4,), 2)
    with pytest.raises(NetDSLError, match=r"label nan at index 0 is outside"):
        ce.prepare_targets(np.array([np.nan, 1.0]), (4,), 2)
    y = np.zeros((2, 3, 5), np.int64)
    y[1, 2, 4] = 7
    with pytest.raises(NetDSLError, match=r"label 7 at index \(1, 2, 4\) is outside \[0, 6\)"):
        ce.prepare_targets(y, (6, 3, 5), 2)
    with pytest.raises(NetDSLError) as e:
        ce.prepare_targets([1, 2, 3, 4], (4,), 4)          # 1-based labels
    assert "subtract 1" in str(e.value)


def test_target_shapes_are_checked():
    ce, mse = get_loss("ce"), get_loss("mse")
    with pytest.raises(NetDSLError, match=r"labels have shape \(4, 3\), the loss needs \(4,\)"):
        ce.prepare_targets(np.zeros((4, 3)), (10,), 4)
    with pytest.raises(NetDSLError, match=r"needs \(2, 3, 5\)"):
        ce.prepare_targets(np.zeros((2, 5, 3)), (6, 3, 5), 2)
    with pytest.raises(NetDSLError, match="must be integers"):
        ce.prepare_targets(np.array(["a", "b"]), (4,), 2)
    with pytest.raises(NetDSLError, match=r"targets have shape \(3, 4\), the loss needs \(3, 2, 2\)"):
        mse.prepare_targets(np.zeros((3, 4)), (2, 2), 3)
    # size-1 axes may differ: (n, 1) labels for vectors, (n,) targets for a one-unit output
    assert ce.prepare_targets(np.array([[1], [2]]), (4,), 2).tolist() == [1.0, 2.0]
    out = get_loss("bce").prepare_targets(np.array([0, 1, 1]), (1,), 3)
    assert out.dtype == np.float32 and out.tolist() == [0.0, 1.0, 1.0]


def test_the_kernel_refuses_a_label_out_of_range_itself():
    """A label that skipped prepare_targets: ND_EINVAL (no read outside the row)."""
    ce = get_loss("ce")
    x = np.zeros((2, 3), np.float32)
    with pytest.raises(KernelError, match="ND_EINVAL"):
        run_call(ce.call((3,), 2), [x, np.array([0.0, 3.0], np.float32)], out_floats=ce.out_floats((3,), 2))


def test_shapes_sizes_and_names():
    ce = get_loss("xent")
    assert ce.name == "cross_entropy" and get_loss("CE").name == "cross_entropy"
    assert get_loss("bce").name == "bce_with_logits" and get_loss("MSE").name == "mse"
    assert ce.target_floats((10,), 8) == 8 and ce.target_floats((5, 7, 9), 2) == 2 * 63
    assert get_loss("mse").target_floats((5, 7), 3) == 105 and get_loss("bce").target_floats((2,), 4) == 8
    assert ce.out_floats((10,), 8) == 82
    with pytest.raises(NetDSLError, match="K >= 2"):
        ce.check((1,))
    with pytest.raises(NetDSLError, match=r"\(K,\) or per-pixel scores \(K, H, W\)"):
        ce.check((3, 4))
    with pytest.raises(NetDSLError) as e:
        get_loss("cross_entrpy")
    assert "did you mean 'cross_entropy'" in str(e.value)
    with pytest.raises(NetDSLError, match="takes label_smoothing; got smoothing"):
        get_loss("ce", smoothing=0.1)
    with pytest.raises(NetDSLError, match="mse takes no options"):
        get_loss("mse", label_smoothing=0.1)
    with pytest.raises(NetDSLError, match=r"outside \[0, 1\]"):
        get_loss("ce", label_smoothing=1.5)
    assert get_loss(**get_loss("ce", label_smoothing=0.1).config()).label_smoothing == 0.1
