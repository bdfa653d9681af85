"""The optimization passes on tiny networks: each pass fires where it should, keeps the
outputs (float64 reference, weights rounded once to float32: rtol 1e-5), and does NOT fire
where it would be wrong — a value that is still read elsewhere, an output, an activation in
between, a tensor needed twice by one node, an operand computed after the conv."""
from __future__ import annotations

import textwrap

import numpy as np
import pytest

import netdsl
from netdsl import ops
from netdsl.errors import NetDSLError
from netdsl.passes import (LEVELS, fold_batchnorm, fold_constants, fuse_activations, fuse_residual,
                           optimize, remove_noops)
from netdsl.runtime.reference import init_weights, run_reference


def parse(text):
    return netdsl.parse(textwrap.dedent(text)).graph


def randomized(graph, seed=0):
    """init_weights, then every 1-D tensor random: BN statistics and affine, and biases
    (zero at init), so that folding has something to fold."""
    w = init_weights(graph, seed)
    rng = np.random.default_rng(seed + 1)
    for k, v in w.items():
        if v.ndim == 1:
            if k.endswith("running_var") or (k.endswith(".weight") and k.replace("weight", "running_var") in w):
                w[k] = rng.uniform(0.5, 1.5, v.shape).astype(np.float32)
            else:
                w[k] = rng.normal(0, 0.5, v.shape).astype(np.float32)
    return w


def run(graph, weights, seed=2):
    rng = np.random.default_rng(seed)
    x = {n: rng.standard_normal((2, *graph[n].shape)) for n in graph.inputs}
    return run_reference(graph, weights, x)


def assert_same(g, w, g2, w2, rtol=1e-5, outputs=None):
    a, b = run(g, w), run(g2, w2)
    assert list(b) == list(outputs or a)
    for k in b:
        err = np.abs(a[k] - b[k]).max() / (np.abs(a[k]).max() + 1e-12)
        assert err < rtol, f"output {k}: relative error {err:.2e}"


def check_weights(g, w):
    """Every parameter and buffer of the graph is in w with its shape, and nothing else."""
    want = {f"{n.name}.{p}": tuple(s) for n in g.nodes() for p, s in {**n.params, **n.buffers}.items()}
    assert {k: v.shape for k, v in w.items()} == want
    assert all(v.dtype == np.float32 for v in w.values())


def optimized(text, level=2, **kw):
    g = parse(text)
    w = randomized(g)
    g2, w2, report = optimize(g, w, level, **kw)
    check_weights(g2, w2)
    assert_same(g, w, g2, w2, outputs=kw.get("outputs"))
    return g, g2, w2, report


def ops_of(g):
    return [n.op for n in g.nodes()]


# ---------------------------------------------------------------- purity, levels, report

RESBLOCK = """
    input x: 8x6x6
    stem:Conv(8, 3, pad=1) - sbn:BN - ReLU
    [ c1:Conv(8, 3, pad=1, bias=false) - bn1:BN - ReLU - c2:Conv(8, 3, pad=1, bias=false) - bn2:BN
    | _ ] - Add - ReLU
    drop:Dropout - GAP - fc:FC(5)
"""


def test_optimize_is_pure():
    g = parse(RESBLOCK)
    w = randomized(g)
    before_nodes = {n.name: (n.op, dict(n.attrs), g.preds(n.name)) for n in g.nodes()}
    before_w = {k: v.copy() for k, v in w.items()}
    g2, w2, _ = optimize(g, w, 3)
    assert {n.name: (n.op, dict(n.attrs), g.preds(n.name)) for n in g.nodes()} == before_nodes
    assert w.keys() == before_w.keys() and all(np.array_equal(w[k], before_w[k]) for k in w)
    assert g2 is not g and w2 is not w


@pytest.mark.parametrize("level", sorted(LEVELS))
def test_every_level_keeps_the_outputs(level):
    g, g2, w2, report = optimized(RESBLOCK, level)
    assert report.passes == [p.__name__ for p in LEVELS[level]]
    assert len(g2) <= len(g)


def test_levels_are_cumulative():
    sizes = [len(optimized(RESBLOCK, level)[1]) for level in sorted(LEVELS)]
    assert sizes == sorted(sizes, reverse=True) and sizes[0] > sizes[-1]


