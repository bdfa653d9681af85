"""Every op and every zoo model survives a bundle: written, read back through the full
reader, the same graph (ops, attributes as resolved, inputs in slot order, shapes,
parameter shapes) and — for the one-op networks and the small models — the same outputs.

The oracle for "same" is the graph that was written: the reader re-binds the stored
arguments through each op's own validation and re-analyzes, so a resolved attribute that
does not re-bind (Upsample(2) resolves to scale *and* size) or a size the reader limits
more tightly than the language (a Reshape to rank 9) fails here. Outputs are compared with
the numpy reference executor on both graphs (independent of the C runtime and bit-exact:
same numpy operations on the same values), and with the C runtime when it is built.

Op instances come from each spec's `samples` (or `sample`) when it declares them, else
from the table below; an op with neither fails `test_every_op_has_an_instance`.
"""
from __future__ import annotations

import os

import numpy as np
import pytest

import netdsl
from netdsl import NetDSLError, bundle, compiler, ops
from netdsl.analysis.infer import analyze
from netdsl.cli import main
from netdsl.graph import Graph
from netdsl.runtime import lib
from netdsl.runtime.reference import init_weights, run_reference

# One valid instance per op, used until the op's spec declares `samples`: (attrs, input shapes).
LOCAL = {
    "Add": ({}, [(4, 5, 5), (4, 5, 5)]),
    "AvgPool": ({"kernel": 3, "stride": 2, "pad": 1, "ceil_mode": True, "count_include_pad": False}, [(3, 7, 7)]),
    "BatchNorm": ({}, [(3, 5, 5)]),
    "Concat": ({}, [(2, 4, 4), (3, 4, 4)]),
    "Conv": ({"out_channels": 4, "kernel": 3, "pad": "same", "stride": 2}, [(3, 7, 7)]),
    "ConvTranspose": ({"out_channels": 2, "kernel": 3, "stride": 2, "output_padding": 1}, [(3, 4, 4)]),
    "Crop": ({"size": (3, 3)}, [(2, 5, 5)]),
    "Dropout": ({"p": 0.3}, [(6,)]),
    "FC": ({"out_features": 3, "act": "relu"}, [(6,)]),
    "Flatten": ({}, [(2, 3, 3)]),
    "GlobalAvgPool": ({}, [(3, 4, 4)]),
    "GlobalMaxPool": ({}, [(3, 4, 4)]),
    "Identity": ({}, [(3,)]),
    "Input": ({"shape": (3, 4, 4)}, []),        # every network starts with one
    "LRN": ({"size": 3}, [(5, 4, 4)]),
    "LeakyReLU": ({"slope": 0.1}, [(3, 4, 4)]),
    "Local": ({"out_channels": 2, "kernel": 3}, [(2, 5, 5)]),
    "LogSoftmax": ({}, [(5,)]),
    "MaxPool": ({"kernel": 3, "stride": 2, "ceil_mode": True}, [(2, 8, 8)]),
    "MinPool": ({"kernel": 2}, [(2, 4, 4)]),
    "Mul": ({}, [(3, 4, 4), (3, 4, 4)]),
    "Pad": ({"pad": 1, "mode": "reflect"}, [(2, 4, 4)]),
    "ReLU": ({}, [(3, 4, 4)]),
    "Reshape": ({"shape": (1, 1, 1, 1, 1, 1, 1, 1, 12)}, [(12,)]),     # rank 9: the reader once refused > 8
    "Sigmoid": ({}, [(3, 4, 4)]),
    "Softmax": ({}, [(5,)]),
    "StochasticPool": ({"kernel": 2}, [(2, 4, 4)]),
    "Tanh": ({}, [(3, 4, 4)]),
    "Upsample": ({"scale": 2}, [(2, 3, 3)]),         # resolves to scale and size: the compile bug
}
# More instances where one op has several resolution paths a bundle must carry.
EXTRA = [
    ("Upsample", {"size": (5, 7), "mode": "bilinear", "align_corners": True}, [(2, 3, 3)]),
    ("Upsample", {}, [(2, 3, 3)]),                   # neither: scale 2 by default
    ("Conv", {"out_channels": 4, "kernel": 3, "pad": 1, "residual": True, "act": "relu"}, [(3, 5, 5), (4, 5, 5)]),
    ("Conv", {"out_channels": 4, "kernel": 3, "groups": 2, "dilation": 2, "pad": "same"}, [(4, 9, 9)]),
    ("Reshape", {"shape": (-1, 2, 2)}, [(3, 4, 4)]),
    ("Crop", {}, [(2, 6, 6), (1, 4, 4)]),
]


