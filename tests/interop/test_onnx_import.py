"""ONNX import: every fold rule and op mapping on small hand-built graphs, the errors, and
torchvision-layout models exported by PyTorch.

Oracle: ONNX Runtime running the same file on the same input (max relative error <= 1e-4),
and the structure of the written .net (which ops it holds, which were folded away).
"""
from __future__ import annotations

import os
import re
import sys

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import netdsl  # noqa: E402
from netdsl import ops  # noqa: E402
from netdsl.interop import InteropError, import_file  # noqa: E402
from netdsl.interop.onnx_import import import_onnx  # noqa: E402

NEWEST = onnx.defs.onnx_opset_version()      # the newest opset the onnx package knows
RNG = np.random.default_rng(0)


# ---------------------------------------------------------------- helpers
def make_model(nodes, inits, in_shape, out_shape=None, opset=17, in_name="x", outputs=("y",), dynamic=True):
    inits = [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()]
    shp = ["N"] + list(in_shape[1:]) if dynamic else list(in_shape)
    x = helper.make_tensor_value_info(in_name, TensorProto.FLOAT, shp)
    outs = [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs]
    g = helper.make_graph(nodes, "g", [x], outs, initializer=inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], producer_name="test")
    m.ir_version = 8 if opset <= 18 else min(m.ir_version, 11)     # what this ORT reads
    return m


def save(tmp_path, model, name="m.onnx"):
    p = str(tmp_path / name)
    onnx.save(model, p)
    return p


def f32(*shape, scale=1.0):
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


def run_both(path, x):
    """(netdsl outputs, ORT outputs, the Imported) for input x."""
    imp = import_onnx(path)
    m = netdsl.parse(imp.text, imp.name + ".net")
    m.load_state_dict(imp.state)
    y = m(x)
    ys = list(y.values()) if isinstance(y, dict) else [y]
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    r = sess.run(None, {sess.get_inputs()[0].name: x})
    return ys, r, imp


def rel_err(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a.reshape(b.shape) - b).max() / max(np.abs(b).max(), 1e-12))


def check(tmp_path, model, in_shape, tol=1e-4):
    path = save(tmp_path, model)
    x = f32(*in_shape)
    ys, rs, imp = run_both(path, x)
    assert len(ys) == len(rs)
    for y, r in zip(ys, rs):
        assert rel_err(y, r) <= tol, imp.text
    return imp


def body(text):
    """The .net text without its comment header."""
    return "\n".join(l.split("#")[0] for l in text.splitlines() if not l.startswith("#"))


def conv_init(oc, ic, k):
    return {"w": f32(oc, ic, k, k, scale=0.3), "b": f32(oc, scale=0.1)}


# ---------------------------------------------------------------- folds
@pytest.mark.parametrize("opset", [11, NEWEST])
def test_shape_arithmetic_before_reshape_and_gemm_transb0(tmp_path, opset):
    """Shape/Gather/Unsqueeze/Concat feeding a Reshape to (N, -1), then Gemm with transB=0 and
    alpha/beta, as torch writes x.view(x.size(0), -1) @ W: one Flatten-free FC."""
    ax = [helper.make_tensor("ax", TensorProto.INT64, [1], [0])]
    unsq = (helper.make_node("Unsqueeze", ["n"], ["n1"], axes=[0]) if opset < 13 else
            helper.make_node("Unsqueeze", ["n", "axes0"], ["n1"]))
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("Shape", ["r"], ["s"]),
        helper.make_node("Constant", [], ["zero"], value=helper.make_tensor("z", TensorProto.INT64, [], [0])),
        helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
        unsq,
        helper.make_node("Constant", [], ["m1"], value=helper.make_tensor("m", TensorProto.INT64, [1], [-1])),
        helper.make_node("Concat", ["n1", "m1"], ["shape"], axis=0),
        helper.make_node("Reshape", ["r", "shape"], ["f"]),
        helper.make_node("Identity", ["f"], ["f2"]),
        helper.make_node("Gemm", ["f2", "W", "B"], ["y"], alpha=0.5, beta=2.0, transB=0),
    ]
    inits = dict(conv_init(4, 3, 3), W=f32(4 * 6 * 6, 5, scale=0.1), B=f32(5), axes0=np.array([0], np.int64))
    del ax
    imp = check(tmp_path, make_model(nodes, inits, (2, 3, 6, 6), opset=opset), (2, 3, 6, 6))
    b = body(imp.text)
    assert "FC(5)" in b and "Reshape" not in b and "Shape" not in b, b
    assert "opset %d" % opset in imp.text