def test_O0_changes_nothing():
    g, g2, w2, report = optimized(RESBLOCK, 0)
    assert ops_of(g2) == ops_of(g) and len(report) == 0
    assert report.render() == ["no passes ran (-O0)"]


def test_O3_resblock_is_four_layers():
    g, g2, w2, report = optimized(RESBLOCK, 3)
    assert ops_of(g2) == ["Input", "Conv", "Conv", "Conv", "GlobalAvgPool", "FC"]
    c2 = g2["c2"]
    assert c2.attrs["residual"] and c2.attrs["act"] == "relu" and c2.attrs["bias"]
    assert g2.preds("c2") == ["c1", "stem"]        # the shortcut is slot 1
    assert report.totals() == {"remove_noops": 1, "fold_constants": 0, "fold_batchnorm": 3,
                               "fuse_activations": 3, "fuse_residual": 1}


def test_report_names_the_source_line():
    g, g2, w2, report = optimized(RESBLOCK, 3)
    lines = report.render()
    assert "BN folded into stem (line 3)" in lines
    assert "BN folded into c2 (line 4)" in lines
    assert "Dropout drop removed (line 6)" in lines
    assert "ReLU fused into stem (line 3)" in lines
    assert any(line.startswith("Add add1 fused into c2 as its residual (line 5)") for line in lines)
    assert lines[-5:] == ["remove_noops: 1 rewrite", "fold_constants: 0 rewrites", "fold_batchnorm: 3 rewrites",
                          "fuse_activations: 3 rewrites", "fuse_residual: 1 rewrite"]
    rec = next(r for r in report if r.pass_name == "fold_batchnorm")
    assert (rec.node, rec.line) == ("stem", 3)


def test_report_cites_a_block_file_by_name():
    g = netdsl.load("resnet18").graph
    _, _, report = optimize(g, None, 2)
    lines = report.render()
    assert "BN folded into conv1 (line 11)" in lines
    assert "BN folded into layer1.0.conv1 (resnet.net line 14)" in lines


def test_unknown_level():
    with pytest.raises(NetDSLError, match="optimization level"):
        optimize(parse("input x: 4\nFC(2)"), None, 4)


def test_weightless_mode_rewrites_the_graph_and_its_metadata():
    g = parse(RESBLOCK)
    g2, w2, report = optimize(g, None, 3)
    assert w2 is None and ops_of(g2) == ["Input", "Conv", "Conv", "Conv", "GlobalAvgPool", "FC"]
    assert g2["c1"].params == {"weight": (8, 8, 3, 3), "bias": (8,)}     # the folded BN's bias
    assert g2["c1"].n_params == 8 * 8 * 9 + 8
    # the same graph as with weights
    _, g3, _, _ = optimized(RESBLOCK, 3)
    assert [(n.name, n.op, n.attrs, n.shape) for n in g2.nodes()] == \
           [(n.name, n.op, n.attrs, n.shape) for n in g3.nodes()]


# ---------------------------------------------------------------- remove_noops

def test_dropout_and_identity_are_removed_keeping_slots():
    g, g2, w2, report = optimized("""
        input x: 3x8x8
        [ Conv(4, 3, pad=1) | Dropout | Identity - Conv(2, 1) ] - Concat
    """, 1)
    assert "Dropout" not in ops_of(g2) and "Identity" not in ops_of(g2)
    cat = next(n for n in g2.nodes() if n.op == "Concat")
    assert [g2[p].op for p in g2.preds(cat.name)] == ["Conv", "Input", "Conv"]


def test_noop_not_removed_where_a_reader_would_need_one_tensor_twice():
    # Add(x, Dropout(x)) cannot become Add(x, x): one edge per pair of nodes
    g, g2, _, report = optimized("""
        input x: 3x8x8
        [ _ | Dropout ] - Add
    """, 1)
    assert ops_of(g2) == ["Input", "Dropout", "Add"] and len(report) == 0


def test_noop_output_of_the_input_itself_stays():
    g, g2, _, _ = optimized("input x: 10\nIdentity", 1)
    assert ops_of(g2) == ["Input", "Identity"]


def test_noop_that_is_an_output_moves_the_output():
    g, g2, _, _ = optimized("""
        input x: 10
        fc:FC(4) - d:Dropout
        output d
    """, 1)
    assert ops_of(g2) == ["Input", "FC"] and g2.outputs == {"d": "fc"}


