"""The numpy reference executor: runs an analyzed Graph op by op with each
spec's `reference`. Slow and simple on purpose — it is the oracle the C
runtime is tested against, end to end."""
from __future__ import annotations

import numpy as np

from .. import ops
from ..errors import NetDSLError


def init_weights(graph, seed=0) -> dict:
    """Deterministic weights for every parameter and buffer, PyTorch names, source order."""
    rng = np.random.default_rng(seed)
    out = {}
    for node in graph.nodes():
        if not node.params and not node.buffers:
            continue
        spec = ops.get(node.op)
        shapes = [graph[p].shape for p in graph.preds(node.name)]
        init = spec.init(node.attrs, shapes, rng)
        for pname in list(node.params) + list(node.buffers):
            arr = init.get(pname)
            if arr is None:
                shape = (node.params.get(pname) or node.buffers.get(pname))
                arr = np.ones(shape, np.float32) if pname == "running_var" else np.zeros(shape, np.float32)
            out[f"{node.name}.{pname}"] = np.ascontiguousarray(arr, dtype=np.float32)
    return out


def run_reference(graph, weights: dict, inputs, dtype=np.float64) -> dict:
    """Run the graph in numpy. `inputs`: an array (one input) or {input name: array}."""
    if not isinstance(inputs, dict):
        if len(graph.inputs) != 1:
            raise NetDSLError(f"the network has inputs {', '.join(graph.inputs)}: pass a dict")
        inputs = {graph.inputs[0]: inputs}
    vals = {}
    for node in graph.nodes():
        if node.op == "Input":
            x = np.asarray(inputs[node.name], dtype=dtype)
            if x.shape[1:] != tuple(node.shape):
                raise NetDSLError(f"input {node.name} expects shape [N, {', '.join(map(str, node.shape))}], "
                                  f"got {list(x.shape)}")
            vals[node.name] = x
            continue
        spec = ops.get(node.op)
        w = {p: weights[f"{node.name}.{p}"].astype(dtype) for p in list(node.params) + list(node.buffers)}
        xs = [vals[p] for p in graph.preds(node.name)]
        vals[node.name] = np.asarray(spec.reference(node.attrs, xs, w), dtype=dtype)
    return {k: vals[v] for k, v in graph.outputs.items()}
