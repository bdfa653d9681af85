"""Port any analyzed netdsl graph to PyTorch and to ONNX, with netdsl's weights.

    from torch_port import to_torch, to_onnx
    mod = to_torch(m.graph, m.state_dict())      # torch.nn.Module, eval mode
    proto = to_onnx(m.graph, m.state_dict())     # onnx.ModelProto (opset 17)

Both are small interpreters over `m.graph` (nodes in order, inputs in slot
order), one rule per op following the op specs in netdsl/ops/: Conv's
(top, left, bottom, right) pads (asymmetric ones through F.pad in torch,
native in ONNX), fused `act` attributes, BatchNorm with running statistics,
ceil_mode pooling, Concat/Add/Mul (per-channel Mul broadcast), Upsample,
Pad, Crop, LRN, Softmax over channels, views. They exist for the benchmarks
only (benchmarks/compare.py): torch and onnx are not netdsl dependencies.
An op with no mapping raises `Unsupported`; the caller reports it and skips
that engine.
"""
from __future__ import annotations

import numpy as np


class Unsupported(Exception):
    """The graph holds an op (or attribute combination) this port cannot express."""


# ---------------------------------------------------------------- PyTorch

def _torch_act(F, y, act, slope=0.01):
    if act in (None, "none"):
        return y
    if act == "relu":
        return F.relu(y)
    if act == "leakyrelu":
        return F.leaky_relu(y, slope)
    if act == "sigmoid":
        return y.sigmoid()
    if act == "tanh":
        return y.tanh()
    raise Unsupported(f"activation {act!r}")


