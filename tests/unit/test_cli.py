"""The command line: exit 0 on a valid network, 1 with located messages on a
broken one, never a Python traceback; `summary --json` is a JSON document."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from netdsl.cli import main

BROKEN = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data", "broken")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

RESNETISH = """\
# a tiny ResNet: two residual blocks
input x: 3x32x32
block Res(c) {
  [ Conv(c, 3, pad=1)-BN-ReLU-Conv(c, 3, pad=1)-BN | _ ]-Add-ReLU
}
Conv(16, 3, pad=1)-BN-ReLU
layer1:Res(16)*2
GAP-FC(10)
"""


@pytest.fixture
def good(tmp_path):
    p = tmp_path / "tiny.net"
    p.write_text(RESNETISH)
    return str(p)


def run(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return rc, out, err


def test_check_ok(capsys, good):
    rc, out, err = run(capsys, "check", good)
    assert rc == 0 and err == ""
    assert "ok" in out and "output 10" in out


def test_summary_text(capsys, good):
    rc, out, _ = run(capsys, "summary", good)
    assert rc == 0
    assert "layer1.0.conv1" in out and "total params" in out


def test_summary_json(capsys, good):
    rc, out, _ = run(capsys, "summary", good, "--json")
    assert rc == 0
    doc = json.loads(out)
    for key in ("total_params", "total_macs", "outputs", "layers"):
        assert key in doc
    assert doc["outputs"] == {"output": [10]}
    assert doc["total_params"] == sum(r["params"] for r in doc["layers"])
    assert any(r["name"] == "layer1.0.conv1" for r in doc["layers"])


def test_summary_depth_1_collapses_blocks(capsys, good):
    _, full, _ = run(capsys, "summary", good, "--json")
    rc, out, _ = run(capsys, "summary", good, "--json", "--depth", "1")
    assert rc == 0
    full, flat = json.loads(full), json.loads(out)
    names = [r["name"] for r in flat["layers"]]
    assert "layer1" in names
    assert not any(n.startswith("layer1.") for n in names)
    assert len(flat["layers"]) < len(full["layers"])
    assert flat["total_params"] == full["total_params"]
    assert sum(r["params"] for r in flat["layers"]) == flat["total_params"]
    rc, text, _ = run(capsys, "summary", good, "--depth", "1")
    assert rc == 0 and "layer1.0" not in text


def test_explain(capsys, good):
    rc, out, _ = run(capsys, "explain", good)
    assert rc == 0 and out.strip()


@pytest.mark.parametrize("name", sorted(f[:-4] for f in os.listdir(BROKEN) if f.endswith(".net")))
@pytest.mark.parametrize("cmd", ["check", "summary"])
def test_broken_files_exit_1_with_located_message(capsys, name, cmd):
    path = os.path.join(BROKEN, name + ".net")
    rc, out, err = run(capsys, cmd, path)
    assert rc == 1
    assert out == ""
    assert err.startswith(f"{path}:"), err
    assert ": error: " in err and "hint: " in err


def test_missing_file(capsys, tmp_path):
    rc, _, err = run(capsys, "check", str(tmp_path / "missing.net"))
    assert rc == 1 and "no such file" in err


def test_directory(capsys, tmp_path):
    rc, _, err = run(capsys, "check", str(tmp_path))
    assert rc == 1 and "error" in err


def test_binary_file(capsys, tmp_path):
    p = tmp_path / "bin.net"
    p.write_bytes(bytes(range(256)) * 4)
    rc, _, err = run(capsys, "check", str(p))
    assert rc == 1 and "error" in err


def test_empty_file(capsys, tmp_path):
    p = tmp_path / "empty.net"
    p.write_text("")
    rc, _, err = run(capsys, "check", str(p))
    assert rc == 1 and "empty.net:1:1: error: the file defines no layers" in err


def test_deep_nesting(capsys, tmp_path):
    p = tmp_path / "deep.net"
    p.write_text("input x: 3x32x32\n" + "(" * 500 + "ReLU" + ")" * 500 + "\n")
    rc, _, err = run(capsys, "check", str(p))
    assert rc == 1 and "deep.net:2:1: error:" in err


def test_no_command_prints_help(capsys):
    rc, out, _ = run(capsys)
    assert rc == 2 and "check" in out


def test_subprocess_never_prints_a_traceback(tmp_path):
    """The real entry point, end to end: stderr only, exit 1, no traceback."""
    for name in ("syntax_multi", "add_mismatch", "recursive_block"):
        r = subprocess.run([sys.executable, "-m", "netdsl", "check", os.path.join(BROKEN, name + ".net")],
                           capture_output=True, text=True, cwd=ROOT, timeout=60)
        assert r.returncode == 1, r.stderr
        assert r.stdout == ""
        assert "Traceback" not in r.stderr and f"{name}.net:" in r.stderr
    p = tmp_path / "ok.net"
    p.write_text(RESNETISH)
    r = subprocess.run([sys.executable, "-m", "netdsl", "summary", "--json", str(p)],
                       capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["total_params"] > 0


def test_zoo_lists_every_model_with_its_count_in_columns(capsys):
    import netdsl
    rc, out, _ = run(capsys, "zoo")
    assert rc == 0
    lines = out.splitlines()
    assert [ln.split()[0] for ln in lines] == netdsl.zoo_names()
    counts = {ln.split()[0]: int(ln.split()[1].replace(",", "")) for ln in lines}
    # published counts (torchvision): the longest names, and one of the first zoo
    assert counts["mobilenet_v3_small"] == 2_542_856 and counts["mobilenet_v2"] == 3_504_872
    assert counts["squeezenet1_1"] == 1_235_496 and counts["resnet50"] == 25_557_032
    assert len({ln.index(" params") for ln in lines}) == 1, "the columns do not line up"
