"""Backward rules of the element-wise, merge and shape ops (kernels: csrc/kernels/train_act.c,
train_merge.c, train_resize.c).

    ReLU LeakyReLU Sigmoid Tanh Clip ReLU6 Hardtanh HardSigmoid HardSwish SiLU GELU Mish
    PReLU (dx0, dparams) Softmax LogSoftmax
    Add Mul (n inputs, per-channel / per-sample operands) Concat (any axis) Slice
    Upsample (nearest, bilinear) Pad (constant, reflect, replicate) Crop (dx1: zeros)

The one-input kernels take their forward op's params struct (a typedef in the train_*.h
headers), so the rule asks the forward builder (runtime/kparams) for the fields and only
swaps the symbol: the backward cannot disagree with the forward about a size or a mode.
Add/Mul and Concat derive theirs from the same shapes plus which input (`wrt`, the block's
offset). Kernel inputs are "dy" first, then what the derivative reads. Activations read the cheapest tensor that gives
PyTorch's exact result: "y" where the derivative is a function of the output (ReLU,
LeakyReLU with slope >= 0, Sigmoid, Tanh, ReLU6, Hardtanh, Softmax, LogSoftmax), "x0"
otherwise (a negative LeakyReLU slope; Clip, whose bounds pass dy, so y = lo cannot tell
x = lo from x < lo; HardSigmoid, whose interval is in x and would round in y; the x-times
ones; PReLU). The training planner keeps what a rule reads and does
not run a forward in place over an input its backward reads.

Not here: the views (Flatten, Reshape, Identity: their gradient is dy itself), Dropout
(its training forward and mask), Add with a fused `act` (the training graph is unfused;
a written Add(act=...) is refused with a PlanError saying to write the activation apart).
"""
from __future__ import annotations

import math

from ..runtime.executor import PlanError
from ..runtime.kparams import KernelCall, builder
from .registry import Bwd, backward


def _fields(op, a, in_shapes, out_shape, n):
    return dict(builder(op)(a, in_shapes, out_shape, n).fields)


def _call(symbol, struct, fields, ws_floats=0):
    return KernelCall(symbol, struct, fields, ws_floats=ws_floats, weights=(None, None))


def _check_need(op, need, allowed):
    extra = set(need) - set(allowed)
    if extra:
        raise ValueError(f"{op} has no gradient {', '.join(sorted(extra))} (it has {', '.join(allowed)})")


def _unary(op, symbol, struct, reads):
    """One dx0 kernel on (dy, reads) with the forward's fields; `reads` may depend on the attrs."""
    def rule(a, in_shapes, out_shape, n, need):
        _check_need(op, need, ("dx0",))
        if "dx0" not in need:
            return []
        tok = reads(a) if callable(reads) else reads
        call = _call(symbol, struct, _fields(op, a, in_shapes, out_shape, n))
        return [Bwd(call, "dx0", ("dy", tok))]
    rule.__name__ = f"{op.lower()}_bwd"
    return backward(op)(rule)


_unary("ReLU", "nd_relu_bwd_data_f32", "nd_relu_bwd_params", "y")
# y > 0 exactly when x > 0 for a slope >= 0 (and y is NaN exactly when the kernel's x·slope is)
_unary("LeakyReLU", "nd_leakyrelu_bwd_data_f32", "nd_leakyrelu_bwd_params",
       lambda a: "y" if a.get("slope", 0.01) >= 0 else "x0")
_unary("Sigmoid", "nd_sigmoid_bwd_data_f32", "nd_sigmoid_bwd_params", "y")
_unary("Tanh", "nd_tanh_bwd_data_f32", "nd_tanh_bwd_params", "y")
_unary("Clip", "nd_clip_bwd_data_f32", "nd_clip_bwd_params", "x0")         # torch.clamp: bounds pass dy
_unary("ReLU6", "nd_hardtanh_bwd_data_f32", "nd_hardtanh_bwd_params", "y")   # hardtanh: bounds give 0
_unary("Hardtanh", "nd_hardtanh_bwd_data_f32", "nd_hardtanh_bwd_params", "y")
_unary("HardSigmoid", "nd_hardsigmoid_bwd_data_f32", "nd_hardsigmoid_bwd_params", "x0")
for _op in ("HardSwish", "SiLU", "GELU", "Mish"):
    _unary(_op, "nd_actfn_bwd_data_f32", "nd_actfn_bwd_params", "x0")
_unary("Softmax", "nd_softmax_bwd_data_f32", "nd_softmax_bwd_params", "y")
_unary("LogSoftmax", "nd_logsoftmax_bwd_data_f32", "nd_logsoftmax_bwd_params", "y")


