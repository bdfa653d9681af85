"""The language as the lectures write it: every construct of docs/LANGUAGE.md,
the lecture's own lines, and the lecture exercises (sizes, counts, receptive
fields) computed through `netdsl.parse`."""
from __future__ import annotations

import textwrap

import pytest

import netdsl
from netdsl import NetDSLError


def parse(text):
    return netdsl.parse(textwrap.dedent(text))


def layers(m):
    return {layer["name"]: layer for layer in m.summary_dict()["layers"]}


def names(m):
    return [n.name for n in m.graph.nodes()]


def shape(m, name):
    return tuple(m.graph[name].shape)


# ---------------------------------------------------------------- the lecture's lines

def test_lecture_line_with_defaults_header():
    m = parse("""
        # the lecture's network, verbatim, under a short header
        input x: 3x32x32
        default Conv(16, 3, pad=same)
        default FC(10)
        Conv-ReLU-Pool-Conv-ReLU-Pool-FC-SM
    """)
    assert [n.op for n in m.graph.nodes()] == ["Input", "Conv", "ReLU", "MaxPool", "Conv", "ReLU",
                                               "MaxPool", "FC", "Softmax"]
    assert names(m)[1:] == ["conv1", "relu1", "pool1", "conv2", "relu2", "pool2", "fc1", "sm1"]
    assert shape(m, "pool2") == (16, 8, 8)
    assert m.output_shape == (10,)
    assert m.total_params == (3 * 9 * 16 + 16) + (16 * 9 * 16 + 16) + (16 * 8 * 8 * 10 + 10)


def test_lecture_numbering():
    m = parse("""
        input x: 3x64x64
        default Conv(32, 3, pad=same)
        default FC(256)
        Conv:1-Pool:1-Conv:2-Pool:2-Conv:3-Conv:4-Conv:5-Pool:4-FC:6-FC:7-FC:8
    """)
    assert names(m)[1:] == ["conv1", "pool1", "conv2", "pool2", "conv3", "conv4", "conv5", "pool4",
                            "fc6", "fc7", "fc8"]
    assert shape(m, "pool1") == (32, 32, 32)
    assert shape(m, "pool4") == (32, 8, 8)
    assert m.output_shape == (256,)


def test_numbered_repetition_counts_up():
    m = parse("""
        input x: 3x32x32
        default Conv(8, 3, pad=1)
        Conv:1*3 - ReLU:1
    """)
    assert names(m)[1:] == ["conv1", "conv2", "conv3", "relu1"]


VGG_SLIDE = """
    # the VGG-16 slide, one table line per layer
    input image: 3x224x224
    default Conv(pad=1, act=relu)
    3x3 conv, 64
    3x3 conv, 64
    Pool
    3x3 conv, 128
    3x3 conv, 128
    Pool
    3x3 conv, 256
    3x3 conv, 256
    3x3 conv, 256
    Pool
    3x3 conv, 512
    3x3 conv, 512
    3x3 conv, 512
    Pool
    3x3 conv, 512
    3x3 conv, 512
    3x3 conv, 512
    Pool
    FC 4096
    FC 4096
    FC 1000
    Softmax
"""


def test_vgg_slide_table_is_vgg16():
    m = parse(VGG_SLIDE)
    assert m.total_params == 138_357_544
    assert m.output_shape == (1000,)
    assert shape(m, "pool5") == (512, 7, 7)
    assert m.graph["conv1"].attrs["act"] == "relu"
    assert names(m)[-4:] == ["fc1", "fc2", "fc3", "softmax1"]


def test_table_forms_with_stride_and_keywords():
    m = parse("""
        input x: 3x227x227
        11x11 conv, 96, stride 4
        3x3 conv, 128, /2, pad 1
        FC 10
    """)
    assert shape(m, "conv1") == (96, 55, 55)
    assert shape(m, "conv2") == (128, 28, 28)
    assert m.output_shape == (10,)


# ---------------------------------------------------------------- constructs

