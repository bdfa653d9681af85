"""ONNX import: a .onnx file -> a `.net` a person reads + its weights under the netdsl names.

    imp = import_onnx("resnet50.onnx")     # -> Imported(text, state, source, name, notes)

The steps: load the ModelProto (a clear error for a corrupt or truncated file), run ONNX shape
inference, fold what exporters add around the real layers (onnx_fold.normalize), map each
remaining node to a netdsl op (every node netdsl cannot run is collected, and reported all at
once in one InteropError), and write the layers with netwriter (labels from the initializer
names — `layer1.0.conv1.weight` -> `layer1.0.conv1` — or the node names).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

import numpy as np

from .common import Diagnostic, Imported, InteropError, optional
from .onnx_fold import OGraph, _param_label, normalize

OPSET_MIN = 7          # older files are refused; 11..newest are tested


@dataclass
class _Layer:
    """One netdsl layer to write: op, arguments, input values, output value, weights."""
    name: str
    op: str
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    inputs: tuple = ()
    output: str = ""
    weights: dict = field(default_factory=dict)
    comment: str | None = None


class _Unsupported(Exception):
    pass


def _has(op):
    from .. import ops
    return ops.lookup(op) is not None


def _has_per_channel_add():
    from .. import ops
    return "per channel" in (ops.lookup("Add").doc or "")


def _has_attr(op, attr):
    from .. import ops
    s = ops.lookup(op)
    return s is not None and any(a.name == attr for a in s.attrs)


# ---------------------------------------------------------------- loading
def load_model(path):
    onnx = optional("onnx", "onnx")
    try:
        size = os.path.getsize(path)
        model = onnx.load(path)
    except FileNotFoundError:
        raise InteropError(f"{path}: no such file", hint="check the path") from None
    except OSError as e:
        raise InteropError(f"{path}: cannot read it: {e.strerror or e}") from None
    except Exception as e:          # protobuf DecodeError, truncated external data, ...
        raise InteropError(f"{path}: not a readable ONNX model ({type(e).__name__}: {str(e)[:200]})",
                           hint="the file is corrupt or truncated (or not ONNX); export it again") from None
    if size == 0 or len(model.graph.node) == 0:
        raise InteropError(f"{path}: not an ONNX model: it has no graph nodes"
                           + (" (the file is empty)" if size == 0 else ""),
                           hint="the file is corrupt or truncated (or not ONNX); export it again")
    try:
        model = onnx.shape_inference.infer_shapes(model)
    except Exception as e:
        raise InteropError(f"{path}: ONNX shape inference failed: {str(e).splitlines()[0][:300]}",
                           hint="check the file with onnx.checker.check_model") from None
    return model


_MODULE_OPS = {"conv", "gemm", "batchnormalization", "convtranspose", "matmul", "prelu"}


def _nice(name):
    """A readable layer name from an ONNX node name: torch's '/layer1/layer1.0/conv1/Conv'
    -> 'layer1.0.conv1'; '/layer1/layer1.0/Add' (a functional op) -> 'layer1.0.add';
    other names as they are."""
    if not name:
        return "layer"
    if name.startswith("/"):
        parts = [p for p in name.split("/") if p]
        op = re.sub(r"_\d+$", "", parts[-1]).lower()
        path = []
        for p in parts[:-1]:              # 'layer1', 'layer1.0': the second extends the first
            if path and p.startswith(path[-1] + "."):
                path[-1] = p
            else:
                path.append(p)
        if not path:
            return op
        if path[-1].rsplit(".", 1)[-1].isdigit() and op not in _MODULE_OPS:
            path.append(op)                 # an op written in a container's forward ('+')
        return ".".join(path)
    return re.sub(r"^node_", "", name)


def _ident(name):
    s = re.sub(r"[^A-Za-z0-9_]", "_", name).strip("_") or "x"
    return s if not s[0].isdigit() else "x" + s


# ---------------------------------------------------------------- mapping
def _f32(v):
    """A float32 attribute as the short decimal it was written as (1e-3, not 0.0010000000474974513)."""
    return float(str(np.float32(v)))


def _pair(v):
    v = tuple(int(x) for x in v)
    return v[0] if len(set(v)) == 1 else v


def _pads4(p):
    """ONNX pads (x1_begin, x2_begin, x1_end, x2_end) = netdsl (top, left, bottom, right),
    written as short as it stays."""
    t, l, b, r = (int(x) for x in p)
    if t == l == b == r:
        return t
    if (t, l) == (b, r):
        return (t, l)
    return (t, l, b, r)


def _auto_pads(n, g, kernel, stride, dil):
    ap = n.attr("auto_pad", "NOTSET")
    if ap in ("NOTSET", ""):
        p = n.attr("pads", [0, 0, 0, 0])
        if len(p) != 4:
            raise _Unsupported(f"pads={list(p)}: only 2-D (4 pads) is supported")
        return list(p)
    if ap == "VALID":
        return [0, 0, 0, 0]
    s = g.shapes.get(n.inputs[0])
    pads_b, pads_e = [], []
    for i in range(2):
        size = s[2 + i]
        out = -(-size // stride[i])
        need = max(0, (out - 1) * stride[i] + (kernel[i] - 1) * dil[i] + 1 - size)
        lo = need // 2 if ap == "SAME_UPPER" else need - need // 2
        pads_b.append(lo)
        pads_e.append(need - lo)
    return pads_b + pads_e


def _spatial(n, g, kernel):
    if len(kernel) != 2:
        raise _Unsupported(f"a {len(kernel)}-D kernel: netdsl layers are 2-D (NCHW)")
    stride = list(n.attr("strides", [1, 1]))
    dil = list(n.attr("dilations", [1, 1]))
    return stride, dil, _auto_pads(n, g, kernel, stride, dil)


def _const(g, n, i, what):
    if i >= len(n.inputs) or not n.inputs[i]:
        return None
    v = n.inputs[i]
    if v not in g.consts:
        raise _Unsupported(f"its {what} is computed by the graph, not a constant (netdsl layers "
                           "have fixed weights)")
    return np.asarray(g.consts[v], np.float32)


def _dyn_inputs(g, n):
    return [v for v in n.inputs if v and v not in g.consts]


def _map_node(n, g, name):
    """The netdsl layer(s) for one ONNX node, or raise _Unsupported(what is missing)."""
    op, x = n.op, (n.inputs[0] if n.inputs else "")
    out = n.outputs[0] if n.outputs else ""
    if x and x in g.consts and op not in ("FC", "Affine"):
        raise _Unsupported("it computes on constants only (a subgraph netdsl does not fold: its result "
                           "would be a constant, and netdsl layers read feature maps)")
    if x and g.shapes.get(x) is None:
        raise _Unsupported(f"the shape of its input '{x}' is unknown (ONNX shape inference could not "
                           "infer it)")
    L = lambda o, *args, w=None, ins=None, **kw: _Layer(name, o, args, kw, tuple(ins or (x,)), out, w or {})
    if op == "Conv":
        w = _const(g, n, 1, "weight")
        b = _const(g, n, 2, "bias")
        kernel = list(w.shape[2:])
        stride, dil, pads = _spatial(n, g, kernel)
        kw = {}
        if stride != [1, 1]:
            kw["stride"] = _pair(stride)
        if any(pads):
            kw["pad"] = _pads4(pads)
        if dil != [1, 1]:
            kw["dilation"] = _pair(dil)
        if int(n.attr("group", 1)) != 1:
            kw["groups"] = int(n.attr("group", 1))
        if b is None:
            kw["bias"] = False
        wts = {"weight": w} if b is None else {"weight": w, "bias": b}
        return [L("Conv", int(w.shape[0]), _pair(kernel), w=wts, **kw)]
    if op == "ConvTranspose":
        w = _const(g, n, 1, "weight")
        b = _const(g, n, 2, "bias")
        kernel = list(w.shape[2:])
        grp = int(n.attr("group", 1))
        if n.attr("auto_pad", "NOTSET") not in ("NOTSET", ""):
            raise _Unsupported(f"auto_pad={n.attr('auto_pad')}: write explicit pads")
        stride, dil, pads = _spatial(n, g, kernel)
        opad = list(n.attr("output_padding", [0, 0]))
        if n.attr("output_shape") is not None:
            s_out = g.shapes.get(out)
            s_in = g.shapes.get(x)
            if s_out is None or s_in is None:
                raise _Unsupported("output_shape without known shapes")
            for i in range(2):
                full = stride[i] * (s_in[2 + i] - 1) + opad[i] + ((kernel[i] - 1) * dil[i] + 1)
                tot = full - s_out[2 + i]
                if tot < 0:
                    opad[i] += -tot
                    tot = 0
                pads[i], pads[i + 2] = tot // 2, tot - tot // 2   # SAME_UPPER-like split
        kw = {}
        if stride != [1, 1]:
            kw["stride"] = _pair(stride)
        if any(pads):
            kw["pad"] = _pads4(pads)
        if any(opad):
            kw["output_padding"] = _pair(opad)
        if dil != [1, 1]:
            kw["dilation"] = _pair(dil)
        if grp != 1:
            kw["groups"] = grp
        if b is None:
            kw["bias"] = False
        wts = {"weight": w} if b is None else {"weight": w, "bias": b}
        return [L("ConvTranspose", int(w.shape[1]) * grp, _pair(kernel), w=wts, **kw)]
    if op == "FC":
        w, b = n.attrs["weight"], n.attrs["bias"]
        kw = {} if b is not None else {"bias": False}
        wts = {"weight": w} if b is None else {"weight": w, "bias": b}
        return [L("FC", int(w.shape[0]), w=wts, **kw)]
    if op == "BatchNormalization":
        if n.attr("training_mode", 0):
            raise _Unsupported("training_mode=1: netdsl runs inference (export in eval mode)")
        if any(v for v in n.outputs[1:]):
            raise _Unsupported("its running-statistics outputs are used (training mode)")
        sc, bi, mean, var = (_const(g, n, i, k) for i, k in
                             enumerate(("scale", "bias", "mean", "variance"), start=1))
        eps = float(n.attr("epsilon", 1e-5))
        kw = {} if abs(eps - 1e-5) < 1e-12 else {"eps": _f32((eps))}
        return [L("BN", w={"weight": sc, "bias": bi, "running_mean": mean, "running_var": var}, **kw)]
    if op == "Affine":
        s, t = n.attrs["scale"], n.attrs["shift"]
        eps = 1e-5
        return [_Layer(name, "BN", (), {}, (x,), out,
                       {"weight": s, "bias": t, "running_mean": np.zeros_like(s),
                        "running_var": np.full_like(s, 1.0 - eps)},
                       comment="per-channel x*scale + shift (folded Mul/Add)")]
    if op in ("MaxPool", "AveragePool", "MinPool"):     # MinPool: Neg-MaxPool-Neg (onnx_fold.min_pools)
        if op == "MaxPool" and len(n.outputs) > 1 and n.outputs[1]:
            raise _Unsupported("its Indices output is used")
        kernel = list(n.attr("kernel_shape"))
        stride, dil, pads = _spatial(n, g, kernel)
        kw = {"stride": _pair(stride)}
        if any(pads):
            kw["pad"] = _pads4(pads)
        if n.attr("ceil_mode", 0):
            kw["ceil_mode"] = True
        if dil != [1, 1]:
            if not _has_attr("MaxPool", "dilation"):
                raise _Unsupported(f"dilations={dil}: netdsl pools have no dilation")
            kw["dilation"] = _pair(dil)
        if op == "AveragePool" and any(pads) and not n.attr("count_include_pad", 0):
            kw["count_include_pad"] = False
        return [L({"AveragePool": "AvgPool"}.get(op, op), _pair(kernel), **kw)]
    if op == "GlobalAveragePool":
        return [L("GAP")]
    if op == "GlobalMaxPool":
        return [L("GMP")]
    if op == "Relu":
        return [L("ReLU")]
    if op == "LeakyRelu":
        a = _f32((n.attr("alpha", 0.01)))
        return [L("LeakyReLU") if abs(a - 0.01) < 1e-9 else L("LeakyReLU", a)]
    if op == "Sigmoid":
        return [L("Sigmoid")]
    if op == "Tanh":
        return [L("Tanh")]
    if op == "PRelu":
        s = _const(g, n, 1, "slope")
        c = g.channels(x)
        if s.size == 1:
            return [L("PReLU", 1, w={"weight": s.reshape(1)})]
        if s.size != c or s.reshape(-1).shape[0] != c:
            raise _Unsupported(f"slope of shape {s.shape}: netdsl's PReLU has one slope or one per channel")
        return [L("PReLU", w={"weight": s.reshape(-1)})]
    if op in ("Softmax", "LogSoftmax"):
        r = g.rank(x)
        default = -1 if g.opset >= 13 else 1
        ax = int(n.attr("axis", default)) % r
        s = g.shapes.get(x)
        if g.opset < 13 and not (ax == r - 1 or all(d == 1 for d in s[ax + 1:])):
            raise _Unsupported(f"axis={n.attr('axis', default)} at opset {g.opset} normalizes over "
                               f"the flattened axes {ax}..{r - 1} together; netdsl's {op} runs over one axis")
        if ax == 0:
            raise _Unsupported("axis=0 normalizes over the batch")
        if ax == 1 or (g.opset < 13 and ax < r - 1):
            return [L(op)]
        if not _has_attr("Softmax", "axis"):
            raise _Unsupported(f"axis={ax}: netdsl's {op} runs over the channels")
        return [L(op, axis=ax)]
    if op in ("Concat",):
        ins = _dyn_inputs(g, n)
        if len(ins) != len([v for v in n.inputs if v]):
            raise _Unsupported("a constant input")
        r = g.rank(x)
        ax = int(n.attr("axis")) % r
        if len(ins) == 1:
            return "alias"
        if ax == 0:
            raise _Unsupported("axis=0 concatenates along the batch")
        if ax != 1:
            if not _has_attr("Concat", "axis"):
                raise _Unsupported(f"axis={n.attr('axis')}: netdsl concatenates channels (axis 1)")
            return [L("Concat", ins=ins, axis=ax)]
        return [L("Concat", ins=ins)]
    if op in ("Add", "Sum", "Mul"):
        ins = _dyn_inputs(g, n)
        if len(ins) != len([v for v in n.inputs if v]):
            raise _Unsupported("a constant operand that is not one value per channel")
        if len(ins) == 1:
            return "alias"
        shp = [g.shapes.get(v) for v in ins]
        if len(set(shp)) > 1:
            full = max(shp, key=lambda t: (len(t or ()), t and np.prod([d or 1 for d in t])))
            chan = lambda t: t is not None and len(t) in (2, 4) and full is not None and len(full) == 4 \
                and t[1] == full[1] and all(d == 1 for d in t[2:])
            if not all(t == full or chan(t) for t in shp) or (op != "Mul" and not _has_per_channel_add()):
                raise _Unsupported(f"operands of different shapes {' vs '.join(map(_shape_text, shp))} "
                                   "(netdsl broadcasts only a per-channel C x 1 x 1 operand)")
        return [L("Mul" if op == "Mul" else "Add", ins=ins)]
    if op == "LRN":
        kw = {}
        if abs(float(n.attr("alpha", 1e-4)) - 1e-4) > 1e-12:
            kw["alpha"] = _f32((n.attr("alpha")))
        if abs(float(n.attr("beta", 0.75)) - 0.75) > 1e-12:
            kw["beta"] = _f32((n.attr("beta")))
        if abs(float(n.attr("bias", 1.0)) - 1.0) > 1e-12:
            kw["k"] = _f32((n.attr("bias")))
        return [L("LRN", int(n.attr("size")), **kw)]
    if op in ("Upsample", "Resize"):
        return [_resize(n, g, L)]
    if op == "Slice":
        return _slice(n, g, L)
    if op == "Flatten":
        r = g.rank(x)
        ax = int(n.attr("axis", 1)) % max(r, 1)
        if ax == 0:
            raise _Unsupported("axis=0 flattens the batch into the features")
        if r == 2 or ax == r - 1:
            return "alias"
        if ax != 1:
            if not _has_attr("Flatten", "axis"):
                raise _Unsupported(f"axis={n.attr('axis')}: netdsl flattens everything but the batch")
            return [L("Flatten", axis=ax)]
        return [L("Flatten")]
    if op == "NdReshape":
        return [L("Reshape", "x".join(str(d) for d in n.attrs["shape"]) if len(n.attrs["shape"]) > 1
                  else (n.attrs["shape"][0],))]
    if op in ("Squeeze", "Unsqueeze"):
        s_in, s_out = g.shapes.get(x), g.shapes.get(out)
        if not s_in or not s_out or s_out[0] not in (None, s_in[0]) or \
                None in s_in[1:] or None in s_out[1:]:
            raise _Unsupported("it touches the batch axis or shapes are unknown")
        if len(s_out) == 2:
            return [L("Flatten")] if len(s_in) > 2 else "alias"
        if len(s_out) in (4, 2):
            return [L("Reshape", "x".join(str(d) for d in s_out[1:]))]
        raise _Unsupported(f"it makes a rank-{len(s_out)} tensor; netdsl values are CxHxW or vectors")
    if op == "Clip":
        lo, hi = _clip_bounds(n, g)
        if lo == 0 and hi == float("inf"):
            return [L("ReLU")]
        if lo == 0 and hi == 6 and _has("ReLU6"):
            return [L("ReLU6")]
        if lo == -1 and hi == 1 and _has("Hardtanh"):
            return [L("Hardtanh")]
        if _has("Clip"):
            kw = {k: _f32(v) for k, v in (("min", lo), ("max", hi)) if np.isfinite(v)}
            return [L("Clip", **kw)]
        raise _Unsupported(f"min={lo}, max={hi}: netdsl has no Clip op here")
    if op == "Pad":
        from .onnx_fold import _pad_spatial
        r = _pad_spatial(n, g)
        if r is None:
            raise _Unsupported("padding of the batch or channel axis, negative or computed pads")
        pads, val, mode = r
        m = {"constant": "constant", "reflect": "reflect", "edge": "replicate"}.get(mode)
        if m is None:
            raise _Unsupported(f"mode={mode}")
        kw = {}
        if m != "constant":
            kw["mode"] = m
        elif val != 0:
            if not np.isfinite(val):
                raise _Unsupported(f"value={val}")
            kw["value"] = _f32(val)
        return [L("Pad", _pads4(pads), **kw)]
    # the new activations (other branches add the ops; mapped when they exist)
    simple = {"HardSwish": "HardSwish", "Mish": "Mish", "Elu": "ELU", "Selu": "SELU",
              "Softplus": "Softplus", "Gelu": "GELU", "SiLU": "SiLU"}
    if op in simple and _has(simple[op]):
        if op == "Gelu" and n.attr("approximate", "none") == "tanh":
            return [L("GELU", approximate="tanh")]
        return [L(simple[op])]
    if op == "HardSigmoid" and _has("HardSigmoid"):
        a, b = float(n.attr("alpha", 0.2)), float(n.attr("beta", 0.5))
        if abs(a - 1 / 6) < 1e-6 and abs(b - 0.5) < 1e-6:
            return [L("HardSigmoid")]
        if _has_attr("HardSigmoid", "alpha"):
            return [L("HardSigmoid", alpha=_f32(a), beta=_f32(b))]
        raise _Unsupported(f"alpha={a}, beta={b}: netdsl's HardSigmoid is PyTorch's (1/6, 0.5)")
    raise _Unsupported(_why(n, g))


def _slice_ints(n, g, i, attr):
    """Slice's starts/ends/axes/steps: attributes before opset 10, constant inputs from 10 on."""
    if g.opset < 10:
        v = n.attr(attr)
        return None if v is None else [int(x) for x in v]
    if i >= len(n.inputs) or not n.inputs[i]:
        return None
    if n.inputs[i] not in g.consts:
        raise _Unsupported(f"its {attr} are computed by the graph, not constants")
    return [int(x) for x in np.asarray(g.consts[n.inputs[i]]).reshape(-1)]


