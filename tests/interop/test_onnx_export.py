"""netdsl -> ONNX export (netdsl/interop/onnx_export.py), with ONNX Runtime as the oracle.

Every exported model must pass onnx.checker (full_check: strict shape inference against the
shapes netdsl declared for every tensor) and ONNX Runtime must compute netdsl's outputs, at
batch 1 and batch 2 through the same dynamic-batch file. Error measure, per output:
max |ort − netdsl| / max |netdsl| (relative to the output's largest magnitude, so a
near-zero entry does not blow it up), at most 1e-5 (issue 9). Both engines are float32 with
different summation orders; measured 5e-7 .. 3e-6 on the zoo with perturbed weights (6e-6 on
the real-size U-Net, 23 convolutions on 572² maps).

Covered: every zoo model (real input size; AlexNet and U-Net at a smaller input that keeps
every layer — test_runtime_zoo.py's table; VGG-16/19 and FCN (130M+ weights), ResNet-101/152,
DenseNet-201 and the real-size AlexNet and U-Net are marked slow: 10-160 s each on 2 shared
cores, `python -m pytest -m slow tests/interop` runs them; all pass); generated networks over every op and merge
(netdsl/testing/generate.py); every op's own `samples` (the kernel tests' small instances:
ceil_mode, asymmetric pads, groups, dilation, output_padding, even-size LRN, two-input Crop,
...) at opset 11 and the newest; NaN and inf through the detection heads; a compiled bundle;
import -> export -> import round trips (zoo models, Slice/Crop/MinPool, the generated networks
whose ops all read back); the names, metadata, batch options, errors and the CLI.
"""
from __future__ import annotations

import os
import re

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import netdsl  # noqa: E402
from netdsl import ops  # noqa: E402
from netdsl.analysis.infer import analyze  # noqa: E402
from netdsl.graph import Graph  # noqa: E402
from netdsl.interop import onnx_export as ox  # noqa: E402
from netdsl.model import Model, resolve_path  # noqa: E402
from netdsl.runtime import lib  # noqa: E402
from netdsl.testing import generate as gen  # noqa: E402
from netdsl.testing.check import perturbed_weights  # noqa: E402

pytestmark = pytest.mark.skipif(not lib.available(), reason="C kernels not built")

TOL = 1e-5
NEWEST = onnx.defs.onnx_opset_version()
SMALL = {"alexnet": "3x99x99", "unet": "1x188x188"}          # same layers at a smaller input
# marked slow: 130M+ weights (VGG, FCN's fc6/fc7 convs) or the deepest (ResNet-101/152:
# 8-11 GMACs; DenseNet-201); and AlexNet, U-Net at their real input size
HEAVY = {"vgg16", "vgg19", "fcn", "resnet101", "resnet152", "densenet201",
         "resnet34", "densenet169", "unet"}   # these three only to keep the default run short: their
# ops and merges are in resnet18/densenet121 and in the per-op and generated-network tests below


def session(proto):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(proto.SerializeToString(), so, providers=["CPUExecutionProvider"])


def rel_err(got, want):
    assert got.shape == want.shape, f"shape {got.shape} vs {want.shape}"
    scale = float(np.abs(want).max())
    return float(np.abs(got - want).max()) / (scale if scale > 0 else 1.0)


# MobileNetV3-Small with these test weights is ill-conditioned: rounding each weight by one
# float32 ulp (what folding BN into the convs does) moves the exact float64 output by 1.3e-5
# relative, so no float32 runtime can promise 1e-5 on it (measured from the float64 reference:
# netdsl -O3 2.2e-5, -O0 7e-6, ORT 4.8e-6). Its bound is that sensitivity with some room.
MODEL_TOL = {"mobilenet_v3_small": 4e-5}


