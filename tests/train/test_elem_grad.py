"""The float64 gradient oracles of the element-wise, merge and shape ops (netdsl/train/ref_elem.py).

Two independent checks per case (CASES, shared with test_elem_kernels.py):
- central finite differences of OpSpec.reference in float64: L = sum(reference(x) * dy), so
  dL/dx is the vector-Jacobian product the oracle computes; eps 1e-6, agreement to
  1e-6 + 1e-5·|g| (the difference quotient's rounding is ~1e-9 here). Inputs are kept 0.05
  away from every kink (ReLU's 0, the clip bounds, HardSwish's ±3, ...), where the
  derivative jumps and a difference quotient means nothing;
- torch.autograd in float64 on the same data (1e-9 relative), and in float32 on special
  values (NaN, ±inf, ±0, the kinks exactly) with NaN in dy: the oracle must give PyTorch's
  float32 result there, NaN for NaN (PyTorch's float64 kernels disagree with its float32 ones
  for ReLU6 / Hardtanh at x = NaN; training runs float32, so the oracle follows float32).
Cases are small (about a hundred values), so the whole file runs in a few seconds.
"""
from __future__ import annotations

import dataclasses
import math
import zlib

import numpy as np
import pytest

from netdsl import ops
from netdsl.train.registry import backward_rule, grad_reference


# ---------------------------------------------------------------- the cases (shared)

@dataclasses.dataclass
class Case:
    op: str
    kw: dict
    shapes: list
    n: int = 2
    scale: float = 1.0          # inputs ~ N(0, scale²)
    out: tuple | None = None    # the output shape when spec.infer refuses it (per-sample operands)
    zeros: bool = False         # put exact zeros into the inputs (Mul: the product of the others)

    @property
    def id(self):
        kw = "-".join(f"{k}{_tag(v)}" for k, v in self.kw.items())
        sh = "+".join("x".join(map(str, s)) for s in self.shapes)
        return "-".join(p for p in (self.op, kw, f"n{self.n}", sh) if p)


def _tag(v):
    if isinstance(v, (tuple, list)):
        return "x".join(map(str, v))
    return str(v)


