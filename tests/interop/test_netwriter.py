"""The .net writer importers use: what it writes parses back to the same network.

Oracle: the structure of the Net handed to `write` (each layer's op and the values it reads,
in slot order) against the graph netdsl builds from the text — compared as a canonical
signature of every output, so unlabelled layers are checked too — plus the name map: every
layer with weights is labelled and its parameters are named `<label>.weight`.
"""
from __future__ import annotations

import random

import pytest

import netdsl
from netdsl import ops
from netdsl.interop.netwriter import Layer, Net, fmt_value, sanitize, write
from netdsl.runtime import weights


def net_signatures(net: Net):
    layers = {l.name: l for l in net.layers}
    memo = {}

    def sig(v):
        if v not in memo:
            if v not in layers:
                memo[v] = ("Input", v)
            else:
                l = layers[v]
                memo[v] = (ops.lookup(l.op).name, tuple(sig(x) for x in l.inputs))
        return memo[v]
    outs = net.outputs or [net.layers[-1].name]
    return [sig(o) for o in outs]


def graph_signatures(g):
    memo = {}

    def sig(n):
        if n not in memo:
            node = g[n]
            memo[n] = ("Input", n) if node.op == "Input" else (node.op, tuple(sig(p) for p in g.preds(n)))
        return memo[n]
    return [sig(n) for n in g.outputs.values()]


def check(net: Net):
    text, names = write(net)
    m = netdsl.parse(text, name="written.net")
    assert graph_signatures(m.graph) == net_signatures(net), text
    want = set(weights.expected(m.graph))
    for l in net.layers:
        spec = ops.lookup(l.op)
        if "has_weights" in spec.flags:
            assert l.name in names, (l.name, text)
            assert f"{names[l.name]}.weight" in want, (l.name, names[l.name], text)
        if l.name in names:
            node = m.graph[names[l.name]]
            assert node.op == spec.name
    return text, m


def test_resnet_and_inception_shapes_are_written_as_branches():
    n = Net(header=["a test"])
    n.add_input("x", (3, 16, 16))
    L = lambda *a, **k: n.add(Layer(*a, **k))
    L("/conv1/Conv", "Conv", (8, 3), {"pad": 1, "bias": False}, ("x",))
    L("bn1", "BN", inputs=("/conv1/Conv",))
    L("r", "ReLU", inputs=("bn1",))
    L("c1", "Conv", (8, 3), {"pad": 1}, ("r",))
    L("c2", "Conv", (8, 3), {"pad": 1}, ("c1",))
    L("add", "Add", inputs=("c2", "r"))
    L("a", "Conv", (4, 1), inputs=("add",))
    L("b", "MaxPool", (3,), {"stride": 1, "pad": 1}, ("add",))
    L("b2", "Conv", (4, 1), inputs=("b",))
    L("cat", "Concat", inputs=("a", "b2"))
    text, m = check(n)
    assert "[ c1:Conv(8, 3, pad=1) - c2:Conv(8, 3, pad=1) | _ ] - Add" in text
    assert "[ a:Conv(4, 1) | MaxPool(3, stride=1, pad=1) - b2:Conv(4, 1) ] - Concat" in text
    assert "conv1_Conv:Conv(8, 3, pad=1, bias=false) - bn1:BN - ReLU" in text
    assert text.startswith("# a test\n")
    assert ":ReLU" not in text                     # activations in a chain stay unlabelled


def test_skip_read_far_away_is_a_label_and_a_reference():
    n = Net()
    n.add_input("img", (1, 16, 16))
    L = lambda *a, **k: n.add(Layer(*a, **k))
    L("enc", "Conv", (4, 3), {"pad": 1}, ("img",))
    L("e_act", "ReLU", inputs=("enc",))
    L("down", "MaxPool", (2,), inputs=("e_act",))
    L("mid", "Conv", (4, 3), {"pad": 1}, ("down",))
    L("up", "ConvTranspose", (4, 2), {"stride": 2}, ("mid",))
    L("side", "Conv", (2, 1), inputs=("e_act",))             # a second reader of the skip
    L("cat", "Concat", inputs=("up", "e_act"))
    L("head", "Conv", (2, 1), inputs=("cat",))
    n.outputs = ["head", "side"]
    text, m = check(n)
    assert "output head, side" in text


