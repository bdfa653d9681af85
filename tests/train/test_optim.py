"""The optimizer and clipping kernels (csrc/kernels/train_optim.c) against torch.optim /
torch.nn.utils.clip_grad_norm_ on the same parameters and gradient sequence, the schedules
against torch.optim.lr_scheduler, and the checkpoint state (state_dict) round trip. Without
torch the kernels are still held to a float64 numpy transcription of the same algorithms.

The kernels run as a training plan runs them: one arena [params | grads | state...], the
kernel's out = params and ins = (grads, state...), its fields set by step_fields(t) before
each step. Tolerance after 6 steps: |ours - torch| <= 1e-6 + 1e-5 |torch| on the parameters
and on every state region (torch's vectorized add / lerp may fuse a multiply-add that we
round twice: a few float32 ulps per step, observed <= 5e-7 here). Schedules: 1e-12.
Clipping: the norm relative 1e-6 (we sum in double, torch in float32), the gradients 1e-6.
"""
from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest

import netdsl.optim
from netdsl.errors import NetDSLError
from netdsl.runtime.executor import KernelError, Program, Step
from netdsl.train import optim as O


def _program(call, n, regions):
    return Program([Step(call, 0, [n * (1 + i) for i in range(1 + regions)], out_floats=n,
                         in_floats=[n] * (1 + regions))], n * (2 + regions))


def run_c(opt, p0, grads, threads=0):
    """(params, [state regions]) after one kernel call per gradient, in one arena."""
    n, r = p0.size, opt.state_regions
    arena = np.zeros(n * (2 + r), np.float32)
    arena[:n] = p0
    call = opt.call(n)
    for t, g in enumerate(grads):
        arena[n:2 * n] = g
        call.fields.update(opt.step_fields(t))
        prog = _program(call, n, r)
        prog.run(arena, prog.new_ws(), threads)
    return arena[:n].copy(), [arena[n * (2 + i):n * (3 + i)].copy() for i in range(r)]


TORCH_STATE = {"sgd": ["momentum_buffer"], "adam": ["exp_avg", "exp_avg_sq"], "adamw": ["exp_avg", "exp_avg_sq"]}


def run_torch(torch, name, kw, p0, grads, scheduler=None):
    cls = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[name]
    p = torch.tensor(p0.copy(), requires_grad=True)
    opt = cls([p], **kw)
    sched = scheduler(opt) if scheduler else None
    for g in grads:
        p.grad = torch.tensor(g)
        opt.step()
        if sched:
            sched.step()
    st = opt.state[p]
    return p.detach().numpy(), [st[k].numpy() for k in TORCH_STATE[name] if st.get(k) is not None]


def _close(ours, theirs, what):
    diff = np.abs(ours - theirs)
    ok = diff <= 1e-6 + 1e-5 * np.abs(theirs)
    assert ok.all(), f"{what}: max difference {diff.max():.3g} at {int(np.argmax(diff))}"


CASES = [   # (name, kwargs, both ours and torch's)
    ("sgd", dict(lr=0.1)),
    ("sgd", dict(lr=0.05, weight_decay=0.01)),
    ("sgd", dict(lr=0.1, momentum=0.9)),
    ("sgd", dict(lr=0.1, momentum=0.9, dampening=0.3, weight_decay=1e-3)),
    ("sgd", dict(lr=0.1, momentum=0.8, nesterov=True, weight_decay=1e-3)),
    ("adam", dict(lr=1e-2)),
    ("adam", dict(lr=1e-2, betas=(0.3, 0.9), eps=1e-4, weight_decay=0.1)),    # beta1 < 0.5: lerp's other form
    ("adamw", dict(lr=1e-2)),
    ("adamw", dict(lr=3e-2, betas=(0.8, 0.99), weight_decay=0.5)),
]


def _data(n, steps, seed=0):
    rng = np.random.default_rng(seed)
    p0 = rng.standard_normal(n).astype(np.float32)
    scale = [1.0, 0.01, 3.0, 1e-4, 1.0, 0.5]        # gradients of very different sizes
    return p0, [(rng.standard_normal(n) * scale[i % len(scale)]).astype(np.float32) for i in range(steps)]


@pytest.mark.parametrize("name,kw", CASES,
                         ids=[f"{n}-" + "-".join(f"{k}{v}" for k, v in kw.items()) for n, kw in CASES])