def compare(m, proto, batches=(1, 2), seed=1, nonneg=False, tol=TOL):
    """ORT against netdsl on random inputs; returns the worst relative error."""
    s = session(proto)
    rng = np.random.default_rng(seed)
    worst = 0.0
    for n in batches:
        feed = {i: rng.standard_normal((n, *m.graph[i].shape)).astype(np.float32) for i in m.graph.inputs}
        if nonneg:
            feed = {k: np.abs(v) for k, v in feed.items()}
        y = m(feed if len(feed) > 1 else next(iter(feed.values())))
        want = y if isinstance(y, dict) else {next(iter(m.graph.outputs)): y}
        got = dict(zip(want, s.run(list(want), feed)))
        for k in want:
            e = rel_err(got[k], want[k])
            assert e <= tol, f"output {k} at batch {n}: max rel error {e:.2e} > {tol:g}"
            worst = max(worst, e)
    return worst


def zoo_model(name, full=False):
    path = resolve_path(name)
    text = open(path).read()
    if name in SMALL and not full:
        text = re.sub(r"^(input\s+\w+\s*:\s*)\d+(x\d+)+", lambda mt: mt.group(1) + SMALL[name], text,
                      count=1, flags=re.M)
    m = netdsl.parse(text, name + ".net", path)
    m.load_state_dict(perturbed_weights(m, 0))
    return m


def zoo_cases():
    slow = pytest.mark.slow
    out = [pytest.param(n, False, id=n, marks=slow if n in HEAVY else ()) for n in netdsl.zoo_names()]
    return out + [pytest.param(n, True, id=f"{n}-full", marks=slow) for n in sorted(SMALL)]


@pytest.mark.parametrize("name,full", zoo_cases())
def test_zoo_exports_and_ort_agrees(name, full):
    m = zoo_model(name, full)
    proto = ox.to_model(m.graph, m.weights, source=name + ".net")     # check_model(full_check) inside
    assert proto.opset_import[0].version == ox.default_opset()
    assert {i.name for i in proto.graph.initializer} >= set(m.weights)
    compare(m, proto, tol=MODEL_TOL.get(name, TOL))


# ---------------------------------------------------------------- every op, every merge

GEN_SEEDS = range(12)


@pytest.mark.parametrize("seed", GEN_SEEDS)
def test_generated_network(seed):
    text, _, m, _ = gen.generate(seed)
    m.load_state_dict(perturbed_weights(m, seed))
    compare(m, ox.to_model(m.graph, m.weights), seed=seed)


def one_op(op, attrs, shapes):
    """A Model of one `op` layer on len(shapes) inputs (the op's own sample)."""
    g = Graph()
    inp = ops.get("Input")
    for i, s in enumerate(shapes):
        if len(s) in (1, 3):
            g.add(f"x{i}", "Input", inp.bind((), {"shape": tuple(s)}))
        else:                           # an input is a map or a vector: reshape one to rank 2
            g.add(f"x{i}", "Input", inp.bind((), {"shape": (int(np.prod(s)),)}))
            g.add(f"r{i}", "Reshape", ops.get("Reshape").bind((), {"shape": tuple(s)}))
            g.connect(f"x{i}", f"r{i}", 0)
    spec = ops.get(op)
    g.add("layer", op, spec.bind((), attrs))
    for i in range(len(shapes)):
        g.connect(f"r{i}" if f"r{i}" in g else f"x{i}", "layer", i)
    g.outputs = {"y": "layer"}
    analyze(g)
    m = Model(g, op)
    rng = np.random.default_rng(0)
    w = m.state_dict()
    for k, v in w.items():            # random, not the init's zeros and ones
        w[k] = (np.abs(rng.normal(1, 0.3, v.shape)) if k.endswith("running_var")
                else rng.normal(0, 0.5, v.shape)).astype(np.float32)
    m.load_state_dict(w)
    return m


