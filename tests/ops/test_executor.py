"""The plan executor: many kernel calls in one C call, and the checks before it.

A three-step plan (Conv -> depthwise Conv -> FC on a flattened map) must give
what the three numpy references give in turn, with 1 and 2 threads; every bad
plan is refused in Python with a message naming the step, and a kernel's error
status comes back as KernelError naming the failing step.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from netdsl import ops
from netdsl.runtime import lib as L
from netdsl.runtime.executor import KernelError, PlanError, Program, Step, check_int64, kernel_fn, make_params
from netdsl.runtime.kparams import KernelCall, builder

if not L.available():
    pytest.skip("C kernels not built: python netdsl/runtime/_build.py", allow_module_level=True)


def layer(op, kwargs, shape, n, rng):
    spec = ops.get(op)
    a = spec.resolve(spec.bind((), kwargs), [shape])
    out = tuple(spec.infer(a, [shape]))
    w = spec.init(a, [shape], rng)
    if "bias" in w:
        w["bias"] = rng.standard_normal(w["bias"].shape).astype(np.float32)
    return spec, a, out, w, builder(op)(a, [shape], out, n)


def three_step_plan(n=3, seed=0):
    rng = np.random.default_rng(seed)
    shape = (3, 13, 17)
    layers = []
    for op, kw in (("Conv", dict(out_channels=17, kernel=3, stride=2, pad=1, act="relu")),
                   ("Conv", dict(out_channels=17, kernel=3, pad=1, groups=17, act="leakyrelu")),
                   ("FC", dict(out_features=10))):
        spec, a, out, w, call = layer(op, kw, shape, n, rng)
        layers.append((spec, a, shape, out, w, call))
        shape = out
    # arena: input, then each output, 16 floats apart
    offs, off = [], 0
    sizes = [n * math.prod(layers[0][2])] + [n * math.prod(l[3]) for l in layers]
    for s in sizes:
        offs.append(off)
        off += s + 16
    steps = [Step(call, offs[i + 1], [offs[i]], w["weight"], w.get("bias"), out_floats=sizes[i + 1],
                  in_floats=[sizes[i]], name=f"layer{i}")
             for i, (spec, a, ishape, oshape, w, call) in enumerate(layers)]
    x = rng.standard_normal((n, *layers[0][2])).astype(np.float32)
    ref = x.astype(np.float64)
    for spec, a, ishape, oshape, w, call in layers:
        ref = spec.reference(a, [ref], {k: v.astype(np.float64) for k, v in w.items()})
    return steps, off, offs, sizes, x, ref


@pytest.mark.parametrize("threads", [1, 2])
def test_three_step_plan_matches_references(threads):
    steps, arena_floats, offs, sizes, x, ref = three_step_plan()
    prog = Program(steps, arena_floats)
    arena = prog.new_arena()
    arena[offs[0]:offs[0] + sizes[0]] = x.ravel()
    prog.run(arena, prog.new_ws(), threads=threads)
    got = arena[offs[-1]:offs[-1] + sizes[-1]].reshape(ref.shape)
    diff = np.abs(got - ref).max()
    assert diff < 1e-4, f"max abs diff {diff:.3g}"
    prog.run(arena, prog.new_ws(), threads=threads)     # records are reusable
    assert np.abs(arena[offs[-1]:offs[-1] + sizes[-1]].reshape(ref.shape) - ref).max() == diff


def test_plan_refuses_buffers_outside_the_arena():
    steps, arena_floats, *_ = three_step_plan()
    with pytest.raises(PlanError, match="layer2.*runs past the arena"):
        Program(steps, arena_floats - 17)
    steps[0].out = -1
    with pytest.raises(PlanError, match="layer0.*outside the arena"):
        Program(steps, arena_floats)


def test_plan_refuses_unknown_symbols_and_fields():
    with pytest.raises(PlanError, match="no kernel named 'nd_nosuch_f32'"):
        kernel_fn("nd_nosuch_f32")
    with pytest.raises(PlanError, match="has no field 'kernel'"):
        make_params("nd_conv_params", {"kernel": 3})
    with pytest.raises(PlanError, match="nd_conv_params.n"):
        make_params("nd_conv_params", {"n": 2**63})


def test_sizes_that_overflow_int64_are_refused():
    assert check_int64("x", 2**31, 2**31) == 2**62
    with pytest.raises(PlanError, match="overflows int64"):
        check_int64("output", 2**32, 2**32)
    spec = ops.get("FC")
    # the front end refuses sizes over 2**31 - 1 at bind; the planner's check must hold without it
    a = spec.resolve(dict(spec.bind((), dict(out_features=1)), out_features=2**40), [(2**30,)])
    with pytest.raises(PlanError, match="overflows int64"):
        builder("FC")(a, [(2**30,)], (2**40,), 1)


def test_kernel_status_becomes_kernel_error():
    steps, arena_floats, *_ = three_step_plan()
    bad = dict(steps[1].call.fields, groups=5)          # 17 channels are not divisible by 5
    steps[1].call = KernelCall("nd_conv_f32", "nd_conv_params", bad, 0)
    prog = Program(steps, arena_floats, prepack=False)
    with pytest.raises(KernelError, match="layer1") as e:
        prog.run(prog.new_arena(), prog.new_ws())
    assert e.value.index == 1 and e.value.status == 1


def test_run_checks_its_arrays():
    steps, arena_floats, *_ = three_step_plan()
    prog = Program(steps, arena_floats)
    with pytest.raises(PlanError, match="workspace"):
        prog.run(prog.new_arena(), None)
    with pytest.raises(PlanError, match="float32"):
        prog.run(prog.new_arena().astype(np.float64), prog.new_ws())
    with pytest.raises(PlanError, match="holds"):
        prog.run(prog.new_arena()[:10], prog.new_ws())


def test_too_many_inputs():
    call = KernelCall("nd_conv_f32", "nd_conv_params", {}, 0)
    with pytest.raises(PlanError, match="at most 256"):
        Program([Step(call, 0, [0] * 257)], 10)


def test_empty_plan_runs():
    prog = Program([], 1)
    prog.run(prog.new_arena())