def test_statements_span_lines_and_comments_anywhere():
    m = parse("""
        # a comment line
        input x: 3x32x32   # after a statement
        const c = 8        # constants
        Conv(c, 3,         # inside parentheses
             pad=1)
          - ReLU           # a chain goes on after '-'
          - [ _            # inside a branch
            | Conv(c, 3, pad=1) ]
          - Add
    """)
    assert [n.op for n in m.graph.nodes()][1:] == ["Conv", "ReLU", "Conv", "Add"]
    assert m.output_shape == (8, 32, 32)


def test_repetition():
    m = parse("""
        input x: 3x32x32
        const n = 3
        (Conv(64, 3, pad=1) - ReLU)*2 - Pool
        Conv(64, 3, pad=1)*(n-1)
    """)
    assert names(m)[1:] == ["conv1", "relu1", "conv2", "relu2", "pool1", "conv3", "conv4"]
    assert m.output_shape == (64, 16, 16)


def test_labelled_repetition_is_a_sequence():
    m = parse("""
        input x: 3x32x32
        features: ((Conv(8, 3, pad=1) - ReLU)*2 - MaxPool(2))
        classifier: (FC(10) - SM)
    """)
    assert names(m)[1:] == ["features.0", "features.1", "features.2", "features.3", "features.4",
                            "classifier.0", "classifier.1"]


def test_number_labels_nest_sequences_like_torchvision():
    """`0:` labels a layer or group with nn.Sequential's number: a block body numbered
    0, 1, 2 (torchvision's Conv2dNormActivation) inside a sequence gives features.1.0."""
    m = parse("""
        input x: 8x8x8
        block ConvBN(c, groups=1) { 0:Conv(c, 3, pad=1, groups=groups, bias=false) - 1:BN - 2:ReLU }
        features: (ConvBN(16) - ConvBN(16, groups=16) - 2:(Conv(4, 1) - BN) - ReLU)
    """)
    assert names(m)[1:] == ["features.0.0", "features.0.1", "features.0.2", "features.1.0", "features.1.1",
                            "features.1.2", "features.2.0", "features.2.1", "features.3"]
    assert m.graph["features.1.0"].params["weight"] == (16, 1, 3, 3)
    with pytest.raises(NetDSLError, match="'1' is defined twice"):
        parse("input x: 3x8x8\nf: (Conv(4) - 1:ReLU - 1:ReLU)")


def test_block_is_a_keyword_and_a_label():
    """torchvision's MobileNetV3 names its layers features.1.block.0.0: `block:` labels."""
    m = parse("""
        input x: 3x8x8
        block B(c) { block: (Conv(c, 1) - BN) }
        B(4) - block: (B(2) - ReLU)
    """)
    assert names(m)[1:] == ["0.block.0", "0.block.1", "block.0.block.0", "block.0.block.1", "block.1"]


def test_inception_module_channel_totals():
    m = parse("""
        input x: 192x28x28
        [ Conv(64, 1)
        | Conv(96, 1) - Conv(128, 3, pad=1)
        | Conv(16, 1) - Conv(32, 5, pad=2)
        | MaxPool(3, stride=1, pad=1) - Conv(32, 1) ]
        - Concat
    """)
    assert m.output_shape == (64 + 128 + 32 + 32, 28, 28)
    assert m.graph.preds("concat1") == ["conv1", "conv3", "conv5", "conv6"]


def test_residual_add_and_identity():
    m = parse("""
        input x: 64x56x56
        [ Conv(64, 3, pad=1, bias=false) - BN - ReLU - Conv(64, 3, pad=1, bias=false) - BN
        | _ ] - Add - ReLU
    """)
    assert m.graph.preds("add1") == ["bn2", "x"]
    assert m.output_shape == (64, 56, 56)
    assert m.total_params == 2 * (64 * 64 * 9 + 2 * 64)


def test_dense_block_concat_growth():
    m = parse("""
        input x: 64x56x56
        const k = 32
        block DenseLayer(k) {
          [ _ | BN - ReLU - Conv(4*k, 1, bias=false) - BN - ReLU - Conv(k, 3, pad=1, bias=false) ] - Concat
        }
        DenseLayer(k)*6
    """)
    assert [shape(m, f"{i}.concat1")[0] for i in range(6)] == [64 + k * 32 for k in range(1, 7)]
    assert m.output_shape == (256, 56, 56)


