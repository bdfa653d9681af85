"""The float64 gradient oracles of Conv, ConvTranspose, Local and FC (netdsl/train/ref_conv.py)
against two independent oracles:

- central finite differences of the op's own forward reference (OpSpec.reference) in float64,
  of L = sum(y * dy) for a random dy, entry by entry (every entry of small tensors, a random
  sample of 300 of larger ones). The layers are linear in x and in the weights, so the
  central difference has no truncation error: only rounding, ~1e-16 * |L| / eps with
  eps = 1e-3, far under the 1e-7 (relative to the largest gradient) asked;
- torch.autograd on the same float64 data (skipped without torch), to 1e-10: asymmetric
  pads via F.pad, ConvTranspose's crop as a slice of the uncropped output, Local as
  F.unfold + einsum.

The cases hit stride > kernel, dilation, groups, depthwise (with a channel multiplier),
asymmetric pads, 1x1 (strided too), windows that leave the bottom/right input unread,
output_padding, and FC on a flattened (C, H, W) map.
"""
from __future__ import annotations

import zlib

import numpy as np
import pytest

from netdsl import ops
from netdsl.train.registry import grad_reference

# (op, attrs, input shape without batch)
CASES = [
    ("Conv", dict(out_channels=4, kernel=3), (3, 7, 9)),
    ("Conv", dict(out_channels=5, kernel=3, stride=2, pad=1), (3, 9, 7)),
    ("Conv", dict(out_channels=4, kernel=(3, 2), pad=(1, 2, 0, 1), dilation=(2, 3), bias=False), (3, 11, 13)),
    ("Conv", dict(out_channels=6, kernel=3, pad=1, groups=2), (4, 7, 7)),
    ("Conv", dict(out_channels=6, kernel=3, stride=2, pad=1, groups=6), (6, 9, 9)),      # depthwise
    ("Conv", dict(out_channels=8, kernel=(3, 5), stride=(1, 2), pad=(2, 1, 0, 2), groups=4), (4, 8, 9)),  # x2 mult
    ("Conv", dict(out_channels=7, kernel=1), (5, 5, 7)),
    ("Conv", dict(out_channels=3, kernel=1, stride=3), (2, 8, 7)),                      # stride > kernel
    ("Conv", dict(out_channels=3, kernel=2, stride=3, pad=(0, 0, 1, 2)), (2, 10, 9)),  # unread border
    ("Conv", dict(out_channels=4, kernel=5), (3, 5, 5)),                               # one output pixel
    ("Conv", dict(out_channels=4, kernel=3, pad=1, residual=True), (3, 6, 6)),
    ("ConvTranspose", dict(out_channels=3, kernel=4, stride=2, pad=1), (2, 5, 5)),
    ("ConvTranspose", dict(out_channels=4, kernel=3, stride=3, output_padding=2), (3, 5, 3)),
    ("ConvTranspose", dict(out_channels=3, kernel=(3, 5), stride=(2, 1), pad=(1, 0, 0, 2), dilation=2,
                           bias=False), (2, 5, 7)),
    ("ConvTranspose", dict(out_channels=4, kernel=2, stride=2, groups=2), (4, 3, 5)),
    ("ConvTranspose", dict(out_channels=6, kernel=3, stride=2, pad=(1, 0, 2, 1), output_padding=(1, 2),
                           dilation=(1, 3), groups=3), (3, 4, 5)),
    ("Local", dict(out_channels=3, kernel=3), (2, 5, 7)),
    ("Local", dict(out_channels=4, kernel=(3, 2), stride=2, pad=(1, 0, 2, 1), dilation=(1, 2), bias=False),
     (3, 7, 9)),
    ("FC", dict(out_features=5), (7,)),
    ("FC", dict(out_features=3, bias=False), (2, 3, 5)),
    ("FC", dict(out_features=4), (2, 5, 5)),
]


def case_id(c):
    op, kw, shape = c
    return f"{op}-{'x'.join(map(str, shape))}-" + "-".join(f"{k}{v}" for k, v in kw.items()).replace(" ", "")


def setup(op, kw, shape, n, seed=0):
    """(spec, attrs, xs, params, dy) in float64: x ~ N(0,1), weights and bias ~ N(0,1)."""
    spec = ops.get(op)
    shapes = [tuple(shape)]
    if kw.get("residual"):      # r is shaped like the output
        shapes.append((kw["out_channels"], *spec.out_hw(spec.resolve(spec.bind((), kw), shapes * 2), shapes)))
    a = spec.resolve(spec.bind((), kw), shapes)
    out = tuple(spec.infer(a, shapes))
    rng = np.random.default_rng(zlib.crc32(case_id((op, kw, shape)).encode()) + seed)
    xs = [rng.standard_normal((n, *shapes[0]))]
    xs += [rng.standard_normal((n, *s)) for s in shapes[1:]]
    params = {k: rng.standard_normal(s) for k, s in spec.params(a, shapes).items()}
    dy = rng.standard_normal((n, *out))
    return spec, a, xs, params, dy


