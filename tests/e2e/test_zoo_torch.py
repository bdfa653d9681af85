"""The torchvision-layout zoo models against PyTorch (skipped without torch).

tests/e2e/torch_zoo.py writes torchvision's SqueezeNet 1.1, MobileNetV2 and MobileNetV3-Small
in plain torch, with torchvision's module names. For each: (a) netdsl's zoo file expects
exactly torchvision's state-dict keys (less BatchNorm's num_batches_tracked counter, which
netdsl does not keep), in the same order and with the same shapes, so a torchvision
checkpoint loads as it is; (b) with the same random weights (random BatchNorm statistics
and affine too, so BN is no identity) netdsl's output equals torch's in eval mode.

Tolerance: max |netdsl - torch| / max |torch| <= 1e-4. Both run in float32 with different
summation orders (and netdsl at -O3 folds BN into the convs and may run 3x3 convs as
Winograd): a few float32 roundings per layer, ~1e-6 over these depths; a wrong pad, stride,
group count, activation or channel order is of order 1.
"""
from __future__ import annotations

import re

import numpy as np
import pytest

import netdsl
from netdsl.model import resolve_path
from netdsl.runtime import lib
from netdsl.runtime.weights import expected

torch = pytest.importorskip("torch")
import torch_zoo  # noqa: E402  (needs torch)

NAMES = sorted(torch_zoo.MODELS)


def torch_model(name, seed=0):
    """The model in eval mode with random weights that keep the signal's size through the depth
    (He-normal convs and linears, small biases: torch's default init shrinks the signal layer
    by layer until the biases alone decide the output, and a wrong layer would hardly show)."""
    m = torch_zoo.MODELS[name]().eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, (torch.nn.Conv2d, torch.nn.Linear)):
                fan_in = mod.weight[0].numel()
                mod.weight.copy_(torch.randn(mod.weight.shape, generator=g) * (2 / fan_in) ** 0.5)
                if mod.bias is not None:
                    mod.bias.copy_(torch.randn(mod.bias.shape, generator=g) * 0.1)
            if isinstance(mod, torch.nn.BatchNorm2d):
                c = mod.num_features
                mod.running_mean.copy_(torch.randn(c, generator=g) * 0.1)
                mod.running_var.copy_(torch.rand(c, generator=g) + 0.5)
                mod.weight.copy_(torch.rand(c, generator=g) + 0.5)
                mod.bias.copy_(torch.randn(c, generator=g) * 0.1)
    return m


def at_96(name):
    """The zoo file with a 3x96x96 input (same layers and weights: each model ends in global
    pooling; five stride-2 stages leave 3x3 maps), to keep the test fast."""
    path = resolve_path(name)
    with open(path, encoding="utf-8") as f:
        text, n = re.subn(r"^(input x: )3x224x224\b", r"\g<1>3x96x96", f.read(), count=1, flags=re.M)
    assert n == 1, f"{name}: the zoo file no longer declares input 3x224x224"
    return netdsl.parse(text, name + ".net", path)


@pytest.mark.parametrize("name", NAMES)
def test_netdsl_expects_torchvisions_state_dict(name):
    sd = torch_zoo.MODELS[name]().state_dict()
    want = [(k, tuple(v.shape)) for k, v in sd.items() if not k.endswith(".num_batches_tracked")]
    got = [(k, tuple(s)) for k, s in expected(netdsl.load(name).graph).items()]
    assert sorted(got) == sorted(want)
    assert got == want, "same keys and shapes, in another order"
    learned = sum(int(np.prod(s)) for k, s in got if not k.endswith(("running_mean", "running_var")))
    assert learned == sum(p.numel() for p in torch_zoo.MODELS[name]().parameters()) == netdsl.load(name).total_params


@pytest.mark.skipif(not lib.available(), reason="C kernels not built")
@pytest.mark.parametrize("name", NAMES)
def test_netdsl_computes_what_torch_computes(name):
    tm = torch_model(name)
    sd = {k: v.numpy() for k, v in tm.state_dict().items()}      # num_batches_tracked included
    x = np.random.default_rng(5).standard_normal((2, 3, 96, 96)).astype(np.float32)
    with torch.no_grad():
        want = tm(torch.from_numpy(x)).numpy()
    scale = float(np.abs(want).max())
    assert np.isfinite(want).all() and scale > 0
    for level in (0, 3):
        m = at_96(name)
        m.load_state_dict(sd)
        m.run_level = level
        got = m(x)
        assert got.shape == want.shape == (2, 1000)
        err = float(np.abs(got - want).max()) / scale
        assert err <= 1e-4, f"{name} -O{level}: max relative error {err:.2e} against torch"
