"""Backward rules and training forwards of the pools, BatchNorm, LRN and Dropout.

Kernels: csrc/kernels/train_pool.c (pools) and train_norm.c (BatchNorm, LRN, Dropout); the
float64 oracles are ref_pool.py. What each rule emits (tokens as in registry.py):

    MaxPool, MinPool     dx0 <- (x0, dy)      the winner is recomputed from x (PyTorch's tie rule)
    AvgPool              dx0 <- (dy)
    GlobalAvgPool        dx0 <- (dy)          GlobalMaxPool  dx0 <- (x0, dy)
    StochasticPool       train forward x0 -> y, saved = sampled tap per window (seeded)
                         dx0 <- (dy, saved)
    BatchNorm            train forward (x0, buffers), w = params -> y, saved = mean[C], inv_std[C];
                         running stats updated in place (momentum: the op's attr, else 0.1)
                         dx0 <- (x0, dy, saved), w = params;  dparams <- (x0, dy, saved)
    LRN                  dx0 <- (x0, dy)
    Dropout              train forward x0 -> y, saved = scale per value (0 or 1/(1-p)) (seeded)
                         dx0 <- (dy, saved)

The window pools' params are their forward builder's (runtime/kparams/pool.py), so the
backward sees exactly the forward's geometry and the same plan-time checks. Not here:
eval-mode (frozen) BatchNorm backward, BatchNorm with a fused activation (the training
graph is unfused; such a node is refused).
"""
from __future__ import annotations

import math

from ..runtime.executor import PlanError
from ..runtime.kparams import KernelCall, builder
from .registry import Bwd, TrainForward, backward, train_forward
from .ref_pool import MOMENTUM

LRN_RING = 4096     # csrc/kernels/train_norm.c RING: the LRN backward holds min(size, C) channels
MAX_TAPS = 1 << 24  # StochasticPool saves a tap index as a float: exact below 2^24


def _forward_fields(op, a, in_shapes, out_shape, n):
    return dict(builder(op)(a, in_shapes, out_shape, n).fields)


def _dx_floats(in_shapes, n):
    return n * math.prod(in_shapes[0])


def _window_pool_rule(op, ins):
    sym = f"nd_{op.lower()}_bwd_data_f32"

    def rule(a, in_shapes, out_shape, n, need):
        if "dx0" not in need:
            return []
        call = KernelCall(sym, "nd_pool_params", _forward_fields(op, a, in_shapes, out_shape, n), weights=(None, None))
        return [Bwd(call, "dx0", ins, out_floats=_dx_floats(in_shapes, n))]
    rule.__name__ = f"{op.lower()}_backward"
    return rule


backward("MaxPool")(_window_pool_rule("MaxPool", ("x0", "dy")))
backward("MinPool")(_window_pool_rule("MinPool", ("x0", "dy")))
backward("AvgPool")(_window_pool_rule("AvgPool", ("dy",)))
backward("StochasticPool")(_window_pool_rule("StochasticPool", ("dy", "saved")))


def _global_rule(op, ins):
    sym = f"nd_{op.lower()}_bwd_data_f32"

    def rule(a, in_shapes, out_shape, n, need):
        if "dx0" not in need:
            return []
        call = KernelCall(sym, "nd_globalpool_params", _forward_fields(op, a, in_shapes, out_shape, n),
                          weights=(None, None))
        return [Bwd(call, "dx0", ins, out_floats=_dx_floats(in_shapes, n))]
    rule.__name__ = f"{op.lower()}_backward"
    return rule


backward("GlobalAvgPool")(_global_rule("GlobalAvgPool", ("dy",)))
backward("GlobalMaxPool")(_global_rule("GlobalMaxPool", ("x0", "dy")))