def _slice(n, g, L):
    """A Slice with constant bounds and step 1: on the channel axis -> netdsl Slice(start, stop),
    on height and width of a feature map -> Crop(size, offset=...), nothing cut -> gone."""
    s = g.shapes.get(n.inputs[0])
    r = len(s)
    starts, ends = _slice_ints(n, g, 1, "starts"), _slice_ints(n, g, 2, "ends")
    axes = _slice_ints(n, g, 3, "axes") or list(range(len(starts)))
    steps = _slice_ints(n, g, 4, "steps") or [1] * len(starts)
    if any(st != 1 for st in steps):
        raise _Unsupported(f"steps={steps}: netdsl slices with step 1 only")
    kept = {}
    for ax, b, e in zip(axes, starts, ends):
        ax %= r
        d = s[ax]
        if ax == 0:
            if b == 0 and (e >= 2 ** 31 - 1 or (d is not None and e >= d)):
                continue                                      # the whole batch
            raise _Unsupported("it slices the batch axis")
        if d is None:
            raise _Unsupported(f"it slices axis {ax}, whose size is unknown")
        b = min(max(b + d if b < 0 else b, 0), d)
        e = min(max(e + d if e < 0 else e, 0), d)
        if (b, e) == (0, d):
            continue
        if e <= b:
            raise _Unsupported(f"it keeps nothing of axis {ax} ({b}..{e})")
        kept[ax] = (b, e)
    if not kept:
        return "alias"
    if set(kept) == {1} and r in (2, 4):
        return [L("Slice", *kept[1])]
    if r == 4 and set(kept) <= {2, 3}:
        (y0, y1), (x0, x1) = kept.get(2, (0, s[2])), kept.get(3, (0, s[3]))
        return [L("Crop", _pair([y1 - y0, x1 - x0]), offset=_pair([y0, x0]))]
    raise _Unsupported(f"it slices axes {sorted(kept)} of a rank-{r} tensor (netdsl: Slice cuts channels, "
                       "Crop height and width of a feature map, one of them per layer)")