def test_optimizer_matches_torch(name, kw):
    torch = pytest.importorskip("torch")
    p0, grads = _data(1037, 6)
    opt = O.from_name(name, **kw)
    ours, ostate = run_c(opt, p0, grads)
    theirs, tstate = run_torch(torch, name, kw, p0, grads)
    _close(ours, theirs, "params")
    assert len(ostate) == len(tstate) == opt.state_regions
    for i, (a, b) in enumerate(zip(ostate, tstate)):
        _close(a, b, f"state region {i}")
    assert np.abs(ours - p0).max() > 1e-3                # it moved


def reference(name, kw, p0, grads):
    """(params, [state]) in float64 numpy: torch.optim's algorithm as its docs write it."""
    kw = dict(kw)
    lr, wd = kw.pop("lr"), kw.pop("weight_decay", 0.01 if name == "adamw" else 0.0)
    p = p0.astype(np.float64)
    if name == "sgd":
        mom, damp, nest = kw.get("momentum", 0.0), kw.get("dampening", 0.0), kw.get("nesterov", False)
        buf = None
        for g in grads:
            g = g.astype(np.float64) + wd * p
            if mom:
                buf = g.copy() if buf is None else mom * buf + (1 - damp) * g
                g = g + mom * buf if nest else buf
            p = p - lr * g
        return p, [buf] if mom else []
    (b1, b2), eps = kw.get("betas", (0.9, 0.999)), kw.get("eps", 1e-8)
    m, v = np.zeros_like(p), np.zeros_like(p)
    for t, g in enumerate(grads, 1):
        g = g.astype(np.float64)
        if name == "adamw":
            p = p * (1 - lr * wd)
        else:
            g = g + wd * p
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        p = p - lr / (1 - b1 ** t) * m / (np.sqrt(v) / math.sqrt(1 - b2 ** t) + eps)
    return p, [m, v]


@pytest.mark.parametrize("name,kw", CASES,
                         ids=[f"{n}-" + "-".join(f"{k}{v}" for k, v in kw.items()) for n, kw in CASES])
def test_optimizer_matches_float64_reference(name, kw):
    """Without torch: the float32 kernels against the algorithm in float64 (same tolerance)."""
    p0, grads = _data(1037, 6)
    opt = O.from_name(name, **kw)
    ours, ostate = run_c(opt, p0, grads)
    want, wstate = reference(name, kw, p0, grads)
    _close(ours, want, "params")
    for i, (a, b) in enumerate(zip(ostate, wstate, strict=True)):
        _close(a, b, f"state region {i}")


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("name,kw", [("adamw", dict(lr=1e-2)), ("sgd", dict(lr=0.1, momentum=0.9, nesterov=True))],
                         ids=["adamw", "sgd-nesterov"])
def test_optimizer_threaded_large_region(name, kw, threads):
    """Past the kernels' threading threshold (65536 floats), with 1 and 2 threads."""
    p0, grads = _data(70001, 2, seed=1)
    ours, _ = run_c(O.from_name(name, **kw), p0, grads, threads)
    _close(ours, reference(name, kw, p0, grads)[0], "params")
    torch = pytest.importorskip("torch")
    _close(ours, run_torch(torch, name, kw, p0, grads)[0], "params")


def test_schedule_drives_the_kernel_lr():
    """SGD with momentum and a StepLR-like schedule over 7 steps equals torch with StepLR:
    step_fields(t) gives the kernel the lr of step t."""
    torch = pytest.importorskip("torch")
    p0, grads = _data(257, 7, seed=2)
    opt = O.SGD(0.2, momentum=0.9, schedule=O.Step(2, gamma=0.5))
    ours, _ = run_c(opt, p0, grads)
    theirs, _ = run_torch(torch, "sgd", dict(lr=0.2, momentum=0.9), p0, grads,
                          scheduler=lambda o: torch.optim.lr_scheduler.StepLR(o, 2, 0.5))
    _close(ours, theirs, "params")
    assert [opt.step_fields(t)["lr"] for t in range(5)] == [0.2, 0.2, 0.1, 0.1, 0.05]
    assert opt.step_fields(4)["step"] == 5


def test_nan_gradient_propagates_to_its_parameter_only():
    p0, grads = _data(64, 2, seed=3)
    grads[0][5] = np.nan
    for opt in (O.SGD(0.1), O.SGD(0.1, momentum=0.9), O.Adam(), O.AdamW()):
        p, state = run_c(opt, p0, grads)
        assert np.isnan(p[5]) and np.isfinite(np.delete(p, 5)).all(), opt.describe()
        assert all(np.isnan(s[5]) for s in state)


def test_kernel_refuses_step_zero():
    opt = O.Adam()
    call = opt.call(8)
    call.fields["step"] = 0                             # bias correction would divide by 0
    prog = _program(call, 8, 2)
    with pytest.raises(KernelError, match="ND_EINVAL"):
        prog.run(prog.new_arena(), prog.new_ws())


