"""Export a checked netdsl graph with its weights to ONNX.

    model = to_model(graph, state, opset=None, dynamic_batch=True)   # an onnx.ModelProto, checked
    export(graph, state, "model.onnx", ...)                          # the same, written to a file

What is exported is the graph as the user wrote it (`Model.graph`, not the optimized one), so
the file reads like the `.net` source and imports back to it: BatchNorm stays a
BatchNormalization (its running statistics are initializers), Dropout an Identity, and a
layer's fused epilogue (`act=relu`, `residual=true`) becomes separate ONNX nodes after the
layer (Conv, Add, Relu): ONNX has no fused form, and every runtime fuses them again itself.
A graph that was optimized already (a `.netc` bundle's) exports just the same: its folded
weights and fused layers are what it holds.

Names: the ONNX node that computes a layer is named after the layer and its output tensor
is the layer's name; the helper nodes a layer needs are `layer/Op_k` (ONNX Runtime's profiler
then charges them to the layer: benchmarks/compare.py reads the part before the "/"). The
initializers are the state-dict keys (`conv1.weight`, `bn1.running_var`) in netdsl's layouts,
which are PyTorch's, so weights keep their names through an export and an import. The graph
inputs are the Input layers; the graph outputs are the `output` names of the file.

The batch dimension is the symbolic `N` unless a fixed batch is asked for. Every layer's
output gets a value_info with netdsl's shape, so the checker's strict shape inference
(full_check) compares netdsl's shape arithmetic with ONNX's on every tensor before the file is
written: a disagreement (a ceil_mode rule, a padding convention) is an export error, never a
file that runs to the wrong size.

The per-op table `EMIT` maps a netdsl op name to a small function (ctx, attrs, inputs) ->
output tensor that follows the op's spec in netdsl/ops/; activations are one table `ACTS`
shared by the standalone ops and the fused `act=` epilogues. Ops without an ONNX twin are
written as exact subgraphs: MinPool = −MaxPool(−x); StochasticPool (inference) =
Σa⁺²/Σa⁺ from two AveragePools; Local (unshared weights) = the window taps cut by Slice,
then one batched MatMul per output position; LRN with an even size (ONNX centres the window
the other way, and ONNX Runtime refuses it) = x / (k + α·mean(x²))^β with the mean an
AveragePool over the channel axis; Softmax over channels before opset 13 (which flattened
everything after the axis) = Transpose, Softmax over the last axis, Transpose. The
detection heads YoloDecode and RegionDecode = their formulas (netdsl/ops/detect.py) on the
head reshaped to (N, A, 5+K, H, W): Sigmoid/Exp, the cell grid and the anchors as constant
initializers, RegionDecode's Softmax over the classes, then Transpose and Reshape to netdsl's
rows (N, A·H·W, 5+K). Pools whose
padding ONNX cannot say (PyTorch's ceil_mode rule, a pad as large as the kernel) get an
explicit Pad; activations newer than the asked opset (HardSwish 14, Mish 18, GELU 20) are
written as their formula.

Layering: this module reads graphs, specs and errors only; `onnx` is imported inside the
functions (an optional extra).
"""
from __future__ import annotations

import math
import os

import numpy as np

from ..ops import activations as _acts
from .common import InteropError, optional

OPSET_MIN = 11          # Resize, Pad and Clip take their sizes as inputs from 11 on
# The default: opset 21 (ir_version 10), which ONNX Runtime 1.18+ and onnx 1.16+ read. The
# installed onnx 1.23 knows 28 and ONNX Runtime 1.32 runs every netdsl op at each of 11..28
# (tests/interop/test_onnx_export.py), but a file at 28 needs ir_version 14, which only the
# newest runtimes load; nothing netdsl writes gains from an opset past 20 (GELU). --opset 28.
OPSET_DEFAULT = 21
MAX_PROTO = 2 ** 31 - 2 ** 24   # protobuf's 2 GB limit, with room for the graph: bigger goes external

# ---------------------------------------------------------------- the builder