def to_torch(graph, state: dict):
    """A torch.nn.Module (eval mode, no grad) computing `graph` with `state`'s weights."""
    import torch
    import torch.nn.functional as F

    nodes = [(n.name, n.op, dict(n.attrs), tuple(n.shape), list(graph.preds(n.name)))
             for n in graph.nodes()]
    inputs = list(graph.inputs)
    outputs = dict(graph.outputs)
    known = {"Input", "Conv", "ConvTranspose", "Local", "FC", "BatchNorm", "LRN", "ReLU", "LeakyReLU",
             "Sigmoid", "Tanh", "Softmax", "LogSoftmax", "MaxPool", "MinPool", "AvgPool", "StochasticPool",
             "GlobalAvgPool", "GlobalMaxPool", "Concat", "Add", "Mul", "Flatten", "Reshape", "Identity",
             "Dropout", "Upsample", "Pad", "Crop"}
    for name, op, *_ in nodes:
        if op not in known:
            raise Unsupported(f"no PyTorch mapping for {op} (layer {name})")

    def pool_pad(x, a, fill):
        """Symmetric pads go to the pooling call; asymmetric ones through F.pad first."""
        t, l, b, r = a["pad"]
        if t == b and l == r:
            return x, (t, l)
        if a["ceil_mode"]:
            raise Unsupported("asymmetric pooling pads with ceil_mode")
        return F.pad(x, (l, r, t, b), value=fill), (0, 0)

    class Port(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = {}
            for k, v in state.items():
                t = torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32).copy())
                self.register_buffer(k.replace(".", "__"), t)
                self.w[k] = t

        def _apply(self, fn, *args, **kw):       # keep self.w pointing at the moved buffers
            out = super()._apply(fn, *args, **kw)
            self.w = {k: getattr(self, k.replace(".", "__")) for k in self.w}
            return out

        def forward(self, *xs):
            env = dict(zip(inputs, xs))
            W = self.w
            for name, op, a, shape, preds in nodes:
                if op == "Input":
                    continue
                ins = [env[p] for p in preds]
                x = ins[0] if ins else None
                w = W.get(f"{name}.weight")
                b = W.get(f"{name}.bias")
                if op == "Conv":
                    t, l, bo, r = a["pad"]
                    if t == bo and l == r:
                        pad = (t, l)
                    else:
                        x, pad = F.pad(x, (l, r, t, bo)), (0, 0)
                    y = F.conv2d(x, w, b, a["stride"], pad, a["dilation"], a["groups"])
                    y = _torch_act(F, y, a["act"])
                elif op == "ConvTranspose":
                    t, l, bo, r = a["pad"]
                    if t == bo and l == r:
                        y = F.conv_transpose2d(x, w, b, a["stride"], (t, l), a["output_padding"],
                                               a["groups"], a["dilation"])
                    else:
                        y = F.conv_transpose2d(x, w, b, a["stride"], 0, a["output_padding"],
                                               a["groups"], a["dilation"])
                        y = y[:, :, t:y.shape[2] - bo, l:y.shape[3] - r]
                    y = _torch_act(F, y, a["act"])
                elif op == "Local":
                    t, l, bo, r = a["pad"]
                    x = F.pad(x, (l, r, t, bo))
                    cols = F.unfold(x, a["kernel"], a["dilation"], 0, a["stride"])   # n, c*kh*kw, P
                    y = torch.einsum("nkp,pok->nop", cols, w).reshape(x.shape[0], *shape)
                    if b is not None:
                        y = y + b
                elif op == "FC":
                    y = _torch_act(F, F.linear(x.flatten(1), w, b), a["act"])
                elif op == "BatchNorm":
                    y = F.batch_norm(x, W[f"{name}.running_mean"], W[f"{name}.running_var"], w, b,
                                     False, 0.0, a["eps"])
                elif op == "LRN":
                    y = F.local_response_norm(x, a["size"], a["alpha"], a["beta"], a["k"])
                elif op == "ReLU":
                    y = F.relu(x)
                elif op == "LeakyReLU":
                    y = F.leaky_relu(x, a["slope"])
                elif op == "Sigmoid":
                    y = x.sigmoid()
                elif op == "Tanh":
                    y = x.tanh()
                elif op == "Softmax":
                    y = F.softmax(x, 1)
                elif op == "LogSoftmax":
                    y = F.log_softmax(x, 1)
                elif op in ("MaxPool", "MinPool"):
                    sign = -1.0 if op == "MinPool" else 1.0
                    xp, pad = pool_pad(sign * x if sign < 0 else x, a, -float("inf"))
                    y = F.max_pool2d(xp, a["kernel"], a["stride"], pad, 1, a["ceil_mode"])
                    y = -y if sign < 0 else y
                elif op == "AvgPool":
                    if a["count_include_pad"] or not any(a["pad"]):
                        xp, pad = pool_pad(x, a, 0.0)
                    else:
                        t, l, bo, r = a["pad"]
                        if not (t == bo and l == r):
                            raise Unsupported("AvgPool: asymmetric pads with count_include_pad=false")
                        xp, pad = x, (t, l)
                    y = F.avg_pool2d(xp, a["kernel"], a["stride"], pad, a["ceil_mode"], a["count_include_pad"])
                elif op == "StochasticPool":
                    xp, pad = pool_pad(x, a, 0.0)
                    s1 = F.avg_pool2d(xp, a["kernel"], a["stride"], pad, a["ceil_mode"], True)
                    s2 = F.avg_pool2d(xp * xp, a["kernel"], a["stride"], pad, a["ceil_mode"], True)
                    y = torch.where(s1 != 0, s2 / torch.where(s1 != 0, s1, torch.ones_like(s1)),
                                    torch.zeros_like(s1))
                elif op == "GlobalAvgPool":
                    y = F.adaptive_avg_pool2d(x, 1)
                elif op == "GlobalMaxPool":
                    y = F.adaptive_max_pool2d(x, 1)
                elif op == "Concat":
                    y = torch.cat(ins, 1)
                elif op == "Add":
                    y = ins[0]
                    for z in ins[1:]:
                        y = y + z
                elif op == "Mul":
                    rank = max(z.dim() for z in ins)
                    y = None
                    for z in ins:
                        z = z.reshape(*z.shape, 1, 1) if z.dim() == 2 and rank == 4 else z
                        y = z if y is None else y * z
                elif op == "Flatten":
                    y = x.flatten(1)
                elif op == "Reshape":
                    y = x.reshape(x.shape[0], *shape)
                elif op in ("Identity", "Dropout"):
                    y = x
                elif op == "Upsample":
                    ac = a["align_corners"] if a["mode"] == "bilinear" else None
                    y = F.interpolate(x, size=tuple(a["size"]), mode=a["mode"], align_corners=ac)
                elif op == "Pad":
                    t, l, bo, r = a["pad"]
                    if a["mode"] == "constant":
                        y = F.pad(x, (l, r, t, bo), value=a["value"])
                    else:
                        y = F.pad(x, (l, r, t, bo), mode=a["mode"])
                elif op == "Crop":
                    (y0, x0), (oh, ow) = a["offset"], a["size"]
                    y = x[:, :, y0:y0 + oh, x0:x0 + ow]
                else:   # pragma: no cover — checked above
                    raise Unsupported(op)
                env[name] = y
            outs = tuple(env[v] for v in outputs.values())
            return outs[0] if len(outs) == 1 else outs

    return Port().eval()


