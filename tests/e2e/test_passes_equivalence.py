"""Every zoo model at every level -O0..-O3: the optimized graph computes what the original
computes, on random weights (init_weights(seed=0) with random BatchNorm statistics and affine
parameters, so folding has real work to do) and a random input, batch 1.

Speed: the numpy reference is the oracle and it is slow, so the fully convolutional models
and those that end in global pooling run at a smaller input (their layers and parameter counts
are unchanged, which the test checks); the models whose FC layers fix the input size (LeNet,
AlexNet, VGG, GoogLeNet's aux heads) run at their own size. A level whose rewritten graph and
weights are identical to one already run (-O0 is the original; -O3 adds nothing to -O2 where
there is no residual sum) reuses that run's outputs instead of computing them again.
"""
from __future__ import annotations

import functools
import os
import re

import numpy as np
import pytest

import netdsl
from netdsl.model import ZOO
from netdsl.passes import LEVELS, optimize
from netdsl.runtime.reference import init_weights, run_reference

# Tolerance: max |optimized - original| / max |original| per output, both run in float32.
# Folding changes the order of float32 roundings only (w·s once in float64, rounded once,
# instead of conv(x)·s): a few units of float32 roundoff (6e-8) per layer, which do not grow
# through ~150 layers beyond 1e-6 (observed: at most 2e-6 over the zoo). A real mistake — one
# channel scaled wrongly, a bias lost, an activation in the wrong place — is of order 1.
RTOL = 1e-4

# model -> (input shape in the zoo file, smaller one for this test)
SMALLER = {
    **{f"resnet{d}": ("3x224x224", "3x64x64") for d in (18, 34, 50, 101, 152)},
    **{f"densenet{d}": ("3x224x224", "3x64x64") for d in (121, 169, 201)},
    "fcn": ("3x224x224", "3x64x64"),
    "unet": ("1x572x572", "1x188x188"),
    "yolov2_tiny": ("3x416x416", "3x64x64"),
    "squeezenet1_1": ("3x224x224", "3x64x64"),
    "mobilenet_v2": ("3x224x224", "3x48x48"),
    "mobilenet_v3_small": ("3x224x224", "3x64x64"),
}


def randomize_bn(graph, weights, seed=1):
    """Random running mean/var and affine for every BN (init_weights makes them an identity)."""
    rng = np.random.default_rng(seed)
    w = dict(weights)
    for node in graph.nodes():
        if set(node.buffers) >= {"running_mean", "running_var"}:
            c = node.shape[0]
            for p, arr in (("running_mean", rng.normal(0, 0.1, c)), ("running_var", rng.uniform(0.5, 1.5, c)),
                           ("weight", rng.uniform(0.5, 1.5, c)), ("bias", rng.normal(0, 0.1, c))):
                w[f"{node.name}.{p}"] = arr.astype(np.float32)
    return w


def signature(graph, weights):
    """What determines the outputs: the nodes in order with op, attributes and inputs, the
    outputs, and the weights (names, shapes and a checksum)."""
    nodes = tuple((n.name, n.op, repr(sorted(n.attrs.items())), tuple(graph.preds(n.name)))
                  for n in graph.nodes())
    ws = tuple((k, v.shape, float(v.sum(dtype=np.float64)), float(np.abs(v).sum(dtype=np.float64)))
               for k, v in sorted(weights.items()))
    return nodes, tuple(sorted(graph.outputs.items())), ws


@functools.lru_cache(maxsize=1)         # parametrized model-major: one model in memory at a time
def model(name):
    if name in SMALLER:
        old, new = SMALLER[name]
        path = os.path.join(ZOO, name + ".net")
        with open(path, encoding="utf-8") as f:
            text = f.read()
        text, n = re.subn(rf"^(input \w+: ){old}\b", rf"\g<1>{new}", text, count=1, flags=re.M)
        assert n == 1, f"{name}: the zoo file no longer declares input {old}"
        graph = netdsl.parse(text, name + ".net", path).graph
        assert "x".join(map(str, graph[graph.inputs[0]].shape)) == new
        assert sum(n.n_params for n in graph.nodes()) == netdsl.load(name).total_params
    else:
        graph = netdsl.load(name).graph
    weights = randomize_bn(graph, init_weights(graph, seed=0))
    x = np.random.default_rng(2).standard_normal((1, *graph[graph.inputs[0]].shape)).astype(np.float32)
    ref = run_reference(graph, weights, x, dtype=np.float32)
    return graph, weights, x, ref, {signature(graph, weights): ref}


# VGG-19 is VGG-16 with three more 3x3 convs of the same shapes (nothing else to cover): with -m slow
SLOW_ZOO = {"vgg19"}