class _Ctx:
    """What an emitter writes into: ONNX nodes, initializers and constants for one layer at
    a time (`node` is the netdsl node being exported, `shapes` its inputs' shapes without
    the batch)."""

    def __init__(self, helper, numpy_helper, opset, state):
        self.helper, self.nh, self.opset, self.state = helper, numpy_helper, opset, state
        self.nodes, self.inits = [], []
        self.node = None
        self.shapes = []
        self._k = 0

    @property
    def name(self):
        return self.node.name

    def fresh(self, base):
        self._k += 1
        return f"{self.name}/{base}_{self._k}"

    def op(self, op_type, inputs, main=False, **attrs):
        """Append one ONNX node; returns its output tensor. The layer's principal node
        (`main`) carries the layer's name."""
        out = self.fresh(op_type)
        name = self.name if main else out
        self.nodes.append(self.helper.make_node(op_type, list(inputs), [out], name=name, **attrs))
        return out

    def const(self, base, arr):
        """A constant initializer named `layer/base_k`."""
        nm = self.fresh(base)
        self.inits.append(self.nh.from_array(np.asarray(arr), nm))
        return nm

    def ints(self, base, values):
        return self.const(base, np.array(list(values), np.int64))

    def weight(self, key):
        """The initializer of this layer's parameter `key` (weight, bias, running_mean, ...)."""
        full = f"{self.name}.{key}"
        return full if full in self.state else None

    def need(self, opset, what, hint=None):
        """Refuse, naming the layer, when the asked opset is older than `opset`."""
        if self.opset < opset:
            raise InteropError(f"{self.name} ({self.node.op}): {what} needs ONNX opset {opset}, "
                               f"and opset {self.opset} was asked for", span=self.node.span,
                               hint=hint or f"export with --opset {opset} (or newer)")

    def refuse(self, what, hint=None):
        raise InteropError(f"{self.name} ({self.node.op}): {what}", span=self.node.span, hint=hint)

    # -- ops whose signature changed between opsets
    def unsqueeze(self, x, axes):
        if self.opset >= 13:
            return self.op("Unsqueeze", [x, self.ints("axes", axes)])
        return self.op("Unsqueeze", [x], axes=list(axes))

    def softmax(self, kind, x, axis, rank, main=False):
        """Softmax/LogSoftmax over one axis. Before opset 13 ONNX flattened every axis from
        `axis` on into one distribution, so a non-last axis is moved last and back."""
        if self.opset >= 13 or axis == rank - 1:
            return self.op(kind, [x], main=main, axis=axis)
        perm = [i for i in range(rank) if i != axis] + [axis]
        back = [perm.index(i) for i in range(rank)]
        y = self.op(kind, [self.op("Transpose", [x], perm=perm)], axis=rank - 1)
        return self.op("Transpose", [y], main=main, perm=back)

    def resize(self, x, main=False, scales=None, sizes=None, **attrs):
        """Resize by `scales` (a float list over all four axes) or to `sizes` (a tensor). Before
        opset 13 roi and scales are required inputs (empty when unused)."""
        old = self.opset < 13
        roi = self.const("roi", np.zeros(0, np.float32)) if old else ""
        if scales is not None:
            return self.op("Resize", [x, roi, self.const("scales", np.array(scales, np.float32))],
                           main=main, **attrs)
        no_scales = self.const("scales", np.zeros(0, np.float32)) if old else ""
        return self.op("Resize", [x, roi, no_scales, sizes], main=main, **attrs)


def emits(*names):
    """Register an emitter for the netdsl ops `names`."""
    def deco(fn):
        for n in names:
            EMIT[n] = fn
        return fn
    return deco


def act(*names):
    """Register an activation (a name of netdsl/ops/activations.py's table) as ONNX nodes:
    fn(ctx, x, params, main) -> tensor. Standalone op and fused `act=` share it."""
    def deco(fn):
        for n in names:
            ACTS[n] = fn
        return fn
    return deco


EMIT: dict = {}
ACTS: dict = {}


def epilogue(ctx, y, a):
    """A layer's fused activation, as its own node after the layer."""
    kind = a.get("act") or _acts.NONE
    if kind == _acts.NONE:
        return y
    if kind not in ACTS:
        ctx.refuse(f"no ONNX mapping for the fused activation act={kind}",
                   hint="write the activation as its own layer, or add it to onnx_export.ACTS")
    return ACTS[kind](ctx, y, dict(_acts.get(kind).fixed), False)


def _main_then_act(ctx, a, op_type, inputs, residual=None, **attrs):
    """The layer's node, then (when fused) its residual Add and its activation."""
    fused = (a.get("act") or _acts.NONE) != _acts.NONE or residual is not None
    y = ctx.op(op_type, inputs, main=True, **attrs)
    if residual is not None:
        y = ctx.op("Add", [y, residual])
    return epilogue(ctx, y, a) if fused else y


# ---------------------------------------------------------------- activations

@act("relu")
def _relu(ctx, x, p, main):
    return ctx.op("Relu", [x], main=main)


@act("leakyrelu")
def _leaky(ctx, x, p, main):
    return ctx.op("LeakyRelu", [x], main=main, alpha=float(p["slope"]))


@act("sigmoid")
def _sigmoid(ctx, x, p, main):
    return ctx.op("Sigmoid", [x], main=main)


@act("tanh")
def _tanh(ctx, x, p, main):
    return ctx.op("Tanh", [x], main=main)


def _f32(ctx, base, v):
    return ctx.const(base, np.array(v, np.float32))


def _clip(ctx, x, lo, hi, main):
    """min(max(x, lo), hi), a bound None for none (Clip's bounds are inputs from opset 11)."""
    lo = "" if lo is None else _f32(ctx, "min", lo)
    hi = [] if hi is None else [_f32(ctx, "max", hi)]
    return ctx.op("Clip", [x, lo] + hi, main=main)


@act("relu6")
def _relu6(ctx, x, p, main):
    return _clip(ctx, x, 0.0, 6.0, main)


@act("hardsigmoid")
def _hardsigmoid(ctx, x, p, main):
    return ctx.op("HardSigmoid", [x], main=main, alpha=float(p["alpha"]), beta=float(p["beta"]))


@act("hardswish")
def _hardswish(ctx, x, p, main):
    if ctx.opset >= 14:
        return ctx.op("HardSwish", [x], main=main)
    return ctx.op("Mul", [x, ctx.op("HardSigmoid", [x], alpha=1 / 6, beta=0.5)], main=main)