def cases():
    out = []
    for name, spec in sorted(ops.all_specs().items()):
        for k, sample in enumerate(spec.samples):
            attrs, shapes = sample[0], sample[1]
            nonneg = bool(sample[2].get("nonneg")) if len(sample) > 2 else False
            out.append(pytest.param(name, attrs, shapes, nonneg, id=f"{name}-{k}"))
    # ceil_mode's last window starting in the end padding: PyTorch (netdsl) drops it, ONNX keeps it
    for op, extra in (("MaxPool", {}), ("MinPool", {}), ("AvgPool", {}),
                      ("AvgPool", {"count_include_pad": False}), ("StochasticPool", {})):
        attrs = dict(kernel=2, stride=2, pad=1, ceil_mode=True, **extra)
        out.append(pytest.param(op, attrs, [(2, 9, 7)], op == "StochasticPool", id=f"{op}-overhang-{len(out)}"))
    out.append(pytest.param("LRN", dict(size=4, alpha=0.1, beta=0.75, k=2.0), [(6, 3, 5)], False, id="LRN-even"))
    out.append(pytest.param("Upsample", dict(size=(4, 6)), [(2, 6, 9)], False, id="Upsample-nearest-shrink"))
    out.append(pytest.param("Upsample", dict(size=(1, 4), mode="bilinear"), [(2, 3, 5)], False,
                            id="Upsample-bilinear-1px"))
    out.append(pytest.param("Local", dict(out_channels=2, kernel=2, stride=(2, 1), pad=(0, 1, 1, 0)),
                            [(3, 5, 4)], False, id="Local-asymmetric"))
    return out


def test_every_registered_op_has_an_emitter():
    assert not [n for n, s in ops.all_specs().items()
                if n != "Input" and n not in ox.EMIT and getattr(s, "act", None) not in ox.ACTS]
    assert not [a for a in ops.activations.NAMES if a not in ox.ACTS]       # every fused act= too


@pytest.mark.parametrize("opset", [11, NEWEST])
@pytest.mark.parametrize("op,attrs,shapes,nonneg", cases())
def test_op(op, attrs, shapes, nonneg, opset):
    m = one_op(op, attrs, shapes)
    proto = ox.to_model(m.graph, m.weights, opset=opset)
    assert proto.opset_import[0].version == opset
    compare(m, proto, nonneg=nonneg)


@pytest.mark.parametrize("opset", [11, NEWEST])
@pytest.mark.parametrize("op", ["YoloDecode", "RegionDecode"])
def test_decode_heads_propagate_nan_and_inf(op, opset):
    """An inf in tw makes an infinite width, a NaN in tx a NaN x, a NaN or inf class logit a
    NaN row of RegionDecode's softmax: ONNX Runtime puts them where netdsl does."""
    attrs, shapes = ops.get(op).samples[0][:2]
    m = one_op(op, attrs, shapes)
    x = np.random.default_rng(0).standard_normal((1, *shapes[0])).astype(np.float32)
    x[0, 2, 1, 1], x[0, 0, 2, 2], x[0, 6, 0, 0], x[0, 7, 3, 3], x[0, 5, 4, 4] = np.inf, np.nan, np.nan, np.inf, -np.inf
    want = m(x)
    got = session(ox.to_model(m.graph, m.weights, opset=opset)).run(None, {"x0": x})[0]
    assert np.isnan(want).any() and np.isinf(want).any()
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
    ok = np.isfinite(want)
    assert rel_err(got[ok], want[ok]) <= TOL


DARKNET = os.path.join(os.path.dirname(__file__), "..", "data", "darknet")