@pytest.mark.parametrize("level", sorted(LEVELS), ids=lambda lv: f"O{lv}")
@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW_ZOO else n
                                  for n in netdsl.zoo_names()])
def test_optimized_zoo_model_computes_the_same(name, level):
    graph, weights, x, ref, runs = model(name)
    g2, w2, report = optimize(graph, weights, level)
    if level == 0:
        assert len(report) == 0
    want = {f"{n.name}.{p}": tuple(s) for n in g2.nodes() for p, s in {**n.params, **n.buffers}.items()}
    assert {k: v.shape for k, v in w2.items()} == want, "weights do not match the optimized graph"
    sig = signature(g2, w2)
    if sig not in runs:
        runs[sig] = run_reference(g2, w2, x, dtype=np.float32)
    out = runs[sig]
    assert list(out) == list(ref)
    for k in ref:
        assert np.isfinite(ref[k]).all()
        err = float(np.abs(out[k] - ref[k]).max() / np.abs(ref[k]).max())
        assert err < RTOL, f"{name} -O{level} output {k}: relative error {err:.2e} (rewrites: {len(report)})"


@pytest.mark.parametrize("name", ["resnet50", "densenet121", "googlenet"])
def test_zoo_models_lose_their_bn_and_relu_layers_at_O2(name):
    """The passes do fire on the zoo: no BN is left in ResNet/GoogLeNet (every BN follows a
    conv) and no ReLU in ResNet (each follows a conv, BN or Add); in DenseNet only the
    pre-activation BNs stay (they follow a Concat or a pool, not a conv), each with its ReLU."""
    g = netdsl.load(name).graph
    g2, _, report = optimize(g, None, 2)
    ops = [n.op for n in g2.nodes()]
    if name != "densenet121":
        assert "BatchNorm" not in ops
    else:
        bns = [n for n in g2.nodes() if n.op == "BatchNorm"]
        assert len(bns) == 58 + 3 + 1          # denselayer norm1s, transition norms, norm5
        assert all(n.attrs["act"] == "relu" and g2[g2.preds(n.name)[0]].op != "Conv" for n in bns)
    if name == "resnet50":
        assert "ReLU" not in ops
    assert report.totals()["fold_batchnorm"] > 0


# ---------------------------------------------------------------- merges on the C runtime

# Two conv branches merged by each merge op. The residual fusion may only take a sum: before the
# fix `[ c | r ] - Mul` ran as conv(x) + r at -O3 (issue 7: off by 9.7 on values of size 6-12).
MERGES = {
    "mul": "[ c | r ] - Mul",                       # the reproduction
    "mul-relu": "[ c | r ] - Mul - ReLU",
    "concat": "[ c | r ] - Concat",
    "add": "[ c | r ] - Add - ReLU",                # the one merge that is fused (control)
    "mul-scale": "[ c | r - GAP - Reshape(8x1x1) ] - Mul",   # squeeze-excite style broadcast
    "scale-mul": "[ r - GAP - Reshape(8x1x1) | c ] - Mul",   # the broadcast operand first: not in place
}


@pytest.mark.parametrize("merge", sorted(MERGES))
def test_every_merge_runs_the_same_at_O3_and_O0_on_the_c_runtime(merge):
    src = f"input x: 8x6x6\nr = x - Conv(8, 1)\nc = x - Conv(8, 3, pad=1)\n{MERGES[merge]}\n"
    m = netdsl.parse(src)
    rng = np.random.default_rng(3)
    weights = {k: rng.normal(0, 0.5, v.shape).astype(np.float32) for k, v in m.state_dict().items()}
    m.load_state_dict(weights)
    x = rng.standard_normal((2, 8, 6, 6)).astype(np.float32)
    ref = m.reference(x)                            # float64 numpy oracle on the unoptimized graph
    outs = {}
    for level in (0, 3):
        mk = netdsl.parse(src)                      # a fresh model per level: its first call runs at it
        mk.load_state_dict(weights)
        mk.run_level = level
        outs[level] = mk(x)
    scale = np.abs(ref).max()
    # float32 kernels against a float64 reference over 8·9 + 8 terms: ~1e-6 relative; a wrong
    # merge is of order 1
    for level, y in outs.items():
        err = float(np.abs(y - ref).max() / scale)
        assert err < 1e-4, f"{merge} -O{level}: relative error {err:.2e} against the numpy reference"
    _, _, report = optimize(m.graph, None, 3)
    fused = report.totals()["fuse_residual"]
    assert fused == (1 if merge == "add" else 0), report.render()