# ---------------------------------------------------------------- ONNX

def to_onnx(graph, state: dict, opset: int = 17):
    """An onnx.ModelProto computing `graph` with `state`'s weights (built directly with onnx.helper)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes_out, inits = [], []
    counter = [0]

    cur = [""]                      # the netdsl layer being translated: names its ONNX nodes and tensors

    def fresh(base):                # ORT names fused nodes after their output tensor: keep the layer in it
        counter[0] += 1
        return f"{cur[0]}/{base}_{counter[0]}"

    def const(base, arr):
        nm = fresh(base)
        inits.append(numpy_helper.from_array(np.asarray(arr), nm))
        return nm

    def node(op, ins, out=None, **attrs):
        out = out or fresh(op)
        nodes_out.append(helper.make_node(op, ins, [out], name=f"{cur[0]}/{op}_{counter[0]}", **attrs))
        return out

    def act(y, a, name):
        kind = a.get("act", "none")
        if kind in (None, "none"):
            return y
        table = {"relu": ("Relu", {}), "leakyrelu": ("LeakyRelu", {"alpha": 0.01}),
                 "sigmoid": ("Sigmoid", {}), "tanh": ("Tanh", {})}
        if kind not in table:
            raise Unsupported(f"activation {kind!r}")
        op, attrs = table[kind]
        return node(op, [y], **attrs)

    weight_names = {}
    for k, v in state.items():
        weight_names[k] = k
        inits.append(numpy_helper.from_array(np.ascontiguousarray(v, dtype=np.float32), k))

    env, g_inputs = {}, []
    rank = {}
    for n in graph.nodes():
        name, op, a, shape = n.name, n.op, dict(n.attrs), tuple(n.shape)
        cur[0] = name
        preds = list(graph.preds(name))
        ins = [env[p] for p in preds]
        x = ins[0] if ins else None
        w = f"{name}.weight" if f"{name}.weight" in state else None
        b = f"{name}.bias" if f"{name}.bias" in state else None
        if op == "Input":
            g_inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N", *shape]))
            env[name] = name
            rank[name] = len(shape) + 1
            continue
        if op == "Conv":
            y = node("Conv", [x, w] + ([b] if b else []), kernel_shape=list(a["kernel"]),
                     strides=list(a["stride"]), pads=list(a["pad"]), dilations=list(a["dilation"]),
                     group=a["groups"])
            y = act(y, a, name)
        elif op == "ConvTranspose":
            y = node("ConvTranspose", [x, w] + ([b] if b else []), kernel_shape=list(a["kernel"]),
                     strides=list(a["stride"]), pads=list(a["pad"]), dilations=list(a["dilation"]),
                     group=a["groups"], output_padding=list(a["output_padding"]))
            y = act(y, a, name)
        elif op == "FC":
            xf = node("Flatten", [x], axis=1) if rank[preds[0]] != 2 else x
            y = node("Gemm", [xf, w] + ([b] if b else []), transB=1)
            y = act(y, a, name)
        elif op == "BatchNorm":
            y = node("BatchNormalization", [x, w, b, f"{name}.running_mean", f"{name}.running_var"],
                     epsilon=a["eps"])
        elif op == "LRN":
            if a["size"] % 2 == 0:
                raise Unsupported("LRN with an even size (ONNX centres its window differently)")
            y = node("LRN", [x], size=a["size"], alpha=a["alpha"], beta=a["beta"], bias=a["k"])
        elif op in ("ReLU", "Sigmoid", "Tanh"):
            y = node({"ReLU": "Relu"}.get(op, op), [x])
        elif op == "LeakyReLU":
            y = node("LeakyRelu", [x], alpha=a["slope"])
        elif op in ("Softmax", "LogSoftmax"):
            y = node(op, [x], axis=1)
        elif op in ("MaxPool", "MinPool"):
            src = node("Neg", [x]) if op == "MinPool" else x
            y = node("MaxPool", [src], kernel_shape=list(a["kernel"]), strides=list(a["stride"]),
                     pads=list(a["pad"]), ceil_mode=int(a["ceil_mode"]))
            y = node("Neg", [y]) if op == "MinPool" else y
        elif op == "AvgPool":
            y = node("AveragePool", [x], kernel_shape=list(a["kernel"]), strides=list(a["stride"]),
                     pads=list(a["pad"]), ceil_mode=int(a["ceil_mode"]),
                     count_include_pad=int(a["count_include_pad"]))
        elif op == "GlobalAvgPool":
            y = node("GlobalAveragePool", [x])
        elif op == "GlobalMaxPool":
            y = node("GlobalMaxPool", [x])
        elif op == "Concat":
            y = node("Concat", ins, axis=1)
        elif op == "Add":
            y = node("Sum", ins) if len(ins) > 2 else node("Add", ins)
        elif op == "Mul":
            r = max(rank[p] for p in preds)
            y = None
            for p, z in zip(preds, ins):
                if rank[p] == 2 and r == 4:
                    z = node("Reshape", [z, const("shape", np.array([0, -1, 1, 1], np.int64))])
                y = z if y is None else node("Mul", [y, z])
        elif op == "Flatten":
            y = node("Flatten", [x], axis=1)
        elif op == "Reshape":
            y = node("Reshape", [x, const("shape", np.array([0, *shape], np.int64))])
        elif op in ("Identity", "Dropout"):
            y = node("Identity", [x])
        elif op == "Upsample":
            if a["mode"] == "nearest":
                kw = dict(mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor")
            else:
                kw = dict(mode="linear", coordinate_transformation_mode=
                          "align_corners" if a["align_corners"] else "pytorch_half_pixel")
            sizes = node("Concat", [node("Slice", [node("Shape", [x]), const("s", np.array([0], np.int64)),
                                                   const("e", np.array([2], np.int64))]),
                                    const("hw", np.array(a["size"], np.int64))], axis=0)
            y = node("Resize", [x, "", "", sizes], **kw)
        elif op == "Pad":
            t, l, bo, r = a["pad"]
            pads = const("pads", np.array([0, 0, t, l, 0, 0, bo, r], np.int64))
            mode = {"replicate": "edge"}.get(a["mode"], a["mode"])
            extra = [const("value", np.array(a["value"], np.float32))] if mode == "constant" else []
            y = node("Pad", [x, pads] + extra, mode=mode)
        elif op == "Crop":
            (y0, x0), (oh, ow) = a["offset"], a["size"]
            y = node("Slice", [x, const("starts", np.array([y0, x0], np.int64)),
                               const("ends", np.array([y0 + oh, x0 + ow], np.int64)),
                               const("axes", np.array([2, 3], np.int64))])
        else:
            raise Unsupported(f"no ONNX mapping for {op} (layer {name})")
        env[name] = y
        rank[name] = len(shape) + 1
    outputs = []
    for oname, nname in graph.outputs.items():
        nodes_out.append(helper.make_node("Identity", [env[nname]], [oname], name=f"{oname}/output"))
        shape = tuple(graph[nname].shape)
        outputs.append(helper.make_tensor_value_info(oname, TensorProto.FLOAT, ["N", *shape]))
    g = helper.make_graph(nodes_out, "netdsl", g_inputs, outputs, inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], producer_name="netdsl-bench")
    model.ir_version = min(model.ir_version, 8)
    onnx.checker.check_model(model)
    return model