def test_identity_dropout_and_cancelling_transposes_vanish(tmp_path):
    nodes = [
        helper.make_node("Transpose", ["x"], ["t1"], perm=[0, 2, 3, 1]),
        helper.make_node("Transpose", ["t1"], ["t2"], perm=[0, 3, 1, 2]),
        helper.make_node("Dropout", ["t2"], ["d"]),
        helper.make_node("Identity", ["d"], ["i"]),
        helper.make_node("Conv", ["i", "w", "b"], ["y"], kernel_shape=[1, 1]),
    ]
    imp = check(tmp_path, make_model(nodes, conv_init(4, 3, 1), (1, 3, 5, 5)), (1, 3, 5, 5))
    b = body(imp.text)
    assert b.count("(") == 1 and "Conv(4, 1)" in b, b
    assert "Transpose 2" in imp.notes[0] and "Dropout 1" in imp.notes[0]


def test_batchnorm_split_into_mul_add_folds_into_the_conv(tmp_path):
    """Conv then per-channel Mul and Add (BN as exporters split it): one Conv, exact."""
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], kernel_shape=[3, 3]),
        helper.make_node("Mul", ["c", "s"], ["m"]),
        helper.make_node("Add", ["t", "m"], ["a"]),            # constant first: either order
        helper.make_node("Relu", ["a"], ["y"]),
    ]
    inits = {"w": f32(4, 3, 3, 3), "s": f32(1, 4, 1, 1), "t": f32(4, 1, 1)}
    imp = check(tmp_path, make_model(nodes, inits, (1, 3, 7, 7)), (1, 3, 7, 7))
    b = body(imp.text)
    assert "Conv(4, 3)" in b and "BN" not in b and "Mul" not in b and "Add" not in b, b


def test_batchnorm_as_sub_div_mul_add_after_a_relu_becomes_one_bn(tmp_path):
    """(x - mean) / sqrt(var + eps) * g + b where x has no foldable producer: one BN."""
    C = 3
    nodes = [
        helper.make_node("Relu", ["x"], ["r"]),
        helper.make_node("Sub", ["r", "mean"], ["s"]),
        helper.make_node("Div", ["s", "std"], ["d"]),
        helper.make_node("Mul", ["d", "g"], ["m"]),
        helper.make_node("Add", ["m", "b"], ["y"]),
    ]
    inits = {"mean": f32(1, C, 1, 1), "std": (np.abs(f32(1, C, 1, 1)) + 0.5).astype(np.float32),
             "g": f32(C, 1, 1), "b": f32(C, 1, 1)}
    imp = check(tmp_path, make_model(nodes, inits, (2, C, 4, 4)), (2, C, 4, 4))
    b = body(imp.text)
    assert b.count("BN") == 1 and "Mul" not in b and "Add" not in b, b