def test_unet_skip_references():
    m = parse("""
        input x: 1x64x64
        enc1: (Conv(16, 3, pad=1) - ReLU)
        enc2: (Pool - Conv(32, 3, pad=1) - ReLU)
        Pool - Conv(64, 3, pad=1) - ReLU
        up2: Deconv(32, 2, stride=2)
        [ _ | enc2 ] - Concat - Conv(32, 3, pad=1) - ReLU
        Deconv(16, 2, stride=2)
        [ _ | enc1 ] - Concat - Conv(16, 3, pad=1) - ReLU - Conv(2, 1)
    """)
    assert m.graph.preds("concat1") == ["up2", "enc2.2"]
    assert shape(m, "concat1") == (64, 32, 32)
    assert shape(m, "concat2") == (32, 64, 64)
    assert m.output_shape == (2, 64, 64)


def test_chain_may_start_from_a_label_and_crop_to_a_skip():
    m = parse("""
        input x: 8x20x20
        skip: Conv(8, 1)
        Conv(8, 3) - Conv(8, 3)
        up: Identity
        [ [ skip | up ] - Crop | up ] - Concat
        skip - out: GAP
        output up, out
    """)
    assert shape(m, "crop1") == (8, 16, 16)
    assert shape(m, "concat1") == (16, 16, 16)
    assert m.output_shapes == {"up": (8, 16, 16), "out": (8, 1, 1)}


def test_block_parameters_with_arithmetic():
    m = parse("""
        input x: 256x13x13
        block Head(classes, anchors=5) {
          Conv((classes + 5) * anchors, 1)
        }
        block Squeeze(c, stride=1, project=false) {
          Conv(c // 2, 1) - Conv(c * 4, 3, pad=1, stride=stride)
          - if stride != 1 or project { BN } else { ReLU }
          - Conv(c if not project and stride == 1 else c + 1, 1)
        }
        Squeeze(16)
        Squeeze(16, stride=2)
        Head(20)
    """)
    assert shape(m, "0.conv1") == (8, 13, 13)
    assert shape(m, "0.conv2") == (64, 13, 13)
    assert m.graph["0.relu1"].op == "ReLU"
    assert m.graph["1.bn1"].op == "BatchNorm"
    assert shape(m, "0.conv3") == (16, 13, 13)
    assert shape(m, "1.conv3") == (17, 7, 7)
    assert m.output_shape == ((20 + 5) * 5, 7, 7)


def test_block_instances_and_labels_name_like_torchvision():
    m = parse("""
        input x: 64x56x56
        block Basic(c, stride=1, project=false) {
          [ conv1:Conv(c, 3, stride=stride, pad=1, bias=false) - bn1:BN - ReLU
            - conv2:Conv(c, 3, pad=1, bias=false) - bn2:BN
          | downsample:if project { Conv(c, 1, stride=stride, bias=false) - BN } ]
          - Add - ReLU
        }
        block Stage(c, n, stride=1) {
          Basic(c, stride, project=stride != 1) - Basic(c)*(n-1)
        }
        layer1: Stage(64, 2)
        layer2: Stage(128, 2, stride=2)
    """)
    ns = set(names(m))
    assert {"layer1.0.conv1", "layer1.1.bn2", "layer2.0.downsample.0", "layer2.0.downsample.1"} <= ns
    assert "layer1.0.downsample.0" not in ns
    assert m.graph["layer2.0.downsample.0"].params["weight"] == (128, 64, 1, 1)


def test_if_else_and_constants():
    m = parse("""
        input x: 3x32x32
        const bn = true
        const width = 2 * 8
        Conv(width, 3) - if bn { BN } else { Identity } - if not bn { Dropout }
    """)
    assert [n.op for n in m.graph.nodes()][1:] == ["Conv", "BatchNorm"]
    assert shape(m, "conv1") == (16, 30, 30)