def _torch_lrs(torch, make, steps, base=0.1):
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([p], lr=base)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sched = make(opt)
        out = []
        for _ in range(steps):
            out.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
    return np.array(out)


def test_schedules_match_torch_lr_scheduler():
    torch = pytest.importorskip("torch")
    L = torch.optim.lr_scheduler
    cases = [
        (O.Constant(), lambda o: L.ConstantLR(o, factor=1.0), 10),
        (O.Step(7, 0.5), lambda o: L.StepLR(o, 7, 0.5), 30),
        (O.MultiStep([3, 10, 11], 0.3), lambda o: L.MultiStepLR(o, [3, 10, 11], 0.3), 20),
        (O.Cosine(20, min_lr=1e-3), lambda o: L.CosineAnnealingLR(o, 20, eta_min=1e-3), 21),
        (O.Warmup(5), lambda o: L.LinearLR(o, start_factor=1 / 5, total_iters=4), 12),
        (O.Warmup(5, O.Cosine(15)),
         lambda o: L.SequentialLR(o, [L.LinearLR(o, start_factor=1 / 5, total_iters=4),
                                      L.CosineAnnealingLR(o, 15)], milestones=[5]), 20),
        (O.Warmup(3, O.MultiStep([4], 0.1)),
         lambda o: L.SequentialLR(o, [L.LinearLR(o, start_factor=1 / 3, total_iters=2),
                                      L.MultiStepLR(o, [4], 0.1)], milestones=[3]), 10),
    ]
    for ours, make, steps in cases:
        got = np.array([ours.lr(0.1, t) for t in range(steps)])
        want = _torch_lrs(torch, make, steps)
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15, err_msg=ours.describe())


def test_schedules_by_hand():
    """The closed forms at a few points (no torch needed), and what torch does not do: the
    cosine stays at min_lr past total_steps."""
    assert O.Warmup(4).lr(1.0, 0) == 0.25 and O.Warmup(4).lr(1.0, 3) == 1.0 and O.Warmup(4).lr(1.0, 99) == 1.0
    c = O.Cosine(10, min_lr=0.01)
    assert c.lr(1.0, 0) == 1.0 and math.isclose(c.lr(1.0, 5), 0.505) and c.lr(1.0, 10) == pytest.approx(0.01)
    assert c.lr(1.0, 11) == c.lr(1.0, 1000) == pytest.approx(0.01)
    assert O.MultiStep([2, 4], 0.5).lr(8.0, 4) == 2.0 and O.Step(3).lr(1.0, 6) == pytest.approx(0.01)


def test_schedule_from_name():
    s = O.schedule_from_name("cosine", total_steps=100, warmup=10)
    assert s == O.Warmup(10, O.Cosine(90))
    assert s.lr(1.0, 9) == 1.0 and s.lr(1.0, 100) == 0.0
    assert O.schedule_from_name("cosine", total_steps=50, min_lr=1e-4) == O.Cosine(50, 1e-4)
    assert O.schedule_from_name("step", step_size=30, gamma=0.2) == O.Step(30, 0.2)
    assert O.schedule_from_name("multistep", milestones=[5, 8]) == O.MultiStep([5, 8])
    assert O.schedule_from_name("constant", warmup=5) == O.Warmup(5, O.Constant())
    with pytest.raises(NetDSLError, match="needs total_steps"):
        O.schedule_from_name("cosine")
    with pytest.raises(NetDSLError) as e:
        O.schedule_from_name("cosin", total_steps=10)
    assert "did you mean 'cosine'" in str(e.value)
    with pytest.raises(NetDSLError, match="step_size"):
        O.schedule_from_name("step", stepsize=3)
    with pytest.raises(NetDSLError, match="must be more than warmup"):
        O.schedule_from_name("cosine", total_steps=10, warmup=10)


def test_clip_matches_clip_grad_norm():
    rng = np.random.default_rng(4)
    for n, scale, max_norm in [(1000, 1.0, 5.0), (70001, 0.1, 1.0), (33, 0.01, 1.0)]:   # clipped, clipped, not
        g = (rng.standard_normal(n) * scale).astype(np.float32)
        arena = np.zeros(n + 1, np.float32)
        arena[1:] = g
        prog = Program([Step(O.clip_call(n, max_norm), 0, [1], out_floats=1, in_floats=[n])], n + 1)
        prog.run(arena, prog.new_ws(), 2)
        norm64 = float(np.sqrt((g.astype(np.float64) ** 2).sum()))      # the float64 oracle
        assert abs(arena[0] - norm64) <= 1e-6 * norm64
        np.testing.assert_allclose(arena[1:], g * min(1.0, max_norm / (norm64 + 1e-6)), rtol=1e-6, atol=1e-9)
        torch = pytest.importorskip("torch")
        t = torch.tensor(g.copy(), requires_grad=True)
        t.grad = torch.tensor(g.copy())
        norm = float(torch.nn.utils.clip_grad_norm_([t], max_norm))
        assert abs(arena[0] - norm) <= 1e-6 * norm, (arena[0], norm)
        np.testing.assert_allclose(arena[1:], t.grad.numpy(), rtol=1e-6, atol=1e-9)
        if norm < max_norm:
            assert np.array_equal(arena[1:], g)             # untouched, bit for bit


