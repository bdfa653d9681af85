"""Params for csrc/kernels/norm.c: BatchNorm (folded) and LRN.

BatchNorm's kernel takes scale and shift, not the four PyTorch tensors: the
builder cannot see weight values, so it returns `extra["prepare_weights"]`, a
function params-dict -> (w, bias) arrays that the executor calls once at
plan/load time and passes as the kernel's w and bias:
    scale = weight / sqrt(running_var + eps),  shift = bias - running_mean * scale
computed in float64 and rounded once to float32.
"""
from __future__ import annotations

import math

import numpy as np

from . import KernelCall, kparams
from .conv import act_code


def batchnorm_scale_shift(eps):
    """The fold as a function of the node's parameter dict."""
    def prepare(w):
        var = np.asarray(w["running_var"], np.float64)
        scale = np.asarray(w["weight"], np.float64) / np.sqrt(var + eps)
        shift = np.asarray(w["bias"], np.float64) - np.asarray(w["running_mean"], np.float64) * scale
        return scale.astype(np.float32), shift.astype(np.float32)
    return prepare


@kparams("BatchNorm")
def batchnorm(a, in_shapes, out_shape, n):
    s = in_shapes[0]
    fields = dict(n=n, c=s[0], hw=math.prod(s[1:]), act=act_code(a, "BatchNorm"))
    return KernelCall("nd_batchnorm_f32", "nd_batchnorm_params", fields, weights=("scale", "shift"),
                      extra={"prepare_weights": batchnorm_scale_shift(a["eps"])})


@kparams("LRN")
def lrn(a, in_shapes, out_shape, n):
    s = in_shapes[0]
    fields = dict(n=n, c=s[0], hw=math.prod(s[1:]), size=a["size"],
                  alpha=float(a["alpha"]), beta=float(a["beta"]), k=float(a["k"]))
    return KernelCall("nd_lrn_f32", "nd_lrn_params", fields, weights=(None, None))