C = Case
CASES = [
    C("ReLU", {}, [(3, 5, 7)]), C("ReLU", {}, [(13,)], n=3),
    C("LeakyReLU", {}, [(3, 5, 7)]), C("LeakyReLU", dict(slope=0.2), [(13,)]),
    C("LeakyReLU", dict(slope=-0.5), [(2, 3, 5)]), C("LeakyReLU", dict(slope=0.0), [(17,)]),
    C("Sigmoid", {}, [(3, 5, 7)], scale=3), C("Sigmoid", {}, [(13,)]),
    C("Tanh", {}, [(3, 5, 7)], scale=2),
    C("Clip", dict(min=-0.5, max=1.25), [(3, 5, 7)]), C("Clip", dict(min=0.0), [(13,)]),
    C("Clip", dict(max=0.5), [(13,)]), C("Clip", dict(min=1.0, max=-1.0), [(5,)]), C("Clip", {}, [(5,)]),
    C("ReLU6", {}, [(3, 5, 7)], scale=5),
    C("Hardtanh", {}, [(3, 5, 7)], scale=2), C("Hardtanh", dict(min_val=0.0, max_val=6.0), [(13,)], scale=5),
    C("Hardtanh", dict(min_val=0.5, max_val=0.5), [(5,)]),
    C("HardSigmoid", {}, [(3, 5, 7)], scale=4), C("HardSigmoid", dict(alpha=0.2, beta=0.5), [(13,)], scale=4),
    C("HardSwish", {}, [(3, 5, 7)], scale=4),
    C("SiLU", {}, [(3, 5, 7)], scale=3),
    C("GELU", {}, [(3, 5, 7)], scale=3), C("GELU", dict(approximate="tanh"), [(3, 5, 7)], scale=3),
    C("Mish", {}, [(3, 5, 7)], scale=3),
    C("PReLU", {}, [(3, 5, 7)]), C("PReLU", dict(num_parameters=1), [(2, 5, 7)]), C("PReLU", {}, [(13,)], n=3),
    C("PReLU", dict(num_parameters=1), [(13,)]),
    C("Softmax", {}, [(5, 3, 7)], scale=2), C("Softmax", {}, [(13,)]), C("Softmax", dict(axis=2), [(3, 5, 7)]),
    C("Softmax", dict(axis=-1), [(3, 5, 7)]),
    C("LogSoftmax", {}, [(5, 3, 7)], scale=2), C("LogSoftmax", dict(axis=3), [(3, 5, 7)]),
    C("LogSoftmax", dict(axis=-2), [(3, 5, 7)]), C("LogSoftmax", {}, [(13,)]),
    C("Add", {}, [(3, 5, 7)] * 2), C("Add", {}, [(2, 5, 5)] * 3), C("Add", {}, [(7,), (7,)]),
    C("Add", {}, [(3, 5, 7), (3, 1, 1)]), C("Add", {}, [(3,), (3, 5, 5), (3, 1, 1)]),
    C("Add", {}, [(3, 5, 7), (1, 1, 1)], out=(3, 5, 7)),
    C("Mul", {}, [(3, 5, 7)] * 2), C("Mul", {}, [(3, 5, 7), (3, 1, 1)]), C("Mul", {}, [(3,), (3, 5, 5)]),
    C("Mul", {}, [(5,), (5,), (5,)]), C("Mul", {}, [(2, 3, 4)] * 3, zeros=True),
    C("Mul", {}, [(1, 1, 1), (3, 5, 7), (3, 1, 1)], out=(3, 5, 7)),
    C("Concat", {}, [(3, 5, 7), (2, 5, 7)]), C("Concat", {}, [(1, 3, 3), (4, 3, 3), (2, 3, 3)]),
    C("Concat", {}, [(3,), (5,)]), C("Concat", dict(axis=2), [(3, 5, 7), (3, 2, 7)]),
    C("Concat", dict(axis=-1), [(3, 5, 7), (3, 5, 1), (3, 5, 4)]),
    C("Slice", dict(start=2, stop=5), [(7, 5, 3)]), C("Slice", dict(start=0, stop=4), [(9,)]),
    C("Slice", dict(start=3, stop=6), [(6, 3, 5)]),
    C("Upsample", dict(scale=2), [(2, 3, 5)]), C("Upsample", dict(scale=(2, 3), mode="bilinear"), [(2, 3, 5)]),
    C("Upsample", dict(size=(7, 11), mode="bilinear", align_corners=True), [(2, 3, 5)]),
    C("Upsample", dict(size=(3, 4)), [(2, 5, 7)]), C("Upsample", dict(size=(4, 6), mode="bilinear"), [(2, 5, 7)]),
    C("Upsample", dict(size=(5, 9)), [(2, 3, 4)]), C("Upsample", dict(scale=3, mode="bilinear"), [(1, 4, 4)]),
    C("Upsample", dict(size=(1, 3), mode="bilinear", align_corners=True), [(1, 4, 5)]),
    C("Pad", dict(pad=1), [(2, 3, 5)]), C("Pad", dict(pad=(0, 1, 2, 3), mode="reflect"), [(2, 5, 7)]),
    C("Pad", dict(pad=2, mode="replicate"), [(2, 3, 5)]), C("Pad", dict(pad=(1, 2), value=-1.5), [(1, 3, 3)]),
    C("Pad", dict(pad=2, mode="reflect"), [(1, 3, 3)]), C("Pad", dict(pad=(3, 0, 4, 1), mode="replicate"), [(1, 2, 3)]),
    C("Crop", dict(size=(3, 5)), [(2, 7, 9)]), C("Crop", dict(size=3, offset=(1, 2)), [(2, 5, 7)]),
    C("Crop", {}, [(2, 7, 9), (1, 3, 5)]),
]
del C

# where each op's derivative jumps (finite differences keep away; the special-value test
# puts inputs exactly there)
KINKS = {
    "ReLU": lambda a: [0.0], "LeakyReLU": lambda a: [0.0], "PReLU": lambda a: [0.0],
    "Clip": lambda a: [v for v in (a.get("min"), a.get("max")) if v is not None],
    "ReLU6": lambda a: [0.0, 6.0], "Hardtanh": lambda a: [a["min_val"], a["max_val"]],
    "HardSigmoid": lambda a: [-a["beta"] / a["alpha"], (1 - a["beta"]) / a["alpha"]],
    "HardSwish": lambda a: [-3.0, 3.0],
}


def rng_for(case_id):
    """A generator seeded by the case id: a rerun, or one case run alone, sees the same data."""
    return np.random.default_rng(zlib.crc32(case_id.encode()))


def prepare(case):
    """(spec, resolved attrs, output shape) for a case, as the planner resolves a node."""
    spec = ops.get(case.op)
    shapes = [tuple(s) for s in case.shapes]
    a = spec.resolve(spec.bind((), dict(case.kw)), shapes)
    out = tuple(case.out) if case.out else tuple(spec.infer(a, shapes))
    return spec, a, out


