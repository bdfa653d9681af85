"""Slice (channels start..stop-1) against numpy slicing by hand, its errors, and the kernel."""
from __future__ import annotations

import numpy as np
import pytest

from netdsl.ops.attrs import OpError


def test_slice_by_hand(nd):
    x = np.arange(2 * 4 * 2 * 3, dtype=np.float64).reshape(2, 4, 2, 3)
    got = nd.run("Slice", x, 1, 3)
    nd.close(got, np.stack([x[:, 1], x[:, 2]], axis=1))
    v = np.arange(10, dtype=np.float64).reshape(2, 5)
    nd.close(nd.run("Slice", v, 0, 2), [[0, 1], [5, 6]])


def test_slice_errors():
    from conftest import prepare
    with pytest.raises(OpError, match="needs 9 channels, but the input 8x4x4 has 8"):
        prepare("Slice", [(8, 4, 4)], 4, 9)
    with pytest.raises(OpError, match="keeps no channel"):
        prepare("Slice", [(8, 4, 4)], 4, 4)


def test_slice_in_a_network():
    import netdsl
    m = netdsl.parse("input x: 6x5x5\nConv(4, 1) - a: Slice(2, 4)\n")
    x = np.random.default_rng(0).standard_normal((2, 6, 5, 5)).astype(np.float32)
    w = m.state_dict()
    full = np.einsum("oc,nchw->nohw", w["0.weight"][:, :, 0, 0] if "0.weight" in w else
                     next(v for k, v in w.items() if k.endswith("weight"))[:, :, 0, 0], x)
    bias = next(v for k, v in w.items() if k.endswith("bias"))
    want = (full + bias[None, :, None, None])[:, 2:4]
    np.testing.assert_allclose(m(x), want, rtol=1e-5, atol=1e-5)