def test_matmul_add_is_fc_and_gemm_transb1(tmp_path):
    nodes = [
        helper.make_node("GlobalAveragePool", ["x"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"], axis=1),
        helper.make_node("MatMul", ["f", "W1"], ["mm"]),
        helper.make_node("Add", ["mm", "b1"], ["h"]),
        helper.make_node("Relu", ["h"], ["hr"]),
        helper.make_node("Gemm", ["hr", "W2", "b2"], ["y"], transB=1, alpha=2.0),
    ]
    inits = {"W1": f32(6, 8), "b1": f32(8), "W2": f32(3, 8), "b2": f32(3)}
    imp = check(tmp_path, make_model(nodes, inits, (2, 6, 5, 5)), (2, 6, 5, 5))
    b = body(imp.text)
    assert "FC(8)" in b and "FC(3)" in b and "Add" not in b and "BN" not in b, b
    assert "GAP" in b


@pytest.mark.parametrize("pads", [[0, 0, 1, 2, 0, 0, 1, 0], [0, 0, 2, 2, 0, 0, 2, 2]])
def test_pad_folds_into_conv(tmp_path, pads):
    nodes = [
        helper.make_node("Pad", ["x", "p"], ["xp"], mode="constant"),
        helper.make_node("Conv", ["xp", "w", "b"], ["y"], kernel_shape=[3, 3], strides=[2, 2]),
    ]
    inits = dict(conv_init(4, 3, 3), p=np.array(pads, np.int64))
    imp = check(tmp_path, make_model(nodes, inits, (1, 3, 9, 9)), (1, 3, 9, 9))
    b = body(imp.text)
    assert "Pad" not in b and "pad=" in b, b


def test_pad_folds_into_pools(tmp_path):
    """Zero Pad + AveragePool (the padding counts) and -inf Pad + MaxPool: the pools' pads."""
    nodes = [
        helper.make_node("Pad", ["x", "p", "zero"], ["a"], mode="constant"),
        helper.make_node("AveragePool", ["a"], ["ap"], kernel_shape=[3, 3], strides=[1, 1]),
        helper.make_node("Pad", ["ap", "p", "ninf"], ["b"], mode="constant"),
        helper.make_node("MaxPool", ["b"], ["y"], kernel_shape=[3, 3], strides=[2, 2]),
    ]
    inits = {"p": np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), "zero": np.array(0, np.float32),
             "ninf": np.array(-np.inf, np.float32)}
    imp = check(tmp_path, make_model(nodes, inits, (1, 2, 8, 8)), (1, 2, 8, 8))
    b = body(imp.text)
    assert "Pad" not in b and "AvgPool(3, stride=1, pad=1)" in b and "MaxPool(3, stride=2, pad=1)" in b, b


@pytest.mark.parametrize("opset", [11, NEWEST])
def test_slices_are_slice_and_crop(tmp_path, opset):
    """Slice with constant bounds, step 1: on the channels -> netdsl Slice (negative and
    past-the-end bounds normalized, YOLOv4-tiny's second half), on H and W -> Crop at an
    offset, on a vector's features -> Slice, over a whole axis -> nothing."""
    i64 = lambda *v: np.array(v, np.int64)
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], kernel_shape=[1, 1]),
        helper.make_node("Slice", ["c", "s1", "e1", "a1"], ["half"], name="half"),        # channels 4..7
        helper.make_node("Slice", ["half", "s2", "e2", "a2", "st2"], ["crop"], name="crop"),
        helper.make_node("Slice", ["crop", "s3", "e3", "a3"], ["same"], name="whole"),     # cuts nothing
        helper.make_node("GlobalAveragePool", ["same"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"], axis=1),
        helper.make_node("Slice", ["f", "s4", "e4", "a4"], ["y"], name="tail"),
    ]
    inits = {**conv_init(8, 3, 1), "s1": i64(-4), "e1": i64(2 ** 63 - 1), "a1": i64(1),
             "s2": i64(1, 2), "e2": i64(6, -1), "a2": i64(2, -1), "st2": i64(1, 1),
             "s3": i64(0), "e3": i64(100), "a3": i64(3), "s4": i64(1), "e4": i64(3), "a4": i64(-1)}
    imp = check(tmp_path, make_model(nodes, inits, (1, 3, 8, 9), opset=opset), (2, 3, 8, 9))
    b = body(imp.text)
    assert "Slice(4, 8) - Crop((5, 6), offset=(1, 2)) - GAP - Flatten - Slice(1, 3)" in b, b


def test_slices_netdsl_cannot_read_are_refused(tmp_path):
    i64 = lambda *v: np.array(v, np.int64)
    nodes = [
        helper.make_node("Slice", ["x", "s", "e", "a", "st"], ["p"], name="strided"),
        helper.make_node("Slice", ["p", "s2", "e2", "a2"], ["q"], name="both_axes"),
        helper.make_node("Slice", ["q", "s3", "e3", "a3"], ["y"], name="batch"),
    ]
    inits = {"s": i64(0), "e": i64(8), "a": i64(2), "st": i64(2),
             "s2": i64(1, 1), "e2": i64(3, 3), "a2": i64(1, 2), "s3": i64(0), "e3": i64(1), "a3": i64(0)}
    path = save(tmp_path, make_model(nodes, inits, (1, 4, 8, 8)))
    with pytest.raises(InteropError) as e:
        import_onnx(path)
    text = e.value.render()
    assert "'strided'" in text and "steps=[2]: netdsl slices with step 1 only" in text, text
    assert "'both_axes'" in text and "it slices axes [1, 2]" in text, text
    assert "'batch'" in text and "it slices the batch axis" in text, text
    assert "Traceback" not in text


def test_neg_maxpool_neg_is_minpool_only_when_nothing_else_reads_the_pool(tmp_path):
    """The first Neg - MaxPool - Neg folds; in the second the MaxPool has two readers, so its
    Negs stay, and netdsl has no Neg layer: the error names those nodes, not the folded ones."""
    nodes = [
        helper.make_node("Neg", ["x"], ["n1"], name="neg_a"),
        helper.make_node("MaxPool", ["n1"], ["m"], kernel_shape=[2, 2], name="mp_a"),
        helper.make_node("Neg", ["m"], ["mn"], name="minpool"),
        helper.make_node("Neg", ["mn"], ["n2"], name="neg_b"),
        helper.make_node("MaxPool", ["n2"], ["m2"], kernel_shape=[2, 2], strides=[1, 1], name="mp_b"),
        helper.make_node("Relu", ["m2"], ["r"]),
        helper.make_node("Neg", ["m2"], ["z"], name="neg_c"),
        helper.make_node("Add", ["r", "z"], ["y"]),
    ]
    path = save(tmp_path, make_model(nodes, {}, (1, 2, 8, 8)))
    with pytest.raises(InteropError) as e:
        import_onnx(path)
    text = e.value.render()
    assert "'neg_b'" in text and "'neg_c'" in text, text
    assert "'neg_a'" not in text and "'minpool'" not in text and "'mp_a'" not in text, text


def test_neg_maxpool_neg_imports_and_matches_ort(tmp_path):
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], kernel_shape=[1, 1]),
        helper.make_node("Neg", ["c"], ["n1"]),
        helper.make_node("MaxPool", ["n1"], ["m"], kernel_shape=[3, 2], strides=[2, 2], pads=[1, 0, 1, 0],
                         ceil_mode=1),
        helper.make_node("Neg", ["m"], ["y"], name="minpool"),
    ]
    imp = check(tmp_path, make_model(nodes, conv_init(3, 2, 1), (1, 2, 7, 8)), (2, 2, 7, 8))
    b = body(imp.text)
    assert "MinPool((3, 2), stride=2, pad=(1, 0), ceil_mode=true)" in b and "Neg" not in b, b