@pytest.mark.parametrize("name", ["yolov3-tiny", "yolov2-tiny", "mixed"])
def test_darknet_detectors_export(name, tmp_path):
    """Darknet .cfg -> netdsl -> ONNX: YOLOv3-tiny's two [yolo] heads, YOLOv2-tiny's [region]
    head, and mixed.cfg's CSP route groups (Slice) and scale_x_y head, at a 64x64 input. The raw
    heads (the convs before the decode layers, made outputs too) agree to TOL. The decoded rows
    agree to TOL except w and h, which are e^t·anchor: there an absolute error d of the head's t
    is a relative error of e^d − 1, so the bound is e^d − 1 (+ TOL) with d measured on the head."""
    from netdsl.interop import import_file
    text = open(os.path.join(DARKNET, name + ".cfg")).read()
    if name != "mixed":
        text = text.replace("width=416", "width=64").replace("height=416", "height=64")
    (tmp_path / f"{name}.cfg").write_text(text)
    imp = import_file(str(tmp_path / f"{name}.cfg"))
    m = netdsl.parse(imp.text, name + ".net")
    m.load_state_dict(perturbed_weights(m, 1))
    heads = {}
    for o, v in list(m.graph.outputs.items()):
        if m.graph[v].op in ("YoloDecode", "RegionDecode"):
            heads[o] = m.graph.preds(v)[0]
            m.graph.outputs[heads[o]] = heads[o]
    assert heads and ("Slice" in {n.op for n in m.graph.nodes()}) == (name == "mixed")
    x = np.random.default_rng(1).standard_normal((2, *m.graph[m.graph.inputs[0]].shape)).astype(np.float32)
    want = m(x)
    for opset in (11, NEWEST):
        s = session(ox.to_model(m.graph, m.weights, opset=opset))
        got = dict(zip(want, s.run(list(want), {m.graph.inputs[0]: x})))
        for o, h in heads.items():
            assert rel_err(got[h], want[h]) <= TOL, h
            d = float(np.abs(got[h] - want[h]).max())
            a, b = want[o], got[o]
            rest = np.r_[0:2, 4:a.shape[-1]]
            assert rel_err(b[..., rest], a[..., rest]) <= TOL, o
            wh_err = float((np.abs(b[..., 2:4] - a[..., 2:4]) / np.abs(a[..., 2:4])).max())
            assert wh_err <= np.expm1(d) + TOL, (o, wh_err, d)


def test_fused_epilogues_become_nodes():
    m = netdsl.parse("input x: 3x9x9\nc1:Conv(4, 3, pad=1, act=relu) - b1:BN(act=relu) - "
                     "[ _ | Conv(4, 1) ] - c2:Conv(4, 3, pad=1, residual=true, act=leakyrelu) - f:FC(5, act=tanh)\n")
    m.load_state_dict(perturbed_weights(m, 3))
    proto = ox.to_model(m.graph, m.weights)
    ops_of = {}
    for nd in proto.graph.node:
        ops_of.setdefault(nd.name.split("/")[0], []).append(nd.op_type)
    assert ops_of["c1"] == ["Conv", "Relu"] and ops_of["b1"] == ["BatchNormalization", "Relu"]
    assert ops_of["c2"] == ["Conv", "Add", "LeakyRelu"] and ops_of["f"] == ["Flatten", "Gemm", "Tanh"]
    compare(m, proto)


# ---------------------------------------------------------------- names, metadata, batch

def test_names_metadata_and_dynamic_batch(tmp_path):
    m = netdsl.load("resnet18")
    path = str(tmp_path / "r18.onnx")
    m.to_onnx(path)
    p = onnx.load(path)
    assert p.producer_name == "netdsl" and p.producer_version == netdsl.__version__
    assert "resnet18.net" in p.doc_string
    layers = {n.name for n in m.graph.nodes() if n.op != "Input"}
    named = {nd.name for nd in p.graph.node}
    assert layers <= named                               # every layer has a node of its name
    assert all(nd.name.split("/")[0] in layers | set(m.graph.outputs) for nd in p.graph.node)
    assert [i.name for i in p.graph.initializer] == list(m.state_dict())      # the state-dict keys, in order
    for i in p.graph.initializer:                                              # the netdsl layouts
        np.testing.assert_array_equal(onnx.numpy_helper.to_array(i), m.weights[i.name])
    assert [i.name for i in p.graph.input] == m.graph.inputs
    assert [o.name for o in p.graph.output] == list(m.graph.outputs)
    dim0 = p.graph.input[0].type.tensor_type.shape.dim[0]
    assert dim0.dim_param == "N"
    assert p.ir_version == onnx.helper.find_min_ir_version_for(list(p.opset_import))


