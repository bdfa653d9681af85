"""nd_qconv_f32 (csrc/kernels/qconv.c) on every micro-kernel path against the numpy oracle
(netdsl/quant/numerics.py), bit for bit: the products are summed in int32 exactly and the
epilogue is the same float32 operations in the same order, so any difference is a bug.

Paths: layout 1 (int8 A) runs AVX-512 VNNI at the avx512 level of a VNNI CPU and the
portable kernel elsewhere; layout 2 (int16 A) runs the AVX2 vpmaddwd kernel at avx2 and
above, portable below. Each ISA level runs both layouts, so every path is reached on a VNNI
machine. The output is prefilled with NaN: a cell the kernel skips shows up.
"""
from __future__ import annotations

import numpy as np
import pytest

from netdsl.quant import numerics as qn
from netdsl.quant import pack
from netdsl.runtime import lib

ACT = {"none": 0, "relu": 1, "relu6": 5}
ISAS = ("portable", "avx2", "avx512")

# (n, c, h, w, oc, k, stride, pad, dilation, act, residual)
CASES = [
    (1, 1, 1, 1, 1, 1, 1, 0, 1, "none", False),
    (1, 3, 17, 13, 13, 3, 1, 1, 1, "relu", False),
    (2, 17, 9, 11, 65, 3, 2, 1, 1, "none", True),
    (3, 64, 7, 7, 17, 1, 1, 0, 1, "relu6", False),
    (1, 13, 13, 17, 3, 5, 2, 2, 1, "relu", True),
    (2, 65, 8, 8, 64, 3, 1, 2, 2, "relu", False),
    (1, 4, 65, 3, 6, 3, 1, 1, 1, "none", False),
    (1, 5, 11, 10, 7, 3, 3, 1, 1, "relu", False),      # stride 3, 4: the direct layout's row phases
    (2, 6, 9, 9, 5, 2, 4, 0, 1, "none", True),
    (1, 3, 12, 12, 4, 1, 5, 0, 1, "none", False),      # stride 5: the packed path
    (1, 8, 7, 7, 64, 7, 1, 3, 1, "relu", False),
    (2, 4, 1, 9, 3, 1, 1, 0, 1, "none", False),        # one row
]


def _id(c):
    n, ch, h, w, oc, k, s, p, d, act, res = c
    return f"n{n}-c{ch}-h{h}-w{w}-oc{oc}-k{k}-s{s}-p{p}-d{d}-{act}{'-res' if res else ''}"


def _run(call, blob, xs, out_size, threads=2):
    from netdsl.runtime.executor import run_call
    return run_call(call, xs, w=blob, out_floats=out_size, threads=threads)


def _case(case, layout, seed=0, pads=None):
    n, c, h, w, oc, k, s, p, d, act, res = case
    pads = pads or (p, p, p, p)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    wt = rng.standard_normal((oc, c, k, k)).astype(np.float32)
    bias = rng.standard_normal(oc).astype(np.float32)
    wq, ws = qn.weight_qparams(wt)
    scale, zero = qn.act_qparams(float(x.min()) * 0.9, float(x.max()) * 0.8)   # some clip
    oh = (h + pads[0] + pads[2] - d * (k - 1) - 1) // s + 1
    ow = (w + pads[1] + pads[3] - d * (k - 1) - 1) // s + 1
    r = rng.standard_normal((n, oc, oh, ow)).astype(np.float32) if res else None
    ref = qn.qconv_reference(x, wq, ws, bias, scale, zero, (k, k), (s, s), (d, d), pads, r, act)
    attrs = dict(kernel=(k, k), stride=(s, s), dilation=(d, d), pad=pads)
    f = pack.qconv_fields("Conv", attrs, (c, h, w), (oc, oh, ow), n, scale, zero, act=ACT[act],
                          residual=res, layout=layout)
    call, blob = pack.qconv_call(f, wq, ws, bias, scale, zero)
    y = _run(call, blob, [x] + ([r] if res else []), ref.size).reshape(ref.shape)
    return y, ref


@pytest.mark.parametrize("layout", [1, 2])
@pytest.mark.parametrize("case", CASES, ids=_id)
def test_qconv_bit_exact(isa, case, layout):
    y, ref = _case(case, layout)
    diff = np.abs(y.astype(np.float64) - ref).max()
    assert np.array_equal(y, ref), f"path {lib.lib.nd_qconv_path(layout)}: max difference {diff:.3g}"