def _why(n, g):
    if n.domain not in ("", "ai.onnx"):
        return f"an op of the custom domain '{n.domain}'"
    if n.op in ("Reshape", "Transpose", "Shape", "Gather", "Slice", "Split", "Expand", "Tile"):
        return ("a shape op netdsl has no layer for (only Reshape/Flatten to a per-sample shape and "
                "Transpose pairs that cancel are folded)")
    if n.op in ("MatMul", "Gemm"):
        return "both operands come from the graph (netdsl's FC has a constant weight)"
    return "netdsl has no such op"


def _clip_bounds(n, g):
    if g.opset < 11 or "min" in n.attrs or "max" in n.attrs:
        return float(n.attr("min", -np.inf)), float(n.attr("max", np.inf))
    lo = _const(g, n, 1, "min")
    hi = _const(g, n, 2, "max")
    lo = -np.inf if lo is None else float(lo.reshape(-1)[0])
    hi = np.inf if hi is None else float(hi.reshape(-1)[0])
    return lo, hi


def _resize(n, g, L):
    x, out = n.inputs[0], n.outputs[0]
    s_in, s_out = g.shapes.get(x), g.shapes.get(out)
    if s_in is None or s_out is None or len(s_in) != 4 or None in s_in[1:] or None in s_out[1:]:
        raise _Unsupported("the output size is not known statically")
    if s_out[1] != s_in[1]:
        raise _Unsupported("it resizes the channel axis")
    mode = n.attr("mode", "nearest")
    ctm = n.attr("coordinate_transformation_mode", "half_pixel" if n.op == "Resize" else "asymmetric")
    sh, sw = s_out[2] / s_in[2], s_out[3] / s_in[3]
    integer = sh == int(sh) and sw == int(sw) and sh >= 1 and sw >= 1
    scale = _pair((int(sh), int(sw))) if integer else None
    if mode == "nearest":
        nm = n.attr("nearest_mode", "round_prefer_floor")
        if not integer:
            raise _Unsupported(f"a non-integer scale {sh:g}x{sw:g} (netdsl's nearest Upsample scales by integers)")
        if n.op == "Upsample" or (ctm == "asymmetric" and nm == "floor") or \
                (ctm in ("half_pixel", "pytorch_half_pixel") and nm in ("round_prefer_floor", "round_prefer_ceil")):
            return L("Upsample", scale)
        raise _Unsupported(f"nearest with coordinate_transformation_mode={ctm}, nearest_mode={nm}")
    if mode in ("linear", "bilinear"):
        if ctm == "align_corners":
            return L("Upsample", size=(s_out[2], s_out[3]), mode="bilinear", align_corners=True)
        if ctm in ("half_pixel", "pytorch_half_pixel") and integer:
            return L("Upsample", scale, mode="bilinear")
        raise _Unsupported(f"linear with coordinate_transformation_mode={ctm}")
    raise _Unsupported(f"mode={mode}")