def fd_grad(f, arr, rng, eps=1e-3, limit=300):
    """Central differences of the scalar f() over entries of arr (changed in place and restored):
    (indices, derivatives), every entry when arr has at most `limit`, else a random sample."""
    flat = arr.reshape(-1)
    idx = np.arange(flat.size) if flat.size <= limit else rng.choice(flat.size, limit, replace=False)
    out = np.empty(len(idx))
    for k, i in enumerate(idx):
        v = flat[i]
        flat[i] = v + eps
        hi = f()
        flat[i] = v - eps
        lo = f()
        flat[i] = v
        out[k] = (hi - lo) / (2 * eps)
    return idx, out


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_grad_ref_matches_finite_differences(case):
    op, kw, shape = case
    spec, a, xs, params, dy = setup(op, kw, shape, n=2)
    y = spec.reference(a, xs, params)
    dxs, dps = grad_reference(op)(a, xs, params, y, dy)
    assert len(dxs) == len(xs)
    assert set(dps) == set(params), f"{op}: grads for {sorted(dps)}, params {sorted(params)}"

    def loss():
        return float((spec.reference(a, xs, params) * dy).sum())

    rng = np.random.default_rng(1)
    targets = [(f"dx{i}", x, g) for i, (x, g) in enumerate(zip(xs, dxs))]
    targets += [(f"d{k}", params[k], dps[k]) for k in params]
    for name, arr, got in targets:
        assert got.shape == arr.shape, f"{name}: shape {got.shape} != {arr.shape}"
        idx, want = fd_grad(loss, arr, rng)
        err = np.abs(got.reshape(-1)[idx] - want).max()
        scale = max(1.0, np.abs(want).max())
        assert err <= 1e-7 * scale, f"{case_id(case)} {name}: max |ref - finite diff| {err:.3g}"


def torch_forward(torch, op, a, x, params):
    """The layer in torch (float64), from its attributes."""
    F = torch.nn.functional
    if op == "Conv":
        t, l, b, r = a["pad"]
        y = F.conv2d(F.pad(x, (l, r, t, b)), params["weight"], params.get("bias"), stride=a["stride"],
                     dilation=a["dilation"], groups=a["groups"])
        return y
    if op == "ConvTranspose":
        y = F.conv_transpose2d(x, params["weight"], None, stride=a["stride"],
                               output_padding=a["output_padding"], dilation=a["dilation"], groups=a["groups"])
        t, l, b, r = a["pad"]
        y = y[:, :, t:y.shape[2] - b, l:y.shape[3] - r]
        return y + params["bias"].reshape(1, -1, 1, 1) if "bias" in params else y
    if op == "Local":
        t, l, b, r = a["pad"]
        cols = F.unfold(F.pad(x, (l, r, t, b)), a["kernel"], dilation=a["dilation"], stride=a["stride"])
        y = torch.einsum("nkp,pok->nop", cols, params["weight"])
        oc, p = y.shape[1:]
        y = y + params["bias"].reshape(1, oc, p) if "bias" in params else y
        return y
    if op == "FC":
        return F.linear(x.reshape(x.shape[0], -1), params["weight"], params.get("bias"))
    raise AssertionError(op)


@pytest.mark.parametrize("case", [c for c in CASES if not c[1].get("residual")], ids=case_id)
def test_grad_ref_matches_torch_autograd(case):
    torch = pytest.importorskip("torch")
    op, kw, shape = case
    spec, a, xs, params, dy = setup(op, kw, shape, n=3, seed=7)
    y = spec.reference(a, xs, params)
    dxs, dps = grad_reference(op)(a, xs, params, y, dy)
    tx = torch.tensor(xs[0], requires_grad=True)
    tp = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    ty = torch_forward(torch, op, a, tx, tp)
    assert np.abs(ty.detach().numpy().reshape(y.shape) - y).max() < 1e-10, "torch's forward differs"
    ty.backward(torch.tensor(dy).reshape(ty.shape))
    np.testing.assert_allclose(dxs[0], tx.grad.numpy(), rtol=1e-10, atol=1e-10, err_msg=f"{case_id(case)} dx")
    for k in params:
        np.testing.assert_allclose(dps[k], tp[k].grad.numpy(), rtol=1e-10, atol=1e-10,
                                   err_msg=f"{case_id(case)} d{k}")


def test_grad_ref_rejects_a_fused_activation():
    spec, a, xs, params, dy = setup("Conv", dict(out_channels=2, kernel=3, act="relu"), (2, 5, 5), n=1)
    with pytest.raises(NotImplementedError, match="fused activation"):
        grad_reference("Conv")(a, xs, params, None, dy)