@pytest.mark.parametrize("opset,keep", [(11, 1), (NEWEST, 0)])
def test_reducemean_over_hw_is_gap(tmp_path, opset, keep):
    if opset >= 18:
        rm = helper.make_node("ReduceMean", ["x", "axes"], ["g"], keepdims=keep)
    else:
        rm = helper.make_node("ReduceMean", ["x"], ["g"], axes=[2, 3], keepdims=keep)
    nodes = [rm, helper.make_node("Gemm", ["g" if not keep else "gf", "W", "B"], ["y"], transB=1)]
    if keep:
        nodes.insert(1, helper.make_node("Flatten", ["g"], ["gf"]))
    inits = {"W": f32(3, 4), "B": f32(3), "axes": np.array([-2, -1], np.int64)}
    imp = check(tmp_path, make_model(nodes, inits, (2, 4, 5, 5), opset=opset), (2, 4, 5, 5))
    assert "GAP" in imp.text and "FC(3)" in imp.text


# ---------------------------------------------------------------- op mapping
def test_ops_map_and_match_ort(tmp_path):
    """Conv (groups, dilation, asymmetric pads, no bias), BN, LeakyReLU, PReLU, Clip(0, inf),
    MaxPool ceil_mode, AveragePool count_include_pad=0, LRN, Sigmoid/Tanh, Concat, Add, Mul
    (squeeze-excite), ConvTranspose, Resize nearest, Softmax."""
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], kernel_shape=[3, 3], pads=[1, 0, 2, 1],
                         dilations=[1, 1], group=1),
        helper.make_node("BatchNormalization", ["c1", "g", "bb", "mu", "var"], ["bn"], epsilon=1e-3),
        helper.make_node("LeakyRelu", ["bn"], ["lr"], alpha=0.2),
        helper.make_node("Conv", ["lr", "w2", "b2"], ["c2"], kernel_shape=[3, 3], pads=[2, 2, 2, 2],
                         dilations=[2, 2], group=2),
        helper.make_node("PRelu", ["c2", "slope"], ["pr"]),
        helper.make_node("Clip", ["pr", "lo"], ["cl"]),
        helper.make_node("MaxPool", ["cl"], ["mp"], kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1),
        helper.make_node("AveragePool", ["lr"], ["ap0"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
                         count_include_pad=0),
        helper.make_node("Tanh", ["ap0"], ["th"]),
        helper.make_node("Concat", ["mp", "th"], ["cat"], axis=1),
        helper.make_node("LRN", ["cat"], ["lrn"], size=3, alpha=1e-3, beta=0.7, bias=2.0),
        helper.make_node("GlobalAveragePool", ["lrn"], ["se"]),
        helper.make_node("Sigmoid", ["se"], ["sg"]),
        helper.make_node("Mul", ["lrn", "sg"], ["scaled"]),
        helper.make_node("Add", ["scaled", "lrn"], ["res"]),
        helper.make_node("ConvTranspose", ["res", "wt", "bt"], ["up"], kernel_shape=[3, 3], strides=[2, 2],
                         pads=[1, 1, 1, 1], output_padding=[1, 1]),
        helper.make_node("Resize", ["up", "", "scales"], ["rs"], mode="nearest"),
        helper.make_node("Softmax", ["rs"], ["y"], axis=1),
    ]
    inits = {"w1": f32(4, 3, 3, 3), "g": f32(4), "bb": f32(4), "mu": f32(4),
             "var": (np.abs(f32(4)) + 0.5).astype(np.float32),
             "w2": f32(4, 2, 3, 3), "b2": f32(4), "slope": f32(4, 1, 1), "lo": np.array(0, np.float32),
             "wt": f32(8, 3, 3, 3), "bt": f32(3), "scales": np.array([1, 1, 2, 2], np.float32)}
    imp = check(tmp_path, make_model(nodes, inits, (1, 3, 9, 9), opset=13), (1, 3, 9, 9))
    b = body(imp.text)
    for w in ("pad=(1, 0, 2, 1)", "dilation=2", "groups=2", "bias=false", "BN(eps=0.001)", "LeakyReLU(0.2)",
              "PReLU", "ceil_mode=true", "count_include_pad=false", "LRN(3", "Concat", "Mul", "Add",
              "ConvTranspose(3, 3, stride=2, pad=1, output_padding=1)", "Upsample(2)", "Softmax"):
        assert w in b, (w, b)


