"""The memory planner on every zoo model: the arena is within 10% of the lower
bound (the largest total of buffers live at one time), never above the naive
sum, and no two buffers that are live at the same time share bytes."""
from __future__ import annotations

import pytest

import netdsl
from netdsl.passes import optimize
from netdsl.runtime.plan import lower


def assert_sound(plan):
    bufs = sorted(plan.buffers, key=lambda b: b.offset)
    for i, a in enumerate(bufs):
        assert a.offset >= 0 and a.offset + a.floats <= plan.arena_floats
        for b in bufs[i + 1:]:
            if b.offset >= a.offset + a.floats:
                break
            assert not (a.first <= b.last and b.first <= a.last), \
                f"buffers {a.nodes[0]} and {b.nodes[0]} overlap in memory and in time"


@pytest.mark.parametrize("name", netdsl.zoo_names())
def test_summary_memory_within_ten_percent_of_lower_bound(name):
    m = netdsl.load(name)
    mem = m.summary_dict()["memory"]
    assert set(mem) >= {"arena_bytes", "naive_bytes", "lower_bound_bytes", "weight_bytes"}
    assert mem["lower_bound_bytes"] <= mem["arena_bytes"] <= 1.10 * mem["lower_bound_bytes"]
    assert mem["arena_bytes"] <= mem["naive_bytes"]


@pytest.mark.parametrize("name", ["googlenet", "densenet121", "resnet50", "unet"])
@pytest.mark.parametrize("level", [0, 3])
@pytest.mark.parametrize("n", [1, 8])
def test_plan_is_sound(name, level, n):
    g = netdsl.load(name).graph
    if level:
        g, _, _ = optimize(g, None, level=level)
    plan = lower(g, n, kernels=False)
    assert_sound(plan)
    if n == 1 and name in ("googlenet", "densenet121"):
        assert plan.elided, "batch 1 concats should be elided"


def test_concat_that_is_an_output_still_correct():
    import numpy as np
    m = netdsl.parse("input x: 3x8x8\na = Conv(4, 3, pad=1)\nb = x - Conv(4, 1)\ny = [ a | b ] - Concat\n"
                     "z = y - ReLU\noutput y, z")
    x = np.random.default_rng(0).standard_normal((1, 3, 8, 8)).astype(np.float32)
    got, want = m(x), m.reference(x)
    for k in ("y", "z"):
        np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["googlenet", "densenet121", "unet"])
def test_lower_bound_is_the_largest_live_total_at_any_step(name):
    """The sweep in Plan.lower_bound_bytes against the definition, step by step."""
    g, _, _ = optimize(netdsl.load(name).graph, None, 3)
    plan = lower(g, 2, kernels=False)
    brute = max(sum(b.floats for b in plan.buffers if b.first <= t <= b.last)
                for t in range(-1, len(plan.steps) + 1))
    assert plan.lower_bound_bytes == brute * 4