@pytest.mark.parametrize("kw,want", [(dict(dynamic_batch=False), 1), (dict(batch=3), 3)])
def test_static_batch(kw, want):
    m = netdsl.load("lenet5")
    p = ox.to_model(m.graph, m.weights, **kw)
    for v in list(p.graph.input) + list(p.graph.output):
        assert v.type.tensor_type.shape.dim[0].dim_value == want
    x = np.random.default_rng(0).standard_normal((want, 1, 32, 32)).astype(np.float32)
    assert rel_err(session(p).run(None, {"x": x})[0], m(x)) <= TOL


def test_several_outputs_and_inputs():
    m = netdsl.parse("input a: 2x6x6\ninput b: 3x6x6\n"
                     "[ a | b ] - c:Concat - p:MaxPool(2)\nc - q:Conv(4, 1) - r:GAP\noutput p, r, c\n")
    p = ox.to_model(m.graph, m.weights)
    assert [o.name for o in p.graph.output] == ["p", "r", "c"]
    assert [i.name for i in p.graph.input] == ["a", "b"]
    compare(m, p)


def test_over_2gb_goes_to_external_data(tmp_path, monkeypatch):
    monkeypatch.setattr(ox, "MAX_PROTO", 1000)                  # lenet5's 247 kB count as "big"
    m = netdsl.load("lenet5")
    path = tmp_path / "l.onnx"
    m.to_onnx(str(path))
    assert (tmp_path / "l.onnx.data").stat().st_size >= 0.95 * 4 * m.total_params   # small biases stay inline
    assert path.stat().st_size < 20_000
    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((2, 1, 32, 32)).astype(np.float32)
    assert rel_err(s.run(None, {"x": x})[0], m(x)) <= TOL


def test_a_layer_named_like_an_output():
    """Output names are labels in .net text; a graph built otherwise may name an output like
    another layer: that layer's tensor is renamed, the output keeps its name."""
    m = netdsl.parse("input x: 3x6x6\nz:Conv(4, 3) - r:ReLU\nx - q:Conv(2, 1)\noutput r, q\n")
    m.graph.outputs = {"q": "r", "z": "q"}          # names swapped with the layers z and q
    p = ox.to_model(m.graph, m.weights)
    assert [o.name for o in p.graph.output] == list(m.graph.outputs)
    compare(m, p)


# ---------------------------------------------------------------- errors

@pytest.mark.parametrize("opset", [10, NEWEST + 1, "17"])
def test_bad_opset_is_a_clear_error(opset):
    m = netdsl.load("lenet5")
    with pytest.raises(netdsl.NetDSLError) as e:
        ox.to_model(m.graph, m.weights, opset=opset)
    assert f"netdsl writes opsets 11 to {NEWEST}" in e.value.render()


def test_an_op_that_needs_a_newer_opset_names_the_layer(monkeypatch):
    m = netdsl.parse("input x: 3x9x9\nConv(4, 3) - slow:AvgPool(2)\n")

    def needs_19(ctx, a, ins):
        ctx.need(19, "AveragePool with dilation")
    monkeypatch.setitem(ox.EMIT, "AvgPool", needs_19)
    with pytest.raises(netdsl.NetDSLError) as e:
        ox.to_model(m.graph, m.weights, opset=17)
    text = e.value.render()
    assert "slow (AvgPool): AveragePool with dilation needs ONNX opset 19, and opset 17 was asked for" in text
    assert "<string>:2:" in text and "--opset 19" in text


def test_unmapped_ops_are_listed_at_once(monkeypatch):
    m = netdsl.parse("input x: 3x9x9\nl1:LRN - p:MinPool(2) - l2:LRN\n")
    monkeypatch.delitem(ox.EMIT, "LRN")
    with pytest.raises(netdsl.NetDSLError) as e:
        ox.to_model(m.graph, m.weights)
    text = e.value.render()
    assert "l1 (LRN): no ONNX mapping for LRN" in text and "l2 (LRN)" in text and "2 errors" in text


