"""One training step of zoo models against PyTorch: same weights, same batch, same optimizer.

The network is ported to torch (benchmarks/torch_port.py, train mode: BatchNorm on batch
statistics with momentum 0.1), the loss is cross-entropy on the logits (a network ending in
Softmax: torch takes log of its output, netdsl fuses the softmax into the loss — the same
function), the optimizer torch.optim.SGD with momentum and weight decay. After one step:
the loss within 1e-4 relative; every parameter's gradient within 1e-3 of that tensor's
largest gradient (floored at 1e-4 of the largest gradient of the model: float32 through a
deep network); the updated parameters and BN running statistics within 1e-5 + 1e-4·|w|.
The zoo files are read at small input sizes (their `input` line changed) so a step is cheap.
"""
from __future__ import annotations

import os
import re
import sys

import numpy as np
import pytest

import netdsl
from netdsl.runtime import lib

torch = pytest.importorskip("torch")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks"))
from torch_port import Unsupported, to_torch  # noqa: E402

from netdsl.train.losses import get_loss  # noqa: E402
from netdsl.train.optim import SGD  # noqa: E402
from netdsl.train.session import TrainSession  # noqa: E402

pytestmark = pytest.mark.skipif(not lib.available(), reason="C kernels not built")


def zoo_at(name, size):
    """The zoo file at input size x size, its Dropout layers at p = 0 (torch's masks and
    netdsl's cannot be the same draw; Dropout's own kernels are tested in test_pool_*)."""
    from netdsl.model import resolve_path
    text = open(resolve_path(name)).read()
    text = re.sub(r"(input\s+\w+\s*:\s*\d+)x\d+x\d+", lambda m: f"{m.group(1)}x{size}x{size}", text, count=1)
    text = re.sub(r"\bDropout(\([^)]*\))?", "Dropout(0)", text)
    return netdsl.parse(text, f"{name}.net")


def nontrivial_weights(m, seed=1):
    """BN statistics and affine parameters away from (0, 1) so every term is exercised."""
    rng = np.random.default_rng(seed)
    sd = m.state_dict()
    for k, v in sd.items():
        if k.endswith("running_var"):
            sd[k] = rng.uniform(0.5, 2.0, v.shape).astype(np.float32)
        elif k.endswith(("running_mean", "bias")):
            sd[k] = (0.1 * rng.standard_normal(v.shape)).astype(np.float32)
        elif k.endswith("weight") and v.ndim == 1:
            sd[k] = rng.uniform(0.5, 1.5, v.shape).astype(np.float32)
    return sd


CASES = [("lenet5", 32, 8), ("resnet18", 32, 4)]
SLOW = [("resnet50", 64, 2), ("vgg16", 32, 2), ("densenet121", 32, 2), ("googlenet", 128, 2),
        ("alexnet", 96, 2), ("squeezenet1_1", 64, 2), ("fcn", 64, 2), ("mobilenet_v2", 64, 2),
        ("mobilenet_v3_small", 64, 2), ("resnet34", 32, 2), ("vgg19", 32, 2)]


def torch_step(m, sd, x, y, dtype):
    """(loss, {name: grad}, {name: new param or buffer}) of one torch SGD step in `dtype`."""
    mod = to_torch(m.graph, sd, train=True).to(dtype)
    opt = torch.optim.SGD(list(mod.parameters()), lr=LR, momentum=0.9, weight_decay=WD)
    out = m.graph[next(iter(m.graph.outputs.values()))]
    z = mod(torch.from_numpy(x).to(dtype))
    z = z[0] if isinstance(z, tuple) else z              # several outputs: the first one trains
    yt = torch.from_numpy(y)
    tl = (torch.nn.functional.nll_loss(z.clamp_min(torch.finfo(dtype).tiny).log(), yt) if out.op == "Softmax"
          else torch.nn.functional.cross_entropy(z, yt))
    tl.backward()
    names = [n.replace("__", ".") for n, _ in mod.named_parameters()]
    grads = {k: p.grad.double().numpy().copy() for k, p in zip(names, mod.parameters())
             if p.grad is not None}             # None: a layer of another output (GoogLeNet's aux heads)
    opt.step()
    state = {n.replace("__", "."): t.detach().double().numpy() for n, t in
             list(mod.named_parameters()) + list(mod.named_buffers())}
    return float(tl.detach()), grads, state


