"""The compiled training step (netdsl/train/plan.py + session.py) against independent oracles.

- hand-written and generated networks (every op that has a gradient rule, every merge):
  one C step gives the float64 numpy reference step's loss, gradients and updated weights
  (netdsl/train/reference.py: each op's numpy reference forward, its @grad_ref backward);
- the plan's memory: every planned buffer inside the arena, the training arena reported;
- a NaN input stops the step before the optimizer and names the first bad layer.

Tolerance: float32 through a few layers against float64: each gradient tensor within
2e-3 of its largest magnitude (max |g32 - g64| / max |g64|), the loss within 1e-4 relative.
"""
from __future__ import annotations

import numpy as np
import pytest

import netdsl
from netdsl import ops
from netdsl.runtime import lib
from netdsl.train import registry
from netdsl.train.losses import get_loss
from netdsl.train.optim import SGD, Adam
from netdsl.train.reference import reference_step
from netdsl.train.session import NonFiniteError, TrainSession

pytestmark = pytest.mark.skipif(not lib.available(), reason="C kernels not built")
GRAD_TOL = 2e-3


def rel_err(a, b, floor=1e-12):
    """max |a - b| over max |b|; `floor` keeps a gradient that is zero in exact arithmetic (a
    conv bias before BatchNorm) from dividing float32 rounding by nothing."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), floor)) if b.size else 0.0


def step_vs_reference(m, x, y, loss, opt, batches=None, output=None):
    w = m.weights
    n = len(next(iter(x.values()))) if isinstance(x, dict) else len(x)
    s = TrainSession(m.graph, w, loss, opt, batches or [n], output=output)
    f32 = {k: v.astype(np.float32) for k, v in x.items()} if isinstance(x, dict) else x.astype(np.float32)
    f64 = {k: v.astype(np.float64) for k, v in x.items()} if isinstance(x, dict) else x.astype(np.float64)
    lv, correct = s.step(f32, y)
    rl, rc, rg, rw = reference_step(m.graph, w, f64, y, loss, opt, output=output)
    assert abs(lv - rl) <= 1e-4 * (1 + abs(rl)), (lv, rl)
    assert correct == rc
    g = s.gradients()
    floor = 1e-3 * max(float(np.max(np.abs(v))) for v in rg.values()) + 1e-30   # of the largest gradient
    for k in rg:
        assert rel_err(g[k], rg[k], floor) <= GRAD_TOL, (k, rel_err(g[k], rg[k], floor))
    new = s.weights()
    lr = opt.step_fields(0)["lr"]
    for k in rg:
        if np.max(np.abs(rg[k])) < floor:
            continue    # zero in exact arithmetic: Adam would scale float32 rounding up to lr
        upd, rupd = new[k] - w[k], rw[k] - w[k]
        # the new weights are float32: an update is only known to ~eps·|w| (one ulp of w)
        ufloor = max(lr * floor, 8 * float(np.finfo(np.float32).eps) * float(np.max(np.abs(w[k]))) / GRAD_TOL)
        assert rel_err(upd, rupd, ufloor) <= GRAD_TOL, (k, rel_err(upd, rupd, ufloor))
    return s


SMALL = """
input x: 3x13x11
c1:Conv(8, 3, pad=1) - BN - ReLU - MaxPool(3, stride=2, pad=1)
[ Conv(8, 3, pad=1) - BN - ReLU - Conv(8, 3, pad=1) | _ ] - Add - ReLU
[ Conv(4, 1) | Conv(6, 3, pad=1, groups=2) - Sigmoid ] - Concat - AvgPool(2, ceil_mode=true)
GAP - FC(5) - SM
"""


def test_small_resnet_like_step_matches_reference():
    m = netdsl.parse(SMALL)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 3, 13, 11))
    y = np.array([0, 3, 4])
    step_vs_reference(m, x, y, get_loss("cross_entropy"), SGD(lr=0.1, momentum=0.9, weight_decay=1e-4))


def test_adam_and_label_smoothing_step_matches_reference():
    m = netdsl.parse(SMALL)
    x = np.random.default_rng(1).standard_normal((4, 3, 13, 11))
    step_vs_reference(m, x, np.array([1, 2, 0, 4]), get_loss("cross_entropy", label_smoothing=0.1),
                      Adam(lr=1e-3))


def test_mse_on_a_map_output():
    m = netdsl.parse("input x: 2x9x9\nConv(4, 3, pad=1) - Tanh - Conv(3, 3, pad=1)\n")
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 2, 9, 9))
    t = rng.standard_normal((2, 3, 9, 9)).astype(np.float32)
    step_vs_reference(m, x, t, get_loss("mse"), SGD(lr=0.05))


def _trainable(model):
    for nd in model.graph.nodes():
        if nd.op == "Input" or "no_op" in ops.get(nd.op).flags and nd.op != "Dropout":
            continue
        if nd.op in ("StochasticPool", "Dropout") or registry.backward_rule(nd.op) is None:
            return False
    return True


def _has_params_upstream(graph, node):
    seen, stack = set(), [node]
    while stack:
        v = stack.pop()
        if graph[v].params:
            return True
        for p in graph.preds(v):
            if p not in seen:
                seen.add(p)
                stack.append(p)
    return False


def test_generated_networks_step_matches_reference():
    """Random valid networks over every op and merge (netdsl.testing.generate), several inputs
    and outputs included: those made of trainable ops (no sampling, no detection decoders)
    train one MSE step on their first output exactly like the reference. At least 25 of the
    100 seeds must qualify and together use every op with a gradient rule but the sampling ones,
    so the test cannot quietly shrink."""
    from netdsl.testing import generate as gen
    done, ops_seen = 0, set()
    for seed in range(100):
        text, _, m, _ = gen.generate(seed)
        if not _trainable(m) or not any(nd.params for nd in m.graph.nodes()):
            continue
        rng = np.random.default_rng(seed)
        x = {name: rng.standard_normal((4, *m.graph[name].shape)) for name in m.graph.inputs}
        oname = next((o for o, node in m.graph.outputs.items() if _has_params_upstream(m.graph, node)), None)
        if oname is None:
            continue
        out = m.graph[m.graph.outputs[oname]].shape
        t = rng.standard_normal((4, *out)).astype(np.float32)   # batch 4: BN over 2 samples is ill-conditioned
        try:
            step_vs_reference(m, x, t, get_loss("mse"), SGD(lr=0.01), output=oname)
        except AssertionError as e:
            raise AssertionError(f"generated seed {seed}:\n{text}\n{e}") from None
        done += 1
        ops_seen |= {nd.op for nd in m.graph.nodes()}
    assert done >= 25, f"only {done} generated networks were trainable"
    missing = set(registry.trainable_ops()) - ops_seen - {"Dropout", "StochasticPool"}
    assert not missing, f"no generated network trained through {sorted(missing)}"


def test_memory_report_and_buffers_inside_arena():
    m = netdsl.parse(SMALL)
    s = TrainSession(m.graph, m.weights, get_loss("ce"), SGD(lr=0.1, momentum=0.9), [8, 3])
    mem = s.memory(8)
    assert mem["params_bytes"] == 4 * m.total_params
    assert mem["buffers_bytes"] == 4 * sum(int(np.prod(sh)) for nd in m.graph.nodes() for sh in nd.buffers.values())
    assert mem["optimizer_state_bytes"] == mem["params_bytes"] > 0
    assert mem["activations_lower_bound_bytes"] <= mem["activations_bytes"]
    for n, sp in s.layout.plans.items():
        for st in sp.steps:
            for off, fl in [(st.out, st.out_floats)] + list(zip(st.ins, st.in_floats)):
                assert 0 <= off and off + fl <= s.layout.arena_floats


def test_two_batch_sizes_share_the_weights():
    m = netdsl.parse(SMALL)
    rng = np.random.default_rng(3)
    s = TrainSession(m.graph, m.weights, get_loss("ce"), SGD(lr=0.1), [4, 2])
    s.step(rng.standard_normal((4, 3, 13, 11)).astype(np.float32), np.array([0, 1, 2, 3]))
    w1 = s.weights()
    s.step(rng.standard_normal((2, 3, 13, 11)).astype(np.float32), np.array([4, 0]))
    w2 = s.weights()
    assert any(not np.array_equal(w1[k], w2[k]) for k in w1)


def test_nan_input_stops_before_the_update():
    m = netdsl.parse(SMALL)
    w0 = m.weights
    s = TrainSession(m.graph, w0, get_loss("ce"), SGD(lr=0.1), [2])
    x = np.zeros((2, 3, 13, 11), np.float32)
    x[1, 0, 5, 5] = np.nan
    with pytest.raises(NonFiniteError) as ei:
        s.step(x, np.array([0, 1]))
    assert ei.value.step == 1 and ei.value.layer == "x"
    assert "input batch of step 1" in ei.value.render()
    after = s.weights()
    for k in w0:
        np.testing.assert_array_equal(after[k], w0[k])


def test_overflowing_layer_is_named():
    """Finite inputs, a weight so large that the second conv overflows to inf: the guard stops
    the step, the weights and BN statistics stay, and the message names that layer."""
    m = netdsl.parse("input x: 1x8x8\nc1:Conv(4, 3, pad=1) - ReLU - c2:Conv(4, 3, pad=1) - ReLU - GAP - FC(3)\n")
    w0 = m.weights
    w0["c2.weight"] = np.full_like(w0["c2.weight"], 3e38)
    s = TrainSession(m.graph, w0, get_loss("ce"), SGD(lr=0.1), [2])
    x = np.abs(np.random.default_rng(0).standard_normal((2, 1, 8, 8))).astype(np.float32) + 1
    with pytest.raises(NonFiniteError) as ei:
        s.step(x, np.array([0, 1]))
    assert ei.value.layer == "c2", ei.value.render()
    assert s.step_count == 0
    after = s.weights()
    for k in w0:
        np.testing.assert_array_equal(after[k], w0[k])
