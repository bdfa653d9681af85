"""The float64 numpy training step: the oracle the compiled step is tested against.

    loss, grads, new_weights = reference_step(graph, weights, x, y, loss, optimizer)

Forward with each op's numpy reference (BatchNorm on batch statistics, as it trains),
the loss's own reference, backward with each op's @grad_ref (netdsl/train/registry.py),
then the optimizer's update written out in numpy (PyTorch's formulas: SGD with momentum,
dampening, Nesterov and weight decay; Adam and AdamW with bias correction). Slow and
plain on purpose. It does not sample: a network with Dropout (p > 0) or StochasticPool
is refused (their masks and draws come from the C generator; their kernels are tested
on their own in tests/train).
"""
from __future__ import annotations

import numpy as np

from .. import ops
from ..errors import NetDSLError
from .plan import _trainable_nodes, loss_output, training_graph
from .registry import grad_reference


def _bn_train(node, x, w):
    axes = (0,) + tuple(range(2, x.ndim))
    mean = x.mean(axis=axes, keepdims=True)
    var = x.var(axis=axes, keepdims=True)
    shape = [1, -1] + [1] * (x.ndim - 2)
    xhat = (x - mean) / np.sqrt(var + node.attrs["eps"])
    return xhat * w["weight"].reshape(shape) + w["bias"].reshape(shape)


def forward(graph, weights, x, out, dtype=np.float64):
    """Values of every node the output depends on (training mode), float64."""
    if not isinstance(x, dict):
        x = {graph.inputs[0]: x}
    vals = {}
    for nd in _trainable_nodes(graph, out):
        if nd.op == "Input":
            vals[nd.name] = np.asarray(x[nd.name], dtype)
            continue
        if nd.op == "StochasticPool" or (nd.op == "Dropout" and nd.attrs.get("p", 0) > 0):
            raise NetDSLError(f"the reference step does not sample ({nd.op} at {nd.name})")
        xs = [vals[p] for p in graph.preds(nd.name)]
        w = {p: np.asarray(weights[f"{nd.name}.{p}"], dtype) for p in list(nd.params) + list(nd.buffers)}
        if nd.op == "BatchNorm":
            vals[nd.name] = _bn_train(nd, xs[0], w)
        else:
            vals[nd.name] = np.asarray(ops.get(nd.op).reference(nd.attrs, xs, w), dtype)
    return vals


def gradients(graph, weights, x, y, loss, output=None, node_grads=None):
    """(loss value, correct, {param name: gradient}) in float64. node_grads, a dict, receives
    each node's output gradient (debugging: compare with StepPlan.grad)."""
    graph = training_graph(graph)
    out = loss_output(graph, loss, output)
    vals = forward(graph, weights, x, out)
    target = loss.prepare_targets(y, tuple(graph[out].shape), vals[out].shape[0]).astype(np.float64)
    lval, d_out, correct = loss.reference(vals[out], target.reshape(_target_shape(loss, vals[out], target)))
    grads = {f"{nd.name}.{p}": np.zeros(shape) for nd in _trainable_nodes(graph, out)
             for p, shape in nd.params.items()}      # only what the loss reaches (the optimizer's set)
    dys = {out: np.asarray(d_out, np.float64).reshape(vals[out].shape)}
    for nd in reversed(_trainable_nodes(graph, out)):
        if nd.op == "Input" or nd.name not in dys:
            continue
        dy = dys.pop(nd.name)
        if node_grads is not None:
            node_grads[nd.name] = dy
        preds = graph.preds(nd.name)
        xs = [vals[p] for p in preds]
        if "no_op" in ops.get(nd.op).flags:           # views, Dropout(p=0): the gradient passes through
            dxs, dps = [dy.reshape(xs[0].shape)], {}
        else:
            rule = grad_reference(nd.op)
            if rule is None:
                raise NetDSLError(f"{nd.op} has no reference gradient (layer {nd.name})")
            w = {p: np.asarray(weights[f"{nd.name}.{p}"], np.float64) for p in list(nd.params) + list(nd.buffers)}
            dxs, dps = rule(nd.attrs, xs, w, vals[nd.name], dy)
        for p, g in dps.items():
            grads[f"{nd.name}.{p}"] = grads[f"{nd.name}.{p}"] + np.asarray(g, np.float64).reshape(nd.params[p])
        for p, dx in zip(preds, dxs):
            if dx is None or graph[p].op == "Input":
                continue
            dys[p] = dys[p] + dx if p in dys else np.asarray(dx, np.float64)
    return float(lval), int(correct), grads


def _target_shape(loss, out, target):
    if loss.name == "cross_entropy":
        return (out.shape[0],) + out.shape[2:]
    return out.shape


def update(optimizer, params: dict, grads: dict, state: dict, step: int) -> dict:
    """New params after one optimizer step (state updated in place: name -> [buffers])."""
    d = optimizer.state_dict()
    kind = d.get("name", type(optimizer).__name__).lower()
    lr = optimizer.step_fields(step)["lr"]
    new = {}
    for k, p in params.items():
        g = np.asarray(grads[k], np.float64)
        p = np.asarray(p, np.float64)
        s = state.setdefault(k, [])
        wd = float(d.get("weight_decay", 0.0))
        if kind == "sgd":
            mom, damp, nest = float(d.get("momentum", 0)), float(d.get("dampening", 0)), bool(d.get("nesterov"))
            g = g + wd * p
            if mom:
                if not s:
                    s.append(g.copy())
                else:
                    s[0] = mom * s[0] + (1 - damp) * g
                g = g + mom * s[0] if nest else s[0]
            new[k] = p - lr * g
        elif kind in ("adam", "adamw"):
            b1, b2 = d.get("betas", (0.9, 0.999))
            eps = float(d.get("eps", 1e-8))
            if kind == "adamw":
                p = p * (1 - lr * wd)
            else:
                g = g + wd * p
            if not s:
                s += [np.zeros_like(p), np.zeros_like(p)]
            s[0] = b1 * s[0] + (1 - b1) * g
            s[1] = b2 * s[1] + (1 - b2) * g * g
            t = step + 1
            mhat = s[0] / (1 - b1 ** t)
            vhat = s[1] / (1 - b2 ** t)
            new[k] = p - lr * mhat / (np.sqrt(vhat) + eps)
        else:
            raise NetDSLError(f"the reference step has no update for optimizer {kind!r}")
    return new


def reference_step(graph, weights, x, y, loss, optimizer, output=None, state=None, step=0):
    """(loss, correct, grads, new weights) of one float64 training step."""
    lval, correct, grads = gradients(graph, weights, x, y, loss, output)
    params = {k: weights[k] for k in grads}
    new = dict(weights)
    new.update(update(optimizer, params, grads, {} if state is None else state, step))
    return lval, correct, grads, new