@pytest.mark.skipif(ops.lookup("ReLU6") is None, reason="ReLU6 is not merged yet (branch wt-acts)")
def test_clip_0_6_is_relu6(tmp_path):
    nodes = [helper.make_node("Clip", ["x", "lo", "hi"], ["y"])]
    inits = {"lo": np.array(0, np.float32), "hi": np.array(6, np.float32)}
    imp = check(tmp_path, make_model(nodes, inits, (1, 2, 3, 3)), (1, 2, 3, 3))
    assert "ReLU6" in imp.text


def test_labels_come_from_initializer_names(tmp_path):
    nodes = [helper.make_node("Conv", ["x", "layer1.0.conv1.weight"], ["c"], kernel_shape=[1, 1],
                              name="/layer1/layer1.0/conv1/Conv"),
             helper.make_node("Relu", ["c"], ["r0"], name="/layer1/layer1.0/relu/Relu"),
             helper.make_node("Flatten", ["r0"], ["r"], name="/Flatten"),
             helper.make_node("Gemm", ["r", "fc.weight", "fc.bias"], ["y"], transB=1, name="/fc/Gemm")]
    inits = {"layer1.0.conv1.weight": f32(2, 3, 1, 1), "fc.weight": f32(4, 2), "fc.bias": f32(4)}
    model = make_model(nodes, inits, (1, 3, 1, 1))
    imp = check(tmp_path, model, (1, 3, 1, 1))
    assert set(imp.state) == {"layer1_0_conv1.weight", "fc.weight", "fc.bias"}, imp.text
    assert "layer1_0_conv1:Conv(2, 1, bias=false)" in imp.text and "fc:FC(4)" in imp.text
    assert "producer test" in imp.text and "m.onnx" in imp.text


# ---------------------------------------------------------------- errors
def test_every_unsupported_node_is_listed_at_once(tmp_path):
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], kernel_shape=[1, 1], name="conv"),
        helper.make_node("Erf", ["c"], ["e1"], name="erf_a"),
        helper.make_node("Erf", ["e1"], ["e2"], name="erf_b"),
        helper.make_node("Transpose", ["e2"], ["t"], perm=[0, 1, 3, 2], name="swap_hw"),
        helper.make_node("Conv", ["t", "wd"], ["y"], kernel_shape=[1, 1], name="dyn_conv"),
    ]
    # the last conv's weight is computed by the graph: not a layer netdsl has
    nodes.insert(4, helper.make_node("Relu", ["w2"], ["wd"], name="relu_w"))
    inits = {"w": f32(2, 2, 1, 1), "w2": f32(2, 2, 1, 1)}
    path = save(tmp_path, make_model(nodes, inits, (1, 2, 4, 4)))
    with pytest.raises(InteropError) as e:
        import_onnx(path)
    text = e.value.render()
    for nm in ("erf_a", "erf_b", "swap_hw", "dyn_conv", "relu_w"):
        assert f"'{nm}'" in text, text
    assert "Erf" in text and "Transpose" in text and path in text
    assert "Traceback" not in text and "hint:" in text