def test_identity_pad_and_crop_are_removed_and_real_ones_stay():
    g, g2, _, _ = optimized("""
        input x: 3x8x8
        Conv(4, 3, pad=1) - p0:Pad(0) - Crop(8x8) - p1:Pad(1) - Crop(9x9)
    """, 1)
    assert ops_of(g2) == ["Input", "Conv", "Pad", "Crop"] and "p1" in g2


def test_view_chains_collapse():
    g, g2, _, report = optimized("""
        input x: 3x8x8
        Conv(4, 3, pad=1) - Flatten - Reshape(16x4x4) - r:Reshape(-1) - FC(3)
    """, 1)
    assert ops_of(g2) == ["Input", "Conv", "Reshape", "FC"]
    assert g2["r"].shape == (256,) and g2.preds("r") == ["conv1"]


def test_view_chain_that_comes_back_to_the_shape_disappears():
    g, g2, _, _ = optimized("""
        input x: 3x8x8
        Conv(4, 3, pad=1) - Flatten - Reshape(4x8x8) - Conv(2, 1)
    """, 1)
    assert ops_of(g2) == ["Input", "Conv", "Conv"]


def test_view_read_by_another_node_stays():
    g, g2, _, report = optimized("""
        input x: 3x4x4
        f:Flatten - r:Reshape(12x2x2) - fc1:FC(3)
        f - fc2:FC(3)
        output fc1, fc2
    """, 1)
    assert "f" in g2 and g2.preds("r") == ["x"]
    assert any("reads x directly, past f" in line for line in report.render())


def test_outputs_not_asked_for_are_dropped_with_their_branch():
    text = """
        input x: 3x8x8
        trunk = Conv(4, 3, pad=1) - ReLU
        trunk - a:FC(10)
        trunk - Conv(4, 1) - ReLU - GAP - b:FC(2)
        output a, b
    """
    g, g2, w2, report = optimized(text, 1, outputs=["a"])
    assert list(g2.outputs) == ["a"] and ops_of(g2) == ["Input", "Conv", "ReLU", "FC"]
    lines = report.render()
    assert lines[0] == "output b dropped (not asked for) (line 5)"
    assert sum(line.startswith("unused ") for line in lines) == 4
    assert set(w2) == {"conv1.weight", "conv1.bias", "a.weight", "a.bias"}
    # at -O0 too: it is the caller's request, not an optimization
    g0, w0, _ = optimize(g, randomized(g), 0, outputs=["b"])
    assert list(g0.outputs) == ["b"] and "a" not in g0


def test_unknown_output_is_an_error():
    with pytest.raises(NetDSLError, match="no output named c"):
        optimize(parse("input x: 4\nFC(2)"), None, 1, outputs=["c"])


def test_googlenet_without_aux_heads_has_the_published_count():
    g = netdsl.load("googlenet").graph
    g2, _, _ = optimize(g, None, 1, outputs=["logits"])
    assert sum(n.n_params for n in g2.nodes()) == 6_624_904


# ---------------------------------------------------------------- fold_constants

def test_bn_after_bn_is_one_bn():
    g, g2, w2, report = optimized("""
        input x: 3x5x5
        b1:BN - b2:BN(eps=0.001) - b3:BN - Conv(2, 3)
    """, 1)
    assert ops_of(g2) == ["Input", "BatchNorm", "Conv"]
    assert report.render()[:2] == ["BN b2 merged into BN b1 (line 3)", "BN b3 merged into BN b1 (line 3)"]


def test_bn_chain_not_merged_when_the_first_is_read_elsewhere():
    g, g2, _, report = optimized("""
        input x: 3x5x5
        b1:BN - b2:BN
        b1 - c:Conv(2, 1)
        output b2, c
    """, 1)
    assert "b2" in g2 and len(report) == 0


def test_fold_constants_alone():
    g = parse("input x: 4\nBN - BN - FC(2)")
    w = randomized(g)
    g2, w2, records = fold_constants(g, w)
    assert len(records) == 1 and ops_of(g2) == ["Input", "BatchNorm", "FC"]
    assert_same(g, w, g2, w2)


# ---------------------------------------------------------------- fold_batchnorm

