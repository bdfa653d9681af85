"""Every zoo model loads by name and reports its published parameter count.

The counts are the published ones (torchvision's for the ImageNet models,
the paper's for LeNet-5); FCN-32s, U-Net and YOLOv2-tiny have no single
published figure, so their counts are the sum of the layers spelled out in
each file's header (and checked here against that arithmetic).
"""
from __future__ import annotations

import time

import networkx as nx
import pytest

import netdsl

# name -> (published parameter count, {output name: shape})
ZOO = {
    "lenet5": (61_706, {"output": (10,)}),
    "alexnet": (61_100_840, {"output": (1000,)}),
    "vgg16": (138_357_544, {"output": (1000,)}),
    "vgg19": (143_667_240, {"output": (1000,)}),
    # every layer of the file, aux heads included (torchvision aux_logits=True);
    # the published 6,624,904 without them is checked in test_googlenet_without_aux
    "googlenet": (13_004_888, {"logits": (1000,), "aux1": (1000,), "aux2": (1000,)}),
    "resnet18": (11_689_512, {"output": (1000,)}),
    "resnet34": (21_797_672, {"output": (1000,)}),
    "resnet50": (25_557_032, {"output": (1000,)}),
    "resnet101": (44_549_160, {"output": (1000,)}),
    "resnet152": (60_192_808, {"output": (1000,)}),
    "densenet121": (7_978_856, {"output": (1000,)}),
    "densenet169": (14_149_480, {"output": (1000,)}),
    "densenet201": (20_013_928, {"output": (1000,)}),
    # VGG-16 through fc7 as convs (134,260,544) + score_fr 4096*21+21 + upscore 21*21*64*64
    "fcn": (134_260_544 + 86_037 + 1_806_336, {"output": (21, 224, 224)}),
    "unet": (31_030_658, {"output": (2, 388, 388)}),
    "yolov2_tiny": (11_232_057, {"output": (425, 13, 13)}),
    "squeezenet1_1": (1_235_496, {"output": (1000,)}),
    "mobilenet_v2": (3_504_872, {"output": (1000,)}),
    "mobilenet_v3_small": (2_542_856, {"output": (1000,)}),
}


def params_for(model, output):
    """Parameters of the layers an output (or a layer) depends on, itself included."""
    g = model.graph
    node = g.outputs.get(output, output)
    return sum(g[n].n_params for n in nx.ancestors(g.g, node) | {node})


def test_zoo_lists_exactly_these_models():
    assert sorted(netdsl.zoo_names()) == sorted(ZOO)


@pytest.mark.parametrize("name", sorted(ZOO), ids=sorted(ZOO))
def test_published_param_count(name):
    count, outputs = ZOO[name]
    m = netdsl.load(name)
    assert m.total_params == count, f"{name}: {m.total_params:,} != {count:,}"
    assert {k: tuple(v) for k, v in m.output_shapes.items()} == outputs
    d = m.summary_dict()
    assert d["total_params"] == count
    assert sum(layer["params"] for layer in d["layers"]) == count
    assert d["total_macs"] > 0


def test_googlenet_without_aux():
    m = netdsl.load("googlenet")
    assert params_for(m, "logits") == 6_624_904
    assert params_for(m, "aux1") == params_for(m, "inception4a.concat1") + 3_188_968
    # the aux heads themselves: 1x1 conv 128 + BN, FC 2048->1024, FC 1024->1000
    aux1 = sum(n.n_params for n in m.graph.nodes() if n.name.startswith("aux1."))
    aux2 = sum(n.n_params for n in m.graph.nodes() if n.name.startswith("aux2."))
    assert aux1 == 512 * 128 + 2 * 128 + 2048 * 1024 + 1024 + 1024 * 1000 + 1000 == 3_188_968
    assert aux2 == 528 * 128 + 2 * 128 + 2048 * 1024 + 1024 + 1024 * 1000 + 1000 == 3_191_016
    assert m.total_params == 6_624_904 + aux1 + aux2


@pytest.mark.parametrize("name,layer,params", [
    ("resnet50", "layer1.0.conv1", (64, 64, 1, 1)),
    ("resnet50", "layer2.0.downsample.0", (512, 256, 1, 1)),
    ("resnet18", "layer4.1.bn2", (512,)),
    ("densenet121", "features.denseblock1.denselayer1.norm1", (64,)),
    ("densenet121", "features.transition3.conv", (512, 1024, 1, 1)),
    ("densenet121", "classifier", (1000, 1024)),
    ("vgg16", "features.28", (512, 512, 3, 3)),
    ("vgg16", "classifier.6", (1000, 4096)),
    ("alexnet", "features.0", (64, 3, 11, 11)),
    ("googlenet", "inception4e.branch3.1.conv", (128, 32, 3, 3)),
    ("googlenet", "aux2.fc1", (1024, 2048)),
    ("squeezenet1_1", "features.0", (64, 3, 3, 3)),
    ("squeezenet1_1", "features.12.expand3x3", (256, 64, 3, 3)),
    ("squeezenet1_1", "classifier.1", (1000, 512, 1, 1)),
    ("mobilenet_v2", "features.0.0", (32, 3, 3, 3)),
    ("mobilenet_v2", "features.1.conv.1", (16, 32, 1, 1)),
    ("mobilenet_v2", "features.17.conv.1.0", (960, 1, 3, 3)),
    ("mobilenet_v2", "features.18.0", (1280, 320, 1, 1)),
    ("mobilenet_v2", "classifier.1", (1000, 1280)),
    ("mobilenet_v3_small", "features.1.block.1.fc1", (8, 16, 1, 1)),
    ("mobilenet_v3_small", "features.7.block.2.fc2", (120, 32, 1, 1)),
    ("mobilenet_v3_small", "features.9.block.1.0", (288, 1, 5, 5)),
    ("mobilenet_v3_small", "features.12.0", (576, 96, 1, 1)),
    ("mobilenet_v3_small", "classifier.3", (1000, 1024)),
], ids=lambda v: v if isinstance(v, str) else None)
def test_torchvision_layer_names(name, layer, params):
    m = netdsl.load(name)
    assert m.graph[layer].params["weight"] == params


def test_whole_zoo_loads_fast():
    t = time.perf_counter()
    for name in ZOO:
        netdsl.load(name)
    assert time.perf_counter() - t < 20   # a few seconds in practice; generous for slow CI
