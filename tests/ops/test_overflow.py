"""No kernel index computation can overflow int64, whatever the compiler flags.

Window kernels form o*s - pad + i*d along each axis. With stride or padding near 2^62
that product passed int64 in gemm.c (im2col packing), conv_local.c, conv_dw.c and
pool.c: undefined behaviour, which -fwrapv happens to hide and UBSan reports. Now
  - the planner refuses such a layer with a located NetDSLError (kparams.check_window:
    every index along an axis must stay under 2^58), and
  - every window kernel checks the same bound itself and returns ND_EINVAL
    (csrc/dispatch.h nd_axis_ok), so a direct call with crafted params is refused too;
  - strides and pads that are huge but within the bound (2^40) still compute the right
    numbers, against hand-computed oracles (numpy's reference would pad by 2^40).

To run these under UndefinedBehaviorSanitizer, with signed overflow as UB (-fno-wrapv),
see docs/RUNTIME.md ("Checking memory safety"):
    NETDSL_UBSAN=1 python netdsl/runtime/_build.py      # in a scratch copy
    python -m pytest -q tests/ops/test_overflow.py
Before the fix the direct calls below abort with "runtime error: signed integer overflow".
"""
from __future__ import annotations

import numpy as np
import pytest

import netdsl
from netdsl.runtime import lib as L

if not L.available():
    pytest.skip("C kernels not built: python netdsl/runtime/_build.py", allow_module_level=True)
ffi, lib = L.ffi, L.lib
ISAS = L.supported_isas()



@pytest.fixture(autouse=True)
def past_the_language_limit(monkeypatch):
    """The language refuses any size over 2^31 - 1 at bind time (tests/unit/test_frontend_fixes.py);
    these tests lift that limit so the planner's and the kernels' own checks are what is tested:
    they must hold without the front end."""
    from netdsl.ops import attrs
    monkeypatch.setattr(attrs, "MAX_INT", 2**64)


BIG = 2**62            # o*s passes int64 for o >= 2
HUGE = 2**63 - 1       # s + pad passes int64


@pytest.mark.parametrize("layer", [
    f"Conv(4, 3, stride={BIG}, pad={BIG})",
    f"Conv(3, 3, stride={HUGE}, pad=1, groups=3)",          # depthwise
    f"Conv(4, 3, stride={HUGE}, pad=1)",
    f"Local(4, 3, stride={BIG}, pad={BIG})",
    f"MaxPool(5, stride={HUGE}, pad=2)",
    f"AvgPool(5, stride={HUGE}, pad=2)",
    f"StochasticPool(3, stride={HUGE}, pad=1)",
], ids=["conv", "conv-dw", "conv-stride", "local", "maxpool", "avgpool", "stochasticpool"])
def test_planner_refuses_index_overflow(layer):
    m = netdsl.parse(f"input x: 3x8x8\n{layer}")
    with pytest.raises(netdsl.NetDSLError) as e:
        m(np.ones((1, 3, 8, 8), np.float32))
    text = str(e.value)
    assert "<string>:2:" in text and "2^58" in text and "layer " in text, text


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("op", ["Conv", "Local"])
def test_huge_stride_and_pad_within_bound_compute_right(op, isa):
    """stride = pad = 2^40 on 8x8 with a 3x3 kernel: floor((8 + 2^41 - 3)/2^40) + 1 = 3 outputs
    per axis; only the centre window (rows/cols 0..2) touches the input, the others are all
    padding. Oracle by hand: centre = sum(w * x[:, :3, :3]) + b, elsewhere b."""
    s = 2**40
    m = netdsl.parse(f"input x: 3x8x8\n{op}(4, 3, stride={s}, pad={s})")
    assert m.output_shape == (4, 3, 3)
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    sd = m.state_dict()
    wk = next(k for k in sd if k.endswith("weight"))
    bk = next(k for k in sd if k.endswith("bias"))
    b = np.random.default_rng(1).standard_normal(sd[bk].shape).astype(np.float32)
    m.load_state_dict({wk: sd[wk], bk: b})
    w = sd[wk].astype(np.float64)
    if op == "Conv":       # weight (OC, C, KH, KW), bias (OC,)
        bias_map, wc = np.broadcast_to(b[:, None, None], (4, 3, 3)), w.reshape(4, -1)
    else:                  # weight (OH*OW, OC, C*KH*KW), bias (OC, OH, OW); the centre is position 4
        bias_map, wc = b.reshape(4, 3, 3), w[4]
    want = np.repeat(bias_map[None].astype(np.float64), 2, 0)
    patch = x[:, :, :3, :3].astype(np.float64).reshape(2, -1)          # k ordered (c, i, j)
    want[:, :, 1, 1] = patch @ wc.T + bias_map[:, 1, 1]
    with L.using_isa(isa):
        got = m(x)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def _call(symbol, struct, fields, out_floats, in_floats, w_floats=0, ws_floats=0):
    p = ffi.new(f"{struct} *", fields)
    out = np.zeros(max(out_floats, 1), np.float32)
    x = np.ones(max(in_floats, 1), np.float32)
    w = np.ones(max(w_floats, 1), np.float32)
    ws = np.zeros(max(ws_floats, 1), np.float32)
    ins = ffi.new("const float *[2]", [ffi.from_buffer("float[]", x), ffi.NULL])
    return getattr(lib, symbol)(p, ffi.from_buffer("float[]", out), ins, ffi.from_buffer("float[]", w),
                                ffi.NULL, ffi.from_buffer("float[]", ws))


