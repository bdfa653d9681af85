"""Softmax and LogSoftmax over many channels are as accurate as float32 allows.

Found by the generated-network soak (docs/TESTING.md): LogSoftmax over a flattened
8x13x11 map, multiplied by its own input, was 1000x further from the float64 reference
than numpy's own float32 run. The kernel summed the C exponentials one after another in
float32, which loses up to C·u (u = 6e-8: 3e-4 for C = 5000) where numpy sums pairwise;
it now sums in double. Oracle: the float64 numpy reference; the bound, 4 units of float32
roundoff relative to each value's size plus 1e-7 absolute, is what a correctly rounded
exp/log pipeline in float32 meets and the float32 running sum did not.
"""
from __future__ import annotations

import numpy as np
import pytest

from netdsl import ops
from netdsl.runtime import lib as L

from conftest import kcall, kernel_plan

pytestmark = pytest.mark.skipif(not L.available(), reason="C kernels not built")


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax"])
@pytest.mark.parametrize("shape", [(5000,), (3000, 2, 3)], ids=["vector-5000", "map-3000x2x3"])
def test_long_softmax_sums_accurately(op, shape, isa):
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((2, *shape)) * 3).astype(np.float32)
    want = ops.get(op).reference({}, [x.astype(np.float64)], {})
    _, _, out_shape, kc = kernel_plan(op, {}, [shape], 2)
    got = kcall(kc, [x], (2, *out_shape))
    err = np.abs(got.astype(np.float64) - want)
    bound = 4 * np.finfo(np.float32).eps * np.abs(want) + 1e-7
    assert (err <= bound).all(), f"max error {err.max():.3g} at {np.unravel_index(err.argmax(), err.shape)}"