# ---------------------------------------------------------------- the whole import
def _check_values(g, problems, path):
    for v in g.inputs:
        s = g.shapes.get(v)
        if s is None or len(s) not in (2, 4) or any(d is None for d in s[1:]):
            problems.append(Diagnostic(
                f"{path}: input '{v}' has shape {_shape_text(s)}: netdsl needs a static N x C x H x W "
                "(or N x F) input", hint="export with a fixed input size (the batch may stay dynamic)"))


def _grouped(path, unsupported):
    """One diagnostic per (op, reason), naming every node it applies to."""
    groups = {}
    for n, why in unsupported:
        groups.setdefault((n.op, why), []).append(n.name)
    out = []
    for (op, why), names in groups.items():
        if len(names) == 1:
            msg = f"{path}: node '{names[0]}' ({op}): {why}"
            notes = []
        else:
            msg = f"{path}: {len(names)} {op} nodes: {why}"
            notes = [f"node '{nm}' ({op})" for nm in names]
        out.append(Diagnostic(msg, notes=notes))
    if out:
        ops = sorted({op for op, _ in groups})
        out[-1].hint = (f"netdsl cannot run {', '.join(ops)} as used here; `netdsl ops` lists what it "
                        "runs (re-export without them, or replace them in the model)")
    return out