def test_custom_domain_op_is_reported(tmp_path):
    nodes = [helper.make_node("Mystery", ["x"], ["y"], domain="com.example", name="m1")]
    model = make_model(nodes, {}, (1, 2, 3, 3))
    model.opset_import.append(helper.make_opsetid("com.example", 1))
    path = save(tmp_path, model)
    with pytest.raises(InteropError) as e:
        import_onnx(path)
    assert "'m1' (Mystery)" in e.value.render() and "com.example" in e.value.render()


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty", "missing"])
def test_corrupt_file_is_a_clear_error(tmp_path, damage):
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], kernel_shape=[1, 1])]
    good = make_model(nodes, {"w": f32(64, 32, 3, 3)}, (1, 32, 4, 4)).SerializeToString()
    p = str(tmp_path / "bad.onnx")
    if damage != "missing":
        with open(p, "wb") as f:
            f.write({"garbage": b"\x0a\xff\xff\xff\xff\x0f not onnx",
                     "truncated": good[: len(good) // 2], "empty": b""}[damage])
    with pytest.raises(InteropError) as e:
        import_file(p)
    text = e.value.render()
    assert p in text and "Traceback" not in text
    assert ("no such file" in text) if damage == "missing" else ("corrupt or truncated" in text), text


def test_symbolic_spatial_size_is_refused(tmp_path):
    nodes = [helper.make_node("Relu", ["x"], ["y"])]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "H", "W"])
    g = helper.make_graph(nodes, "g", [x], [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    path = save(tmp_path, helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]))
    with pytest.raises(InteropError) as e:
        import_onnx(path)
    assert "input 'x' has shape ?x3x?x?" in e.value.render()


def test_without_onnx_the_error_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(InteropError) as e:
        import_onnx(str(tmp_path / "m.onnx"))
    assert "pip install" in e.value.render() and "netdsl[onnx]" in e.value.render()


# ---------------------------------------------------------------- the command and the façade
def test_cli_import_writes_net_and_weights(tmp_path, capsys):
    from netdsl.cli import main
    nodes = [helper.make_node("Conv", ["x", "conv1.weight", "conv1.bias"], ["c"], kernel_shape=[3, 3]),
             helper.make_node("Relu", ["c"], ["y"])]
    inits = {"conv1.weight": f32(4, 3, 3, 3), "conv1.bias": f32(4)}
    path = save(tmp_path, make_model(nodes, inits, (1, 3, 8, 8)), "small.onnx")
    out, wout = str(tmp_path / "o.net"), str(tmp_path / "o.npz")
    assert main(["import", path, "-o", out, "--weights-out", wout]) == 0
    err = capsys.readouterr().err
    assert f"{len(netdsl.load(out).graph)} layers" in err and "112 params" in err, err
    m = netdsl.load(out, weights=wout)
    x = f32(2, 3, 8, 8)
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    assert rel_err(m(x), sess.run(None, {"x": x})[0]) <= 1e-4
    # without -o: the .net next to the input; -o -: the text on stdout
    assert main(["import", path]) == 0
    assert os.path.exists(str(tmp_path / "small.net"))
    capsys.readouterr()
    assert main(["import", path, "-o", "-"]) == 0
    assert "conv1:Conv(4, 3)" in capsys.readouterr().out
    # errors are rendered, not raised
    assert main(["import", str(tmp_path / "none.onnx")]) == 1
    assert "no such file" in capsys.readouterr().err


def test_facade_import_onnx(tmp_path):
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], kernel_shape=[1, 1])]
    path = save(tmp_path, make_model(nodes, {"w": f32(2, 3, 1, 1)}, (1, 3, 2, 2)), "tiny-model.onnx")
    m = netdsl.import_onnx(path)
    assert m.name == "tiny_model" and m.weights_loaded and m.total_params == 6
    assert m.imported.text.startswith("# imported from tiny-model.onnx")


# ---------------------------------------------------------------- torchvision-layout models
torch = None


def _torch():
    global torch
    torch = pytest.importorskip("torch")
    sys.path.insert(0, os.path.dirname(__file__))
    import torchvision_models as tvm
    return tvm


def export_and_compare(tmp_path, model, opset, size=32, batch=1, **kw):
    x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(1))
    path = str(tmp_path / "model.onnx")
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), path, opset_version=opset, dynamo=False, input_names=["x"],
                          dynamic_axes={"x": {0: "N"}}, **kw)
    ys, rs, imp = run_both(path, x.numpy())
    with torch.no_grad():
        t = model(x).numpy()
    err = rel_err(ys[0], rs[0])
    assert err <= 1e-4, f"max rel err {err:.3g} vs ORT\n{imp.text}"
    assert rel_err(rs[0], t) <= 1e-4          # the oracle itself agrees with PyTorch
    return imp


@pytest.mark.parametrize("opset,fold", [pytest.param(11, False, marks=pytest.mark.slow), (20, True)])
def test_resnet50(tmp_path, opset, fold):
    """Opset 11 with BN kept (do_constant_folding=False) and 20 (the newest the legacy exporter
    writes) with torch's own folding (BN into the convs). The text: the stem, one labelled block
    call per bottleneck (two blocks: with and without projection), GAP - FC."""
    tvm = _torch()
    imp = export_and_compare(tmp_path, tvm.randomize(tvm.resnet50(), 0), opset, do_constant_folding=fold)
    b = body(imp.text)
    lines = [l for l in b.splitlines() if l.strip()]
    assert len(lines) <= 25, f"{len(lines)} lines:\n{imp.text}"
    assert b.count("block ") == 2 and "Add" in b, imp.text
    calls = re.findall(r"\b(layer\d_\d):(\w+)\((\d+)(?:, (\d))?\)", b)
    assert [c[0] for c in calls] == [f"layer{i}_{j}" for i, n in enumerate((3, 4, 6, 3), 1) for j in range(n)], b
    assert [int(c[2]) for c in calls] == [64] * 3 + [128] * 4 + [256] * 6 + [512] * 3, b
    assert [c[3] for c in calls if c[3]] == ["1", "2", "2", "2"], b            # the strides
    assert ("BN" in b) == (not fold), b
    for bad in ("Reshape", "Pad", "Identity", "Transpose", "Mul", "Flatten"):
        assert bad not in b, b
    assert "GAP - fc:FC(1000)" in re.sub(r"\s+", " ", b)
    if fold:                       # the same file written flat: 53 convs and 16 Adds spelled out
        flat = body(import_onnx(str(tmp_path / "model.onnx"), blocks=False).text)
        assert "block" not in flat and flat.count("Conv(") == 53 and flat.count("Add") == 16, flat
        assert len([l for l in flat.splitlines() if l.strip()]) <= 70, flat
    else:                   # torchvision's names, under the instance labels
        assert {"conv1.weight", "bn1.running_var", "layer1_0.downsample_0.weight",
                "layer4_2.bn3.bias", "fc.weight"} <= set(imp.state)