def _instances(spec):
    samples = getattr(spec, "samples", None) or ()
    if not samples and getattr(spec, "sample", None):
        samples = (spec.sample,)
    out = [(s[0], [tuple(x) for x in s[1]]) for s in samples]
    if not out and spec.name in LOCAL:
        out = [LOCAL[spec.name]]
    return out


def _cases():
    cases = []
    for name, spec in sorted(ops.all_specs().items()):
        for i, (attrs, shapes) in enumerate(_instances(spec)):
            if name != "Input":
                cases.append(pytest.param(name, attrs, shapes, id=f"{name}-{i}"))
    for i, (name, attrs, shapes) in enumerate(EXTRA):
        cases.append(pytest.param(name, attrs, shapes, id=f"{name}-extra{i}"))
    return cases


def one_op(op, attrs, shapes) -> Graph:
    """inputs x0, x1, ... -> op -> output y, analyzed."""
    g = Graph()
    for i, s in enumerate(shapes):
        g.add(f"x{i}", "Input", ops.get("Input").bind([], {"shape": tuple(s)}))
    spec = ops.get(op)
    g.add("op", op, spec.bind([], dict(attrs)))
    for i in range(len(shapes)):
        g.connect(f"x{i}", "op", i)
    g.outputs = {"y": "op"}
    return analyze(g)


def test_every_op_has_an_instance():
    missing = [n for n, s in ops.all_specs().items() if not _instances(s)]
    assert not missing, f"ops with neither `samples` on the spec nor an entry in LOCAL: {missing}"


def _same_graph(a, b):
    assert [n.name for n in a.nodes()] == [n.name for n in b.nodes()]
    for x in a.nodes():
        y = b[x.name]
        assert (y.op, y.attrs, y.shape, y.params, y.buffers) == (x.op, x.attrs, x.shape, x.params, x.buffers), x.name
        assert b.preds(x.name) == a.preds(x.name)
    assert b.inputs == a.inputs and b.outputs == a.outputs


@pytest.mark.parametrize("op, attrs, shapes", _cases())
def test_op_round_trip(op, attrs, shapes):
    g = one_op(op, attrs, shapes)
    rng = np.random.default_rng(1)
    w = {k: (v + 0.1 * rng.standard_normal(v.shape)).astype(np.float32) for k, v in init_weights(g).items()}
    if any(k.endswith("running_var") for k in w):
        w = {k: np.abs(v) + 0.5 if k.endswith("running_var") else v for k, v in w.items()}
    b = bundle.loads(bundle.dumps(g, w, name=op), f"{op}.netc")
    _same_graph(g, b.graph)
    for k in w:
        assert np.array_equal(b.weights[k], w[k]), k
    x = {f"x{i}": np.abs(rng.standard_normal((2, *s))).astype(np.float32) for i, s in enumerate(shapes)}
    want = run_reference(g, w, x)["y"]
    assert np.array_equal(run_reference(b.graph, b.weights, x)["y"], want)
    if lib.available():
        from netdsl.runtime.plan import lower
        try:
            lower(g, 2)
        except NetDSLError:
            return                                   # no C kernel for this instance
        from netdsl.runtime.session import Session
        ya = Session(g, w).run(x)["y"]
        yb = Session(b.graph, b.weights).run(x)["y"]
        assert np.array_equal(ya, yb)


