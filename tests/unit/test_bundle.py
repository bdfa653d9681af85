""".netc bundles: round trips over zoo models (bit-for-bit against the model
they were compiled from), the memory contract and `netdsl info`, loading
without lark, version refusal, and the compile / run / info / graph CLI."""
from __future__ import annotations

import hashlib
import json
import os
import struct
import subprocess
import sys

import numpy as np
import pytest

import netdsl
from netdsl import NetDSLError, bundle, compiler
from netdsl.cli import main
from netdsl.cli_format import info_text
from netdsl.runtime import lib

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
needs_kernels = pytest.mark.skipif(not lib.available(), reason="C kernels not built")

# A small network with every kind of node a bundle must carry: BN to fold, fused activations,
# a concat, a residual add, a view, multiple params per layer, a block cluster.
SMALL = """input x: 3x20x20
block Unit(c) {
  Conv(c, 3, pad=1, bias=false)-BN-ReLU
}
stem:Unit(8) - Pool
[ Conv(4, 1)-ReLU | Conv(4, 3, pad=1)-BN-LeakyReLU ] - Concat
[ Conv(8, 3, pad=1)-BN | Identity ] - Add - ReLU
GAP - Flatten - Dropout - FC(5) - SM
"""


def _x(m, n=2, seed=0):
    shape = m.graph[m.graph.inputs[0]].shape
    return np.random.default_rng(seed).standard_normal((n, *shape)).astype(np.float32)


def _outs(y):
    return y if isinstance(y, dict) else {"output": y}


def _trained(m, seed=1):
    """Non-trivial weights (BN statistics away from identity) so folding is really exercised."""
    rng = np.random.default_rng(seed)
    d = {}
    for k, v in m.state_dict().items():
        if k.endswith("running_var"):
            d[k] = rng.uniform(0.5, 2.0, v.shape).astype(np.float32)
        else:
            d[k] = (v + 0.1 * rng.standard_normal(v.shape)).astype(np.float32)
    m.load_state_dict(d)
    return m


@pytest.fixture(scope="module")
def small():
    return _trained(netdsl.parse(SMALL, "small.net"))


def _dumps(m, level, source=None):
    """(bundle bytes, optimized graph, its weights) for Model `m` at -O`level`."""
    g, w, report = compiler.optimize(m.graph, m.weights, level)
    return bundle.dumps(g, w, name=m.name, opt_level=level, report=report, source=source), g, w


def _load_bytes(data, tmp_path, name="b.netc"):
    """A runnable Model from bundle bytes, through the file path users take."""
    p = tmp_path / name
    p.write_bytes(data)
    return netdsl.load(str(p))


def _run(graph, weights, x):
    from netdsl.runtime.session import Session
    out = Session(graph, weights).run({graph.inputs[0]: x})
    return next(iter(out.values()))


# ---------------------------------------------------------------- round trips

@needs_kernels
@pytest.mark.parametrize("level", [0, 1, 2, 3])
def test_small_round_trip_every_level(small, level, tmp_path):
    data, g, w = _dumps(small, level, "small.net")
    m2 = _load_bytes(data, tmp_path)
    x = _x(small)
    assert np.array_equal(_run(g, w, x), m2(x))          # bit for bit, same opt level
    np.testing.assert_allclose(m2(x), small(x), rtol=1e-4, atol=1e-5)   # close to -O0
    assert m2.opt_level == level and m2.bundle["opt_level"] == level
    assert [n.name for n in m2.graph.nodes()] == [n.name for n in g.nodes()]


@needs_kernels
@pytest.mark.parametrize("name", ["lenet5", "resnet18", "googlenet", "densenet121", "yolov2_tiny",
                                  "mobilenet_v3_small"])
def test_zoo_round_trip(name, tmp_path):
    m = netdsl.load(name)
    path = str(tmp_path / f"{name}.netc")
    c = compiler.compile_model(m, path, 2)
    m2 = netdsl.load(path)
    x = _x(m, n=1)
    y_opt = _session_run(c.graph, c.weights, x)
    y_bundle, y0 = _outs(m2(x)), _outs(m(x))
    if len(y_opt) == 1:
        y_opt = {"output": next(iter(y_opt.values()))}
    for k in y0:
        assert np.array_equal(y_opt[k], y_bundle[k]), k
        scale = float(np.abs(y0[k]).max()) + 1e-6
        assert float(np.abs(y_bundle[k] - y0[k]).max()) / scale < 1e-4, k
    assert c.header["contract"]["params"] == m2.total_params


def _session_run(graph, weights, x):
    from netdsl.runtime.session import Session
    return Session(graph, weights).run({graph.inputs[0]: x})