@pytest.mark.parametrize("layer", [
    "Conv(6, 3, pad=1)", "Conv(6, 3, pad=1, bias=false)", "Conv(6, 3, stride=2, groups=3, dilation=2, pad=2)",
    "ConvTranspose(6, 4, stride=2, pad=1, groups=3)", "ConvTranspose(6, 3, bias=false)",
])
def test_bn_folds_into_the_layer_before(layer):
    g, g2, w2, report = optimized(f"""
        input x: 3x7x7
        c:{layer} - BN - Conv(2, 1)
    """, 2)
    assert "BatchNorm" not in ops_of(g2) and g2["c"].attrs["bias"]
    assert report.render()[0] == "BN folded into c (line 3)"


def test_bn_folds_into_fc_before_it():
    g, g2, w2, _ = optimized("input x: 3x4x4\nfc:FC(7, bias=false) - BN - FC(2)", 2)
    assert ops_of(g2) == ["Input", "FC", "FC"] and set(g2["fc"].params) == {"weight", "bias"}


@pytest.mark.parametrize("after", ["FC(5)", "Conv(6, 3, groups=3)", "Conv(6, 1, stride=2, bias=false)"])
def test_bn_folds_into_the_input_of_the_layer_after(after):
    g, g2, w2, report = optimized(f"""
        input x: 3x6x6
        BN - c:{after}
    """, 2)
    assert "BatchNorm" not in ops_of(g2)
    assert report.render()[0] == "BN folded into the input of c (line 3)"


def test_bn_does_not_fold_into_a_padded_conv_after_it():
    # padding zeros would have to become -shift/scale; a BN on the input then stays
    g, g2, _, report = optimized("input x: 3x6x6\nBN - Conv(4, 3, pad=1)", 2)
    assert "BatchNorm" in ops_of(g2) and report.totals()["fold_batchnorm"] == 0


def test_bn_whose_input_feeds_another_node_does_not_fold():
    g, g2, _, report = optimized("""
        input x: 3x6x6
        c:Conv(4, 3, pad=1) - bn:BN - Conv(4, 3, pad=1)
        [ c | bn ] - Add
    """, 2)
    assert "bn" in g2 and "c" in g2
    assert report.totals()["fold_batchnorm"] == 0


def test_bn_after_an_output_does_not_fold():
    g, g2, _, report = optimized("""
        input x: 3x6x6
        c:Conv(4, 3, pad=1) - bn:BN
        output c, bn
    """, 2)
    assert "bn" in g2 and report.totals()["fold_batchnorm"] == 0


def test_bn_after_an_activation_does_not_fold_into_the_conv():
    g, g2, _, report = optimized("input x: 3x6x6\nc:Conv(4, 3, pad=1) - ReLU - bn:BN - GAP", 2)
    assert "bn" in g2 and g2["c"].attrs["act"] == "relu"
    assert report.totals()["fold_batchnorm"] == 0


def test_bn_after_a_residual_conv_does_not_fold():
    g, g2, _, report = optimized("""
        input x: 4x6x6
        s:Conv(4, 1)
        [ Conv(4, 3, pad=1) | s ] - c:Conv(4, 3, pad=1, residual=true) - bn:BN
    """, 2)
    assert "bn" in g2 and report.totals()["fold_batchnorm"] == 0


def test_two_bns_fold_one_after_the_other_into_one_conv():
    g = parse("input x: 3x6x6\nc:Conv(4, 3, bias=false) - BN - BN - GAP")
    w = randomized(g)
    g2, w2, records = fold_batchnorm(g, w)
    assert ops_of(g2) == ["Input", "Conv", "GlobalAvgPool"] and len(records) == 2
    check_weights(g2, w2)
    assert_same(g, w, g2, w2)
    g3, w3, _ = fold_batchnorm(g, None)
    assert w3 is None and g3["c"].params == g2["c"].params


def test_fold_batchnorm_alone_and_its_relu_follows():
    g = parse("input x: 3x6x6\nc:Conv(4, 3) - BN(act=relu) - GAP")
    w = randomized(g)
    g2, w2, records = fold_batchnorm(g, w)
    assert ops_of(g2) == ["Input", "Conv", "GlobalAvgPool"] and g2["c"].attrs["act"] == "relu"
    assert_same(g, w, g2, w2)


# ---------------------------------------------------------------- fuse_activations

