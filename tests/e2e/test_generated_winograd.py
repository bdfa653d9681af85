"""Winograd F(4x4,3x3) on generated networks. The generator keeps maps small (<= 24 pixels,
few channels), so the auto rule (>= 16 channels each side, >= 16 tiles) never picks Winograd
there; this test forces it (algo 4) on every 3x3 stride-1 undilated ungrouped conv of each
generated network and compares the run with the numpy reference (NaN where it has NaN, the
rest within 1e-4 of the output's size).
"""
from __future__ import annotations

import numpy as np
import pytest

import netdsl
from netdsl.runtime import lib as L
from netdsl.runtime import session as S
from netdsl.testing.generate import generate

if not L.available():
    pytest.skip("C kernels not built: python netdsl/runtime/_build.py", allow_module_level=True)


def forced(monkeypatch):
    """Patch the planner so that every conv Winograd can compute is planned with algo 4."""
    real = S.lower
    count = []

    def lower(graph, n, *a, **k):
        plan = real(graph, n, *a, **k)
        for st in plan.steps:
            f = st.call.fields
            if st.call.symbol == "nd_conv_f32" and (f["kh"], f["kw"], f["sh"], f["sw"], f["dh"], f["dw"],
                                                     f["groups"]) == (3, 3, 1, 1, 1, 1, 1):
                f["algo"] = 4
                st.call.ws_floats = int(L.lib.nd_conv_ws_floats(L.ffi.new("nd_conv_params *", f)))
                count.append(st.node)
        return plan
    monkeypatch.setattr(S, "lower", lower)
    return count


def test_generated_networks_with_winograd_forced(monkeypatch):
    count = forced(monkeypatch)
    checked = 0
    for seed in range(400):
        if checked >= 15:
            break
        text = generate(seed)[0]
        if "Conv(" not in text:
            continue
        m = netdsl.parse(text)
        before = len(count)
        rng = np.random.default_rng(seed)
        x = {nm: rng.standard_normal((2, *m.input_shapes[nm])).astype(np.float32) for nm in m.graph.inputs}
        got = m(x)
        if len(count) == before:
            continue
        want = m.reference(x)
        got = got if isinstance(got, dict) else {"y": got}
        want = want if isinstance(want, dict) else {"y": want}
        for k in want:
            ref = np.asarray(want[k], np.float64)
            fin = np.isfinite(ref)
            np.testing.assert_array_equal(np.isnan(got[k]), np.isnan(ref), err_msg=f"seed {seed}")
            scale = max(1.0, float(np.abs(ref[fin]).max()) if fin.any() else 1.0)
            assert np.abs(got[k][fin] - ref[fin]).max() <= 1e-4 * scale, f"seed {seed}\n{text}"
        checked += 1
    assert checked >= 10, f"only {checked} generated networks had a conv Winograd can compute"
