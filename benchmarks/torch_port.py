"""Port any analyzed netdsl graph to PyTorch and to ONNX, with netdsl's weights.

    from torch_port import to_torch, to_onnx
    mod = to_torch(m.graph, m.state_dict())      # torch.nn.Module, eval mode
    proto = to_onnx(m.graph, m.state_dict())     # onnx.ModelProto (netdsl's default opset)

The ONNX half is netdsl's exporter (netdsl/interop/onnx_export.py; `netdsl
export`); the PyTorch half lives here. It is a small interpreter over `m.graph`
(nodes in order, inputs in slot order), one rule per op following the op specs
in netdsl/ops/: Conv's
(top, left, bottom, right) pads (asymmetric ones through F.pad in torch,
native in ONNX), fused `act` attributes, BatchNorm with running statistics,
ceil_mode pooling, Concat/Add/Mul (per-channel Mul broadcast), Upsample,
Pad, Crop, LRN, Softmax over channels, views. It exists for the benchmarks
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


def to_torch(graph, state: dict, train: bool = False):
    """A torch.nn.Module (eval mode, no grad) computing `graph` with `state`'s weights.
    train=True: the layers' parameters are nn.Parameters (BN running statistics stay
    buffers) and the module is in training mode (BatchNorm on batch statistics, momentum
    0.1): the oracle of netdsl's training step (tests/train, benchmarks/train_compare.py)."""
    import torch
    import torch.nn.functional as F

    nodes = [(n.name, n.op, dict(n.attrs), tuple(n.shape), list(graph.preds(n.name)))
             for n in graph.nodes()]
    inputs = list(graph.inputs)
    outputs = dict(graph.outputs)
    param_keys = {f"{n.name}.{p}" for n in graph.nodes() for p in n.params}
    known = {"Input", "Conv", "ConvTranspose", "Local", "FC", "BatchNorm", "LRN", "ReLU", "LeakyReLU",
             "Sigmoid", "Tanh", "Softmax", "LogSoftmax", "MaxPool", "MinPool", "AvgPool", "StochasticPool",
             "GlobalAvgPool", "GlobalMaxPool", "Concat", "Add", "Mul", "Flatten", "Reshape", "Identity",
             "Dropout", "Upsample", "Pad", "Crop", "Clip", "ReLU6", "Hardtanh", "HardSigmoid", "HardSwish",
             "SiLU", "GELU", "Mish", "PReLU", "Slice"}
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
                if train and k in param_keys:
                    t = torch.nn.Parameter(t)
                    self.register_parameter(k.replace(".", "__"), t)
                else:
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
                                     self.training, 0.1, a["eps"])
                elif op == "LRN":
                    y = F.local_response_norm(x, a["size"], a["alpha"], a["beta"], a["k"])
                elif op == "ReLU":
                    y = F.relu(x)
                elif op == "LeakyReLU":
                    y = F.leaky_relu(x, a["slope"])
                elif op == "Clip":
                    y = torch.clamp(x, a["min"], a["max"])
                elif op == "ReLU6":
                    y = F.relu6(x)
                elif op == "Hardtanh":
                    y = F.hardtanh(x, a["min_val"], a["max_val"])
                elif op == "HardSigmoid":
                    y = torch.clamp(a["alpha"] * x + a["beta"], 0.0, 1.0)
                elif op == "HardSwish":
                    y = F.hardswish(x)
                elif op == "SiLU":
                    y = F.silu(x)
                elif op == "GELU":
                    y = F.gelu(x, approximate=a["approximate"])
                elif op == "Mish":
                    y = F.mish(x)
                elif op == "PReLU":
                    y = F.prelu(x, w)
                elif op == "Slice":
                    y = x[:, a["start"]:a["stop"]]
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

    return Port().train() if train else Port().eval()


# ---------------------------------------------------------------- ONNX

def to_onnx(graph, state: dict, opset: int | None = None):
    """An onnx.ModelProto computing `graph` with `state`'s weights: netdsl's own exporter
    (netdsl/interop/onnx_export.py, what `netdsl export` writes), checked with onnx.checker.
    Its node names start with the layer's name (`layer` or `layer/Op_k`), which is how
    compare.py charges ONNX Runtime's profile to netdsl's layers (see below)."""
    from netdsl.errors import NetDSLError
    from netdsl.interop.onnx_export import to_model
    try:
        model = to_model(graph, state, opset=opset, name="netdsl-bench")
    except NetDSLError as e:
        raise Unsupported(e.render()) from None
    # ORT names a node it rewrites after its output tensor plus a suffix (`tanh1_nchwc`);
    # profile_ort keeps what comes before the first "/", so the layer's own node and tensor
    # (both `conv1` in the file netdsl writes) become `conv1/Conv` here
    keep = {v.name for v in model.graph.output}
    renamed = {}
    for node in model.graph.node:
        if "/" not in node.name:
            node.name = f"{node.name}/{node.op_type}"
        for i, t in enumerate(node.output):
            if "/" not in t and t not in keep:
                renamed[t] = node.output[i] = f"{t}/{node.op_type}"
        for i, t in enumerate(node.input):
            node.input[i] = renamed.get(t, t)
    for v in model.graph.value_info:
        v.name = renamed.get(v.name, v.name)
    return model