@pytest.mark.parametrize("producer,act,fused", [
    ("Conv(4, 3)", "ReLU", "relu"), ("Conv(4, 3)", "LeakyReLU", "leakyrelu"), ("FC(6)", "Sigmoid", "sigmoid"),
    ("FC(6)", "Tanh", "tanh"), ("ConvTranspose(4, 2, stride=2)", "ReLU", "relu"),
])
def test_activation_fuses_into_its_producer(producer, act, fused):
    g, g2, _, report = optimized(f"input x: 3x6x6\np:{producer} - {act}", 2)
    assert ops_of(g2) == ["Input", ops_of(g)[1]] and g2["p"].attrs["act"] == fused
    assert g2.outputs == {"output": "p"}


def test_relu_fuses_into_add_and_into_an_unfoldable_bn():
    g, g2, _, _ = optimized("""
        input x: 3x6x6
        b:BN - ReLU - [ Conv(3, 3, pad=1) - ReLU | _ ] - a:Add - ReLU
    """, 2)
    assert g2["b"].attrs["act"] == "relu" and g2["a"].attrs["act"] == "relu"
    assert "ReLU" not in ops_of(g2)


def test_leaky_relu_with_another_slope_is_not_fused():
    g, g2, _, report = optimized("input x: 3x6x6\nc:Conv(4, 3) - LeakyReLU(0.1)", 2)
    assert "LeakyReLU" in ops_of(g2) and g2["c"].attrs["act"] == "none"


def test_only_relu_fuses_into_add():
    g, g2, _, _ = optimized("input x: 3x6x6\n[ Conv(3, 3, pad=1) | _ ] - Add - Sigmoid", 2)
    assert "Sigmoid" in ops_of(g2)


def test_activation_not_fused_when_the_producer_is_read_elsewhere():
    g, g2, _, report = optimized("""
        input x: 3x6x6
        c:Conv(3, 3, pad=1) - ReLU
        [ _ | c ] - Concat
    """, 2)
    assert "ReLU" in ops_of(g2) and g2["c"].attrs["act"] == "none"


def test_activation_not_fused_when_the_producer_is_an_output():
    g, g2, _, _ = optimized("""
        input x: 3x6x6
        c:Conv(3, 3, pad=1) - r:ReLU
        output c, r
    """, 2)
    assert "r" in g2 and g2["c"].attrs["act"] == "none"


def test_softmax_and_pools_do_not_fuse():
    g, g2, _, _ = optimized("input x: 3x6x6\nConv(3, 3) - MaxPool(2) - ReLU - FC(4) - SM", 2)
    assert ops_of(g2) == ["Input", "Conv", "MaxPool", "ReLU", "FC", "Softmax"]


def test_second_activation_stays():
    g, g2, _, _ = optimized("input x: 8\nc:FC(4) - ReLU - Tanh", 2)
    assert ops_of(g2) == ["Input", "FC", "Tanh"] and g2["c"].attrs["act"] == "relu"


def test_fuse_activations_alone():
    g = parse("input x: 8\nc:FC(4) - ReLU")
    g2, w2, records = fuse_activations(g, None)
    assert w2 is None and [r.message for r in records] == ["ReLU fused into c"]


# ---------------------------------------------------------------- fuse_residual

def test_residual_fuses_with_its_relu():
    g, g2, _, report = optimized("""
        input x: 4x6x6
        s:Conv(4, 1) - a:Conv(4, 3, pad=1) - ReLU - b:Conv(4, 3, pad=1)
        [ b | s ] - Add - ReLU
    """, 3)
    assert ops_of(g2) == ["Input", "Conv", "Conv", "Conv"]
    assert g2.preds("b") == ["a", "s"] and g2["b"].attrs["residual"] and g2["b"].attrs["act"] == "relu"


def test_residual_picks_the_conv_computed_after_the_other_operand():
    # ResNet's projection block: the shortcut conv comes later in the file, so it takes the
    # main path as its residual and no layer moves in the execution order
    g, g2, _, _ = optimized("""
        input x: 4x6x6
        [ m:Conv(8, 3, stride=2, pad=1) - BN | d:Conv(8, 1, stride=2) - BN ] - Add - ReLU
    """, 3)
    assert g2["d"].attrs["residual"] and g2.preds("d") == ["x", "m"]
    assert [n for n in g2.topo()] == ["x", "m", "d"]