@backward("PReLU")
def prelu_bwd(a, in_shapes, out_shape, n, need):
    """dx0 = dy (x > 0 ? 1 : slope); dparams = the slopes' gradient (num_parameters floats)."""
    _check_need("PReLU", need, ("dx0", "dparams"))
    f = _fields("PReLU", a, in_shapes, out_shape, n)
    out = []
    if "dx0" in need:
        out.append(Bwd(_call("nd_prelu_bwd_data_f32", "nd_prelu_bwd_params", f), "dx0", ("dy", "x0"), w="params"))
    if "dparams" in need:
        ws = f["c"] if f["nw"] == 1 else 0          # one shared slope: per-channel partial sums
        out.append(Bwd(_call("nd_prelu_bwd_params_f32", "nd_prelu_bwd_params", f, ws), "dparams", ("dy", "x0"),
                       out_floats=f["nw"]))      # the slopes' gradient does not read the slopes
    return out


def _inputs(need, k, op):
    _check_need(op, need, tuple(f"dx{i}" for i in range(k)))
    return [i for i in range(k) if f"dx{i}" in need]


def _bcast_code(s, out_shape):
    """0 full, 1 one value per channel, 2 one value per sample (the forward kernel's codes)."""
    s, out_shape = tuple(s), tuple(out_shape)
    c = out_shape[0]
    if s == out_shape:
        return 0
    if s in ((c, 1, 1), (c,)):
        return 1
    if s in ((1, 1, 1), (1,)):
        return 2
    raise PlanError(f"input shape {s} neither matches the output {out_shape} nor is per-channel or per-sample")


def _eltwise(op, symbol):
    def rule(a, in_shapes, out_shape, n, need):
        if a.get("act", "none") not in (None, "none"):
            raise PlanError(f"{op}(act={a['act']}) cannot be trained as one step: its backward needs the "
                            f"sum before the activation",
                            hint=f"write the {op} and the activation as two layers (training graphs are unfused)")
        k = len(in_shapes)
        if k > 128:
            raise PlanError(f"{op} with {k} inputs: the kernel takes at most 128")
        bcast = [_bcast_code(s, out_shape) for s in in_shapes]
        base = dict(n=n, c=out_shape[0], hw=math.prod(out_shape[1:]), ninputs=k, bcast=bcast)
        out = []
        for i in _inputs(need, k, op):
            ins = ("dy",) if op == "Add" else ("dy",) + tuple(f"x{j}" for j in range(k) if j != i)
            out.append(Bwd(_call(symbol, "nd_eltwise_bwd_params", dict(base, wrt=i)), f"dx{i}", ins))
        return out
    rule.__name__ = f"{op.lower()}_bwd"
    return backward(op)(rule)


_eltwise("Add", "nd_add_bwd_data_f32")
_eltwise("Mul", "nd_mul_bwd_data_f32")


@backward("Concat")
def concat_bwd(a, in_shapes, out_shape, n, need):
    """dx_i = input i's block of dy along the joined axis."""
    f = _fields("Concat", a, in_shapes, out_shape, n)
    inner = f["inner"]
    total = sum(inner)
    out = []
    for i in _inputs(need, len(in_shapes), "Concat"):
        fields = dict(n=f["n"], total=total, off=sum(inner[:i]), inner=inner[i])
        out.append(Bwd(_call("nd_concat_bwd_data_f32", "nd_concat_bwd_params", fields), f"dx{i}", ("dy",)))
    return out


def _shape_op(op, symbol, struct):
    def rule(a, in_shapes, out_shape, n, need):
        _check_need(op, need, tuple(f"dx{i}" for i in range(len(in_shapes))))
        out = []
        if "dx0" in need:
            out.append(Bwd(_call(symbol, struct, _fields(op, a, in_shapes, out_shape, n)), "dx0", ("dy",)))
        if "dx1" in need:   # Crop's second input gives only the size: the output does not depend on it
            zero = dict(n=n, size=math.prod(in_shapes[1]))
            out.append(Bwd(_call("nd_zero_bwd_f32", "nd_zero_bwd_params", zero), "dx1", ()))
        return out
    rule.__name__ = f"{op.lower()}_bwd"
    return backward(op)(rule)


_shape_op("Slice", "nd_slice_bwd_data_f32", "nd_slice_bwd_params")
_shape_op("Upsample", "nd_upsample_bwd_data_f32", "nd_upsample_bwd_params")
_shape_op("Pad", "nd_pad_bwd_data_f32", "nd_pad_bwd_params")
_shape_op("Crop", "nd_crop_bwd_data_f32", "nd_crop_bwd_params")