@pytest.mark.parametrize("name", netdsl.zoo_names())
def test_zoo_header_round_trip(name):
    """Every zoo model, as `netdsl compile` writes it (-O3), comes back as the same graph.
    Header level (no weight bytes): the four deepest models are also covered at -O3 by
    their shallower siblings' structure, so they go through at -O0 to keep this fast."""
    m = netdsl.load(name)
    level = 0 if name in ("densenet169", "densenet201", "resnet101", "resnet152") else 3
    g = compiler.optimize(m.graph, None, level)[0] if level else m.graph
    h = bundle.encode_header(g, name=name, opt_level=level, source=m.path)
    import json
    h = json.loads(json.dumps(h))                    # exactly what a file holds
    _same_graph(g, bundle.check_header(h, f"{name}.netc").graph)


# ---------------------------------------------------------------- netdsl compile

def _compile(tmp_path, capsys, text, stem="m"):
    """Write `text` as STEM.net and run `netdsl compile` on it: (source, bundle, stdout)."""
    src, out = tmp_path / f"{stem}.net", tmp_path / f"{stem}.netc"
    src.write_text(text)
    rc = main(["compile", str(src), "-o", str(out)])
    o, e = capsys.readouterr()
    assert rc == 0, e
    return src, out, o

@pytest.mark.parametrize("text", [
    "input x: 3x8x8\nConv(4, 3, pad=1) - Upsample(2) - Conv(2, 1)\n",
    "input x: 48\nReshape(1x1x1x1x1x1x1x1x48) - Flatten - FC(3)\n",
    "input x: 2x5x5\nUpsample(size=(7, 9), mode=bilinear) - GAP\n",
], ids=["upsample2", "reshape-rank9", "upsample-size"])
def test_cli_compile_writes_what_it_can_load(text, tmp_path, capsys):
    src, out, o = _compile(tmp_path, capsys, text)
    assert f"wrote {out}" in o and "read back and checked" in o
    m0, m1 = netdsl.load(str(src)), netdsl.load(str(out))
    x = np.random.default_rng(0).standard_normal((2, *m0.graph[m0.graph.inputs[0]].shape)).astype(np.float32)
    want = run_reference(m0.graph, m0.weights, x)["output"]
    np.testing.assert_allclose(m1.reference(x), want, rtol=1e-5, atol=1e-6)


def test_compile_check_failure_deletes_and_reports(tmp_path, monkeypatch):
    """A bundle that reads back different from what was compiled is never left on disk,
    and an earlier file at the destination survives."""
    out = tmp_path / "l5.netc"
    out.write_bytes(b"earlier")
    real = bundle.dumps

    def corrupt(graph, weights, **kw):      # one weight off by one ulp, checksum still valid
        w = dict(weights)
        k = next(iter(w))
        w[k] = np.nextafter(w[k], np.float32(np.inf)).astype(np.float32)
        return real(graph, w, **kw)

    monkeypatch.setattr(bundle, "dumps", corrupt)
    with pytest.raises(NetDSLError) as e:
        compiler.compile_model(netdsl.load("lenet5"), str(out), 3)
    msg = e.value.render()
    assert str(out) in msg and "not written" in msg and "changed" in msg
    assert out.read_bytes() == b"earlier"
    assert sorted(os.listdir(tmp_path)) == ["l5.netc"]      # no temporary left behind