def test_residual_when_the_shortcut_is_read_elsewhere():
    # the conv only reads r, it never writes it: r may stay live
    g, g2, _, _ = optimized("""
        input x: 4x6x6
        s:Conv(4, 1)
        t:Conv(4, 1)
        [ c:Conv(4, 3, pad=1) | s ] - Add - y:FC(3)
        s - z:FC(2)
        output y, z
    """, 3)
    assert g2["c"].attrs["residual"] and g2.preds("c") == ["t", "s"]


def test_residual_not_fused_when_the_conv_output_is_still_live():
    g, g2, _, report = optimized("""
        input x: 4x6x6
        s:Conv(4, 1)
        c:Conv(4, 3, pad=1)
        [ c | s ] - add:Add
        c - z:FC(2)
        output add, z
    """, 3)
    assert "add" in g2 and not g2["c"].attrs["residual"] and report.totals()["fuse_residual"] == 0


def test_residual_not_fused_when_the_conv_is_an_output():
    g, g2, _, report = optimized("""
        input x: 4x6x6
        s:Conv(4, 1) - c:Conv(4, 3, pad=1)
        [ c | s ] - add:Add
        output add, c
    """, 3)
    assert "add" in g2 and report.totals()["fuse_residual"] == 0


def test_residual_not_fused_into_a_conv_of_the_same_input():
    # conv(x) + x: the conv would need x on two slots (one edge per pair of nodes)
    g, g2, _, report = optimized("input x: 4x6x6\n[ Conv(4, 3, pad=1) | _ ] - add:Add", 3)
    assert "add" in g2 and report.totals()["fuse_residual"] == 0


def test_residual_not_fused_after_an_activation_or_into_a_three_way_sum():
    g, g2, _, report = optimized("""
        input x: 4x6x6
        s:Conv(4, 1) - [ c:Conv(4, 3, pad=1) - ReLU | _ ] - a1:Add
        s - [ Conv(4, 1) | Conv(4, 3, pad=1) | _ ] - a2:Add
        output a1, a2
    """, 3)
    assert "a1" in g2 and "a2" in g2 and report.totals()["fuse_residual"] == 0


def test_residual_takes_the_adds_relu():
    g = parse("""
        input x: 4x6x6
        s:Conv(4, 1) - [ Conv(4, 1) - c:Conv(4, 3, pad=1) | _ ] - Add(act=relu)
    """)
    g2, _, records = fuse_residual(g, None)
    assert g2["c"].attrs["act"] == "relu" and len(records) == 1


def test_fuse_residual_alone_keeps_outputs():
    g = parse(RESBLOCK)
    w = randomized(g)
    g1, w1, _ = optimize(g, w, 2)
    g2, w2, records = fuse_residual(g1, w1)
    assert len(records) == 1 and len(g2) == len(g1) - 1
    assert_same(g, w, g2, w2)


MERGE_OF_TWO_CONVS = """
    input x: 8x6x6
    r = x - Conv(8, 1)
    c = x - Conv(8, 3, pad=1)
    [ c | r ] - {merge}
"""
NOT_SUMS = sorted(n for n, s in ops.all_specs().items() if s.combine not in (None, "sum"))


def test_the_issue_reproduction_mul_is_not_fused_as_an_add():
    # issue 7, bug 1: fuse_residual took every "merge + elementwise" op, so conv(x)·r ran as
    # conv(x) + r at -O3 (optimized() compares against the unoptimized graph in float64)
    g, g2, _, report = optimized(MERGE_OF_TWO_CONVS.format(merge="m:Mul"), 3)
    assert "m" in g2 and not any(n.attrs.get("residual") for n in g2.nodes())
    assert report.totals()["fuse_residual"] == 0


@pytest.mark.parametrize("merge", NOT_SUMS)
def test_residual_not_fused_into_a_merge_that_is_not_a_sum(merge):
    """Every merge whose `combine` is not "sum" (Mul, Concat, and any max/min merge added
    later), with and without a ReLU after it."""
    assert {"Mul", "Concat"} <= set(NOT_SUMS)
    for tail in ("", " - ReLU"):
        g, g2, _, report = optimized(MERGE_OF_TWO_CONVS.format(merge=f"m:{merge}{tail}"), 3)
        assert "m" in g2 and report.totals()["fuse_residual"] == 0


def test_residual_not_fused_with_a_broadcast_operand():
    # squeeze-excite: Mul by a per-channel (C,1,1) scale; a sum would need the same shape anyway
    g, g2, _, report = optimized("""
        input x: 8x6x6
        c:Conv(8, 3, pad=1)
        [ c | c - GAP - FC(8) - Sigmoid - Reshape(8x1x1) ] - m:Mul
    """, 3)
    assert "m" in g2 and report.totals()["fuse_residual"] == 0