def test_without_onnx_says_how_to_install(monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "onnx", None)          # `import onnx` now raises ImportError
    m = netdsl.load("lenet5")
    with pytest.raises(netdsl.NetDSLError) as e:
        m.to_onnx("never.onnx")
    assert 'pip install "netdsl[onnx]"' in e.value.render()


def test_cli_without_onnx(monkeypatch, capsys, tmp_path):
    import sys
    from netdsl.cli import main
    monkeypatch.setitem(sys.modules, "onnx", None)
    assert main(["export", "lenet5", "-o", str(tmp_path / "l.onnx")]) == 1
    err = capsys.readouterr().err
    assert "error: this needs the 'onnx' package" in err and 'pip install "netdsl[onnx]"' in err
    assert "Traceback" not in err and not (tmp_path / "l.onnx").exists()


# ---------------------------------------------------------------- the command line

def test_cli_export(tmp_path, capsys):
    from netdsl.cli import main
    out = tmp_path / "y.onnx"
    assert main(["export", "yolov2_tiny", "-o", str(out), "--opset", "11"]) == 0
    said = capsys.readouterr().out
    assert f"wrote {out}: opset 11" in said and "dynamic batch (N)" in said
    p = onnx.load(str(out))
    assert p.opset_import[0].version == 11
    onnx.checker.check_model(p, full_check=True)
    assert main(["export", "lenet5", "-o", str(tmp_path / "l.onnx"), "--static-batch"]) == 0
    assert "batch 1" in capsys.readouterr().out
    assert main(["export", "lenet5", "-o", str(tmp_path / "l.onnx"), "--batch", "4"]) == 0
    assert "batch 4" in capsys.readouterr().out


@pytest.mark.parametrize("argv,msg", [
    (["--opset", "9"], "cannot export to ONNX opset 9: netdsl writes opsets 11 to"),
    (["--batch", "0"], "--batch must be at least 1"),
    (["--batch", "2", "--dynamic-batch"], "--dynamic-batch and --batch contradict each other"),
    (["-o", "x.pb"], "the output of `netdsl export` is an ONNX file"),
    (["-o", "/nonexistent-dir/x.onnx"], "cannot write /nonexistent-dir/x.onnx"),
])
def test_cli_export_errors(argv, msg, tmp_path, capsys, monkeypatch):
    from netdsl.cli import main
    monkeypatch.chdir(tmp_path)
    assert main(["export", "lenet5"] + argv) == 1
    err = capsys.readouterr().err
    assert msg in err and "Traceback" not in err and "hint:" in err


# ---------------------------------------------------------------- import -> export -> import

def _importer():
    if not hasattr(netdsl, "import_onnx"):
        pytest.skip("no ONNX importer in this build (netdsl.import_onnx)")
    return netdsl.import_onnx


def _layers(m):
    return [(n.op, tuple(n.shape), len(m.graph.preds(n.name))) for n in m.graph.nodes()]


@pytest.mark.parametrize("name", ["lenet5", "resnet18", "yolov2_tiny",
                                  pytest.param("googlenet", marks=pytest.mark.slow)])   # 15-30 s here
def test_round_trip(name, tmp_path):
    """netdsl -> ONNX -> netdsl computes the same; exporting the import and importing it again
    gives the same graph (ops, shapes, wiring, names) and the same weights. (Zoo models, and
    the ops below: the importer does not read back the subgraphs the exporter writes for
    StochasticPool, Local, YoloDecode and RegionDecode, so generated networks are not
    round-tripped.)"""
    m = netdsl.load(name)
    m.load_state_dict(perturbed_weights(m, 5))
    _round_trip(m, tmp_path)


def test_round_trip_of_slice_crop_minpool(tmp_path):
    """The subgraphs the importer reads back as layers: Slice on the channels, Slice on H and W
    (Crop), Neg-MaxPool-Neg (MinPool), with pads and ceil_mode."""
    m = netdsl.parse("input x: 3x11x11\nc:Conv(8, 3, pad=1) - [ Slice(0, 4) - MinPool(2, ceil_mode=true) | "
                     "Slice(4, 8) - Crop(6x6, offset=(2, 3)) | Slice(2, 6) - MinPool(3, stride=2, pad=1) ] - "
                     "Add - r:ReLU - GAP - FC(5)\n")
    m.load_state_dict(perturbed_weights(m, 6))
    m2 = _round_trip(m, tmp_path)
    assert [n.op for n in m2.graph.nodes()] == [n.op for n in m.graph.nodes()]