def test_fused_attributes_survive(small):
    data, g, _ = _dumps(small, 2)
    g2 = bundle.loads(data).graph
    for node in g.nodes():
        assert g2[node.name].attrs == node.attrs
        assert g2[node.name].shape == node.shape
        assert g2.preds(node.name) == g.preds(node.name)
    fused = [n for n in g2.nodes() if n.attrs.get("act") not in (None, "none")]
    assert fused, "the -O2 graph should carry fused activations"
    assert not any(n.op == "BatchNorm" for n in g2.nodes())
    assert g2.blocks == g.blocks


def test_residual_attribute_survives(small):
    data, g, _ = _dumps(small, 3)
    g2 = bundle.loads(data).graph
    res = [n.name for n in g.nodes() if n.attrs.get("residual")]
    assert res == [n.name for n in g2.nodes() if n.attrs.get("residual")]


def test_weights_equal_and_tuples_restored(small):
    data, g, w = _dumps(small, 2)
    b = bundle.loads(data)
    for k, v in w.items():
        assert np.array_equal(b.weights[k], v), k
    conv = next(n for n in b.graph.nodes() if n.op == "Conv")
    assert isinstance(conv.attrs["kernel"], tuple) and isinstance(conv.attrs["pad"], tuple)


def test_spans_keep_source_lines(small):
    data, _, _ = _dumps(small, 0, "small.net")
    g2 = bundle.loads(data).graph
    node = g2["stem.conv1"] if "stem.conv1" in g2 else next(n for n in g2.nodes() if n.op == "Conv")
    assert node.span is not None and node.span.line == small.graph[node.name].span.line
    assert str(node.span).startswith("small.net:")


def test_no_absolute_paths_in_header(tmp_path):
    path = str(tmp_path / "r.netc")
    compiler.compile_model(netdsl.load("resnet18"), path, 2)
    h = bundle.read_header(path)
    assert h["source"] == os.path.join("zoo", "resnet18.net")
    assert all(not os.path.isabs(s) for s in h["sources"])
    assert os.path.join("stdlib", "resnet.net") in h["sources"]


# ---------------------------------------------------------------- contract and info

def test_contract_matches_planner(small):
    from netdsl.runtime.plan import lower
    data, g, w = _dumps(small, 2)
    c = bundle.loads(data).header["contract"]
    assert set(c["arena_bytes"]) == {"1", "8"}
    for n in (1, 8):
        assert c["arena_bytes"][str(n)] == lower(g, n).arena_bytes
    assert c["weight_bytes"] == 4 * sum(v.size for v in w.values())
    assert c["op_counts"]["Conv"] == sum(1 for n in g.nodes() if n.op == "Conv")
    assert c["layers"] == len(g)
    assert "limits" not in c


def test_info_text(small, tmp_path):
    path = str(tmp_path / "s.netc")
    small.path = "small.net"
    compiler.compile_model(small, path, 2)
    text = info_text(bundle.read_header(path), path)
    assert f"format {bundle.FORMAT_VERSION}" in text and "-O2" in text and "weights:" in text
    assert "batch 1:" in text and "batch 8:" in text and "Conv" in text
    assert "fold_batchnorm" in text


# ---------------------------------------------------------------- lark absent

def test_loads_and_runs_without_lark(tmp_path):
    path = str(tmp_path / "l5.netc")
    compiler.compile_model(netdsl.load("lenet5"), path, 2)
    code = (
        "import sys\n"
        "sys.modules['lark'] = None\n"
        "import numpy as np, netdsl\n"
        f"m = netdsl.load({path!r})\n"
        "from netdsl.runtime import lib\n"
        "if lib.available():\n"
        "    y = m(np.zeros((2, 1, 32, 32), np.float32)); assert y.shape == (2, 10)\n"
        "from netdsl.cli import main\n"
        f"assert main(['info', {path!r}]) == 0\n"
        "assert not [k for k in sys.modules if k.startswith('netdsl.frontend')]\n"
        "print('ok', m.total_params)\n")
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "ok 61706" in r.stdout


# ---------------------------------------------------------------- versions and refusal