@pytest.mark.parametrize("slope", ["0.1", "0.02", "0", "-0.01", "0.0100001"])
def test_leaky_relu_fuses_only_with_the_built_in_slope(slope):
    g, g2, _, report = optimized(f"input x: 3x6x6\nc:Conv(4, 3) - l:LeakyReLU({slope})", 2)
    assert "l" in g2 and g2["c"].attrs["act"] == "none"
    g, g2, _, _ = optimized("input x: 3x6x6\nc:Conv(4, 3) - l:LeakyReLU(0.01)", 2)
    assert "l" not in g2 and g2["c"].attrs["act"] == "leakyrelu"


def test_an_activation_read_twice_is_fused_and_both_readers_see_it():
    # the producer's value is private to the ReLU; the ReLU's own value may have many readers
    g, g2, _, report = optimized("""
        input x: 3x6x6
        c:Conv(4, 3, pad=1) - r:ReLU
        [ r - Conv(4, 1) | r ] - Add
    """, 2)
    assert "r" not in g2 and g2["c"].attrs["act"] == "relu"


def test_a_value_read_by_two_activations_fuses_neither():
    g, g2, _, report = optimized("""
        input x: 3x6x6
        c:Conv(4, 3, pad=1)
        [ c - a:ReLU | c - b:Sigmoid ] - Concat
    """, 2)
    assert {"a", "b"} <= set(g2.g.nodes) and g2["c"].attrs["act"] == "none"
    assert report.totals()["fuse_activations"] == 0


def test_only_relu_fuses_into_bn():
    g, g2, _, _ = optimized("input x: 3x6x6\nb:BN - s:Sigmoid - Conv(2, 3, pad=1)", 2)
    assert "s" in g2 and g2["b"].attrs["act"] == "none"


def test_bn_read_twice_is_not_folded_into_one_of_its_readers():
    g, g2, _, report = optimized("""
        input x: 3x6x6
        b:BN
        [ b - FC(4) | b - FC(4) ] - Add
    """, 2)
    assert "b" in g2 and report.totals()["fold_batchnorm"] == 0


# ---------------------------------------------------------------- the Conv residual form itself

def test_conv_residual_reference_and_shape_check():
    g = parse("""
        input x: 4x6x6
        s:Conv(4, 1) - [ Conv(4, 3, pad=1) | _ ] - c:Conv(4, 3, pad=1, residual=true, act=relu)
    """)
    assert g.preds("c") == ["conv1", "s"] and g["c"].shape == (4, 6, 6)
    w = randomized(g)
    x = np.random.default_rng(0).standard_normal((1, 4, 6, 6))
    from netdsl import ops
    spec = ops.get("Conv")
    plain = dict(g["c"].attrs, residual=False, act="none")
    vals = {}
    for n in g.nodes():
        if n.op == "Input":
            vals[n.name] = x
        else:
            ww = {p: w[f"{n.name}.{p}"].astype(np.float64) for p in n.params}
            vals[n.name] = ops.get(n.op).reference(n.attrs, [vals[p] for p in g.preds(n.name)], ww)
    cw = {p: w[f"c.{p}"].astype(np.float64) for p in g["c"].params}
    want = np.maximum(spec.reference(plain, [vals["conv1"]], cw) + vals["s"], 0)
    np.testing.assert_allclose(vals["c"], want)


def test_conv_residual_shape_mismatch_is_located():
    with pytest.raises(NetDSLError, match="residual input is 4x6x6 but its output is 8x6x6"):
        parse("input x: 4x6x6\n[ Conv(4, 1) | _ ] - Conv(8, 3, pad=1, residual=true)")


def test_two_inputs_into_a_plain_conv_is_still_an_error():
    with pytest.raises(NetDSLError, match="Conv takes one input, but 2 parallel branches"):
        parse("input x: 4x6x6\n[ Conv(4, 1) | _ ] - Conv(8, 3)")


def test_remove_noops_alone():
    g = parse("input x: 8\nFC(4) - Dropout - Identity")
    g2, w2, records = remove_noops(g, None)
    assert ops_of(g2) == ["Input", "FC"] and len(records) == 2