def test_defaults_and_aliases():
    m = parse("""
        input x: 3x32x32
        default Conv(pad=same, bias=false)
        default Pool = AvgPool(2)
        default Act = LeakyReLU(0.1)
        Conv(8, 3) - Act - Pool - Conv(16, 5) - Act(slope=0.2)
    """)
    ops_ = [n.op for n in m.graph.nodes()][1:]
    assert ops_ == ["Conv", "LeakyReLU", "AvgPool", "Conv", "LeakyReLU"]
    assert m.graph["conv1"].attrs["bias"] is False
    assert shape(m, "conv2") == (16, 16, 16)
    leaky = [n for n in m.graph.nodes() if n.op == "LeakyReLU"]
    assert [n.attrs["slope"] for n in leaky] == [0.1, 0.2]


def test_kernel_and_pad_forms():
    m = parse("""
        input x: 3x32x32
        a: Conv(4, 3x5, pad=(1, 2))
        x - b: Conv(4, 3, pad=same, stride=2)
        x - c: Conv(4, 3, pad=valid)
        x - d: Conv(4, 3, pad=(0, 1, 2, 3))
        output a, b, c, d
    """)
    assert m.output_shapes == {"a": (4, 32, 32), "b": (4, 16, 16), "c": (4, 30, 30), "d": (4, 32, 34)}


def test_import_stdlib():
    m = parse("""
        import resnet
        input x: 64x56x56
        layer1: BasicStage(64, 2)
        layer2: BottleneckStage(32, 1, stride=2)
    """)
    assert m.output_shape == (128, 28, 28)
    assert "layer2.0.downsample.1" in m.graph


def test_import_local_file(tmp_path):
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "blocks.net").write_text(textwrap.dedent("""
        # a local library: blocks, constants, defaults
        const width = 12
        default Act = ReLU
        block ConvAct(c) { conv:Conv(c, 3, pad=1) - Act }
    """))
    main = tmp_path / "main.net"
    main.write_text(textwrap.dedent("""
        import "lib/blocks.net"
        input x: 3x16x16
        first: ConvAct(width) - second: ConvAct(2 * width)
    """))
    m = netdsl.load(str(main))
    assert names(m)[1:] == ["first.conv", "first.relu1", "second.conv", "second.relu1"]
    assert m.output_shape == (24, 16, 16)
    # parse() with a path resolves imports relative to it too
    m2 = netdsl.parse(main.read_text(), path=str(main))
    assert m2.total_params == m.total_params


def test_outputs_several_and_default():
    m = parse("""
        input x: 3x32x32
        trunk = Conv(8, 3, pad=1) - ReLU
        cls: FC(10)
        trunk - box: Conv(4, 1)
        output cls, box
    """)
    assert m.output_shapes == {"cls": (10,), "box": (4, 32, 32)}
    m = parse("""
        input x: 3x32x32
        Conv(8, 3)
    """)
    assert m.output_shapes == {"output": (8, 30, 30)}


# ---------------------------------------------------------------- lecture exercises

def test_exercise_ten_5x5_filters():
    m = parse("""
        input x: 3x32x32
        Conv(10, 5, stride=1, pad=2)
    """)
    row = layers(m)["conv1"]
    assert row["output_shape"] == [10, 32, 32]
    assert row["params"] == 760 == (5 * 5 * 3 + 1) * 10


def test_exercise_3x3_conv_without_bias():
    m = parse("""
        input x: 128x56x56
        Conv(64, 3, pad=1, bias=false)
    """)
    assert m.total_params == 73_728 == 3 * 3 * 128 * 64


def test_exercise_stacked_3x3_receptive_field():
    m = parse("""
        input x: 3x64x64
        (Conv(16, 3, pad=1) - ReLU)*3
    """)
    assert [m.graph[f"conv{i}"].rf for i in (1, 2, 3)] == [(3, 3), (5, 5), (7, 7)]
    assert layers(m)["relu3"]["receptive_field"] == [7, 7]


def test_exercise_fc_head_as_conv():
    fc = parse("""
        input x: 16x4x4
        FC(10, bias=false)
    """)
    conv = parse("""
        input x: 16x4x4
        Conv(10, 4, bias=false)
    """)
    assert fc.total_params == conv.total_params == 2_560 == 4 * 4 * 16 * 10
    assert fc.output_shape == (10,)
    assert conv.output_shape == (10, 1, 1)