@pytest.mark.parametrize("pads", [(0, 2, 1, 0), (2, 0, 0, 1), (1, 1, 2, 2)])
@pytest.mark.parametrize("stride", [1, 2])
def test_qconv_asymmetric_pads(isa, pads, stride):
    case = (2, 5, 9, 8, 7, 3, stride, 0, 1, "relu", False)
    for layout in (1, 2):
        y, ref = _case(case, layout, seed=2, pads=pads)
        assert np.array_equal(y, ref), f"layout {layout}: max difference {np.abs(y - ref).max():.3g}"


def test_every_path_reached():
    """On this CPU the paths the tests above claim are the ones that run."""
    sup = lib.supported_isas()
    seen = set()
    for isa in sup:
        with lib.using_isa(isa):
            seen |= {int(lib.lib.nd_qconv_path(1)), int(lib.lib.nd_qconv_path(2))}
    want = {0}
    if "avx2" in sup:
        want.add(1)
    if "avx512" in sup and any(f in open("/proc/cpuinfo").read() for f in ("avx512_vnni",)):
        want.add(2)
    assert want <= seen, f"paths reached {seen}, expected at least {want}"


@pytest.mark.parametrize("layout", [1, 2])
def test_qfc_bit_exact(isa, layout):
    """An FC is a 1x1 conv over (IN, 1, 1): columns are the batch (runs of one in the epilogue)."""
    rng = np.random.default_rng(3)
    for n, inf, outf in [(1, 1, 1), (3, 17, 13), (8, 65, 10), (17, 300, 7)]:
        x = rng.standard_normal((n, inf)).astype(np.float32)
        wt = rng.standard_normal((outf, inf)).astype(np.float32)
        b = rng.standard_normal(outf).astype(np.float32)
        wq, ws = qn.weight_qparams(wt)
        scale, zero = qn.act_qparams(x.min(), x.max())
        ref = qn.qfc_reference(x, wq, ws, b, scale, zero, "relu")
        f = pack.qconv_fields("FC", {}, (inf,), (outf,), n, scale, zero, act=1, layout=layout)
        call, blob = pack.qconv_call(f, wq, ws, b, scale, zero)
        y = _run(call, blob, [x], ref.size).reshape(ref.shape)
        assert np.array_equal(y, ref), f"n{n}-in{inf}-out{outf}: max difference {np.abs(y - ref).max():.3g}"


def test_saturating_values_exact(isa):
    """Activations at 255 against weights of +-127 of one sign: where vpmaddubsw would saturate
    int16 (255*127*2 > 32767), every path still gives the exact int32 sum."""
    n, c, h, w, oc = 1, 64, 5, 5, 6
    x = np.full((n, c, h, w), 10.0, np.float32)
    wt = np.ones((oc, c, 3, 3), np.float32)
    wt[1] = -1
    wq, ws = qn.weight_qparams(wt)
    assert wq.max() == 127 and wq.min() == -127
    scale, zero = qn.act_qparams(0.0, 10.0)
    ref = qn.qconv_reference(x, wq, ws, None, scale, zero, (3, 3), pads=(1, 1, 1, 1))
    attrs = dict(kernel=(3, 3), stride=(1, 1), dilation=(1, 1), pad=(1, 1, 1, 1))
    for layout in (1, 2):
        f = pack.qconv_fields("Conv", attrs, (c, h, w), (oc, h, w), n, scale, zero, layout=layout)
        call, blob = pack.qconv_call(f, wq, ws, None, scale, zero)
        y = _run(call, blob, [x], ref.size).reshape(ref.shape)
        assert np.array_equal(y, ref)
        np.testing.assert_allclose(y[0, 0, 2, 2], 64 * 9 * 10.0, rtol=1e-2)


def test_quantize_nan_inf(isa):
    """NaN reads as the zero point, +-inf clamps to 255 / 0 — on every path as in the oracle
    (the vector quantize passes and the scalar tail alike: 19 values = 16 + 3)."""
    x = np.array([np.nan, np.inf, -np.inf, 0.0, 1e30, -1e30, 0.5, 2.5, 3.5, -0.25] + [1.0] * 9,
                 np.float32).reshape(1, 19, 1, 1)
    wq = np.eye(19, dtype=np.int8).reshape(19, 19, 1, 1) * 127
    ws = np.ones(19, np.float32) / 127
    scale, zero = 1.0, 7
    ref = qn.qconv_reference(x, wq, ws, None, scale, zero, (1, 1))
    assert ref[0, 0, 0, 0] == 0.0 and ref[0, 1, 0, 0] == 248.0 and ref[0, 2, 0, 0] == -7.0
    assert ref[0, 7, 0, 0] == 3.0 and ref[0, 8, 0, 0] == 3.0          # 9.5 -> 10, 10.5 -> 10: half to even
    for layout in (1, 2):
        f = pack.qconv_fields("Conv", dict(kernel=(1, 1), stride=(1, 1), dilation=(1, 1), pad=(0, 0, 0, 0)),
                              (19, 1, 1), (19, 1, 1), 1, scale, zero, layout=layout)
        call, blob = pack.qconv_call(f, wq, ws, None, scale, zero)
        y = _run(call, blob, [x], ref.size).reshape(ref.shape)
        assert np.array_equal(y, ref), (y.ravel(), ref.ravel())


