"""ONNX import, first half: the graph as plain Python objects, and the folds that remove what
exporters add around the real layers.

`OGraph.from_model` reads a (shape-inferred) ModelProto into `ONode`s, constants (initializers
and `Constant` nodes) and the static shape of every value. `normalize` then rewrites it in place:

1. constant folding: every node whose inputs are all known (initializers, Constant, and `Shape`
   of a value whose shape is static) is evaluated with numpy and disappears — the
   Shape/Gather/Unsqueeze/Concat/Cast arithmetic torch writes in front of a Reshape. An unknown
   (symbolic) batch dimension is carried through that arithmetic as a sentinel number, so a
   Reshape target computed from it is still recognised as "the batch";
2. Identity and Dropout vanish; Transpose pairs that cancel vanish; a Reshape that changes
   nothing vanishes; Reshape/Flatten to (N, -1) becomes Flatten;
3. Gemm (transA=0, transB 0/1, alpha, beta) and MatMul with a constant weight become FC;
4. Sub/Div by a constant become Add/Mul; a chain of per-channel Mul/Add constants becomes one
   affine (scale, shift), which is folded into the Conv, ConvTranspose, BatchNormalization or FC
   in front of it when that layer has no other consumer (exact: W' = W·s, b' = b·s + t), and
   otherwise written as a BN with running_mean 0, running_var 1 - eps (so it computes x·s + t);
5. Pad (zeros, spatial only) in front of a Conv or an AveragePool that counts the padding, and
   Pad with -inf in front of a MaxPool, become that layer's pads;
6. ReduceMean over H and W becomes GlobalAveragePool (+ Flatten when keepdims=0);
7. x·sigmoid(x) and the other activations written as formulas become the activation;
8. Neg - MaxPool - Neg (netdsl's MinPool as exported) becomes a MinPool.

Everything here is numpy on small arrays; nothing runs the network.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

# an unknown (symbolic) batch size inside shape arithmetic: a number no real shape has
BATCH = 1_000_003


@dataclass
class ONode:
    op: str
    name: str
    inputs: list          # value names; "" for an omitted optional input
    outputs: list
    attrs: dict
    domain: str = ""
    label: str | None = None      # a better label source (an initializer's name), if known

    def attr(self, key, default=None):
        return self.attrs.get(key, default)


@dataclass
class OGraph:
    nodes: list
    consts: dict                  # value name -> np.ndarray
    shapes: dict                  # value name -> tuple of int | None
    inputs: list                  # dynamic graph inputs (not initializers)
    outputs: list
    opset: int = 13
    folded: Counter = field(default_factory=Counter)      # ONNX op -> how many were folded away
    notes: list = field(default_factory=list)

    # -- reading
    @classmethod
    def from_model(cls, model):
        from onnx import numpy_helper, helper
        g = model.graph
        opset = 13
        for imp in model.opset_import:
            if imp.domain in ("", "ai.onnx"):
                opset = int(imp.version)
        consts = {}
        for t in g.initializer:
            consts[t.name] = numpy_helper.to_array(t)
        shapes = {}
        for vi in list(g.input) + list(g.value_info) + list(g.output):
            tt = vi.type.tensor_type
            if not tt.HasField("shape"):
                continue
            dims = []
            for d in tt.shape.dim:
                dims.append(int(d.dim_value) if d.HasField("dim_value") and d.dim_value > 0 else None)
            shapes[vi.name] = tuple(dims)
        for k, v in consts.items():
            shapes[k] = tuple(v.shape)
        nodes = []
        for i, n in enumerate(g.node):
            attrs = {}
            for a in n.attribute:
                v = helper.get_attribute_value(a)
                if isinstance(v, bytes):
                    v = v.decode("utf-8", "replace")
                elif hasattr(v, "dims") and hasattr(v, "data_type"):       # a TensorProto
                    v = numpy_helper.to_array(v)
                elif isinstance(v, list):
                    v = [x.decode("utf-8", "replace") if isinstance(x, bytes) else x for x in v]
                attrs[a.name] = v
            nodes.append(ONode(n.op_type, n.name or f"{n.op_type.lower()}", list(n.input), list(n.output),
                               attrs, n.domain or ""))
        inputs = [vi.name for vi in g.input if vi.name not in consts]
        outputs = [vi.name for vi in g.output]
        return cls(nodes, consts, shapes, inputs, outputs, opset)

    # -- queries
    def consumers(self):
        use = {}
        for n in self.nodes:
            for v in n.inputs:
                if v:
                    use.setdefault(v, []).append(n)
        return use

    def producers(self):
        return {v: n for n in self.nodes for v in n.outputs if v}

    def is_const(self, v):
        return v in self.consts

    def rank(self, v):
        s = self.shapes.get(v)
        return None if s is None else len(s)

    def channels(self, v):
        s = self.shapes.get(v)
        return s[1] if s is not None and len(s) >= 2 else None

    def alias(self, old, new):
        """Every use of value `old` now reads `new` (the node making `old` is gone)."""
        for n in self.nodes:
            n.inputs = [new if v == old else v for v in n.inputs]
        self.outputs = [new if v == old else v for v in self.outputs]
        if new not in self.shapes and old in self.shapes:
            self.shapes[new] = self.shapes[old]

    def drop(self, nodes):
        ids = {id(n) for n in nodes}
        self.nodes = [n for n in self.nodes if id(n) not in ids]

    def single_use(self, v, use=None):
        use = self.consumers() if use is None else use
        return len(use.get(v, [])) == 1 and v not in self.outputs


# ---------------------------------------------------------------- 1. constant folding
_NP = {1: np.float32, 2: np.uint8, 3: np.int8, 4: np.uint16, 5: np.int16, 6: np.int32, 7: np.int64,
       9: np.bool_, 10: np.float16, 11: np.float64, 12: np.uint32, 13: np.uint64}


def _ints(a):
    return [int(x) for x in np.asarray(a).reshape(-1)]


def _in(n, g, i):
    """Constant input i of n, or None when omitted."""
    if i >= len(n.inputs) or not n.inputs[i]:
        return None
    return g.consts[n.inputs[i]]


def _axes(n, g, idx=1):
    a = n.attr("axes")
    if a is None:
        c = _in(n, g, idx)
        a = None if c is None else _ints(c)
    return a


def _eval(n, g):
    """numpy value(s) of a node whose inputs are constants; None if not an op evaluated here."""
    op = n.op
    x = [_in(n, g, i) for i in range(len(n.inputs))]
    if op == "Constant":
        for k in ("value", "value_float", "value_floats", "value_int", "value_ints"):
            if k in n.attrs:
                v = n.attrs[k]
                dt = np.float32 if "float" in k else np.int64 if "int" in k else None
                return [np.asarray(v, dtype=dt) if dt else np.asarray(v)]
        return None
    if op == "Identity":
        return [x[0]]
    if op == "Cast":
        return [x[0].astype(_NP.get(int(n.attr("to", 1)), np.float32))]
    if op == "Gather":
        return [np.take(x[0], x[1].astype(np.int64), axis=int(n.attr("axis", 0)))]
    if op == "Unsqueeze":
        v = x[0]
        axes = sorted(a % (v.ndim + len(_axes(n, g))) for a in _axes(n, g))
        for a in axes:
            v = np.expand_dims(v, a)
        return [v]
    if op == "Squeeze":
        axes = _axes(n, g)
        return [np.squeeze(x[0]) if axes is None else np.squeeze(x[0], axis=tuple(axes))]
    if op == "Concat":
        return [np.concatenate([v for v in x if v is not None], axis=int(n.attr("axis", 0)))]
    if op in ("Add", "Sub", "Mul", "Div", "Pow", "Equal", "Less", "Greater", "Max", "Min", "Mod"):
        a, b = x[0], x[1]
        if op == "Div" and a.dtype.kind in "iu":
            return [(np.trunc(a / b)).astype(a.dtype)]
        f = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide, "Pow": np.power,
             "Equal": np.equal, "Less": np.less, "Greater": np.greater, "Max": np.maximum,
             "Min": np.minimum, "Mod": np.mod}[op]
        r = f(a, b)
        return [r.astype(a.dtype) if op not in ("Equal", "Less", "Greater") else r]
    if op in ("Neg", "Sqrt", "Reciprocal", "Floor", "Ceil", "Abs", "Exp", "Not"):
        f = {"Neg": np.negative, "Sqrt": np.sqrt, "Reciprocal": np.reciprocal, "Floor": np.floor,
             "Ceil": np.ceil, "Abs": np.abs, "Exp": np.exp, "Not": np.logical_not}[op]
        return [f(x[0])]
    if op == "Reshape":
        shape = _ints(x[1])
        shape = [x[0].shape[i] if s == 0 else s for i, s in enumerate(shape)]
        return [x[0].reshape(shape)]
    if op == "Transpose":
        perm = n.attr("perm")
        return [np.transpose(x[0], perm)]
    if op == "Flatten":
        ax = int(n.attr("axis", 1)) % max(x[0].ndim, 1)
        return [x[0].reshape(int(np.prod(x[0].shape[:ax])), -1)]
    if op == "Slice":
        v = x[0]
        if n.attr("starts") is not None:                 # opset < 10
            starts, ends, axes, steps = n.attr("starts"), n.attr("ends"), n.attr("axes"), None
        else:
            starts, ends = _ints(x[1]), _ints(x[2])
            axes = None if len(x) < 4 or x[3] is None else _ints(x[3])
            steps = None if len(x) < 5 or x[4] is None else _ints(x[4])
        axes = list(range(len(starts))) if axes is None else list(axes)
        steps = [1] * len(starts) if steps is None else steps
        sl = [slice(None)] * v.ndim
        for s, e, a, st in zip(starts, ends, axes, steps):
            sl[a] = slice(int(s), int(e) if abs(int(e)) < 2**62 else None, int(st))
        return [v[tuple(sl)]]
    if op == "ConstantOfShape":
        val = n.attr("value")
        val = np.zeros(1, np.float32) if val is None else np.asarray(val).reshape(-1)
        return [np.full(_ints(x[0]), val[0], dtype=val.dtype)]
    if op == "Range":
        return [np.arange(x[0].item(), x[1].item(), x[2].item()).astype(x[0].dtype)]
    if op == "Where":
        return [np.where(x[0], x[1], x[2])]
    if op == "Expand":
        return [x[0] * np.ones(_ints(x[1]), dtype=x[0].dtype)]
    if op == "Size":
        return [np.asarray(x[0].size, np.int64)]
    if op == "ReduceProd":
        return [np.asarray(np.prod(x[0]), x[0].dtype)]
    return None


def _shape_of(n, g):
    """Shape(x) for a value x whose shape is static except perhaps the batch: an int64 array."""
    s = g.shapes.get(n.inputs[0])
    if s is None or any(d is None for d in s[1:]):
        return None
    dims = np.asarray([BATCH if d is None else d for d in s], np.int64)
    start, end = n.attr("start", 0), n.attr("end")
    return dims[start:end]


def fold_constants(g: OGraph):
    keep = []
    for n in g.nodes:
        vals = None
        if n.op == "Shape" and n.inputs and n.inputs[0]:
            r = _shape_of(n, g)
            vals = None if r is None else [r]
        elif n.op == "Size" and n.inputs and g.shapes.get(n.inputs[0]) and None not in g.shapes[n.inputs[0]]:
            vals = [np.asarray(int(np.prod(g.shapes[n.inputs[0]])), np.int64)]
        elif n.domain == "" and all(not v or v in g.consts for v in n.inputs) and \
                (n.op == "Constant" or any(n.inputs)):
            try:
                vals = _eval(n, g)
            except (ValueError, TypeError, IndexError, KeyError, ZeroDivisionError, AttributeError):
                vals = None
        if vals is None:
            keep.append(n)
            continue
        for out, v in zip(n.outputs, vals):
            g.consts[out] = np.asarray(v)
            g.shapes[out] = tuple(np.asarray(v).shape)
        g.folded[n.op] += 1
    g.nodes = keep


# ---------------------------------------------------------------- 2. trivial nodes
def remove_trivial(g: OGraph):
    use = g.consumers()
    gone = []
    for n in g.nodes:
        if n.op in ("Identity", "Dropout") and n.inputs and n.inputs[0]:
            if n.op == "Dropout" and len(n.outputs) > 1 and n.outputs[1] and use.get(n.outputs[1]):
                continue                 # its mask is used: leave it to be reported
            gone.append(n)
            g.alias(n.outputs[0], n.inputs[0])
            g.folded[n.op] += 1
    g.drop(gone)
    _cancel_transposes(g)
    _reshapes(g)


def _cancel_transposes(g):
    changed = True
    while changed:
        changed = False
        use, prod = g.consumers(), g.producers()
        for n in g.nodes:
            if n.op != "Transpose" or not n.inputs:
                continue
            p = prod.get(n.inputs[0])
            if p is None or p.op != "Transpose" or not g.single_use(p.outputs[0], use):
                continue
            p1, p2 = p.attr("perm"), n.attr("perm")
            if p1 is None or p2 is None or len(p1) != len(p2):
                continue
            if [p1[i] for i in p2] == list(range(len(p1))):
                g.alias(n.outputs[0], p.inputs[0])
                g.drop([p, n])
                g.folded["Transpose"] += 2
                changed = True
                break


def _reshapes(g):
    """Reshape with a constant target: nothing (same shape), Flatten ((N, -1)), or a netdsl
    Reshape of the per-sample shape (op 'NdReshape'); Flatten axis=1 stays Flatten."""
    gone = []
    for n in g.nodes:
        if n.op != "Reshape" or len(n.inputs) < 2 or n.inputs[1] not in g.consts:
            continue
        s_in = g.shapes.get(n.inputs[0])
        if s_in is None or any(d is None for d in s_in[1:]):
            continue
        target = _ints(g.consts[n.inputs[1]])
        target = [s_in[i] if t == 0 and i < len(s_in) and not n.attr("allowzero", 0) else t
                  for i, t in enumerate(target)]
        batch = s_in[0]
        if not target or not (target[0] == BATCH or target[0] == batch or
                              (target[0] == -1 and -1 not in target[1:])):
            continue                     # folds the batch into something: reported later
        rest = [None if d is None else d for d in target[1:]]
        per_sample = int(np.prod(s_in[1:]))
        if -1 in rest:
            known = int(np.prod([d for d in rest if d != -1])) or 1
            rest = [per_sample // known if d == -1 else d for d in rest]
        if int(np.prod(rest)) != per_sample:
            continue
        if tuple(rest) == tuple(s_in[1:]):
            g.alias(n.outputs[0], n.inputs[0])
            gone.append(n)
            g.folded["Reshape"] += 1
        else:
            g.shapes[n.outputs[0]] = (s_in[0],) + tuple(rest)
            if len(rest) == 1:
                n.op, n.attrs, n.inputs = "Flatten", {"axis": 1}, [n.inputs[0]]
            else:
                n.op, n.attrs, n.inputs = "NdReshape", {"shape": tuple(rest)}, [n.inputs[0]]
    g.drop(gone)


# ---------------------------------------------------------------- 3. Gemm / MatMul -> FC
def linear_layers(g: OGraph):
    """Gemm and MatMul with a constant weight become 'FC' nodes: attrs weight (out x in), bias."""
    for n in g.nodes:
        if n.op == "Gemm" and len(n.inputs) >= 2 and n.inputs[1] in g.consts and not n.attr("transA", 0) \
                and n.inputs[0] not in g.consts:
            w = g.consts[n.inputs[1]].astype(np.float32)
            if w.ndim != 2:
                continue
            w = w if n.attr("transB", 0) else w.T
            w = w * np.float32(n.attr("alpha", 1.0))
            b = None
            if len(n.inputs) > 2 and n.inputs[2]:
                if n.inputs[2] not in g.consts:
                    continue
                c = g.consts[n.inputs[2]].astype(np.float32) * np.float32(n.attr("beta", 1.0))
                if c.size not in (1, w.shape[0]) or (c.ndim == 2 and c.shape[0] != 1):
                    continue             # a bias per sample: not a layer
                b = np.broadcast_to(c.reshape(-1), (w.shape[0],)).copy()
            n.label = _param_label(n.inputs[1])
            n.op, n.attrs, n.inputs = "FC", {"weight": np.ascontiguousarray(w), "bias": b}, [n.inputs[0]]
        elif n.op == "MatMul" and len(n.inputs) == 2 and n.inputs[1] in g.consts and \
                n.inputs[0] not in g.consts and g.rank(n.inputs[0]) == 2:
            w = g.consts[n.inputs[1]].astype(np.float32)
            if w.ndim != 2:
                continue
            n.label = _param_label(n.inputs[1])
            n.op, n.attrs, n.inputs = "FC", {"weight": np.ascontiguousarray(w.T), "bias": None}, [n.inputs[0]]


def _param_label(init_name):
    """'layer1.0.conv1.weight' -> 'layer1.0.conv1'; names that say nothing ('onnx::Conv_123',
    'val_42') -> None."""
    if not init_name or "::" in init_name or init_name.startswith(("val_", "_val")):
        return None
    for suf in (".weight", ".bias", "_weight", "_W", ".W"):
        if init_name.endswith(suf):
            return init_name[: -len(suf)] or None
    return None


# ---------------------------------------------------------------- 4. per-channel affine
def _per_channel(c, x_shape):
    """A constant broadcast against x (N, C, ...) as one value per channel: array of length C,
    or None when it varies along anything but the channels."""
    if x_shape is None or len(x_shape) < 2 or x_shape[1] is None:
        return None
    C, r = x_shape[1], len(x_shape)
    c = np.asarray(c, np.float32)
    if c.ndim > r:
        return None
    c = c.reshape((1,) * (r - c.ndim) + c.shape)
    if c.shape[0] != 1 or any(d != 1 for d in c.shape[2:]) or c.shape[1] not in (1, C):
        return None
    return np.broadcast_to(c.reshape(-1), (C,)).astype(np.float32)


def affine_layers(g: OGraph):
    """Mul/Add/Sub/Div by per-channel constants -> 'Affine' nodes (attrs scale, shift), merged
    along chains, then folded into the producer where that is exact."""
    for n in g.nodes:
        if n.op not in ("Mul", "Add", "Sub", "Div") or len(n.inputs) != 2:
            continue
        a, b = n.inputs
        if (a in g.consts) == (b in g.consts):
            continue
        const_first = a in g.consts
        x, c = (b, g.consts[a]) if const_first else (a, g.consts[b])
        v = _per_channel(c, g.shapes.get(x))
        if v is None:
            continue
        C = len(v)
        if n.op == "Mul":
            scale, shift = v, np.zeros(C, np.float32)
        elif n.op == "Add":
            scale, shift = np.ones(C, np.float32), v
        elif n.op == "Sub":
            scale, shift = (-np.ones(C, np.float32), v) if const_first else (np.ones(C, np.float32), -v)
        else:
            if const_first or np.any(v == 0):
                continue
            scale, shift = (1.0 / v).astype(np.float32), np.zeros(C, np.float32)
        n.orig_op = n.op
        if n.name == n.op.lower():
            n.name = "scale"
        n.op, n.attrs, n.inputs = "Affine", {"scale": scale, "shift": shift}, [x]
    # merge chains Affine -> Affine
    changed = True
    while changed:
        changed = False
        use, prod = g.consumers(), g.producers()
        for n in g.nodes:
            if n.op != "Affine":
                continue
            p = prod.get(n.inputs[0])
            if p is not None and p.op == "Affine" and g.single_use(p.outputs[0], use):
                s1, t1, s2, t2 = p.attrs["scale"], p.attrs["shift"], n.attrs["scale"], n.attrs["shift"]
                n.attrs = {"scale": s1 * s2, "shift": t1 * s2 + t2}
                n.inputs = [p.inputs[0]]
                n.label = n.label or p.label
                g.drop([p])
                g.folded[getattr(p, "orig_op", "Mul")] += 1
                changed = True
                break
    # fold into the producer
    use, prod = g.consumers(), g.producers()
    gone = []
    for n in g.nodes:
        if n.op != "Affine":
            continue
        p = prod.get(n.inputs[0])
        if p is None or not g.single_use(p.outputs[0], use) or len(p.outputs) != 1:
            continue
        s, t = n.attrs["scale"], n.attrs["shift"]
        if _fold_affine_into(g, p, s, t):
            g.alias(n.outputs[0], p.outputs[0])
            gone.append(n)
            g.folded[getattr(n, "orig_op", "Mul")] += 1
    g.drop(gone)


def _fold_affine_into(g, p, s, t):
    if p.op == "Conv" and len(p.inputs) >= 2 and p.inputs[1] in g.consts and \
            (len(p.inputs) < 3 or not p.inputs[2] or p.inputs[2] in g.consts):
        w = g.consts[p.inputs[1]].astype(np.float32)
        if w.shape[0] != len(s):
            return False
        b = g.consts[p.inputs[2]].astype(np.float32) if len(p.inputs) >= 3 and p.inputs[2] else \
            np.zeros(len(s), np.float32)
        w2 = w * s.reshape((-1,) + (1,) * (w.ndim - 1))
        b2 = b * s + t
        _replace_const_inputs(g, p, [w2, b2])
        return True
    if p.op == "ConvTranspose" and len(p.inputs) >= 2 and p.inputs[1] in g.consts and \
            int(p.attr("group", 1)) == 1 and (len(p.inputs) < 3 or not p.inputs[2] or p.inputs[2] in g.consts):
        w = g.consts[p.inputs[1]].astype(np.float32)
        if w.shape[1] != len(s):
            return False
        b = g.consts[p.inputs[2]].astype(np.float32) if len(p.inputs) >= 3 and p.inputs[2] else \
            np.zeros(len(s), np.float32)
        _replace_const_inputs(g, p, [w * s.reshape(1, -1, *([1] * (w.ndim - 2))), b * s + t])
        return True
    if p.op == "BatchNormalization" and all(v in g.consts for v in p.inputs[1:5]) and len(p.inputs) >= 5:
        sc, bi = g.consts[p.inputs[1]].astype(np.float32), g.consts[p.inputs[2]].astype(np.float32)
        rest = [g.consts[v] for v in p.inputs[3:5]]
        _replace_const_inputs(g, p, [sc * s, bi * s + t] + rest, start=1)
        return True
    if p.op == "Affine":
        return False
    if p.op == "FC":
        w, b = p.attrs["weight"], p.attrs["bias"]
        b = np.zeros(w.shape[0], np.float32) if b is None else b
        if w.shape[0] != len(s):
            return False
        p.attrs = {"weight": (w * s[:, None]).astype(np.float32), "bias": (b * s + t).astype(np.float32)}
        return True
    return False


def _replace_const_inputs(g, p, arrays, start=1):
    """Give node p new constant inputs (fresh names, so a shared initializer is left intact)."""
    new = list(p.inputs)
    while len(new) < start + len(arrays):
        new.append("")
    for i, a in enumerate(arrays):
        old = p.inputs[start + i] if start + i < len(p.inputs) else ""
        name = f"{old or p.name + f'_in{start + i}'}__folded"
        while name in g.consts:
            name += "_"
        g.consts[name] = np.asarray(a, np.float32)
        g.shapes[name] = tuple(np.shape(a))
        new[start + i] = name
    if p.label is None and p.inputs[1:2] and p.inputs[1]:
        p.label = _param_label(p.inputs[1])
    p.inputs = new


# ---------------------------------------------------------------- 5. Pad into the next layer
def _pad_spatial(n, g):
    """(top, left, bottom, right) of a Pad on an NCHW value, or None if it pads N or C, is
    negative, or its value/mode are not plain."""
    if n.attr("pads") is not None:
        pads = list(n.attr("pads"))
        val = float(n.attr("value", 0.0))
    else:
        if len(n.inputs) < 2 or n.inputs[1] not in g.consts:
            return None
        pads = _ints(g.consts[n.inputs[1]])
        val = 0.0
        if len(n.inputs) > 2 and n.inputs[2]:
            if n.inputs[2] not in g.consts:
                return None
            val = float(np.asarray(g.consts[n.inputs[2]]).reshape(-1)[0])
        if len(n.inputs) > 3 and n.inputs[3]:           # axes (opset 18)
            if n.inputs[3] not in g.consts:
                return None
            r = g.rank(n.inputs[0]) or 4
            axes = [a % r for a in _ints(g.consts[n.inputs[3]])]
            full = [0] * (2 * r)
            k = len(axes)
            for i, a in enumerate(axes):
                full[a], full[a + r] = pads[i], pads[i + k]
            pads = full
    if len(pads) != 8 or any(p < 0 for p in pads) or any(pads[i] for i in (0, 1, 4, 5)):
        return None
    return (pads[2], pads[3], pads[6], pads[7]), val, n.attr("mode", "constant")


def fold_pads(g: OGraph):
    use = g.consumers()
    gone = []
    for n in g.nodes:
        if n.op != "Pad" or not g.single_use(n.outputs[0], use):
            continue
        r = _pad_spatial(n, g)
        if r is None:
            continue
        (t, l, b, rr), val, mode = r
        c = use[n.outputs[0]][0]
        if mode != "constant" or c.inputs[0] != n.outputs[0]:
            continue
        ok = (c.op in ("Conv",) and val == 0.0) or \
             (c.op == "AveragePool" and val == 0.0 and (c.attr("count_include_pad", 0) or
                                                        not any(c.attr("pads", [0])))) or \
             (c.op == "MaxPool" and np.isneginf(val))
        if not ok or c.attr("auto_pad", "NOTSET") not in ("NOTSET", ""):
            continue
        p0 = list(c.attr("pads", [0, 0, 0, 0]))
        c.attrs["pads"] = [p0[0] + t, p0[1] + l, p0[2] + b, p0[3] + rr]
        if c.op == "AveragePool":
            c.attrs["count_include_pad"] = 1
        g.alias(n.outputs[0], n.inputs[0])
        gone.append(n)
        g.folded["Pad"] += 1
    g.drop(gone)


# ---------------------------------------------------------------- 6. reductions
def reductions(g: OGraph):
    for n in list(g.nodes):
        if n.op != "ReduceMean" or g.rank(n.inputs[0]) != 4:
            continue
        axes = _axes(n, g, 1) if g.opset >= 18 else n.attr("axes")
        if axes is None or sorted(a % 4 for a in axes) != [2, 3]:
            continue
        n.op, n.inputs = "GlobalAveragePool", [n.inputs[0]]
        keep = n.attr("keepdims", 1)
        n.attrs = {}
        if not keep:
            mid = n.outputs[0] + "__gap"
            out = n.outputs[0]
            n.outputs = [mid]
            g.shapes[mid] = g.shapes.get(n.inputs[0], (None, None))[:2] + (1, 1)
            i = g.nodes.index(n)
            g.nodes.insert(i + 1, ONode("Flatten", n.name + "_flatten", [mid], [out], {"axis": 1}))


def _unknown(g):
    return any(v and v not in g.consts and (g.shapes.get(v) is None or None in g.shapes[v][1:])
               for n in g.nodes for v in n.inputs + n.outputs)


def reinfer(g: OGraph):
    """Run ONNX shape inference again on the graph as folded so far: shapes that depended on
    computed constants (a Pad's pads, a Reshape's target) become known. Large constants go in
    as typed inputs (their shape is all inference needs), small ones as initializers."""
    import onnx
    from onnx import helper, numpy_helper
    used = {v for n in g.nodes for v in n.inputs if v}
    inits, ins = [], []
    for v in sorted(used & set(g.consts)):
        a = np.asarray(g.consts[v])
        if a.size <= 256:
            inits.append(numpy_helper.from_array(a, v))
        else:
            dt = helper.np_dtype_to_tensor_dtype(a.dtype)
            ins.append(helper.make_tensor_value_info(v, dt, list(a.shape)))
    for v in g.inputs:
        dims = [d if d is not None else "N" for d in g.shapes.get(v, ())]
        ins.append(helper.make_tensor_value_info(v, onnx.TensorProto.FLOAT, dims))
    nodes = []
    for n in g.nodes:
        if n.op in ("FC", "Affine", "NdReshape"):
            return False                 # not ONNX any more: only before those rewrites
        attrs = {k: (numpy_helper.from_array(v) if isinstance(v, np.ndarray) else v) for k, v in n.attrs.items()}
        nodes.append(helper.make_node(n.op, n.inputs, n.outputs, name=n.name, domain=n.domain or None, **attrs))
    outs = [helper.make_tensor_value_info(v, onnx.TensorProto.FLOAT, None) for v in g.outputs]
    model = helper.make_model(helper.make_graph(nodes, "g", ins, outs, initializer=inits),
                              opset_imports=[helper.make_opsetid("", g.opset)])
    try:
        model = onnx.shape_inference.infer_shapes(model)
    except Exception:
        return False
    changed = False
    for vi in list(model.graph.value_info) + list(model.graph.output):
        tt = vi.type.tensor_type
        if not tt.HasField("shape"):
            continue
        new = tuple(int(d.dim_value) if d.HasField("dim_value") and d.dim_value > 0 else None
                    for d in tt.shape.dim)
        new = tuple(None if d == BATCH else d for d in new)     # the batch sentinel is no size
        old = g.shapes.get(vi.name)
        if old is None or (len(old) == len(new) and sum(d is None for d in new) < sum(d is None for d in old)):
            g.shapes[vi.name] = new
            changed = True
    return changed


# ---------------------------------------------------------------- 7. activations written as subgraphs
def activation_patterns(g: OGraph):
    """x·sigmoid(x) -> SiLU, x·tanh(softplus(x)) -> Mish, x·hardsigmoid(x) (1/6, 1/2) -> HardSwish,
    x·0.5·(1 + erf(x/√2)) -> Gelu: what exporters write for activations an older opset lacks."""
    changed = True
    while changed:
        changed = False
        use, prod = g.consumers(), g.producers()
        for n in g.nodes:
            if n.op != "Mul" or len(n.inputs) != 2:
                continue
            hit = _act_match(g, n, use, prod)
            if hit is None:
                continue
            op, x, gone = hit
            g.drop(gone)
            for d in gone:
                g.folded[d.op] += 1
            n.op, n.inputs, n.attrs = op, [x], {}
            changed = True
            break


def _only_use(g, v, use):
    return g.single_use(v, use) or (len(use.get(v, [])) == 1 and v not in g.outputs)


def _act_match(g, n, use, prod):
    a, b = n.inputs
    for x, f in ((a, b), (b, a)):
        p = prod.get(f)
        if p is None or not _only_use(g, f, use):
            continue
        if p.op == "Sigmoid" and p.inputs[0] == x:
            return "SiLU", x, [p]
        if p.op == "HardSigmoid" and p.inputs[0] == x and abs(p.attr("alpha", 0.2) - 1 / 6) < 1e-6 \
                and abs(p.attr("beta", 0.5) - 0.5) < 1e-6:
            return "HardSwish", x, [p]
        if p.op == "Tanh":
            q = prod.get(p.inputs[0])
            if q is not None and q.op == "Softplus" and q.inputs[0] == x and _only_use(g, p.inputs[0], use):
                return "Mish", x, [p, q]
    # Gelu: Mul(Mul(x, Add(Erf(Div(x, √2)), 1)), 0.5) in either order of the products
    chain = _gelu(g, n, use, prod)
    return chain


def _scalar(g, v):
    if v not in g.consts or np.asarray(g.consts[v]).size != 1:
        return None
    return float(np.asarray(g.consts[v]).reshape(-1)[0])


def _gelu(g, n, use, prod):
    def split(m):          # a Mul of a value and a constant
        a, b = m.inputs
        if _scalar(g, b) is not None:
            return a, _scalar(g, b)
        if _scalar(g, a) is not None:
            return b, _scalar(g, a)
        return None
    half = split(n)
    inner = n
    gone = []
    if half is not None and abs(half[1] - 0.5) < 1e-6:          # (x * (1 + erf)) * 0.5
        inner = prod.get(half[0])
        if inner is None or inner.op != "Mul" or not _only_use(g, half[0], use):
            return None
        gone.append(inner)
    a, b = inner.inputs
    for x, t in ((a, b), (b, a)):
        add = prod.get(t)
        if add is None or add.op != "Add" or not _only_use(g, t, use):
            continue
        e, one = (add.inputs[0], add.inputs[1]) if _scalar(g, add.inputs[1]) is not None else \
            (add.inputs[1], add.inputs[0])
        if _scalar(g, one) != 1.0:
            continue
        erf = prod.get(e)
        if erf is None or erf.op != "Erf" or not _only_use(g, e, use):
            continue
        d = prod.get(erf.inputs[0])
        if d is None or d.op not in ("Div", "Mul") or d.inputs[0] != x:
            continue
        c = _scalar(g, d.inputs[1])
        if c is None or not (abs(c - 2 ** 0.5) < 1e-4 if d.op == "Div" else abs(c - 2 ** -0.5) < 1e-4):
            continue
        if half is None:
            # x * 0.5 first: inner = Mul(Mul(x, 0.5), (1 + erf))?  not this shape
            return None
        if inner is n:
            return None
        # n = Mul(inner, 0.5); keep n, rewritten; drop inner, add, erf, d
        return "Gelu", x, gone + [add, erf, d]
    return None


# ---------------------------------------------------------------- 8. pools written as subgraphs
def min_pools(g: OGraph):
    """Neg - MaxPool - Neg (how netdsl exports MinPool) -> one MinPool node (read as netdsl's
    MinPool, with the MaxPool's window, stride, pads and ceil_mode), named after the last Neg."""
    use, prod = g.consumers(), g.producers()
    gone = []
    for n in g.nodes:
        if n.op != "Neg":
            continue
        p = prod.get(n.inputs[0])
        if p is None or p.op != "MaxPool" or (len(p.outputs) > 1 and p.outputs[1]) or \
                not g.single_use(p.outputs[0], use):
            continue
        q = prod.get(p.inputs[0])
        if q is None or q.op != "Neg" or not g.single_use(q.outputs[0], use):
            continue
        n.op, n.inputs, n.attrs = "MinPool", [q.inputs[0]], dict(p.attrs)
        gone += [p, q]
        g.folded["Neg"] += 2
    g.drop(gone)


def normalize(g: OGraph):
    """All the folds, in an order where each one sees the others' results."""
    fold_constants(g)
    for _ in range(4):
        if not _unknown(g) or not reinfer(g):
            break
        fold_constants(g)
    remove_trivial(g)
    reductions(g)
    activation_patterns(g)
    linear_layers(g)
    affine_layers(g)
    fold_pads(g)
    min_pools(g)
    remove_trivial(g)
    return g