def test_compile_cli_failure_is_clean(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(compiler, "verify", lambda *a, **k: (_ for _ in ()).throw(NetDSLError("outputs differ")))
    out = tmp_path / "l5.netc"
    rc = main(["compile", "lenet5", "-o", str(out)])
    _, err = capsys.readouterr()
    assert rc == 1 and "outputs differ" in err and "Traceback" not in err and "wrote" not in err
    assert not out.exists()


# ---------------------------------------------------------------- a very wide merge

def test_wide_concat_128_branches(tmp_path, capsys):
    """128 branches into one Concat (the widest merge the language takes; the merge kernels
    hold 128 inputs): the bundle is written, loads, and runs at batch 1 (where the concat is
    elided: each branch writes its slice) and at batch 8 (the concat kernel)."""
    k = 128
    text = "input x: 3x4x4\n[ " + " | ".join(["Conv(1, 1)"] * k) + " ] - Concat - GAP\n"
    src, out, _ = _compile(tmp_path, capsys, text, "wide")
    h = bundle.read_header(str(out))
    assert h["contract"]["op_counts"]["Concat"] == 1 and h["contract"]["op_counts"]["Conv"] == k
    assert not h["contract"].get("limits")
    m0, m1 = netdsl.load(str(src)), netdsl.load(str(out))
    for n in (1, 8):
        x = np.random.default_rng(n).standard_normal((n, 3, 4, 4)).astype(np.float32)
        want = run_reference(m0.graph, m0.weights, x)["output"]
        np.testing.assert_allclose(m1.reference(x), want, rtol=1e-5, atol=1e-6)
        if lib.available():
            np.testing.assert_allclose(m1(x), want, rtol=1e-4, atol=1e-5)


def test_wider_merge_is_a_located_error_and_writes_nothing(tmp_path, capsys):
    """300 branches: refused at check time with the line and column of the merge and a hint
    (merge in steps), so compile never writes a bundle it could not run."""
    text = "input x: 3x4x4\n[ " + " | ".join(["Conv(1, 1)"] * 300) + " ] - Concat - GAP\n"
    src = tmp_path / "wide.net"
    src.write_text(text)
    out = tmp_path / "wide.netc"
    rc = main(["compile", str(src), "-o", str(out)])
    o, e = capsys.readouterr()
    assert rc == 1 and "wide.net:2:" in e and "at most 128" in e and "hint:" in e, e
    assert not out.exists()




def test_a_bundle_remembers_whether_its_weights_are_the_initialization(tmp_path, capsys):
    """`netdsl run` of a bundle compiled from the seed-0 weights says they are not trained
    (issue 7 bug 8, for bundles too); one compiled with loaded weights runs without the note."""
    src = tmp_path / "t.net"
    src.write_text("input x: 3x8x8\nConv(4, 3) - GAP - FC(3) - SM\n")
    init, real = tmp_path / "init.netc", tmp_path / "real.netc"
    assert main(["compile", str(src), "-o", str(init)]) == 0
    m = netdsl.load(str(src))
    w = tmp_path / "w.npz"
    m.save_weights(str(w))
    assert main(["compile", str(src), "--weights", str(w), "-o", str(real)]) == 0
    capsys.readouterr()
    assert bundle.read_header(str(init))["weights"] == "initial"
    assert bundle.read_header(str(real))["weights"] == "loaded"
    assert main(["run", str(init)]) == 0
    assert "deterministic initial weights" in capsys.readouterr().err
    assert main(["run", str(real)]) == 0
    assert "deterministic initial weights" not in capsys.readouterr().err


def test_compile_to_an_unwritable_destination_says_so(tmp_path, capsys):
    """A destination that cannot be written is the user's to fix, not "a bug in netdsl", and
    no temporary file is left behind."""
    src = tmp_path / "t.net"
    src.write_text("input x: 3x8x8\nConv(4, 3)\n")
    (tmp_path / "out.netc").mkdir()
    rc = main(["compile", str(src), "-o", str(tmp_path / "out.netc")])
    _, err = capsys.readouterr()
    assert rc == 1 and "cannot write" in err and "bug in netdsl" not in err, err
    assert sorted(os.listdir(tmp_path)) == ["out.netc", "t.net"]