@pytest.mark.slow
def test_densenet121(tmp_path):
    tvm = _torch()
    imp = export_and_compare(tmp_path, tvm.randomize(tvm.densenet121(), 1), 17, do_constant_folding=False)
    b = body(imp.text)
    assert b.count("Conv(") == 120 and b.count("BN") == 121 and "AvgPool(2, stride=2)" in b


def test_googlenet(tmp_path):
    """Nine Inception modules: one block with six channel parameters, nine calls."""
    tvm = _torch()
    imp = export_and_compare(tmp_path, tvm.randomize(tvm.GoogLeNet(), 2), 13)
    b = body(imp.text)
    assert b.count("block ") == 1 and len(re.findall(r"- Concat\b", b)) == 1 and "ceil_mode=true" in b, b
    assert "inception3a:ConcatBlock(64, 96, 128, 16, 32, 32)" in b, b
    assert len(re.findall(r"inception\d\w:ConcatBlock", b)) == 9, b


@pytest.mark.skipif(ops.lookup("ReLU6") is None, reason="ReLU6 is not merged yet (branch wt-acts): "
                    "MobileNetV2's Clip(0, 6) has no netdsl op")
def test_mobilenetv2(tmp_path):
    tvm = _torch()
    imp = export_and_compare(tmp_path, tvm.randomize(tvm.MobileNetV2(), 3), 17)
    b = body(imp.text)
    assert "ReLU6" in b and "groups=" in b and "Clip" not in b, b


def test_torch_functional_shape_code_folds(tmp_path):
    """What torch writes for x.view(x.size(0), -1), F.pad, x.mean((2, 3)) and nn.Dropout with
    torch's own constant folding off: all folded, outputs equal."""
    tvm = _torch()
    nn, F = torch.nn, torch.nn.functional

    class Small(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, stride=2)
            self.bn = nn.BatchNorm2d(8)
            self.drop = nn.Dropout(0.3)
            self.fc = nn.Linear(8 * 4 * 4, 10)
            self.head = nn.Linear(8, 10)

        def forward(self, x):
            y = F.relu(self.bn(self.conv(F.pad(x, (1, 0, 1, 0)))))
            a = self.fc(self.drop(y.view(y.size(0), -1)))
            return a + self.head(y.mean((2, 3)))

    tvm.randomize(Small(), 4)
    imp = export_and_compare(tmp_path, tvm.randomize(Small(), 4), 13, size=8, batch=2,
                             do_constant_folding=False)
    b = body(imp.text)
    for bad in ("Reshape", "Pad", "Dropout", "Shape"):
        assert bad not in b, b
    assert "GAP" in b and b.count("FC(10)") == 2


# ---------------------------------------------------------------- activations (branch wt-acts)
needs_acts = pytest.mark.skipif(ops.lookup("SiLU") is None, reason="the new activations are not merged (wt-acts)")


@needs_acts
def test_activation_subgraphs_fold_to_ops(tmp_path):
    """x·sigmoid(x) -> SiLU, x·tanh(softplus(x)) -> Mish, x·hardsigmoid(x) -> HardSwish,
    torch's erf GELU -> GELU, Clip(-1, 1) -> Hardtanh, Clip(min only) -> Clip."""
    nodes = [
        helper.make_node("Sigmoid", ["x"], ["s"]),
        helper.make_node("Mul", ["x", "s"], ["silu"]),
        helper.make_node("Softplus", ["silu"], ["sp"]),
        helper.make_node("Tanh", ["sp"], ["tsp"]),
        helper.make_node("Mul", ["tsp", "silu"], ["mish"]),
        helper.make_node("HardSigmoid", ["mish"], ["hs"], alpha=1 / 6, beta=0.5),
        helper.make_node("Mul", ["mish", "hs"], ["hsw"]),
        helper.make_node("Div", ["hsw", "sqrt2"], ["gd"]),
        helper.make_node("Erf", ["gd"], ["ge"]),
        helper.make_node("Add", ["ge", "one"], ["ga"]),
        helper.make_node("Mul", ["hsw", "ga"], ["gm"]),
        helper.make_node("Mul", ["gm", "half"], ["gelu"]),
        helper.make_node("Clip", ["gelu", "m1", "p1"], ["ht"]),
        helper.make_node("Clip", ["ht", "lo"], ["y"]),
        ]
    inits = {"sqrt2": np.array(2 ** 0.5, np.float32), "one": np.array(1, np.float32),
             "half": np.array(0.5, np.float32), "m1": np.array(-1, np.float32), "p1": np.array(1, np.float32),
             "lo": np.array(-0.25, np.float32)}
    imp = check(tmp_path, make_model(nodes, inits, (1, 2, 5, 5), opset=13), (1, 2, 5, 5))
    b = body(imp.text)
    assert "SiLU - Mish - HardSwish - GELU - Hardtanh - Clip(min=-0.25)" in b, b