def _shape_text(s):
    return "unknown" if s is None else "x".join("?" if d is None else str(d) for d in s)


def _checks(text, name, state) -> bool:
    """Does `text` parse and check, with exactly the parameters of `state` (names and shapes)?"""
    from ..analysis.infer import analyze
    from ..errors import NetDSLError, Source
    from ..frontend.expand import expand_module
    from ..frontend.parser import parse_source
    from ..runtime.weights import expected
    try:
        module = parse_source(Source(name + ".net", text))
        graph, diags = expand_module(module, None, partial=True)
        analyze(graph, diags)
        if diags:
            return False
    except NetDSLError:
        return False
    want = expected(graph)
    return want == {k: tuple(v.shape) for k, v in state.items()}


def _input_options(props: dict, name: str) -> dict:
    """The image preprocessing netdsl's exporter keeps in metadata_props (netdsl.input.x.mean, ...),
    for the `input` line: numbers or lists of numbers only, anything else is ignored."""
    import ast
    out = {}
    for key in ("mean", "std", "scale"):
        raw = props.get(f"netdsl.input.{name}.{key}")
        if raw is None:
            continue
        try:
            v = ast.literal_eval(raw)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            continue
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            if not (key == "scale" and abs(v - 1 / 255) < 1e-12):      # the language's default
                out[key] = float(v)
        elif isinstance(v, list) and v and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v):
            out[key] = tuple(float(x) for x in v)
    return out


