"""Params for csrc/kernels/activation.c: ReLU, LeakyReLU, Sigmoid, Tanh.

Element-wise, so the shape collapses to a count per sample; the kernels are
in-place safe (the specs carry `inplace_ok`).
"""
from __future__ import annotations

import math

from . import KernelCall, kparams


def _act(name):
    def build(a, in_shapes, out_shape, n):
        fields = dict(n=n, size=math.prod(in_shapes[0]), slope=float(a.get("slope", 0.0)))
        return KernelCall(f"nd_{name}_f32", f"nd_{name}_params", fields, weights=(None, None))
    build.__name__ = f"{name}_params"
    return build


for _op in ("ReLU", "LeakyReLU", "Sigmoid", "Tanh"):
    kparams(_op)(_act(_op.lower()))