def test_two_outputs_and_refused_attributes(tmp_path):
    """Two graph outputs become `output a, b`; Gemm with transA=1 and an opset-11 Softmax over
    the flattened C x H x W are refused, both in one error."""
    nodes = [helper.make_node("Conv", ["x", "w"], ["a"], kernel_shape=[1, 1], name="head_a"),
             helper.make_node("Relu", ["x"], ["b"], name="head_b")]
    imp = check(tmp_path, make_model(nodes, {"w": f32(2, 3, 1, 1)}, (1, 3, 4, 4), outputs=("a", "b")),
                (1, 3, 4, 4))
    assert "output " in imp.text
    nodes = [helper.make_node("Softmax", ["x"], ["s"], axis=1, name="sm"),
             helper.make_node("Flatten", ["s"], ["f"]),
             helper.make_node("Gemm", ["W", "f"], ["y"], transA=1, name="gemm_ta")]
    path = save(tmp_path, make_model(nodes, {"W": f32(48, 5)}, (5, 3, 4, 4), opset=11, dynamic=False), "r.onnx")
    with pytest.raises(InteropError) as e:
        import_onnx(path)
    text = e.value.render()
    assert "'sm' (Softmax)" in text and "flattened" in text and "'gemm_ta' (Gemm)" in text, text


def test_auto_pad_output_shape_bilinear_and_unit_axes(tmp_path):
    """Conv auto_pad=SAME_UPPER at stride 2, ConvTranspose with output_shape, Resize linear
    (half_pixel) as bilinear, GlobalMaxPool, Squeeze/Unsqueeze of the unit axes."""
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER"),
        helper.make_node("ConvTranspose", ["c", "wt"], ["u"], kernel_shape=[3, 3], strides=[2, 2],
                         output_shape=[9, 9]),
        helper.make_node("Resize", ["u", "", "scales"], ["r"], mode="linear",
                         coordinate_transformation_mode="half_pixel"),
        helper.make_node("GlobalMaxPool", ["r"], ["g"]),
        helper.make_node("Squeeze", ["g", "axes"], ["sq"]),
        helper.make_node("Unsqueeze", ["sq", "axes"], ["y"]),
    ]
    inits = {"w": f32(4, 3, 3, 3), "wt": f32(4, 2, 3, 3), "scales": np.array([1, 1, 2, 2], np.float32),
             "axes": np.array([2, 3], np.int64)}
    imp = check(tmp_path, make_model(nodes, inits, (1, 3, 9, 9), opset=13), (1, 3, 9, 9))
    b = body(imp.text)
    assert "pad=1" in b and "mode=bilinear" in b and "GMP" in b and "ConvTranspose(2, 3, stride=2" in b, b


def test_the_input_preprocessing_survives_export_and_import(tmp_path):
    """netdsl's exporter keeps `input x: ... (mean=, std=, scale=)` in metadata_props; the importer
    writes it back on the input line, so `netdsl run imported.net --input img.png` normalizes as
    the original did."""
    pytest.importorskip("onnxruntime")
    src = "input x: 3x8x8 (mean=(0.5, 0.25, 0.125), std=(0.2, 0.3, 0.4), scale=0.5)\nConv(4, 3) - ReLU\n"
    m = netdsl.parse(src)
    path = str(tmp_path / "pre.onnx")
    m.to_onnx(path)
    back = netdsl.import_onnx(path)
    a = back.graph["x"].attrs
    assert a["mean"] == (0.5, 0.25, 0.125) and a["std"] == (0.2, 0.3, 0.4) and a["scale"] == 0.5
    plain = netdsl.parse("input x: 3x8x8\nConv(4, 3)\n")
    plain.to_onnx(str(tmp_path / "plain.onnx"))
    assert "mean=" not in netdsl.import_onnx(str(tmp_path / "plain.onnx")).imported.text