def _repack(data: bytes, version=None, header=None) -> bytes:
    """Rewrite a bundle's prefix/header and recompute its checksum (a well-formed container)."""
    magic, ver, res, hlen = struct.unpack_from("<8sIIQ", data, 0)
    h = json.loads(data[24:24 + hlen])
    if header is not None:
        h = header(h) or h
    hb = json.dumps(h).encode()
    start = -(-(24 + hlen) // 64) * 64
    blob = data[start:len(data) - 32]
    new_start = -(-(24 + len(hb)) // 64) * 64
    body = struct.pack("<8sIIQ", magic, ver if version is None else version, res, len(hb)) + hb
    body += b"\0" * (new_start - len(body)) + blob
    return body + hashlib.sha256(body).digest()


def test_older_format_is_refused(small):
    data = _dumps(small, 0)[0]
    with pytest.raises(NetDSLError) as e:
        bundle.loads(_repack(data, version=0), "old.netc")
    msg = e.value.render()
    assert "old.netc" in msg and "format 0" in msg and f"format {bundle.FORMAT_VERSION}" in msg
    assert "netdsl compile" in msg


def test_newer_format_is_refused(small):
    data = _dumps(small, 0)[0]
    with pytest.raises(NetDSLError, match="newer than this netdsl"):
        bundle.loads(_repack(data, version=bundle.FORMAT_VERSION + 1), "new.netc")


def test_repack_helper_round_trips(small):
    data = _dumps(small, 0)[0]
    assert bundle.loads(_repack(data)).header["contract"]["params"] == small.total_params


def test_not_a_bundle(tmp_path):
    p = tmp_path / "x.netc"
    p.write_text("input x: 3x32x32\nConv(8, 3)\n")
    with pytest.raises(NetDSLError, match="not a netdsl bundle"):
        netdsl.load(str(p))
    with pytest.raises(NetDSLError, match="no such bundle"):
        netdsl.load(str(tmp_path / "missing.netc"))


# ---------------------------------------------------------------- CLI

def run(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return rc, out, err


@needs_kernels
def test_cli_compile_run_info(capsys, tmp_path):
    path = str(tmp_path / "r18.netc")
    rc, out, err = run(capsys, "compile", "resnet18", "-O2", "-o", path)
    assert rc == 0, err
    assert f"wrote {path}" in out and "-O2" in out
    rc, out, err = run(capsys, "info", path)
    assert rc == 0, err
    assert "weights:" in out and "arena:" in out and "batch 8" in out and "Conv" in out
    rc, out, err = run(capsys, "run", path, "--bench", "--repeat", "2", "--bench-seconds", "0", "--threads", "1")
    assert rc == 0, err
    assert "output: shape [1, 1000]" in out and "median" in out
    for cmd in ("check", "summary"):
        rc, out, err = run(capsys, cmd, path)
        assert rc == 0, err


@needs_kernels
def test_cli_run_matches_python(capsys, tmp_path):
    path = str(tmp_path / "l5.netc")
    assert run(capsys, "compile", "lenet5", "-o", path)[0] == 0
    x = np.random.default_rng(0).standard_normal((2, 1, 32, 32)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    rc, _, err = run(capsys, "run", path, "--input", str(tmp_path / "x.npy"), "--batch", "2",
                     "--save", str(tmp_path / "y.npz"))
    assert rc == 0, err
    y = np.load(tmp_path / "y.npz")["output"]
    assert np.array_equal(y, netdsl.load(path)(x))


def test_cli_compile_report(capsys, tmp_path):
    rc, out, err = run(capsys, "compile", "resnet18", "--report", "-o", str(tmp_path / "r.netc"))
    assert rc == 0, err
    assert "folded into" in out and "(resnet" in out and "line " in out     # each rewrite with its line
    assert "fold_batchnorm: " in out and "fuse_activations: " in out          # totals per pass


def test_cli_compile_levels(capsys, tmp_path):
    for level in range(4):
        p = str(tmp_path / f"l{level}.netc")
        assert run(capsys, "compile", "lenet5", f"-O{level}", "-o", p)[0] == 0
        assert bundle.read_header(p)["opt_level"] == level
    rc, _, err = run_sysexit(capsys, "compile", "lenet5", "-O9")
    assert rc == 2 and "optimization level" in err


def run_sysexit(capsys, *argv):
    with pytest.raises(SystemExit) as e:
        main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return e.value.code, out, err


def test_cli_errors_are_clear(capsys, tmp_path):
    bad = tmp_path / "bad.netc"
    data = bytearray(_dumps(netdsl.load("lenet5"), 0)[0])
    bad.write_bytes(bytes(data[: len(data) // 2]))
    for cmd in (["info", str(bad)], ["run", str(bad)], ["check", str(bad)], ["summary", str(bad)]):
        rc, out, err = run(capsys, *cmd)
        assert rc == 1 and "bad.netc" in err and "internal error" not in err, cmd
    rc, _, err = run(capsys, "info", "lenet5")
    assert rc == 1 and "not a compiled bundle" in err
    rc, _, err = run(capsys, "compile", str(bad))
    assert rc == 1 and "already a compiled bundle" in err
    rc, _, err = run(capsys, "compile", "lenet5", "-o", str(tmp_path / "nodir" / "x.netc"))
    assert rc == 1 and "cannot write" in err


def test_cli_emit_dot(capsys, tmp_path):
    rc, out, err = run(capsys, "compile", "googlenet", "--emit", "dot")
    assert rc == 0, err
    assert out.startswith("digraph netdsl {") and out.rstrip().endswith("}")
    assert 'subgraph "cluster_inception3a"' in out          # an Inception module is one box
    assert "+ relu" in out                                   # fused by -O2
    rc, out0, _ = run(capsys, "compile", "googlenet", "--emit", "dot", "-O0")
    assert "BatchNorm" in out0 and "BatchNorm" not in out
    p = tmp_path / "g.dot"
    rc, out, _ = run(capsys, "compile", "lenet5", "--emit", "dot", "-o", str(p))
    assert rc == 0 and p.read_text().startswith("digraph")


def test_cli_graph(capsys, tmp_path, monkeypatch):
    from netdsl import dot
    monkeypatch.setattr(dot, "dot_program", lambda: None)     # as if Graphviz were absent
    rc, out, err = run(capsys, "graph", "densenet121", "--layout", "graphviz", "-o", str(tmp_path / "d.svg"))
    assert rc == 0, err
    text = (tmp_path / "d.dot").read_text()
    assert "cluster_features.denseblock1" in text and "cluster_features.denseblock1.denselayer1" in text
    assert "dot -Tsvg" in out and "Graphviz" in out
    rc, out, err = run(capsys, "graph", "resnet18", "--optimized", "-o", str(tmp_path / "r.dot"))
    assert rc == 0, err
    text = (tmp_path / "r.dot").read_text()
    assert "+ relu" in text and "params" in text and "64x56x56" in text
    l5 = str(tmp_path / "l5.netc")
    compiler.compile_model(netdsl.load("lenet5"), l5, 2)
    rc, out, err = run(capsys, "graph", l5, "-o", str(tmp_path / "l5.dot"))
    assert rc == 0 and "bundle" in (tmp_path / "l5.dot").read_text()
    rc, _, err = run(capsys, "graph", "lenet5", "-o", str(tmp_path / "x.bmp"))
    assert rc == 1 and ".svg" in err


@pytest.mark.skipif(not __import__("shutil").which("dot"), reason="Graphviz not installed")
def test_cli_graph_svg(capsys, tmp_path):
    rc, out, err = run(capsys, "graph", "lenet5", "-o", str(tmp_path / "l.svg"))
    assert rc == 0, err
    assert (tmp_path / "l.svg").read_text().lstrip().startswith(("<?xml", "<svg"))


# ---------------------------------------------------------------- big files: the prefix first

class _Counting:
    """A file object that counts the bytes read through it."""

    def __init__(self, f, log):
        self.f, self.log = f, log

    def read(self, n=-1):
        b = self.f.read(n)
        self.log.append(len(b))
        return b

    def readinto(self, buf):
        k = self.f.readinto(buf)
        self.log.append(k or 0)
        return k

    def __getattr__(self, name):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


@pytest.mark.parametrize("what", ["bad-magic", "header-promises-less"])
def test_big_file_refused_after_its_prefix(what, small, tmp_path, monkeypatch, capsys):
    """A 3 GB (sparse) file is refused on its 24-byte prefix and header, not read whole."""
    p = tmp_path / "big.netc"
    data = _dumps(small, 0)[0]
    hlen = struct.unpack_from("<Q", data, 16)[0]
    head = b"NOTABUND" + data[8:24] if what == "bad-magic" else data[:-(-(24 + hlen) // 64) * 64]
    with open(p, "wb") as f:
        f.write(head)
        f.truncate(3 * 2**30)
    log = []
    real_open = bundle._open
    monkeypatch.setattr(bundle, "_open", lambda path: _Counting(real_open(path), log))
    for call in (lambda: main(["info", str(p)]), lambda: netdsl.load(str(p))):
        log.clear()
        try:
            rc = call()
            err = capsys.readouterr().err
        except NetDSLError as e:
            rc, err = 1, e.render()
        assert rc == 1 and "big.netc" in err, err
        assert ("not a netdsl bundle" if what == "bad-magic" else "promises") in err
        assert sum(log) <= len(head), f"read {sum(log):,} bytes of a {3 * 2**30:,}-byte file"


def test_info_streams_a_valid_bundle(small, tmp_path, monkeypatch):
    """`info` checks the whole file's checksum in chunks, never holding the weights."""
    p = tmp_path / "s.netc"
    data = _dumps(small, 0)[0]
    p.write_bytes(data)
    monkeypatch.setattr(bundle, "CHUNK", 64)
    h = bundle.read_header(str(p))
    assert h["contract"]["params"] == small.total_params
    bad = bytearray(data)
    bad[-33] ^= 1                                   # last weight byte
    p.write_bytes(bytes(bad))
    with pytest.raises(NetDSLError, match="checksum"):
        bundle.read_header(str(p))