def test_bad_params_are_einval():
    """The kernel refuses what it cannot run with a status, never a crash."""
    from netdsl.runtime.executor import KernelError, PlanError
    attrs = dict(kernel=(3, 3), stride=(1, 1), dilation=(1, 1), pad=(1, 1, 1, 1))
    f = pack.qconv_fields("Conv", attrs, (4, 5, 5), (6, 5, 5), 1, 0.1, 0)
    ffi, L = lib.ffi, lib.lib
    for bad in ({"in_zero": 256}, {"cp": 3}, {"layout": 3}, {"oh": 9}, {"in_inv_scale": 0.0},
                {"a_bytes": 7}, {"kh": 4000, "kw": 4000}):
        p = ffi.new("nd_qconv_params *", {**f, **bad})
        assert L.nd_qconv_ws_floats(p) == -1, bad
        out = np.zeros(150, np.float32)
        x = np.zeros(100, np.float32)
        xs = ffi.new("float *[1]", [ffi.from_buffer("float[]", x)])
        st = L.nd_qconv_f32(p, ffi.from_buffer("float[]", out), xs, ffi.from_buffer("float[]", x), ffi.NULL,
                            ffi.from_buffer("float[]", out))
        assert st == 1, bad
    with pytest.raises((PlanError, KernelError)):
        pack.qconv_call({**f, "in_zero": 300}, np.zeros((6, 4, 3, 3), np.int8), np.ones(6, np.float32), None, 0.1, 0)


def _as_f32_bytes(a_u8):
    """uint8 values in a float32 container (what the arena holds for a uint8 tensor)."""
    b = np.zeros(-(-a_u8.size // 4) * 4, np.uint8)
    b[:a_u8.size] = a_u8.ravel()
    return b.view(np.float32)


@pytest.mark.parametrize("stride", [1, 2])
def test_uint8_in_out_and_residual(isa, stride):
    """The uint8 hand-off: a uint8 input (what the layer before wrote), a uint8 output
    (requantized after the activation) and a uint8 residual, each against the oracle."""
    rng = np.random.default_rng(11)
    n, c, h, w, oc, k = 2, 6, 9, 10, 7, 3
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    wt = rng.standard_normal((oc, c, k, k)).astype(np.float32)
    b = rng.standard_normal(oc).astype(np.float32)
    wq, ws = qn.weight_qparams(wt)
    s_in, z_in = qn.act_qparams(-2.0, 2.5)
    s_out, z_out = qn.act_qparams(0.0, 6.0)
    s_r, z_r = qn.act_qparams(-1.5, 3.0)
    oh, ow = (h + 2 - k) // stride + 1, (w + 2 - k) // stride + 1
    r = rng.standard_normal((n, oc, oh, ow)).astype(np.float32)
    rq = qn.quantize_act(r, s_r, z_r)
    xq = qn.quantize_act(x, s_in, z_in)
    ref = qn.qconv_reference(qn.dequantize_act(xq, s_in, z_in), wq, ws, b, s_in, z_in, (k, k), (stride, stride),
                             (1, 1), (1, 1, 1, 1), qn.dequantize_act(rq, s_r, z_r), "relu")
    ref8 = qn.quantize_act(ref, s_out, z_out)
    attrs = dict(kernel=(k, k), stride=(stride, stride), dilation=(1, 1), pad=(1, 1, 1, 1))
    for layout in (1, 2):
        f = pack.qconv_fields("Conv", attrs, (c, h, w), (oc, oh, ow), n, s_in, z_in, act=1, residual=True,
                              layout=layout, in_u8=True, out_q=(s_out, z_out), res_q=(s_r, z_r))
        call, blob = pack.qconv_call(f, wq, ws, b, s_in, z_in)
        y = _run(call, blob, [_as_f32_bytes(xq), _as_f32_bytes(rq)], -(-ref.size // 4))
        got = y.view(np.uint8)[:ref.size].reshape(ref.shape)
        assert np.array_equal(got, ref8), f"layout {layout}: {int((got != ref8).sum())} bytes differ"