def import_onnx(path: str, name: str | None = None, blocks: bool = True, weights=None) -> Imported:
    """Import an ONNX model file: the `.net` text and the state dict under its names.
    blocks=True writes repeated subgraphs (ResNet's bottlenecks) as one `block` each."""
    if weights is not None:
        raise InteropError(f"{path}: an ONNX file holds its own weights; --weights is for formats "
                           "with a separate weights file (Darknet .cfg + .weights)",
                           hint="leave out --weights")
    from .netwriter import Layer, Net, write
    model = load_model(path)
    g = OGraph.from_model(model)
    if g.opset < OPSET_MIN:
        raise InteropError(f"{path}: opset {g.opset} is older than netdsl reads (>= {OPSET_MIN})",
                           hint="export again with a newer opset (torch.onnx.export(..., opset_version=17))")
    n_before = len(g.nodes)
    normalize(g)
    problems = []
    _check_values(g, problems, path)
    layers, alias, unsupported = [], {}, []
    names_used = set()
    for n in g.nodes:
        nm = n.label or _param_label(n.inputs[1] if n.op in ("Conv", "ConvTranspose", "BatchNormalization",
                                                             "PRelu") and len(n.inputs) > 1 else "")
        nm = nm or _nice(n.name)
        base, k = nm, 2
        while nm in names_used:
            nm, k = f"{base}_{k}", k + 1
        try:
            r = _map_node(n, g, nm)
        except _Unsupported as e:
            unsupported.append((n, str(e)))
            continue
        if r == "alias":
            alias[n.outputs[0]] = _dyn_inputs(g, n)[0]
            continue
        names_used.add(nm)
        layers.extend(r)
    if problems or unsupported:
        raise InteropError(problems + _grouped(path, unsupported))

    def res(v):
        while v in alias:
            v = alias[v]
        return v

    # a Flatten read only by FCs says nothing (FC flattens): GAP - fc:FC(1000), as the zoo has it
    readers = {}
    for lay in layers:
        for v in lay.inputs:
            readers.setdefault(res(v), []).append(lay.op)
    outs_v = {res(v) for v in g.outputs}
    for lay in list(layers):
        if lay.op == "Flatten" and not lay.kwargs and lay.output not in outs_v and \
                readers.get(lay.output) and all(o == "FC" for o in readers[lay.output]):
            alias[lay.output] = lay.inputs[0]
            layers.remove(lay)

    # the net
    mname = name or _ident(os.path.splitext(os.path.basename(path))[0])
    producer = " ".join(x for x in (model.producer_name, model.producer_version) if x) or "unknown"
    net = Net(name=mname, header=[f"imported from {os.path.basename(path)} (ONNX opset {g.opset}, "
                                  f"producer {producer}) by netdsl import"])
    val2layer = {}
    props = {p.key: p.value for p in model.metadata_props}
    for v in g.inputs:
        iname = _ident(v)
        val2layer[v] = iname
        net.add_input(iname, tuple(g.shapes[v][1:]), **_input_options(props, v))
    for lay in layers:
        ins = []
        for v in lay.inputs:
            v = res(v)
            if v not in val2layer:
                if v in g.consts:
                    raise InteropError(f"{path}: layer '{lay.name}' ({lay.op}) reads a constant "
                                       f"'{v}' as its data input", hint="netdsl layers read feature maps")
                raise InteropError(f"{path}: layer '{lay.name}' reads '{v}', which nothing computes")
            ins.append(val2layer[v])
        net.add(Layer(lay.name, lay.op, args=lay.args, kwargs=lay.kwargs, inputs=tuple(ins),
                      **({"comment": lay.comment} if lay.comment else {})))
        val2layer[lay.output] = lay.name
    outs = []
    for v in g.outputs:
        v = res(v)
        if v not in val2layer or v in g.inputs:
            raise InteropError(f"{path}: the output '{v}' is not computed by a layer",
                               hint="an output that is a constant or an input cannot be imported")
        outs.append(val2layer[v])
    net.outputs = outs
    def state_for(names):
        return {f"{names[lay.name]}.{k}": np.ascontiguousarray(a, dtype=np.float32)
                for lay in layers for k, a in lay.weights.items()}

    text, names = write(net)
    state = state_for(names)
    if blocks:
        from .blocks import write_with_blocks
        try:
            btext, bnames = write_with_blocks(net)
            bstate = state_for(bnames)
            if _checks(btext, mname, bstate):
                text, state = btext, bstate
            else:
                g.notes.append("repeated blocks were found but did not check; written flat")
        except (ValueError, KeyError):
            g.notes.append("written flat (the block finder gave up)")
    folded = sum(g.folded.values())
    notes = [f"{n_before} ONNX nodes -> {len(layers)} layers ({folded} nodes folded: "
             + ", ".join(f"{k} {v}" for k, v in sorted(g.folded.items())) + ")"]
    notes += g.notes
    return Imported(text=text, state=state, source=path, name=mname, notes=notes, folded=folded)


__all__ = ["import_onnx", "load_model"]