@train_forward("StochasticPool")
def stochasticpool_train(a, in_shapes, out_shape, n):
    """Sample one cell per window with p_i = a+_i / sum(a+); saved = the tap (i*kw + j, -1: none)."""
    f = _forward_fields("StochasticPool", a, in_shapes, out_shape, n)
    if f["kh"] * f["kw"] > MAX_TAPS:
        raise PlanError(f"StochasticPool: a {f['kh']}x{f['kw']} window has more than 2^24 taps; training "
                        f"saves the sampled tap as a float, exact only below that", hint="use a smaller window")
    f.pop("count_include_pad")
    f["seed"] = 0
    call = KernelCall("nd_stochasticpool_train_f32", "nd_stochasticpool_train_params", f, weights=(None, None))
    return TrainForward(call, ("x0",), saved_floats=n * math.prod(out_shape), seeded=True)


def _bn_fields(a, in_shapes, n):
    s = in_shapes[0]
    c, hw = s[0], math.prod(s[1:])
    if a.get("act", "none") != "none":
        raise PlanError(f"BatchNorm with a fused activation ({a['act']}) cannot be trained: the training graph "
                        f"is unfused", hint="write the activation as its own layer")
    if n * hw < 2:
        raise PlanError(f"BatchNorm training needs more than one value per channel (batch {n} x {hw} "
                        f"per channel): the batch variance of one value is undefined",
                        hint="train with a batch of at least 2")
    return dict(n=n, c=c, hw=hw)


@train_forward("BatchNorm")
def batchnorm_train(a, in_shapes, out_shape, n):
    """Batch statistics; running mean / unbiased var updated in place in "buffers"."""
    f = _bn_fields(a, in_shapes, n)
    f.update(eps=float(a["eps"]), momentum=float(a.get("momentum", MOMENTUM)))
    call = KernelCall("nd_batchnorm_train_f32", "nd_batchnorm_train_params", f, weights=(None, None))
    return TrainForward(call, ("x0", "buffers"), w="params", saved_floats=2 * f["c"])


@backward("BatchNorm")
def batchnorm_backward(a, in_shapes, out_shape, n, need):
    """dx0 (needs gamma: w = params) and dparams = (dgamma, dbeta), from the saved mean, inv_std."""
    f = _bn_fields(a, in_shapes, n)
    out = []
    if "dx0" in need:
        out.append(Bwd(KernelCall("nd_batchnorm_bwd_data_f32", "nd_batchnorm_bwd_params", f, weights=(None, None)),
                       "dx0", ("x0", "dy", "saved"), w="params", out_floats=_dx_floats(in_shapes, n)))
    if "dparams" in need:
        out.append(Bwd(KernelCall("nd_batchnorm_bwd_params_f32", "nd_batchnorm_bwd_params", dict(f),
                                  weights=(None, None)),
                       "dparams", ("x0", "dy", "saved"), out_floats=2 * f["c"]))
    return out


@backward("LRN")
def lrn_backward(a, in_shapes, out_shape, n, need):
    if "dx0" not in need:
        return []
    f = _forward_fields("LRN", a, in_shapes, out_shape, n)
    if min(f["size"], f["c"]) > LRN_RING:
        raise PlanError(f"LRN backward: size {f['size']} over {f['c']} channels; the kernel holds at most "
                        f"{LRN_RING} channels of the window", hint=f"use size <= {LRN_RING}")
    call = KernelCall("nd_lrn_bwd_data_f32", "nd_lrn_params", f, weights=(None, None))
    return [Bwd(call, "dx0", ("x0", "dy"), out_floats=_dx_floats(in_shapes, n))]


@train_forward("Dropout")
def dropout_train(a, in_shapes, out_shape, n):
    """Keep each value with probability 1 - p, scaled by 1/(1-p); saved = that scale per value."""
    size = math.prod(in_shapes[0])
    call = KernelCall("nd_dropout_train_f32", "nd_dropout_train_params",
                      dict(n=n, size=size, p=float(a["p"]), seed=0), weights=(None, None))
    return TrainForward(call, ("x0",), saved_floats=n * size, seeded=True)


@backward("Dropout")
def dropout_backward(a, in_shapes, out_shape, n, need):
    if "dx0" not in need:
        return []
    size = math.prod(in_shapes[0])
    call = KernelCall("nd_dropout_bwd_data_f32", "nd_dropout_bwd_params", dict(n=n, size=size), weights=(None, None))
    return [Bwd(call, "dx0", ("dy", "saved"), out_floats=n * size)]