@act("silu")
def _silu(ctx, x, p, main):
    return ctx.op("Mul", [x, ctx.op("Sigmoid", [x])], main=main)


@act("gelu")
def _gelu(ctx, x, p, main):
    approx = p.get("approximate", "none")
    if ctx.opset >= 20:
        return ctx.op("Gelu", [x], main=main, approximate=approx)
    if approx == "tanh":      # x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))/2
        cube = ctx.op("Mul", [ctx.op("Mul", [x, x]), x])
        inner = ctx.op("Add", [x, ctx.op("Mul", [cube, _f32(ctx, "c", 0.044715)])])
        t = ctx.op("Tanh", [ctx.op("Mul", [inner, _f32(ctx, "k", math.sqrt(2 / math.pi))])])
    else:                     # x·(1 + erf(x/√2))/2
        t = ctx.op("Erf", [ctx.op("Mul", [x, _f32(ctx, "k", 1 / math.sqrt(2))])])
    half = ctx.op("Mul", [x, _f32(ctx, "half", 0.5)])
    return ctx.op("Mul", [half, ctx.op("Add", [t, _f32(ctx, "one", 1.0)])], main=main)


@act("mish")
def _mish(ctx, x, p, main):
    if ctx.opset >= 18:
        return ctx.op("Mish", [x], main=main)
    return ctx.op("Mul", [x, ctx.op("Tanh", [ctx.op("Softplus", [x])])], main=main)


@emits("Clip")
def _clip_op(ctx, a, ins):
    return _clip(ctx, ins[0], a["min"], a["max"], True)


@emits("Hardtanh")
def _hardtanh(ctx, a, ins):
    return _clip(ctx, ins[0], a["min_val"], a["max_val"], True)


def _pointwise(ctx, a, ins):
    """A standalone activation op (a Pointwise spec): its entry of ACTS with its attributes."""
    from .. import ops
    kind = ops.get(ctx.node.op).act
    return ACTS[kind](ctx, ins[0], {**dict(_acts.get(kind).fixed), **a}, True)


# ---------------------------------------------------------------- layers with weights

def _pads(a):
    return list(a["pad"])          # netdsl (top, left, bottom, right) = ONNX [x1_begin, x2_begin, x1_end, x2_end]


@emits("Conv")
def _conv(ctx, a, ins):
    w, b = ctx.weight("weight"), ctx.weight("bias")
    return _main_then_act(ctx, a, "Conv", [ins[0], w] + ([b] if b else []),
                          residual=ins[1] if a.get("residual") else None,
                          kernel_shape=list(a["kernel"]), strides=list(a["stride"]), pads=_pads(a),
                          dilations=list(a["dilation"]), group=a["groups"])


@emits("ConvTranspose")
def _deconv(ctx, a, ins):
    w, b = ctx.weight("weight"), ctx.weight("bias")
    return _main_then_act(ctx, a, "ConvTranspose", [ins[0], w] + ([b] if b else []),
                          kernel_shape=list(a["kernel"]), strides=list(a["stride"]), pads=_pads(a),
                          dilations=list(a["dilation"]), group=a["groups"],
                          output_padding=list(a["output_padding"]))


@emits("FC")
def _fc(ctx, a, ins):
    x = ins[0]
    if len(ctx.shapes[0]) != 1:
        x = ctx.op("Flatten", [x], axis=1)         # C-major, as netdsl's FC and PyTorch's flatten(1)
    w, b = ctx.weight("weight"), ctx.weight("bias")
    return _main_then_act(ctx, a, "Gemm", [x, w] + ([b] if b else []), transB=1)


@emits("BatchNorm")
def _bn(ctx, a, ins):
    return _main_then_act(ctx, a, "BatchNormalization",
                          [ins[0]] + [ctx.weight(k) for k in ("weight", "bias", "running_mean", "running_var")],
                          epsilon=float(a["eps"]))


@emits("PReLU")
def _prelu(ctx, a, ins):
    slope = ctx.weight("weight")                   # (C,) or (1,): per channel needs (C, 1, 1) on a map
    if len(ctx.shapes[0]) == 3 and a["num_parameters"] != 1:
        slope = ctx.op("Reshape", [slope, ctx.ints("shape", [-1, 1, 1])])
    return ctx.op("PRelu", [ins[0], slope], main=True)


