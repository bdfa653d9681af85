"""Conv with a fused residual (y = act(conv(x) + bias + r), the -O3 ResNet
epilogue) against the Conv spec's numpy reference, on every algorithm the
kernel picks: 1x1 GEMM, packed-panel GEMM, grouped side-by-side, depthwise,
the dot-product path (one output pixel), the direct conv (auto for small and
thin convs, forced with algo=3 on the rest), and the transposed GEMM (forced
with algo=2; the residual is added in its transpose pass) -- each with y in its
own buffer and with y written over r (the planner's in place, OpSpec.overwrites:
every path but depthwise, which refuses it with ND_EINVAL).
Tolerance 1e-4 relative: float32 accumulation over K <= 600 terms."""
from __future__ import annotations

import numpy as np
import pytest

from netdsl import ops
from netdsl.runtime import lib
from netdsl.runtime.executor import KernelError, run_call
from netdsl.runtime.kparams import builder

pytestmark = pytest.mark.skipif(not lib.available(), reason="C kernels not built")

CASES = [  # (n, c, h, w, oc, k, stride, pad, groups, act)
    (1, 16, 7, 7, 32, 1, 1, 0, 1, "relu"),
    (2, 8, 13, 11, 8, 3, 1, 1, 1, "relu"),
    (1, 8, 9, 9, 16, 3, 2, 1, 1, "none"),
    (3, 12, 6, 6, 12, 3, 1, 1, 4, "relu"),
    (2, 8, 10, 10, 8, 3, 1, 1, 8, "relu"),
    (1, 5, 7, 7, 5, 3, 1, 1, 5, "relu6"),      # depthwise: residual added in conv_dw.c's registers
    (1, 3, 14, 17, 3, 3, 2, 1, 3, "leakyrelu"),  # depthwise stride 2, a 9-wide masked tail
    (2, 3, 13, 19, 6, 3, 1, 1, 3, "hardswish"),  # depthwise multiplier 2, act as a pass after
    (1, 3, 9, 9, 3, 3, 3, 1, 3, "none"),       # depthwise stride 3: the portable body
    (3, 5, 3, 3, 17, 3, 1, 0, 1, "tanh"),      # kernel covers the image: dot products (auto)
    (2, 3, 9, 21, 11, 3, 1, 1, 1, "relu"),     # small stride-1: direct on AVX-512 (auto)
]


@pytest.mark.parametrize("over", [False, True], ids=["own", "over_r"])
@pytest.mark.parametrize("algo", [0, 2, 3], ids=["auto", "transposed", "direct"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: "n{}-c{}-h{}-w{}-oc{}-k{}-s{}-p{}-g{}-{}".format(*c))
def test_conv_residual(case, isa, algo, over):      # isa: the fixture in tests/ops/conftest.py
    n, c, h, w, oc, k, s, p, g, act = case
    spec = ops.get("Conv")
    kw = {"stride": s, "pad": p, "groups": g, "act": act}
    x_shape = (c, h, w)
    plain = spec.resolve(spec.bind([oc, k], kw), [x_shape])
    out = spec.infer(plain, [x_shape])
    a = spec.resolve(spec.bind([oc, k], {**kw, "residual": True}), [x_shape, out])
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, *x_shape)).astype(np.float32)
    r = rng.standard_normal((n, *out)).astype(np.float32)
    wt = {"weight": rng.standard_normal(spec.params(a, [x_shape])["weight"]).astype(np.float32),
          "bias": rng.standard_normal(oc).astype(np.float32)}
    want = spec.reference(a, [x.astype(np.float64), r.astype(np.float64)],
                          {k_: v.astype(np.float64) for k_, v in wt.items()})
    call = builder("Conv")(a, [x_shape, out], out, n)
    if algo:   # ignored by grouped convs
        call.fields["algo"] = algo
        call.ws_floats = int(lib.lib.nd_conv_ws_floats(lib.ffi.new("nd_conv_params *", call.fields)))
    k = spec.overwrites(a, [x_shape, out]) if over else None
    if over and k is None:   # depthwise: the spec keeps y apart, and the kernel refuses y over r
        assert g == c
        with pytest.raises(KernelError, match="ND_EINVAL"):
            run_call(call, [x, r], wt["weight"], wt["bias"], out_floats=n * int(np.prod(out)), overwrite=1)
        return
    assert k in (None, 1)
    got = run_call(call, [x, r], wt["weight"], wt["bias"], out_floats=n * int(np.prod(out)), overwrite=k)
    got = got.reshape(want.shape)
    err = np.abs(got - want).max() / np.abs(want).max()
    assert err < 1e-4, f"max rel diff {err:.3g}"