# what the exporter writes as subgraphs the importer does not read back as one layer
NOT_READ_BACK = {"StochasticPool", "Local", "YoloDecode", "RegionDecode"}


def _not_read_back(m):
    return sorted({n.op for n in m.graph.nodes() if n.op in NOT_READ_BACK} |
                  {"LRN (even size)" for n in m.graph.nodes() if n.op == "LRN" and n.attrs["size"] % 2 == 0})


@pytest.mark.parametrize("seed", GEN_SEEDS)
def test_generated_network_round_trip(seed, tmp_path):
    text, _, m, _ = gen.generate(seed)
    missing = _not_read_back(m)
    if missing:
        pytest.skip(f"holds {', '.join(missing)}: exported as subgraphs the importer does not read back")
    m.load_state_dict(perturbed_weights(m, seed))
    m2 = _round_trip(m, tmp_path)
    count = lambda mm: {op: sum(n.op == op for n in mm.graph.nodes()) for op in ("Slice", "Crop", "MinPool")}
    assert count(m2) == count(m)        # read back as themselves (fused act= come back as layers)


def _round_trip(m, tmp_path):
    import_onnx = _importer()
    m.to_onnx(str(tmp_path / "a.onnx"))
    m2 = import_onnx(str(tmp_path / "a.onnx"))
    compare(m2, ox.to_model(m2.graph, m2.weights))
    rng = np.random.default_rng(2)
    feed = {i: rng.standard_normal((2, *m.graph[i].shape)).astype(np.float32) for i in m.graph.inputs}
    y, y2 = m(feed), m2({k: feed[k0] for k, k0 in zip(m2.graph.inputs, m.graph.inputs)})
    y, y2 = (y, y2) if isinstance(y, dict) else ({"y": y}, {"y": y2})
    for (k, a), b in zip(y.items(), y2.values()):
        assert rel_err(b, a) <= TOL, k
    m2.to_onnx(str(tmp_path / "b.onnx"))
    m3 = import_onnx(str(tmp_path / "b.onnx"))
    assert _layers(m3) == _layers(m2)
    assert [n.name for n in m3.graph.nodes()] == [n.name for n in m2.graph.nodes()]
    assert list(m3.weights) == list(m2.weights)
    for k, v in m2.weights.items():
        np.testing.assert_array_equal(m3.weights[k], v)
    return m2


def test_a_compiled_bundle_exports_what_it_holds(tmp_path):
    """A .netc bundle's graph is the optimized one: BN folded into the convs, the ReLUs fused
    into Conv and Add (act=relu). The export writes what it holds, the fused ReLUs as nodes."""
    from netdsl.compiler import compile_model
    m = netdsl.parse("input x: 3x12x12\nc1:Conv(8, 3, pad=1) - BN - ReLU - "
                     "[ _ | Conv(8, 3, pad=1) - BN ] - Add - ReLU - GAP - FC(4)\n")
    m.load_state_dict(perturbed_weights(m, 9))
    compile_model(m, str(tmp_path / "m.netc"), 3)
    b = netdsl.load(str(tmp_path / "m.netc"))
    p = ox.to_model(b.graph, b.weights)
    assert "BatchNormalization" not in {nd.op_type for nd in p.graph.node}
    assert {n.op: n.attrs.get("act") for n in b.graph.nodes()}["Add"] == "relu"
    assert compare(b, p) <= TOL
    x = np.random.default_rng(4).standard_normal((2, 3, 12, 12)).astype(np.float32)
    assert rel_err(session(p).run(None, {"x": x})[0], m(x)) <= TOL      # and the source model's