@emits("Local")
def _local(ctx, a, ins):
    """Locally connected: y[n, o, p] = Σ_k W[p, o, k]·cols[n, k, p] + b[o, p], with cols the
    window taps in (channel, ki, kj) order (netdsl's weight layout, (P, OC, C·KH·KW)). The
    taps are strided Slices of the padded input (exact copies: no multiplication by zero,
    so inf and NaN stay where they were), and the product is one MatMul batched over P."""
    c = ctx.shapes[0][0]
    oc, oh, ow = ctx.node.shape
    (kh, kw), (sh, sw), (dh, dw) = a["kernel"], a["stride"], a["dilation"]
    x = ins[0]
    if any(a["pad"]):
        t, l, b, r = a["pad"]
        x = ctx.op("Pad", [x, ctx.ints("pads", [0, 0, t, l, 0, 0, b, r])], mode="constant")
    axes = ctx.ints("axes", [2, 3])
    steps = ctx.ints("steps", [sh, sw])
    taps = []
    for i in range(kh):
        for j in range(kw):
            y0, x0 = i * dh, j * dw
            tap = ctx.op("Slice", [x, ctx.ints("starts", [y0, x0]),
                                   ctx.ints("ends", [y0 + (oh - 1) * sh + 1, x0 + (ow - 1) * sw + 1]),
                                   axes, steps])
            taps.append(ctx.unsqueeze(tap, [2]))                      # (N, C, 1, OH, OW)
    cols = ctx.op("Concat", taps, axis=2) if len(taps) > 1 else taps[0]   # (N, C, KH·KW, OH, OW)
    cols = ctx.op("Reshape", [cols, ctx.ints("shape", [0, c * kh * kw, oh * ow])])   # (N, K, P)
    cols = ctx.op("Transpose", [cols], perm=[2, 0, 1])                # (P, N, K)
    w = ctx.op("Transpose", [ctx.weight("weight")], perm=[0, 2, 1])  # (P, K, OC)
    y = ctx.op("MatMul", [cols, w])                                   # (P, N, OC)
    y = ctx.op("Transpose", [y], perm=[1, 2, 0])                      # (N, OC, P)
    b = ctx.weight("bias")
    if b is None:
        return ctx.op("Reshape", [y, ctx.ints("shape", [0, oc, oh, ow])], main=True)
    y = ctx.op("Reshape", [y, ctx.ints("shape", [0, oc, oh, ow])])
    return ctx.op("Add", [y, b], main=True)                           # bias (OC, OH, OW)


# ---------------------------------------------------------------- normalization

