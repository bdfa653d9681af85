"""The C backward kernels of the element-wise, merge and shape ops (csrc/kernels/train_act.c,
train_merge.c, train_resize.c) against their float64 oracles (netdsl/train/ref_elem.py).

Each case of test_elem_grad.CASES runs through the path a training plan takes: the op's
@backward rule -> its KernelCall -> netdsl.train.check.run_bwd (one arena, the output
prefilled with NaN, so a cell the kernel skips fails). The inputs are float32 values, the
same ones the oracle sees in float64 (y too: the oracle gets the float32 y the kernel
reads). x holds NaN, ±inf, ±0 and the kinks exactly (element-wise ops and Mul), and dy has
NaN in a few cells: NaN must come out exactly where the oracle has it, and nowhere else.

Float32 tolerances, |C - oracle| <= atol + rtol·|oracle|, by what the kernel does:
  copies and selects of dy (ReLU, Clip, ReLU6, Hardtanh, Concat, Slice, Crop, Pad constant,
    a full-size Add input)                                          exact
  one to four float32 roundings (LeakyReLU, PReLU dx, Sigmoid, Tanh, HardSigmoid,
    HardSwish, Mul full)                                            atol 1e-6, rtol 1e-6
  libm (SiLU, GELU, Mish; ~1 ulp each, a few terms)                  atol 1e-6, rtol 1e-5
  sums (softmaxes, broadcast Add/Mul operands, PReLU's slopes, Upsample, Pad reflect /
    replicate; double or short float sums)                           atol 1e-5, rtol 1e-5
Every ISA the CPU has runs every case (the bodies are compiled once per ISA), and the ISAs
must agree bit for bit (no FMA contraction under -std=c11, serial sums). Large cases cross
the kernels' OpenMP thresholds: 1 and 2 threads must agree bit for bit too.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from netdsl.runtime.executor import PlanError
from netdsl.train.check import run_bwd
from netdsl.train.registry import backward_rule

from test_elem_grad import CASES, KINKS, Case, assert_close, make_data, oracle, prepare, rng_for

_k = pytest.importorskip("netdsl._kernels", reason="C kernels not built: python netdsl/runtime/_build.py")
ffi, lib = _k.ffi, _k.lib

ISAS = ("portable", "avx2", "avx512")


@pytest.fixture(params=ISAS)
def isa(request):
    """Run the test once per ISA level (netdsl.runtime.lib.using_isa); levels this CPU lacks skip."""
    from netdsl.runtime import lib as L
    if request.param not in L.supported_isas():
        pytest.skip(f"this CPU has no {request.param}")
    with L.using_isa(request.param):
        yield request.param


EXACT = {"ReLU", "Clip", "ReLU6", "Hardtanh", "Concat", "Slice", "Crop"}
ROUNDED = {"LeakyReLU", "PReLU", "Sigmoid", "Tanh", "HardSigmoid", "HardSwish"}
LIBM = {"SiLU", "GELU", "Mish"}


def tolerance(case, a, grad, bcast):
    """(atol, rtol) of one gradient: see the module docstring."""
    op = case.op
    if grad == "dparams":
        return 1e-5, 1e-5
    if op in EXACT or (op == "Pad" and a["mode"] == "constant") or (op == "Add" and not bcast):
        return 0.0, 0.0
    if op in ROUNDED or (op == "Mul" and not bcast):
        return 1e-6, 1e-6
    if op in LIBM:
        return 1e-6, 1e-5
    return 1e-5, 1e-5


SPECIAL_X = [np.nan, np.inf, -np.inf, 0.0, -0.0, -3.0, 3.0, 6.0, 1.0, -1.0, 50.0, -50.0]
WITH_SPECIAL_X = {"ReLU", "LeakyReLU", "Sigmoid", "Tanh", "Clip", "ReLU6", "Hardtanh", "HardSigmoid", "HardSwish",
                  "SiLU", "GELU", "Mish", "PReLU", "Mul"}


def case_data(case, special=True):
    """spec, a, out, xs, params, y32, dy for a case: float32-exact values, specials in x
    (element-wise ops, Mul), a few NaN in dy; y is the reference's output rounded to float32."""
    rng = rng_for("kernel-" + case.id)
    spec, a, out, xs, params, y, dy = make_data(case, rng)
    if special and case.op in WITH_SPECIAL_X:
        values = SPECIAL_X + KINKS.get(case.op, lambda a: [])(a)
        for x in xs:
            idx = rng.permutation(x.size)[:min(len(values), x.size // 3)]
            x.ravel()[idx] = np.array(values[:len(idx)], np.float32)
    with np.errstate(invalid="ignore", over="ignore"):
        y = np.asarray(spec.reference(a, xs, params), np.float64).astype(np.float32).astype(np.float64)
    if special:
        dy.ravel()[rng.permutation(dy.size)[:max(1, dy.size // 40)]] = np.nan
    return spec, a, out, xs, params, y, dy


def run_kernels(case, a, out, xs, params, y, dy, need=None, threads=0):
    """{gradient name: array} from the op's backward kernels (dparams: {param name: array})."""
    spec = prepare(case)[0]
    shapes = [tuple(s) for s in case.shapes]
    pnames = list(spec.params(a, shapes))
    if need is None:
        need = {f"dx{i}" for i in range(len(xs))} | ({"dparams"} if pnames else set())
    bwds = backward_rule(case.op)(a, shapes, out, case.n, set(need))
    env = {f"x{i}": x for i, x in enumerate(xs)}
    env.update(y=y, dy=dy)
    if pnames:
        env["params"] = np.concatenate([params[k].ravel() for k in pnames])
    got = {}
    for b in bwds:
        if b.out == "dparams":
            flat = run_bwd(b, env, threads=threads)
            sizes = [params[k].size for k in pnames]
            parts = np.split(flat, np.cumsum(sizes)[:-1])
            got["dparams"] = {k: p.reshape(params[k].shape) for k, p in zip(pnames, parts)}
        else:
            i = int(b.out[2:])
            got[b.out] = run_bwd(b, env, out_floats=xs[i].size, threads=threads).reshape(xs[i].shape)
    return got


def check_case(case, special=True, threads=0):
    spec, a, out, xs, params, y, dy = case_data(case, special)
    got = run_kernels(case, a, out, xs, params, y, dy, threads=threads)
    with np.errstate(invalid="ignore", over="ignore"):
        dxs, dps = oracle(case, a, xs, params, y, dy)
    for i, dx in enumerate(dxs):
        bcast = tuple(xs[i].shape) != tuple(dy.shape)
        atol, rtol = tolerance(case, a, f"dx{i}", bcast)
        assert_close(got[f"dx{i}"], dx, f"{case.id} dx{i}", atol, rtol)
    for name, dp in dps.items():
        atol, rtol = tolerance(case, a, "dparams", False)
        assert_close(got["dparams"][name], dp, f"{case.id} d{name}", atol, rtol)
    return got, (dxs, dps)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_kernel_matches_oracle(case, isa):
    check_case(case)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_kernel_matches_oracle_on_plain_values(case):
    """The same without specials or NaN: a kernel that returned NaN for everything whenever
    its input held one would pass the test above at the NaN cells only."""
    check_case(case, special=False)


def _bits(d):
    """The float32 bits of each array, every NaN made the one quiet NaN (a NaN's sign and payload
    depend on the instruction that made it; that it is NaN is what the kernels promise)."""
    def one(v):
        v = np.asarray(v, np.float32).copy()
        v[np.isnan(v)] = np.float32(np.nan)
        return v.view(np.uint32)
    return {k: (one(v) if isinstance(v, np.ndarray) else _bits(v)) for k, v in d.items()}


def _same_bits(a, b, what):
    assert a.keys() == b.keys()
    for k in a:
        if isinstance(a[k], dict):
            _same_bits(a[k], b[k], f"{what} {k}")
        else:
            diff = np.flatnonzero(a[k].ravel() != b[k].ravel())
            assert diff.size == 0, f"{what} {k}: {diff.size} values differ in their bits, first at {diff[0]}"


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_isas_agree_bit_for_bit(case):
    from netdsl.runtime import lib as L
    spec, a, out, xs, params, y, dy = case_data(case)
    runs = {}
    for name in L.supported_isas():
        with L.using_isa(name):
            runs[name] = _bits(run_kernels(case, a, out, xs, params, y, dy))
    first = next(iter(runs))
    for name, r in runs.items():
        _same_bits(runs[first], r, f"{case.id}: {first} vs {name}")


# cases past the kernels' OpenMP thresholds (~128K elements, ~16K for the libm ones, 32K softmax)
BIG = [
    Case("ReLU", {}, [(64, 48, 48)]), Case("SiLU", {}, [(16, 32, 32)], scale=3),
    Case("GELU", dict(approximate="tanh"), [(16, 32, 32)], scale=3), Case("HardSwish", {}, [(64, 48, 48)], scale=4),
    Case("PReLU", {}, [(64, 48, 48)]), Case("PReLU", dict(num_parameters=1), [(64, 48, 48)]),
    Case("Softmax", {}, [(17, 40, 40)], scale=2), Case("LogSoftmax", dict(axis=-1), [(17, 40, 41)]),
    Case("Add", {}, [(32, 48, 48), (32, 1, 1)]), Case("Mul", {}, [(32, 48, 48), (32, 1, 1)]),
    Case("Mul", {}, [(1, 1, 1), (32, 48, 48)], out=(32, 48, 48)),
    Case("Concat", {}, [(40, 48, 48), (24, 48, 48)]), Case("Slice", dict(start=5, stop=60), [(64, 48, 48)]),
    Case("Upsample", dict(scale=2, mode="bilinear"), [(16, 64, 64)]), Case("Upsample", dict(scale=2), [(16, 64, 64)]),
    Case("Pad", dict(pad=(3, 1, 2, 4), mode="reflect"), [(16, 128, 128)]),
    Case("Crop", dict(size=(100, 90)), [(24, 128, 128)]),
]


@pytest.mark.parametrize("case", BIG, ids=[c.id for c in BIG])
def test_large_cases_threads_agree_bit_for_bit(case):
    got2, _ = check_case(case, threads=2)
    spec, a, out, xs, params, y, dy = case_data(case)
    got1 = run_kernels(case, a, out, xs, params, y, dy, threads=1)
    _same_bits(_bits(got1), _bits(got2), f"{case.id}: 1 vs 2 threads")


# maps past the Upsample gather tables (1023): the scatter form, columns tabled up to 2048, then computed
WIDE = [Case("Upsample", dict(scale=2), [(2, 2, 600)], n=1), Case("Upsample", dict(scale=2, mode="bilinear"), [(2, 2, 600)], n=1),
        Case("Upsample", dict(size=(3, 2200)), [(1, 2, 1100)], n=1),
        Case("Upsample", dict(size=(5, 2201), mode="bilinear", align_corners=True), [(1, 2, 1100)], n=1),
        Case("Upsample", dict(size=(1100, 3), mode="bilinear"), [(1, 700, 2)], n=1)]


@pytest.mark.parametrize("case", WIDE, ids=[c.id for c in WIDE])
def test_wide_upsample_takes_the_scatter_form(case):
    check_case(case)


NAN_FLOWS = ["Sigmoid", "Tanh", "SiLU", "GELU", "Mish", "Softmax", "LogSoftmax", "Add", "Mul", "Upsample", "Pad",
             "LeakyReLU", "PReLU"]


@pytest.mark.parametrize("op", NAN_FLOWS)
def test_nan_in_dy_reaches_dx(op):
    """Where the derivative multiplies dy, its NaN comes out (the comparisons above check that
    it comes out exactly where the oracle has it; this checks that it comes out at all)."""
    for case in (c for c in CASES if c.op == op):
        spec, a, out, xs, params, y, dy = case_data(case, special=False)
        mid = (0,) * (dy.ndim - 2) + (dy.shape[-2] // 2, dy.shape[-1] // 2) if dy.ndim > 2 else (0, dy.shape[1] // 2)
        dy[mid] = np.nan                     # the middle of a map: inside any Pad border
        got = run_kernels(case, a, out, xs, params, y, dy)
        assert any(np.isnan(v).any() for k, v in got.items() if k != "dparams"), f"{case.id}: the NaN in dy is lost"


def test_bilinear_nan_reaches_all_four_taps():
    """A zero bilinear weight still multiplies dy (0 · NaN = NaN), as PyTorch's backward:
    a NaN at an output pixel whose source lies exactly on an input pixel reaches 4 taps."""
    case = Case("Upsample", dict(size=(7, 9), mode="bilinear", align_corners=True), [(1, 4, 5)], n=1)
    spec, a, out, xs, params, y, dy = case_data(case, special=False)
    dy[0, 0, 2, 2] = np.nan                    # src (1.0, 1.0): weights 1, 0, 0, 0
    got = run_kernels(case, a, out, xs, params, y, dy)["dx0"]
    assert sorted(zip(*np.nonzero(np.isnan(got[0, 0])))) == [(1, 1), (1, 2), (2, 1), (2, 2)]


def test_elementwise_kernels_work_in_place():
    """dx may be written over dy (header promise): the same result as into a separate buffer."""
    for case in [c for c in CASES if c.op in WITH_SPECIAL_X - {"PReLU", "Mul"}][::2] + \
            [Case("Mul", {}, [(3, 5, 7)] * 2), Case("Add", {}, [(3, 5, 7)] * 2)]:
        spec, a, out, xs, params, y, dy = case_data(case)
        (b,) = backward_rule(case.op)(a, [tuple(s) for s in case.shapes], out, case.n, {"dx0"})
        env = {f"x{i}": x for i, x in enumerate(xs)}
        env.update(y=y, dy=dy)
        want = run_bwd(b, env, out_floats=dy.size)
        buf = np.ascontiguousarray(dy, np.float32).ravel().copy()
        ins = [np.ascontiguousarray(env[t], np.float32).ravel() for t in b.ins]
        ins[0] = buf
        p = ffi.new(f"{b.call.struct} *", b.call.fields)
        ptrs = ffi.new("const float *[]", [ffi.cast("const float *", ffi.from_buffer(v)) for v in ins])
        st = getattr(lib, b.call.symbol)(p, ffi.cast("float *", ffi.from_buffer(buf)), ptrs, ffi.NULL, ffi.NULL,
                                         ffi.NULL)
        assert st == lib.ND_OK
        _same_bits(_bits({"dx": want}), _bits({"dx": buf}), f"{case.id} in place")


def _status(symbol, struct, fields, n_in=2, w=None, ws=None, n_out=64):
    out = np.zeros(n_out, np.float32)
    ins = [np.zeros(n_out, np.float32) for _ in range(n_in)]
    p = ffi.new(f"{struct} *", fields)
    ptrs = ffi.new("const float *[]", [ffi.cast("const float *", ffi.from_buffer(v)) for v in ins] or [ffi.NULL])
    wp = ffi.NULL if w is None else ffi.cast("const float *", ffi.from_buffer(w))
    wsp = ffi.NULL if ws is None else ffi.cast("float *", ffi.from_buffer(ws))
    return getattr(lib, symbol)(p, ffi.cast("float *", ffi.from_buffer(out)), ptrs, wp, ffi.NULL, wsp)


@pytest.mark.parametrize("symbol,struct,fields,kw", [
    ("nd_relu_bwd_data_f32", "nd_relu_bwd_params", dict(n=0, size=4), {}),
    ("nd_hardtanh_bwd_data_f32", "nd_hardtanh_bwd_params", dict(n=1, size=4, lo=1.0, hi=-1.0), {}),
    ("nd_clip_bwd_data_f32", "nd_clip_bwd_params", dict(n=1, size=4, lo=math.nan, hi=1.0), {}),
    ("nd_hardsigmoid_bwd_data_f32", "nd_hardsigmoid_bwd_params", dict(n=1, size=4, alpha=math.inf, beta=0.5), {}),
    ("nd_actfn_bwd_data_f32", "nd_actfn_bwd_params", dict(n=1, size=4, act=1), {}),     # ReLU: its own kernel
    ("nd_prelu_bwd_data_f32", "nd_prelu_bwd_params", dict(n=1, c=4, hw=2, nw=3), dict(w=np.ones(4, np.float32))),
    ("nd_prelu_bwd_params_f32", "nd_prelu_bwd_params", dict(n=1, c=4, hw=2, nw=1), {}),     # no ws
    ("nd_softmax_bwd_data_f32", "nd_softmax_bwd_params", dict(n=1, c=0, inner=3), {}),
    ("nd_add_bwd_data_f32", "nd_add_bwd_params", dict(n=1, c=2, hw=2, ninputs=2, wrt=2, bcast=[0, 0]), {}),
    ("nd_mul_bwd_data_f32", "nd_mul_bwd_params", dict(n=1, c=2, hw=2, ninputs=2, wrt=0, bcast=[0, 3]), {}),
    ("nd_concat_bwd_data_f32", "nd_concat_bwd_params", dict(n=2, total=5, off=3, inner=3), {}),
    ("nd_slice_bwd_data_f32", "nd_slice_bwd_params", dict(n=1, c=4, inner=2, start=2, stop=5), {}),
    ("nd_upsample_bwd_data_f32", "nd_upsample_bwd_params", dict(n=1, c=1, h=2, w=2, oh=4, ow=4, mode=0,
                                                                align_corners=0, ), {}),
    ("nd_pad_bwd_data_f32", "nd_pad_bwd_params", dict(n=1, c=1, h=2, w=2, pad_t=2, pad_l=0, pad_b=0, pad_r=0,
                                                      mode=1, value=0.0), {}),
    ("nd_crop_bwd_data_f32", "nd_crop_bwd_params", dict(n=1, c=1, h=4, w=4, oh=3, ow=3, off_h=2, off_w=0), {}),
    ("nd_zero_bwd_f32", "nd_zero_bwd_params", dict(n=1, size=-1), {}),
], ids=lambda v: v if isinstance(v, str) and v.startswith("nd_") and v.endswith("f32") else "")
def test_bad_params_are_refused(symbol, struct, fields, kw):
    if symbol == "nd_upsample_bwd_data_f32":
        fields = dict(fields, mode=2)
        assert _status(symbol, struct, fields, **kw) == lib.ND_EUNSUPPORTED
        return
    assert _status(symbol, struct, fields, **kw) == lib.ND_EINVAL


def test_good_params_pass_the_refusal_helper():
    """The refusal test above would pass on a helper that always fails: this one succeeds."""
    assert _status("nd_relu_bwd_data_f32", "nd_relu_bwd_params", dict(n=1, size=4)) == lib.ND_OK
    assert _status("nd_zero_bwd_f32", "nd_zero_bwd_params", dict(n=2, size=3), n_in=0) == lib.ND_OK


# ---------------------------------------------------------------- the rules themselves

READS = {"ReLU": "y", "Sigmoid": "y", "Tanh": "y", "ReLU6": "y", "Hardtanh": "y", "Softmax": "y", "LogSoftmax": "y",
         "Clip": "x0", "HardSigmoid": "x0", "HardSwish": "x0", "SiLU": "x0", "GELU": "x0", "Mish": "x0",
         "PReLU": "x0"}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_rules_emit_what_is_asked_and_read_what_they_say(case):
    spec, a, out = prepare(case)
    shapes = [tuple(s) for s in case.shapes]
    grads = [f"dx{i}" for i in range(len(shapes))] + (["dparams"] if spec.params(a, shapes) else [])
    rule = backward_rule(case.op)
    for g in grads:
        (b,) = rule(a, shapes, out, case.n, {g})
        assert b.out == g and b.ins[:1] in (("dy",), ())
        ok = {"dy", "y", "params"} | {f"x{i}" for i in range(len(shapes))}
        assert set(b.ins) <= ok and b.w in (None, "params")
        if case.op in READS:
            assert b.ins == ("dy", READS[case.op])
        if case.op == "LeakyReLU":
            assert b.ins == ("dy", "y" if a["slope"] >= 0 else "x0")
        if case.op == "Mul":
            assert b.ins == ("dy",) + tuple(f"x{j}" for j in range(len(shapes)) if f"dx{j}" != g)
        if g == "dparams":
            assert b.out_floats == sum(math.prod(s) for s in spec.params(a, shapes).values())
        if case.op == "PReLU":      # dx needs the slopes, their gradient does not
            assert b.w == ("params" if g == "dx0" else None)
    assert rule(a, shapes, out, case.n, set()) == []
    assert [b.out for b in rule(a, shapes, out, case.n, set(grads))] == grads
    with pytest.raises(ValueError, match="has no gradient"):
        rule(a, shapes, out, case.n, {f"dx{len(shapes)}"})


def test_add_with_a_fused_activation_is_refused():
    case = Case("Add", dict(act="relu"), [(2, 5, 5)] * 2)
    spec, a, out = prepare(case)
    with pytest.raises(PlanError, match="two layers"):
        backward_rule("Add")(a, [(2, 5, 5)] * 2, out, 2, {"dx0"})


def test_crop_reference_input_gets_zeros():
    """Crop's second input only gives the window's size: its gradient is zeros (written whole)."""
    case = next(c for c in CASES if c.op == "Crop" and len(c.shapes) == 2)
    spec, a, out, xs, params, y, dy = case_data(case)
    got = run_kernels(case, a, out, xs, params, y, dy, need={"dx1"})
    assert set(got) == {"dx1"} and not got["dx1"].any() and not np.isnan(got["dx1"]).any()
    big = dataclasses.replace(case, n=3)
    spec, a, out, xs, params, y, dy = case_data(big)
    assert run_kernels(big, a, out, xs, params, y, dy, need={"dx1"})["dx1"].shape == xs[1].shape
