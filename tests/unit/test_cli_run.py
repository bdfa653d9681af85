"""`netdsl run` and `netdsl info` from the command line."""
from __future__ import annotations

import numpy as np
import pytest

from netdsl.cli import main
from netdsl.runtime import lib

pytestmark = pytest.mark.skipif(not lib.available(), reason="C kernels not built")


def run(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return rc, out, err


def test_info(capsys):
    rc, out, _ = run(capsys, "info")
    assert rc == 0
    assert "kernels:" in out and "threads:" in out and "CUDA plugin" in out


def test_run_random_with_bench(capsys):
    rc, out, _ = run(capsys, "run", "lenet5", "--bench", "--repeat", "3", "--bench-seconds", "0", "--threads", "1")
    assert rc == 0
    assert "output: shape [1, 10]" in out
    assert "top-5" in out and "median" in out and "images/s" in out


def test_run_npy_input_matches_python_api(capsys, tmp_path):
    import netdsl
    x = np.random.default_rng(0).standard_normal((2, 1, 32, 32)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    rc, out, _ = run(capsys, "run", "lenet5", "--input", str(tmp_path / "x.npy"), "--batch", "2",
                     "--save", str(tmp_path / "y.npz"))
    assert rc == 0
    y = np.load(tmp_path / "y.npz")["output"]
    np.testing.assert_allclose(y, netdsl.load("lenet5")(x), rtol=1e-6)


def test_run_image_input(capsys, tmp_path):
    Image = pytest.importorskip("PIL.Image")
    Image.fromarray((np.random.default_rng(0).random((40, 50, 3)) * 255).astype(np.uint8)).save(tmp_path / "a.png")
    rc, out, _ = run(capsys, "run", "lenet5", "--input", str(tmp_path / "a.png"))
    assert rc == 0 and "output: shape [1, 10]" in out


@pytest.mark.parametrize("argv, msg", [
    (["run", "lenet5", "--input", "nope.npy"], "no such input file"),
    (["run", "lenet5", "--batch", "0"], "--batch must be at least 1"),
    (["run", "lenet5", "--input", "x.txt"], "no such input file"),
    (["run", "lenet5", "--weights", "missing.npz"], "no such weights file"),
    (["run", "nosuchmodel"], "no such file or zoo model"),
])
def test_run_errors(capsys, argv, msg):
    rc, out, err = run(capsys, *argv)
    assert rc == 1 and msg in err


def test_run_wrong_npy_shape(capsys, tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((1, 3, 32, 32), np.float32))
    rc, _, err = run(capsys, "run", "lenet5", "--input", str(tmp_path / "x.npy"))
    assert rc == 1 and "expects [N, 1, 32, 32]" in err


def test_compile_report_shows_planner_decisions(capsys, tmp_path):
    rc, out, _ = run(capsys, "compile", "googlenet", "-o", str(tmp_path / "g.netc"), "--report")
    assert rc == 0
    assert "concat elided: 4 producers write slices of inception3a.concat1 (inception.net line" in out
    assert "memory (batch 1): arena" in out and "lower bound" in out
    assert "BN folded into conv1.conv" in out