def test_exercise_local_vs_conv_unshared():
    m = parse("""
        input x: 3x32x32
        cl: Conv(8, 5)
        x - lcl: Local(8, 5)
        output cl, lcl
    """)
    per_filter = 5 * 5 * 3
    assert m.graph["cl"].n_params == per_filter * 8 + 8
    # one filter per output position: 28x28 positions, and a bias per output value
    assert m.graph["lcl"].n_params == 28 * 28 * 8 * per_filter + 28 * 28 * 8
    assert m.graph["lcl"].n_params // m.graph["cl"].n_params >= 28 * 28 - 1


# ---------------------------------------------------------------- errors

@pytest.mark.parametrize("text,msg", [
    ("input x: 3x32x32\nConv(8, 3) - Relu", "did you mean 'ReLU'"),
    ("input x: 3x32x32\nConv(8, 3) - [ _ | Conv(16, 3, pad=1) ] - Add", "differ in shape"),
    ("input x: 3x8x8\nConv(8, 9)", "shrinks to zero"),
    ("input x: 3x8x8\nblock B(c) { Conv(c, 3) }\nB()", "needs 'c'"),
    ("input x: 3x8x8\nimport nosuchmodule", "no standard library module"),
    ("input x: 3x8x8\nConv:Conv(8)", "hides the op"),
    ("input x: 3x8x8\n[ Conv(8, 1) | Conv(8, 1) ] - ReLU", "merge the branches first"),
    ("input x: 3x8x8\nConv(8, 3, strid=2)", "strid"),
])
def test_errors_name_line_and_column(text, msg):
    with pytest.raises(NetDSLError) as e:
        netdsl.parse(text)
    out = e.value.render()
    assert "<string>:" in out and msg in out, out
    assert "^" in out                      # the caret under the source line


def test_lowercase_labels_may_reuse_op_words():
    m = parse("""
        input x: 3x8x8
        block BasicConv2d(c) { conv:Conv(c, 1, bias=false) - bn:BN(eps=0.001) - ReLU }
        conv1: BasicConv2d(4)
    """)
    assert names(m)[1:] == ["conv1.conv", "conv1.bn", "conv1.relu1"]
    assert m.graph["conv1.bn"].attrs["eps"] == 0.001


# ---------------------------------------------------------------- the reference's examples

def _doc_examples():
    import os
    import re
    path = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "LANGUAGE.md")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    return re.findall(r"```net\n(.*?)```", text, re.S)


@pytest.mark.parametrize("example", _doc_examples())
def test_every_language_md_example_parses(example):
    assert netdsl.parse(example).total_params >= 0


def test_backslash_continues_a_line():
    m = parse("""
        input x: 3x8x8
        Conv(4, 3) \\
        - ReLU
    """)
    assert names(m)[1:] == ["conv1", "relu1"]


def test_block_takes_a_layer_argument_for_skips():
    m = netdsl.parse("""
input x: 3x64x64
block Up(c, skip) {
  up = Deconv(c, 2, stride=2)
  [ up | skip ] - Concat - Conv(c, 3, pad=1) - ReLU
}
enc1: (Conv(16, 3, pad=1) - ReLU)
Pool - Conv(32, 3, pad=1) - ReLU
dec1: Up(16, enc1)
""")
    concat = next(n for n in m.graph.nodes() if n.op == "Concat")
    assert concat.name == "dec1.concat1"
    assert m.graph.preds(concat.name) == ["dec1.deconv1", "enc1.1"]
    assert concat.shape == (32, 64, 64)


def test_layer_argument_used_as_a_number_is_an_error():
    with pytest.raises(netdsl.NetDSLError) as e:
        netdsl.parse("input x: 3x8x8\nblock B(c) { Conv(c, 3) }\na: ReLU\nB(a)\n", "t.net")
    text = str(e.value)
    assert "t.net:" in text and "is a layer" in text


def test_unet_decoder_uses_the_up_block():
    m = netdsl.load("unet")
    assert m.graph.blocks["dec4"] == "Up"
    assert m.total_params == 31_030_658