@pytest.mark.parametrize("seed", range(40))
def test_random_dags_parse_back_to_the_same_network(seed):
    rng = random.Random(seed)
    n = Net()
    n.add_input("x", (4, 12, 12))
    if rng.random() < 0.3:
        n.add_input("y", (4, 12, 12))
    values = [i[0] for i in n.inputs]
    for i in range(rng.randint(3, 18)):
        r = rng.random()
        src = rng.choice(values[-4:]) if rng.random() < 0.8 else rng.choice(values)
        if r < 0.35:
            l = Layer(f"conv.{i}", "Conv", (4, 3), {"pad": 1, "bias": rng.random() < 0.5}, (src,))
        elif r < 0.5:
            l = Layer(f"bn{i}", "BN", inputs=(src,))
        elif r < 0.65:
            l = Layer(f"act{i}", rng.choice(["ReLU", "Sigmoid", "Tanh"]), inputs=(src,))
        elif r < 0.72:
            l = Layer(f"pool{i}", "MaxPool", (3,), {"stride": 1, "pad": 1}, (src,))
        elif len(values) >= 2:
            a, b = rng.sample(values, 2)
            op = rng.choice(["Add", "Mul"])
            l = Layer(f"m{i}", op, inputs=(a, b) if rng.random() < 0.5 else (b, a))
        else:
            continue
        n.add(l)
        values.append(l.name)
    if not n.layers or (n.layers[-1].name in [v for v, *_ in n.inputs]):
        return
    # outputs: the last layer and every layer nobody reads (a network has no dead ends)
    read = {x for l in n.layers for x in l.inputs}
    n.outputs = [l.name for l in n.layers if l.name not in read]
    for name, *_ in n.inputs:
        if name not in read:
            n.add(Layer(f"use_{name}", "ReLU", inputs=(name,)))
            n.outputs.append(f"use_{name}")
    check(n)


def test_labels_are_valid_unique_and_never_an_op_or_keyword():
    assert sanitize("/layer1/layer1.0/conv1/Conv") == "layer1_layer1_0_conv1_Conv"
    assert sanitize("0.weight") == "l0_weight"
    n = Net()
    n.add_input("x", (2, 8, 8))
    n.add(Layer("Conv", "Conv", (2, 1), inputs=("x",)))
    n.add(Layer("input", "Conv", (2, 1), inputs=("Conv",)))
    n.add(Layer("a.b", "Conv", (2, 1), inputs=("input",)))
    n.add(Layer("a_b", "Conv", (2, 1), inputs=("a.b",)))
    text, m = check(n)
    _, names = write(n)
    assert len(set(names.values())) == 4
    assert names["Conv"] != "Conv" and names["input"] != "input"


def test_values_in_the_languages_syntax():
    assert fmt_value(True) == "true" and fmt_value((1, 2)) == "(1, 2)" and fmt_value(1e-5) == "1e-05"
    assert fmt_value(0.001) == "0.001" and fmt_value(6.0) == "6.0" and fmt_value("same") == "same"
    text, _ = write(Net(inputs=[("x", (3, 8, 8), {"mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25)})],
                        layers=[Layer("c", "Conv", (2, 3), {"pad": "same"}, ("x",))]))
    m = netdsl.parse(text)
    assert m.graph["x"].attrs["mean"] == (0.5, 0.5, 0.5)
    with pytest.raises(ValueError, match="no literal"):
        fmt_value(float("nan"))


def test_bad_nets_are_refused():
    with pytest.raises(ValueError, match="neither an input nor an earlier layer"):
        write(Net(inputs=[("x", (1, 4, 4), {})], layers=[Layer("a", "ReLU", inputs=("nope",))]))
    with pytest.raises(ValueError, match="unique"):
        write(Net(inputs=[("x", (1, 4, 4), {})],
                  layers=[Layer("a", "ReLU", inputs=("x",)), Layer("a", "ReLU", inputs=("x",))]))


def test_nested_branches():
    n = Net()
    n.add_input("x", (4, 8, 8))
    L = lambda *a, **k: n.add(Layer(*a, **k))
    L("a", "Conv", (4, 1), inputs=("x",))
    L("b1", "Conv", (4, 3), {"pad": 1}, ("x",))
    L("b2", "Conv", (4, 3), {"pad": 1}, ("b1",))          # a residual inside a branch
    L("b3", "Conv", (4, 3), {"pad": 1}, ("b2",))
    L("badd", "Add", inputs=("b3", "b2"))
    L("cat", "Concat", inputs=("a", "badd", "x"))
    text, _ = check(n)
    assert text.count("[") == 2 and "| _ ] - Add" in text and "| _ ] - Concat" in text, text