LR, WD = 0.01, 1e-4


@pytest.mark.parametrize("name,size,batch", CASES + [pytest.param(*c, marks=pytest.mark.slow) for c in SLOW],
                         ids=lambda v: str(v))
def test_one_step_matches_torch(name, size, batch):
    """netdsl's float32 step is as close to PyTorch's float64 step as PyTorch's own float32
    step is: deep networks in float32 lose digits in the gradients of some layers (ResNet-50's
    and DenseNet's last BatchNorms over a few values each, by up to ~10% in both frameworks:
    the forward error grows the same way in both, measured layer by layer), so the yardstick
    is torch32's own error against torch64."""
    m = zoo_at(name, size)
    sd = nontrivial_weights(m)
    try:
        to_torch(m.graph, sd, train=True)
    except Unsupported as e:
        pytest.skip(f"torch port: {e}")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, *m.graph[m.graph.inputs[0]].shape)).astype(np.float32)
    out = m.graph[next(iter(m.graph.outputs.values()))]
    y = rng.integers(0, out.shape[0], (batch, *out.shape[1:]))
    s = TrainSession(m.graph, sd, get_loss("cross_entropy"), SGD(lr=LR, momentum=0.9, weight_decay=WD),
                     [batch], threads=2, output=next(iter(m.graph.outputs)))
    loss, _ = s.step(x, y)
    l32, g32, st32 = torch_step(m, sd, x, y, torch.float32)
    l64, g64, st64 = torch_step(m, sd, x, y, torch.float64)
    assert abs(loss - l64) <= max(2e-6 * abs(l64), 4 * abs(l32 - l64)), (loss, l32, l64)

    g = s.gradients()
    top = max(float(np.abs(v).max()) for v in g64.values())
    e_nd, e_t = {}, {}
    for key, ref in g64.items():
        scale = max(float(np.abs(ref).max()), 1e-4 * top)
        e_nd[key] = float(np.abs(g[key] - ref).max()) / scale
        e_t[key] = float(np.abs(g32[key] - ref).max()) / scale
    # Which tensors lose digits depends on the rounding: one ReLU mask flipped by the last bit
    # of a BatchNorm output that sits at zero moves that layer's gradients by several percent
    # (GoogLeNet at 128 px: one flip in 16,384 values, 5% on inception3a.branch4.1's BN bias,
    # while netdsl's own float64 reference agrees with torch64 to 1e-13). So compare the median
    # and the 90th-percentile tensor with torch32's, and bound the worst one loosely: a wrong
    # rule or kernel is off by O(1), not by a few percent.
    q = lambda e, p: float(np.percentile(list(e.values()), p))      # noqa: E731
    top_nd = sorted(e_nd.items(), key=lambda kv: -kv[1])[:3]
    assert q(e_nd, 50) <= max(1e-4, 3 * q(e_t, 50)), (q(e_nd, 50), q(e_t, 50))
    assert q(e_nd, 90) <= max(1e-3, 3 * q(e_t, 90)), (q(e_nd, 90), q(e_t, 90), top_nd)
    assert top_nd[0][1] <= max(0.25, 2 * max(e_t.values())), top_nd

    new = s.weights()
    for key, v in new.items():
        ref = st64[key]
        if key in g64:          # a parameter: w - lr (g + wd w), as exact as its gradient
            slack = LR * 4 * max(float(np.abs(g32[key] - g64[key]).max()), float(np.abs(g[key] - g64[key]).max()))
            np.testing.assert_allclose(v, ref, rtol=1e-4, atol=1e-5 + slack, err_msg=key)
        elif key.endswith(("running_mean", "running_var")) and f"{key.rsplit('.', 1)[0]}.weight" in g64:
            # moved by the (float32) forward's statistics (a layer the loss reaches; netdsl does not
            # run the others, torch runs every output)
            err, err_t = np.abs(v - ref).max(), np.abs(st32[key] - ref).max()
            assert err <= max(1e-4 * np.abs(ref).max() + 1e-6, 4 * err_t), (key, err, err_t)
        else:                   # a parameter or statistic of a layer the loss does not reach: untouched
            np.testing.assert_array_equal(v, sd[key], err_msg=key)