def away_from_kinks(x, kinks, gap=0.05):
    """x with every value within `gap` of a kink moved to kink ± 2·gap."""
    for k in kinks:
        near = np.abs(x - k) < gap
        x = np.where(near, k + np.where(x >= k, 2 * gap, -2 * gap), x)
    return x


def make_data(case, rng=None):
    """Float32-representable float64 inputs, params and dy for a case (the C kernels see the
    same values exactly): spec, a, out_shape, xs, params, y, dy."""
    spec, a, out = prepare(case)
    rng = rng or rng_for(case.id)
    kinks = KINKS.get(case.op, lambda a: [])(a)
    xs = []
    for s in case.shapes:
        x = rng.standard_normal((case.n, *s)) * case.scale
        x = away_from_kinks(x, kinks)
        if case.zeros:
            x.ravel()[rng.choice(x.size, max(1, x.size // 8), replace=False)] = 0.0
        xs.append(x.astype(np.float32).astype(np.float64))
    shapes = [tuple(s) for s in case.shapes]
    params = {k: np.asarray(v, np.float64) for k, v in spec.init(a, shapes, rng).items()}
    if case.op == "PReLU":       # distinct slopes, one negative: a shared/per-channel mixup shows
        params["weight"] = (rng.uniform(-0.5, 0.8, params["weight"].shape)).astype(np.float32).astype(np.float64)
    y = np.asarray(spec.reference(a, xs, params), np.float64)
    dy = rng.standard_normal(y.shape).astype(np.float32).astype(np.float64)
    return spec, a, out, xs, params, y, dy


def oracle(case, a, xs, params, y, dy):
    """(dxs, dparams) of the case's grad_ref."""
    fn = grad_reference(case.op)
    assert fn is not None, f"{case.op} has no grad_ref"
    dxs, dps = fn(a, xs, params, y, dy)
    assert len(dxs) == len(xs), f"{case.op}: {len(dxs)} input gradients for {len(xs)} inputs"
    for dx, x in zip(dxs, xs):
        assert dx is not None and dx.shape == x.shape and dx.dtype == np.float64
    return dxs, dps


def assert_close(got, want, what, atol, rtol, nan_equal=True):
    """|got - want| <= atol + rtol·|want| everywhere, NaN where want is NaN (and only there),
    an inf only where want has the same inf; the failure names the case and the worst cell."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    same = (got == want) | (np.isnan(got) & np.isnan(want)) if nan_equal else (got == want)
    with np.errstate(invalid="ignore"):
        diff = np.where(same, 0.0, np.abs(got - want))
        bad = ~(same | (diff <= atol + rtol * np.abs(want)))
    if bad.any():
        off = np.where(bad, np.nan_to_num(diff, nan=np.inf), -1.0)
        i = np.unravel_index(np.argmax(off), got.shape)
        pytest.fail(f"{what}: {bad.sum()} of {bad.size} cells off (atol {atol:g}, rtol {rtol:g}), worst at {i}: "
                    f"got {got[i]!r}, want {want[i]!r}")


# ---------------------------------------------------------------- finite differences

def _loss(spec, a, xs, params, dy):
    return float((np.asarray(spec.reference(a, xs, params), np.float64) * dy).sum())


def finite_diff(spec, a, xs, params, dy, eps=1e-6):
    """Central differences of sum(reference · dy) over every input value and parameter."""
    gx = []
    for i, x in enumerate(xs):
        g = np.zeros(x.size)
        for k in range(x.size):
            hi, lo = [v.copy() for v in xs], [v.copy() for v in xs]
            hi[i].ravel()[k] += eps
            lo[i].ravel()[k] -= eps
            g[k] = (_loss(spec, a, hi, params, dy) - _loss(spec, a, lo, params, dy)) / (2 * eps)
        gx.append(g.reshape(x.shape))
    gp = {}
    for name, w in params.items():
        g = np.zeros(w.size)
        for k in range(w.size):
            hi, lo = dict(params), dict(params)
            hi[name], lo[name] = w.copy(), w.copy()
            hi[name].ravel()[k] += eps
            lo[name].ravel()[k] -= eps
            g[k] = (_loss(spec, a, xs, hi, dy) - _loss(spec, a, xs, lo, dy)) / (2 * eps)
        gp[name] = g.reshape(w.shape)
    return gx, gp


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_oracle_matches_finite_differences(case):
    spec, a, out, xs, params, y, dy = make_data(case)
    dxs, dps = oracle(case, a, xs, params, y, dy)
    fx, fp = finite_diff(spec, a, xs, params, dy)
    for i, (dx, f) in enumerate(zip(dxs, fx)):
        assert_close(dx, f, f"{case.id} dx{i}", atol=1e-6, rtol=1e-5, nan_equal=False)
    assert set(dps) == set(spec.params(a, [tuple(s) for s in case.shapes])), f"{case.id}: parameter gradients"
    for name in dps:
        assert dps[name].shape == params[name].shape
        assert_close(dps[name], fp[name], f"{case.id} d{name}", atol=1e-6, rtol=1e-5, nan_equal=False)


# ---------------------------------------------------------------- torch.autograd

def torch_forward(torch, op, a, xs, params):
    """The op in PyTorch on tensors xs (params: name -> tensor); None where PyTorch has no
    such op (Clip without bounds)."""
    F = torch.nn.functional
    x = xs[0]
    if op == "ReLU":
        return torch.relu(x)
    if op == "LeakyReLU":
        return F.leaky_relu(x, a["slope"])
    if op == "Sigmoid":
        return torch.sigmoid(x)
    if op == "Tanh":
        return torch.tanh(x)
    if op == "Clip":
        return None if a.get("min") is None and a.get("max") is None else torch.clamp(x, a.get("min"), a.get("max"))
    if op == "ReLU6":
        return F.relu6(x)
    if op == "Hardtanh":
        return F.hardtanh(x, a["min_val"], a["max_val"])
    if op == "HardSigmoid":
        if np.float32(a["alpha"]) == np.float32(1 / 6) and a["beta"] == 0.5:
            return F.hardsigmoid(x)
        return torch.clamp(a["alpha"] * x + a["beta"], 0, 1)
    if op == "HardSwish":
        return F.hardswish(x)
    if op == "SiLU":
        return F.silu(x)
    if op == "GELU":
        return F.gelu(x, approximate=a["approximate"])
    if op == "Mish":
        return F.mish(x)
    if op == "PReLU":
        return F.prelu(x, params["weight"])
    if op == "Softmax":
        return torch.softmax(x, dim=a["axis"])
    if op == "LogSoftmax":
        return torch.log_softmax(x, dim=a["axis"])
    if op in ("Add", "Mul"):
        rank = max(t.dim() for t in xs)
        ts = [t.reshape(*t.shape, 1, 1) if t.dim() < rank else t for t in xs]
        out = ts[0]
        for t in ts[1:]:
            out = out + t if op == "Add" else out * t
        return out
    if op == "Concat":
        return torch.cat(xs, dim=a["axis"])
    if op == "Slice":
        return x[:, a["start"]:a["stop"]]
    if op == "Upsample":
        ac = a["align_corners"] if a["mode"] == "bilinear" else None
        return F.interpolate(x, size=tuple(a["size"]), mode=a["mode"], align_corners=ac)
    if op == "Pad":
        t, l, b, r = a["pad"]
        if a["mode"] == "constant":
            return F.pad(x, (l, r, t, b), mode="constant", value=a["value"])
        return F.pad(x, (l, r, t, b), mode=a["mode"])
    if op == "Crop":
        (y0, x0), (oh, ow) = a["offset"], a["size"]
        return x[:, :, y0:y0 + oh, x0:x0 + ow]
    raise AssertionError(f"no torch mapping for {op}")


def torch_grads(torch, case, a, xs, params, dy, dtype):
    """(y, dxs, dparams) from torch.autograd, or None when PyTorch has no such op."""
    txs = [torch.tensor(x, dtype=dtype, requires_grad=True) for x in xs]
    tps = {k: torch.tensor(v, dtype=dtype, requires_grad=True) for k, v in params.items()}
    y = torch_forward(torch, case.op, a, txs, tps)
    if y is None:
        return None
    y.backward(torch.tensor(dy, dtype=dtype))

    def grad(t):
        return np.zeros(t.shape) if t.grad is None else t.grad.double().numpy()
    return y.detach().double().numpy(), [grad(t) for t in txs], {k: grad(t) for k, t in tps.items()}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_oracle_matches_torch(case):
    torch = pytest.importorskip("torch")
    spec, a, out, xs, params, y, dy = make_data(case)
    got = torch_grads(torch, case, a, xs, params, dy, torch.float64)
    if got is None:
        pytest.skip(f"PyTorch has no {case.id}")
    ty, tdx, tdp = got
    assert_close(y, ty, f"{case.id} forward (the mapping to torch)", atol=1e-12, rtol=1e-10)
    dxs, dps = oracle(case, a, xs, params, y, dy)
    # PyTorch's float64 hardsigmoid_backward multiplies by 1/6 rounded to float32 (3e-8 off)
    rtol = 1e-7 if case.op == "HardSigmoid" else 1e-9
    for i, (dx, t) in enumerate(zip(dxs, tdx)):
        assert_close(dx, t, f"{case.id} dx{i}", atol=1e-12, rtol=rtol)
    for name in dps:
        assert_close(dps[name], tdp[name], f"{case.id} d{name}", atol=1e-12, rtol=1e-9)


SPECIAL = [np.nan, np.inf, -np.inf, 0.0, -0.0, -3.0, 3.0, 6.0, 1.0, -1.0, 0.5, -0.5, 1.25, 50.0, -50.0,
           100.0, -100.0, 2.5, -2.5]


def special_inputs(case, rng):
    """The case's inputs, with a batch of at least 256 values, and the special values (and the
    op's kinks) written into them, away from the last 64 values: PyTorch's vectorized loops
    and its scalar tail loop disagree on some NaN cases; the vectorized ones are the rule."""
    size = math.prod(case.shapes[0])
    case = dataclasses.replace(case, n=max(case.n, -(-256 // size)))
    spec, a, out, xs, params, y, dy = make_data(case, rng)
    values = SPECIAL + KINKS.get(case.op, lambda a: [])(a)
    if case.op == "HardSigmoid" and not np.float32(a["alpha"]) == np.float32(1 / 6):
        # the torch stand-in, clamp(alpha x + beta, 0, 1), passes dy at the bounds; HardSigmoid does not
        values = [v for v in values if a["alpha"] * v + a["beta"] not in (0.0, 1.0)]
    x = xs[0].copy()
    idx = rng.permutation(x.size - 64)[:len(values)]
    x.ravel()[idx] = np.float32(np.array(values[:len(idx)]))
    return [x] + xs[1:], params


ELEMENTWISE = [c for c in CASES if c.op in ("ReLU", "LeakyReLU", "Sigmoid", "Tanh", "Clip", "ReLU6", "Hardtanh",
                                            "HardSigmoid", "HardSwish", "SiLU", "GELU", "Mish", "PReLU")]


@pytest.mark.parametrize("case", ELEMENTWISE, ids=[c.id for c in ELEMENTWISE])
def test_oracle_matches_torch_float32_on_special_values(case):
    """NaN, ±inf, ±0 and the kinks exactly in x, NaN in some of dy: PyTorch's float32 backward
    (what training runs) decides what comes out; the oracle must agree, NaN for NaN."""
    torch = pytest.importorskip("torch")
    rng = rng_for("special-" + case.id)
    spec, a, _ = prepare(case)
    xs, params = special_inputs(case, rng)
    with np.errstate(invalid="ignore", over="ignore"):
        y = np.asarray(spec.reference(a, xs, params), np.float64)
    dy = rng.standard_normal(y.shape).astype(np.float32).astype(np.float64)
    dy.ravel()[rng.permutation(dy.size - 64)[:9]] = np.nan
    got = torch_grads(torch, case, a, xs, params, dy, torch.float32)
    if got is None:
        pytest.skip(f"PyTorch has no {case.id}")
    _, tdx, tdp = got
    dxs, dps = oracle(case, a, xs, params, y, dy)
    assert_close(dxs[0], tdx[0], f"{case.id} dx0", atol=1e-6, rtol=1e-5)
    for name in dps:
        assert_close(dps[name], tdp[name], f"{case.id} d{name}", atol=1e-5, rtol=1e-5)


def test_every_case_op_has_a_rule_and_an_oracle():
    for op in sorted({c.op for c in CASES}):
        assert backward_rule(op) is not None, f"{op}: no @backward rule"
        assert grad_reference(op) is not None, f"{op}: no @grad_ref oracle"


def test_finite_differences_catch_a_wrong_oracle():
    """The check has teeth: a SiLU derivative without its x·s·(1 - s) term fails it."""
    case = next(c for c in CASES if c.op == "SiLU")
    spec, a, out, xs, params, y, dy = make_data(case)
    s = 1 / (1 + np.exp(-xs[0]))
    (fx,), _ = finite_diff(spec, a, xs, params, dy)
    assert not np.allclose(dy * s, fx, atol=1e-6, rtol=1e-5)
    assert np.abs(dy * s * (1 + xs[0] * (1 - s)) - fx).max() < 1e-6