def test_clip_with_nan_gradient_makes_every_gradient_nan():
    """As clip_grad_norm_ (error_if_nonfinite=False): the factor is NaN, so all grads are NaN."""
    g = np.ones(10, np.float32)
    g[3] = np.nan
    arena = np.concatenate([[0.0], g]).astype(np.float32)
    prog = Program([Step(O.clip_call(10, 1.0), 0, [1], out_floats=1, in_floats=[10])], 11)
    prog.run(arena, prog.new_ws())
    assert math.isnan(arena[0]) and np.isnan(arena[1:]).all()
    torch = pytest.importorskip("torch")
    t = torch.ones(10, requires_grad=True)
    t.grad = torch.tensor(g)
    torch.nn.utils.clip_grad_norm_([t], 1.0)
    assert torch.isnan(t.grad).all()


def test_state_dict_round_trip():
    for opt in (O.SGD(0.05, momentum=0.9, nesterov=True, weight_decay=5e-4, schedule=O.Warmup(10, O.Cosine(90))),
                O.Adam(3e-4, betas=(0.8, 0.95)), O.AdamW(schedule=O.MultiStep([5, 9], 0.5))):
        d = json.loads(json.dumps(opt.state_dict()))
        back = O.from_state(d)
        assert type(back) is type(opt) and back.describe() == opt.describe()
        assert back.state_dict() == opt.state_dict()
        assert [back.step_fields(t) for t in (0, 7, 50)] == [opt.step_fields(t) for t in (0, 7, 50)]
        assert back.call(11).fields == opt.call(11).fields
    sgd = O.SGD(0.1)
    sgd.load_state_dict(O.SGD(0.3, momentum=0.5).state_dict())
    assert sgd.lr == 0.3 and sgd.momentum == 0.5 and sgd.state_regions == 1
    with pytest.raises(NetDSLError, match="the state is of optimizer 'adam'"):
        sgd.load_state_dict(O.Adam().state_dict())
    bad = O.SGD(0.1).state_dict()
    bad["nesterov"] = True                              # invalid without momentum: refused, nothing changed
    with pytest.raises(NetDSLError, match="nesterov"):
        sgd.load_state_dict(bad)
    assert sgd.lr == 0.3 and not sgd.nesterov


def test_describe_names_and_validation():
    assert O.SGD(0.05, momentum=0.9).describe() == "SGD(lr=0.05, momentum=0.9)"
    assert O.Adam().describe() == "Adam(lr=0.001)"
    assert O.AdamW(weight_decay=0.05).describe() == "AdamW(lr=0.001, weight_decay=0.05)"
    assert O.SGD(0.1, schedule=O.Cosine(100)).describe() == "SGD(lr=0.1, schedule=cosine(total_steps=100, min_lr=0))"
    assert (O.SGD(0.1).state_regions, O.SGD(0.1, momentum=0.9).state_regions, O.Adam().state_regions) == (0, 1, 2)
    assert O.AdamW().weight_decay == 0.01 and O.Adam().weight_decay == 0.0
    assert O.from_name("AdamW", lr=0.1).call(5).fields["decoupled"] == 1
    with pytest.raises(NetDSLError) as e:
        O.from_name("adan")
    assert "did you mean 'adam'" in str(e.value)
    with pytest.raises(NetDSLError, match="momentum"):
        O.from_name("sgd", lr=0.1, momentun=0.9)
    for bad in (lambda: O.SGD(-1.0), lambda: O.SGD(0.1, nesterov=True), lambda: O.Adam(betas=(0.9, 1.0)),
                lambda: O.Adam(eps=-1.0), lambda: O.clip_call(10, 0.0)):
        with pytest.raises(NetDSLError):
            bad()
    # the user-facing module is the same objects
    assert netdsl.optim.SGD is O.SGD and netdsl.optim.Cosine is O.Cosine and netdsl.optim.clip_call is O.clip_call
