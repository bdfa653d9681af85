"""PReLU: a ReLU whose negative slope is learned (He et al. 2015), y = x if x > 0 else a·x.

One slope per channel by default (the paper's channel-wise form; channel = axis 1, so a
vector (F,) has F slopes), or one shared by every channel with `PReLU(1)`. The slopes are
the learned parameter `weight`, shape (num_parameters,) as in torch.nn.PReLU, initialized
to 0.25 as PyTorch does. NaN stays NaN (NaN > 0 is false and a·NaN is NaN), as in PyTorch.
Note: PyTorch's own default is num_parameters=1; write PReLU(1) to match an nn.PReLU().

This file, csrc/kernels/prelu.{c,h}, netdsl/runtime/kparams/prelu.py and
tests/ops/test_prelu.py are the whole op (docs/CONTRIBUTING.md walks through them).
"""
from __future__ import annotations

import numpy as np

from . import register
from .attrs import Attr, OpError, fmt, pos_int
from .geometry import need_rank
from .spec import OpSpec


def _slopes(v, name):
    """`channels` (one slope per channel) or a positive count."""
    if isinstance(v, str) and v.lower() == "channels":
        return "channels"
    try:
        return pos_int(v, name)
    except OpError:
        raise OpError(f"'{name}' must be channels (one slope per channel) or 1 (one shared slope), "
                      f"got {fmt(v)}", hint=f"write PReLU or PReLU({name}=1)") from None


@register
class PReLU(OpSpec):
    name = "PReLU"
    doc = "x for x > 0, a·x below, with a learned slope a per channel (or one shared: PReLU(1))."
    flags = frozenset({"elementwise", "inplace_ok", "has_weights"})
    attrs = (Attr("num_parameters", _slopes, "channels",
                  "learned slopes: channels (one per channel) or 1 (one for all)"),)
    samples = (({}, [(3, 5, 7)]), (dict(num_parameters=1), [(2, 5, 7)]), ({}, [(13,)]))

    def example(self):
        return "PReLU(1)"

    def resolve(self, a, shapes):
        need_rank(shapes[0], (1, 3), self.name)
        a = dict(a)
        c = shapes[0][0]
        k = c if a["num_parameters"] == "channels" else a["num_parameters"]
        if k not in (1, c):
            raise OpError(f"{k} slopes (num_parameters={k}) but the input has {c} channels",
                          attr="num_parameters",
                          hint=f"write PReLU (one slope per channel: {c}) or PReLU(1) (one shared slope)")
        a["num_parameters"] = k
        return a

    def params(self, a, shapes):
        return {"weight": (a["num_parameters"],)}

    def init(self, a, shapes, rng):
        return {"weight": np.full((a["num_parameters"],), 0.25, np.float32)}

    def explain(self, a, shapes, out):
        k, c = a["num_parameters"], shapes[0][0]
        who = f"one learned slope a per channel: params {k:,}" if k == c else \
            f"one learned slope a shared by the {c:,} channels: params 1"
        return [f"y = x if x > 0 else a·x, {who}"]

    def reference(self, a, xs, w):
        x = xs[0]
        slope = np.asarray(w["weight"]).reshape((1, -1) + (1,) * (x.ndim - 2))
        # `x > 0` keeps NaN: NaN fails the test and a·NaN is NaN
        return np.where(x > 0, x, x * slope).astype(np.result_type(x, w["weight"]), copy=False)