def _conv_fields(**kw):
    f = dict(n=1, c=3, h=8, w=8, oc=4, oh=3, ow=3, kh=3, kw=3, sh=1, sw=1, dh=1, dw=1,
             pad_t=0, pad_l=0, pad_b=0, pad_r=0, act=lib.ND_ACT_NONE, threads=1)
    f.update(kw)
    return f


CRAFTED = [   # (id, symbol, struct, fields) — sizes small, strides/pads past the bound
    ("conv-gemm", "nd_conv_f32", "nd_conv_params", _conv_fields(groups=1, sh=BIG, pad_t=BIG)),
    ("conv-gemm-w", "nd_conv_f32", "nd_conv_params", _conv_fields(groups=1, sw=BIG, pad_l=BIG)),
    ("conv-dw", "nd_conv_f32", "nd_conv_params", _conv_fields(groups=3, oc=3, sw=HUGE, pad_l=1)),
    ("conv-dilation", "nd_conv_f32", "nd_conv_params", _conv_fields(groups=1, dh=BIG)),
    ("local", "nd_local_f32", "nd_local_params", _conv_fields(sh=BIG, pad_t=BIG)),
    ("local-w", "nd_local_f32", "nd_local_params", _conv_fields(sw=HUGE, pad_l=1)),
    ("convtranspose", "nd_convtranspose_f32", "nd_convtranspose_params",
     _conv_fields(groups=1, h=3, w=3, oh=5, ow=5, sh=BIG)),
    ("maxpool", "nd_maxpool_f32", "nd_maxpool_params",
     dict(n=1, c=3, h=8, w=8, oh=1, ow=1, kh=5, kw=5, sh=HUGE, sw=HUGE, dh=1, dw=1, pad_t=2, pad_l=2, pad_b=2, pad_r=2)),
    ("avgpool", "nd_avgpool_f32", "nd_avgpool_params",
     dict(n=1, c=3, h=8, w=8, oh=3, ow=1, kh=2, kw=2, sh=BIG, sw=1, dh=1, dw=1, pad_t=1, pad_l=0, pad_b=1, pad_r=0)),
    ("stochasticpool", "nd_stochasticpool_f32", "nd_stochasticpool_params",
     dict(n=1, c=3, h=8, w=8, oh=1, ow=3, kh=2, kw=2, sh=1, sw=BIG, dh=1, dw=1, pad_t=0, pad_l=1, pad_b=0, pad_r=1)),
    ("maxpool-dilation", "nd_maxpool_f32", "nd_maxpool_params",
     dict(n=1, c=3, h=8, w=8, oh=1, ow=1, kh=2, kw=2, sh=1, sw=1, dh=BIG, dw=1, pad_t=0, pad_l=0, pad_b=0, pad_r=0)),
]


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("cid,symbol,struct,fields", CRAFTED, ids=[c[0] for c in CRAFTED])
def test_kernels_refuse_crafted_overflowing_params(cid, symbol, struct, fields, isa):
    """Params that no planner would build (it refuses them, above) but a hostile bundle or a
    direct caller could: the kernel answers ND_EINVAL instead of overflowing."""
    with L.using_isa(isa):
        st = _call(symbol, struct, fields, out_floats=4 * 5 * 5, in_floats=3 * 8 * 8, w_floats=4 * 3 * 9 * 25,
                   ws_floats=1 << 16)
    assert st == lib.ND_EINVAL, f"{cid}: status {st}"


def test_gemm_refuses_overflowing_sizes():
    p = ffi.new("nd_gemm_params *", dict(m=2**40, n=2**40, k=1, threads=1))
    x = np.zeros(16, np.float32)
    ins = ffi.new("const float *[1]", [ffi.from_buffer("float[]", x)])
    assert lib.nd_gemm_f32(p, ffi.from_buffer("float[]", x), ins, ffi.from_buffer("float[]", x), ffi.NULL,
                           ffi.from_buffer("float[]", x)) == lib.ND_EINVAL