@emits("LRN")
def _lrn(ctx, a, ins):
    """ONNX's LRN is PyTorch's for an odd size. For an even size the windows are mirror images
    (and ONNX Runtime refuses them): x / (k + alpha·mean(x²))^beta with the mean over
    PyTorch's channel window [c − size/2, c + size/2 − 1], an AveragePool over the channel
    axis of x² seen as (N, 1, C, H·W), zero-padded, dividing by size everywhere."""
    size, (c, h, w) = a["size"], ctx.shapes[0]
    alpha, beta, k = float(a["alpha"]), float(a["beta"]), float(a["k"])
    if size % 2:
        return ctx.op("LRN", [ins[0]], main=True, size=size, alpha=alpha, beta=beta, bias=k)
    x = ins[0]
    sq = ctx.op("Reshape", [ctx.op("Mul", [x, x]), ctx.ints("shape", [0, 1, c, h * w])])
    mean = ctx.op("AveragePool", [sq], kernel_shape=[size, 1], pads=[size // 2, 0, (size - 1) // 2, 0],
                  count_include_pad=1)
    mean = ctx.op("Reshape", [mean, ctx.ints("shape", [0, c, h, w])])
    den = ctx.op("Add", [ctx.const("k", np.array(k, np.float32)),
                         ctx.op("Mul", [mean, ctx.const("alpha", np.array(alpha, np.float32))])])
    den = ctx.op("Pow", [den, ctx.const("beta", np.array(beta, np.float32))])
    return ctx.op("Div", [x, den], main=True)


@emits("Softmax", "LogSoftmax")
def _softmax(ctx, a, ins):
    return ctx.softmax(ctx.node.op, ins[0], a.get("axis", 1), len(ctx.shapes[0]) + 1, main=True)


# ---------------------------------------------------------------- pooling

def _onnx_ceil_len(size, k, s, p0, p1):
    """ONNX's ceil_mode output length: it keeps a last window that starts in the end padding,
    which PyTorch (and netdsl) drop."""
    return -(-(size + p0 + p1 - k) // s) + 1


def _pool(ctx, kind, x, a, fill, include_pad=1):
    """A netdsl pool as the ONNX pool `kind` (MaxPool, or AveragePool with `include_pad`):
    returns (pool, native), pool(t, main) emitting it on t (x, or x padded). native False means
    the padding (netdsl's, plus ceil_mode's last partial window) went into a Pad node filled
    with `fill` and the pool has none — done when ONNX's ceil_mode would give another size
    than netdsl's, or when a pad is not smaller than the kernel (netdsl allows it while every
    window keeps a real cell; ONNX Runtime refuses it). An average then divides by the whole
    kernel everywhere (count_include_pad=1). A dilated average before opset 19 (AveragePool had no dilations) is
    a depthwise Conv with weights 1/(kh·kw)."""
    (kh, kw), (sh, sw) = a["kernel"], a["stride"]
    dil = tuple(a.get("dilation") or (1, 1))
    keh, kew = (kh - 1) * dil[0] + 1, (kw - 1) * dil[1] + 1
    t, l, b, r = a["pad"]
    c, h, w = ctx.shapes[0]
    _, oh, ow = ctx.node.shape
    attrs = dict(kernel_shape=[kh, kw], strides=[sh, sw])
    if dil != (1, 1):
        attrs["dilations"] = list(dil)
    conv = kind == "AveragePool" and dil != (1, 1) and ctx.opset < 19
    ceil_ok = not a.get("ceil_mode") or \
        (_onnx_ceil_len(h, keh, sh, t, b), _onnx_ceil_len(w, kew, sw, l, r)) == (oh, ow)
    native = ceil_ok and max(t, b) < kh and max(l, r) < kw and not conv
    if kind == "AveragePool" and not conv:
        attrs["count_include_pad"] = int(include_pad) if native else 1
    if native:
        attrs["pads"] = [t, l, b, r]
        if a.get("ceil_mode"):
            attrs["ceil_mode"] = 1
    else:
        eh = max((oh - 1) * sh + keh - (h + t + b), 0)
        ew = max((ow - 1) * sw + kew - (w + l + r), 0)
        x = ctx.op("Pad", [x, ctx.ints("pads", [0, 0, t, l, 0, 0, b + eh, r + ew]), _f32(ctx, "fill", fill)],
                   mode="constant")
    if conv:
        ones = ctx.const("mean", np.full((c, 1, kh, kw), 1.0 / (kh * kw), np.float32))
        return (lambda t_, main=False: ctx.op("Conv", [t_, ones], main=main, group=c, **attrs)), x, False
    return (lambda t_, main=False: ctx.op(kind, [t_], main=main, **attrs)), x, native


@emits("MaxPool")
def _maxpool(ctx, a, ins):
    pool, x, _ = _pool(ctx, "MaxPool", ins[0], a, -np.inf)
    return pool(x, main=True)


@emits("MinPool")
def _minpool(ctx, a, ins):
    pool, x, _ = _pool(ctx, "MaxPool", ctx.op("Neg", [ins[0]]), a, -np.inf)
    return ctx.op("Neg", [pool(x)], main=True)


def _taps(size, k, d, s, p0, p1, n_out, include_pad):
    """netdsl's AvgPool divisor along one axis: per output, the taps inside the padded input
    [-p0, size + p1) (PyTorch's rule), or on real cells only."""
    lo, hi = (-p0, size + p1) if include_pad else (0, size)
    starts = np.arange(n_out) * s - p0
    return np.array([sum(1 for i in range(k) if lo <= st + i * d < hi) for st in starts])


@emits("AvgPool")
def _avgpool(ctx, a, ins):
    pool, x, native = _pool(ctx, "AveragePool", ins[0], a, 0.0, a["count_include_pad"])
    if native:
        return pool(x, main=True)
    # the pool divided every window by the whole kernel: rescale to netdsl's divisor
    (kh, kw_), (sh, sw), (t, l, b, r) = a["kernel"], a["stride"], a["pad"]
    (dh, dw), (_, h, w), (_, oh, ow) = a.get("dilation") or (1, 1), ctx.shapes[0], ctx.node.shape
    inc = a["count_include_pad"]
    div = np.outer(_taps(h, kh, dh, sh, t, b, oh, inc), _taps(w, kw_, dw, sw, l, r, ow, inc))
    fix = ctx.const("divisor", (kh * kw_ / div).astype(np.float32)[None])
    return ctx.op("Mul", [pool(x), fix], main=True)


@emits("StochasticPool")
def _stochastic(ctx, a, ins):
    """Σ a⁺² / Σ a⁺ per window (a⁺ = max(a, 0); 0 where no cell is positive, +inf where one is
    +inf). Both sums are averages with the same divisor, which cancels in the ratio; padded
    cells are zeros, so they add to neither."""
    zero = _f32(ctx, "zero", 0.0)
    x = ins[0]
    pos = ctx.op("Where", [ctx.op("Less", [x, zero]), zero, x])       # NaN < 0 is false: NaN stays
    pool, pos, _ = _pool(ctx, "AveragePool", pos, a, 0.0)
    s1 = pool(pos)
    s2 = pool(ctx.op("Mul", [pos, pos]))
    ratio = ctx.op("Where", [ctx.op("Equal", [s1, zero]), zero, ctx.op("Div", [s2, s1])])
    inf = _f32(ctx, "inf", np.inf)
    return ctx.op("Where", [ctx.op("IsInf", [s1], detect_negative=0), inf, ratio], main=True)


@emits("GlobalAvgPool")
def _gap(ctx, a, ins):
    return ctx.op("GlobalAveragePool", [ins[0]], main=True)


@emits("GlobalMaxPool")
def _gmp(ctx, a, ins):
    return ctx.op("GlobalMaxPool", [ins[0]], main=True)


# ---------------------------------------------------------------- merges

@emits("Concat")
def _concat(ctx, a, ins):
    return ctx.op("Concat", ins, main=True, axis=a.get("axis", 1))


def _broadcastable(ctx, ins):
    """Inputs of an elementwise merge, a (C,) operand against (C, H, W) maps made (C, 1, 1)."""
    maps = any(len(s) == 3 for s in ctx.shapes)
    return [ctx.op("Reshape", [x, ctx.ints("shape", [0, -1, 1, 1])]) if maps and len(s) == 1 else x
            for x, s in zip(ins, ctx.shapes)]


@emits("Add")
def _add(ctx, a, ins):
    ins = _broadcastable(ctx, ins)
    if len(ins) == 2:
        return _main_then_act(ctx, a, "Add", ins)
    return _main_then_act(ctx, a, "Sum", ins)


@emits("Mul")
def _mul(ctx, a, ins):
    ins = _broadcastable(ctx, ins)
    y = ins[0]
    for i, z in enumerate(ins[1:]):
        y = ctx.op("Mul", [y, z], main=i == len(ins) - 2)
    return y


# ---------------------------------------------------------------- shapes and views

@emits("Flatten")
def _flatten(ctx, a, ins):
    if a.get("axis", 1) == 1:
        return ctx.op("Flatten", [ins[0]], main=True, axis=1)
    # netdsl's Flatten(axis=k) keeps the axes before k (PyTorch's flatten(start_dim=k));
    # ONNX's Flatten always makes a matrix
    return ctx.op("Reshape", [ins[0], ctx.ints("shape", [0, *ctx.node.shape])], main=True)


@emits("Reshape")
def _reshape(ctx, a, ins):
    return ctx.op("Reshape", [ins[0], ctx.ints("shape", [0, *ctx.node.shape])], main=True)


@emits("Identity", "Dropout")
def _identity(ctx, a, ins):
    return ctx.op("Identity", [ins[0]], main=True)


@emits("Upsample")
def _upsample(ctx, a, ins):
    x = ins[0]
    _, h, w = ctx.shapes[0]
    oh, ow = a["size"]
    whole = oh % h == 0 and ow % w == 0
    if a["mode"] == "nearest":
        if whole:     # source pixel dst / scale: exact for an integer scale
            return ctx.resize(x, main=True, scales=[1, 1, oh // h, ow // w], mode="nearest",
                              coordinate_transformation_mode="asymmetric", nearest_mode="floor")
        # any other ratio: netdsl's floor(dst·in/out) as index lists (ORT's float dst/scale
        # can round an exact integer down)
        rows = ctx.ints("rows", np.minimum(np.arange(oh) * h // oh, h - 1))
        cols = ctx.ints("cols", np.minimum(np.arange(ow) * w // ow, w - 1))
        return ctx.op("Gather", [ctx.op("Gather", [x, rows], axis=2), cols], main=True, axis=3)
    if a["align_corners"]:
        mode = "align_corners"
    else:           # PyTorch's half-pixel rule; its special case for a 1-pixel output is not netdsl's
        mode = "half_pixel" if 1 in (oh, ow) else "pytorch_half_pixel"
    kw = dict(mode="linear", coordinate_transformation_mode=mode)
    if whole and not a["align_corners"]:
        return ctx.resize(x, main=True, scales=[1, 1, oh // h, ow // w], **kw)
    nc = ctx.op("Slice", [ctx.op("Shape", [x]), ctx.ints("starts", [0]), ctx.ints("ends", [2])])
    sizes = ctx.op("Concat", [nc, ctx.ints("hw", [oh, ow])], axis=0)
    return ctx.resize(x, main=True, sizes=sizes, **kw)


@emits("Pad")
def _pad(ctx, a, ins):
    t, l, b, r = a["pad"]
    pads = ctx.ints("pads", [0, 0, t, l, 0, 0, b, r])
    mode = {"replicate": "edge"}.get(a["mode"], a["mode"])
    extra = [ctx.const("value", np.array(a["value"], np.float32))] if mode == "constant" else []
    return ctx.op("Pad", [ins[0], pads] + extra, main=True, mode=mode)


@emits("Crop")
def _crop(ctx, a, ins):
    (y0, x0), (oh, ow) = a["offset"], a["size"]        # a second input only gave the size
    return ctx.op("Slice", [ins[0], ctx.ints("starts", [y0, x0]), ctx.ints("ends", [y0 + oh, x0 + ow]),
                            ctx.ints("axes", [2, 3])], main=True)


@emits("Slice")
def _slice(ctx, a, ins):
    """Channels start..stop-1: ONNX Slice on axis 1 (starts, ends, axes are inputs from opset 10)."""
    return ctx.op("Slice", [ins[0], ctx.ints("starts", [a["start"]]), ctx.ints("ends", [a["stop"]]),
                            ctx.ints("axes", [1])], main=True)


# ---------------------------------------------------------------- detection heads

def _decode_parts(ctx, a, x):
    """The raw head (N, A·(5+K), H, W) seen as (N, A, 5+K, H, W), cut on axis 2 into
    (tx, ty), (tw, th), (to, t_1 .. t_K); plus the grid (col, row) as a (2, H, W) constant."""
    c, h, w = ctx.shapes[0]
    na, k = len(a["anchors"]) // 2, a["classes"]
    t = ctx.op("Reshape", [x, ctx.ints("shape", [0, na, 5 + k, h, w])])
    axis = ctx.ints("axes", [2])

    def cut(lo, hi):
        return ctx.op("Slice", [t, ctx.ints("starts", [lo]), ctx.ints("ends", [hi]), axis])
    grid = np.stack([np.broadcast_to(np.arange(w, dtype=np.float32)[None, :], (h, w)),
                     np.broadcast_to(np.arange(h, dtype=np.float32)[:, None], (h, w))])
    return cut(0, 2), cut(2, 4), cut(4, 5 + k), ctx.const("grid", grid), na, k, h, w


def _decode_rows(ctx, xy, wh, rest, na, k, h, w):
    """(x, y), (w, h), (objectness, classes) on axis 2 -> netdsl's rows (N, A·H·W, 5+K), boxes in
    (anchor, row, column) order."""
    y = ctx.op("Concat", [xy, wh, rest], axis=2)                     # (N, A, 5+K, H, W)
    y = ctx.op("Transpose", [y], perm=[0, 1, 3, 4, 2])               # (N, A, H, W, 5+K)
    return ctx.op("Reshape", [y, ctx.ints("shape", [0, na * h * w, 5 + k])], main=True)


@emits("YoloDecode")
def _yolo(ctx, a, ins):
    """Darknet's [yolo] box (netdsl/ops/detect.py): x = (col + s·σ(tx) − (s−1)/2) / W,
    w = e^tw · anchor_w / image_w, objectness and classes σ(t)."""
    txy, twh, rest, grid, na, k, h, w = _decode_parts(ctx, a, ins[0])
    s = float(a["scale_xy"])
    xy = ctx.op("Sigmoid", [txy])
    if s != 1.0:
        xy = ctx.op("Sub", [ctx.op("Mul", [xy, _f32(ctx, "scale_xy", s)]), _f32(ctx, "shift", 0.5 * (s - 1))])
    xy = ctx.op("Div", [ctx.op("Add", [xy, grid]), ctx.const("cells", np.array([w, h], np.float32).reshape(2, 1, 1))])
    ih, iw = a["image"]
    anc = np.asarray(a["anchors"], np.float64).reshape(na, 2) / np.array([iw, ih])
    wh = ctx.op("Mul", [ctx.op("Exp", [twh]), ctx.const("anchors", anc.astype(np.float32).reshape(na, 2, 1, 1))])
    return _decode_rows(ctx, xy, wh, ctx.op("Sigmoid", [rest]), na, k, h, w)


@emits("RegionDecode")
def _region(ctx, a, ins):
    """Darknet's [region] box (YOLOv2): x = (col + σ(tx)) / W, w = e^tw · anchor_w / W (anchors
    in cells), objectness σ(to), classes softmax over the K classes (or as they are)."""
    txy, twh, rest, grid, na, k, h, w = _decode_parts(ctx, a, ins[0])
    cells = ctx.const("cells", np.array([w, h], np.float32).reshape(2, 1, 1))
    xy = ctx.op("Div", [ctx.op("Add", [ctx.op("Sigmoid", [txy]), grid]), cells])
    anc = ctx.const("anchors", np.asarray(a["anchors"], np.float32).reshape(na, 2, 1, 1))
    wh = ctx.op("Div", [ctx.op("Mul", [ctx.op("Exp", [twh]), anc]), cells])
    obj = ctx.op("Sigmoid", [ctx.op("Slice", [rest, ctx.ints("starts", [0]), ctx.ints("ends", [1]),
                                              ctx.ints("axes", [2])])])
    cls = ctx.op("Slice", [rest, ctx.ints("starts", [1]), ctx.ints("ends", [1 + k]), ctx.ints("axes", [2])])
    if a["softmax"]:
        cls = ctx.softmax("Softmax", cls, 2, 5)
    return _decode_rows(ctx, xy, wh, ctx.op("Concat", [obj, cls], axis=2), na, k, h, w)


# ---------------------------------------------------------------- the driver

def default_opset() -> int:
    """OPSET_DEFAULT, or the installed onnx's newest opset when that is older."""
    onnx = optional("onnx", "onnx")
    return min(OPSET_DEFAULT, onnx.defs.onnx_opset_version())


def _check_opset(onnx, opset):
    newest = onnx.defs.onnx_opset_version()
    if opset is None:
        return min(OPSET_DEFAULT, newest)
    if isinstance(opset, bool) or not isinstance(opset, (int, np.integer)) or not OPSET_MIN <= opset <= newest:
        raise InteropError(f"cannot export to ONNX opset {opset!r}: netdsl writes opsets {OPSET_MIN} to "
                           f"{newest} (the newest the installed onnx {onnx.__version__} knows)",
                           hint=f"pass --opset between {OPSET_MIN} and {newest}, or leave it out for "
                                f"{min(OPSET_DEFAULT, newest)}")
    return int(opset)


def unsupported(graph) -> list:
    """The layers of `graph` that have no ONNX mapping (op names not in EMIT/ACTS), as InteropError
    diagnostics; empty when the whole graph exports."""
    from .. import ops
    from ..errors import Diagnostic
    out = []
    for n in graph.nodes():
        if n.op == "Input" or n.op in EMIT or getattr(ops.get(n.op), "act", None) in ACTS:
            continue
        out.append(Diagnostic(f"{n.name} ({n.op}): no ONNX mapping for {n.op}", n.span,
                              "netdsl cannot export this op yet (netdsl/interop/onnx_export.py has "
                              "one entry per op)"))
    return out


def _dims(shape, batch):
    return [batch if batch is not None else "N", *shape]


def to_model(graph, state: dict, opset: int | None = None, dynamic_batch: bool = True,
             batch: int | None = None, name: str = "netdsl", source: str | None = None, check: bool = True):
    """An onnx.ModelProto computing `graph` (a checked netdsl Graph) with `state`'s weights
    (name -> array, netdsl's state-dict keys). The batch is the symbolic N, or `batch` (1 when
    dynamic_batch is False and no batch is given). Checked with onnx.checker (full_check, strict
    shape inference against netdsl's shapes) unless check=False."""
    onnx = optional("onnx", "onnx")
    from onnx import TensorProto, helper, numpy_helper
    from .._version import __version__
    opset = _check_opset(onnx, opset)
    if batch is not None and (isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 1):
        raise InteropError(f"the batch size must be a positive integer, got {batch!r}",
                           hint="--batch 1, or leave it out for a dynamic batch")
    if batch is None and not dynamic_batch:
        batch = 1
    problems = unsupported(graph)
    if problems:
        raise InteropError(problems)

    ctx = _Ctx(helper, numpy_helper, opset, state)
    for k, v in state.items():
        ctx.inits.append(numpy_helper.from_array(np.ascontiguousarray(v, dtype=np.float32), k))
    env, g_inputs, infos = {}, [], []
    out_of = {v: k for k, v in graph.outputs.items()}
    for n in graph.nodes():
        if n.op == "Input":
            g_inputs.append(helper.make_tensor_value_info(n.name, TensorProto.FLOAT, _dims(n.shape, batch)))
            env[n.name] = n.name
            continue
        preds = graph.preds(n.name)
        ctx.node, ctx.shapes = n, [tuple(graph[p].shape) for p in preds]
        a = dict(n.attrs)
        fn = EMIT.get(n.op) or _pointwise
        start = len(ctx.nodes)
        y = fn(ctx, a, [env[p] for p in preds])
        if y in env.values() or y in state or len(ctx.nodes) == start:      # an emitter passed x through
            y = ctx.op("Identity", [y], main=True)
        # the layer's value is the tensor named after the layer (or after its graph output)
        final = out_of.get(n.name, n.name)
        if final in graph.outputs and graph.outputs[final] != n.name:   # a layer named like another's output
            final = f"{n.name}/value"
        last = ctx.nodes[-1]
        if list(last.output) == [y]:
            last.output[0] = final
            y = final
        env[n.name] = y
        if final not in graph.outputs:
            infos.append(helper.make_tensor_value_info(y, TensorProto.FLOAT, _dims(n.shape, batch)))
    outputs = []
    for oname, nname in graph.outputs.items():
        if env[nname] != oname:      # a layer that is two outputs, or an input that is one
            ctx.nodes.append(helper.make_node("Identity", [env[nname]], [oname], name=f"{oname}/output"))
        outputs.append(helper.make_tensor_value_info(oname, TensorProto.FLOAT, _dims(graph[nname].shape, batch)))
    g = helper.make_graph(ctx.nodes, name, g_inputs, outputs, ctx.inits, value_info=infos)
    opsets = [helper.make_opsetid("", opset)]
    model = helper.make_model(g, opset_imports=opsets, producer_name="netdsl", producer_version=__version__,
                              doc_string=f"exported by netdsl {__version__}"
                                         + (f" from {source}" if source else ""))
    model.ir_version = helper.find_min_ir_version_for(opsets)   # what older runtimes accept
    props = {"netdsl.source": source} if source else {}
    for i in graph.inputs:       # the image preprocessing the .net declares (netdsl run --input img.png)
        for key in ("scale", "mean", "std"):
            v = graph[i].attrs.get(key)
            if v is not None:
                props[f"netdsl.input.{i}.{key}"] = repr(v if not isinstance(v, tuple) else list(v))
    helper.set_model_props(model, props)
    if check:
        _check(onnx, model)
    return model


def _check(onnx, model, path=None):
    try:
        onnx.checker.check_model(path or model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        raise InteropError(f"the exported ONNX model does not pass onnx.checker: {str(e).strip()}",
                           hint="this is a bug in netdsl's exporter; please report it with the .net file") from None


def _size(state):
    return sum(int(np.asarray(v).size) * 4 for v in state.values())


def export(graph, state: dict, path: str, opset: int | None = None, dynamic_batch: bool = True,
           batch: int | None = None, name: str = "netdsl", source: str | None = None):
    """Write `graph` with `state`'s weights to the ONNX file `path`, checked before it is written.
    Weights over protobuf's 2 GB go to `path`.data beside it (ONNX external data). Returns the
    ModelProto (without the external weights)."""
    onnx = optional("onnx", "onnx")
    big = _size(state) > MAX_PROTO
    model = to_model(graph, state, opset, dynamic_batch, batch, name, source, check=not big)
    try:
        if big:
            data = os.path.basename(path) + ".data"
            onnx.save_model(model, path, save_as_external_data=True, all_tensors_to_one_file=True,
                            location=data, size_threshold=1024)
            _check(onnx, model, path)
        else:
            tmp = path + ".tmp"
            onnx.save_model(model, tmp)
            os.replace(tmp, path)
    except OSError as e:
        raise InteropError(f"cannot write {path}: {e.strerror or e}",
                           hint="check that the folder exists and is writable") from None
    return model


__all__ = ["to_model", "export", "EMIT", "ACTS", "emits", "act", "OPSET_MIN", "OPSET_DEFAULT",
           "default_opset", "unsupported"]
