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


def _flat(in_shapes, n):
    return dict(n=n, size=math.prod(in_shapes[0]))


def _bound(v, inf):
    return inf if v is None else float(v)


@kparams("Clip")
def clip_params(a, in_shapes, out_shape, n):
    fields = dict(_flat(in_shapes, n), lo=_bound(a.get("min"), -math.inf), hi=_bound(a.get("max"), math.inf))
    return KernelCall("nd_clip_f32", "nd_clip_params", fields, weights=(None, None))


@kparams("ReLU6")
def relu6_params(a, in_shapes, out_shape, n):
    return KernelCall("nd_clip_f32", "nd_clip_params", dict(_flat(in_shapes, n), lo=0.0, hi=6.0),
                      weights=(None, None))


@kparams("Hardtanh")
def hardtanh_params(a, in_shapes, out_shape, n):
    fields = dict(_flat(in_shapes, n), lo=float(a["min_val"]), hi=float(a["max_val"]))
    return KernelCall("nd_clip_f32", "nd_clip_params", fields, weights=(None, None))


@kparams("HardSigmoid")
def hardsigmoid_params(a, in_shapes, out_shape, n):
    fields = dict(_flat(in_shapes, n), alpha=float(a["alpha"]), beta=float(a["beta"]))
    return KernelCall("nd_hardsigmoid_f32", "nd_hardsigmoid_params", fields, weights=(None, None))


def _actfn(enum_of):
    def build(a, in_shapes, out_shape, n):
        from .. import lib as _lib
        fields = dict(_flat(in_shapes, n), act=getattr(_lib.lib, enum_of(a)))
        return KernelCall("nd_actfn_f32", "nd_actfn_params", fields, weights=(None, None))
    return build


# HardSwish, SiLU, GELU, Mish: the fused epilogue's code run alone (nd_actfn_f32, by its nd_act)
kparams("HardSwish")(_actfn(lambda a: "ND_ACT_HARDSWISH"))
kparams("SiLU")(_actfn(lambda a: "ND_ACT_SILU"))
kparams("GELU")(_actfn(lambda a: "ND_ACT_GELU_TANH" if a.get("approximate") == "tanh" else "ND_ACT_GELU"))
kparams("Mish")(_actfn(lambda a: "ND_ACT_MISH"))
