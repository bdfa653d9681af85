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
    import os

    import netdsl
    rc, out, _ = run(capsys, "info")
    assert rc == 0
    assert "kernels:" in out and "threads:" in out
    plugins = os.path.join(os.path.dirname(netdsl.__file__), "plugins")
    if not os.path.isdir(plugins):              # name only what exists
        assert "plugins: none" in out and "plugins/cuda" not in out and "CUDA" not in out


def test_run_says_once_that_weights_are_the_initialization(capsys, tmp_path):
    rc, out, err = run(capsys, "run", "lenet5", "--batch", "2")
    assert rc == 0 and "top-5" in out
    assert err.count("deterministic initial weights (seed 0)") == 1 and "--weights W" in err
    import netdsl
    netdsl.load("lenet5").save_weights(str(tmp_path / "w.npz"))
    rc, out, err = run(capsys, "run", "lenet5", "--weights", str(tmp_path / "w.npz"))
    assert rc == 0 and "initial weights" not in err


def test_run_too_large_for_memory_is_refused_before_drawing_the_input(capsys, monkeypatch):
    import tracemalloc
    monkeypatch.setenv("NETDSL_MEMORY_LIMIT", str(64 * 2**20))
    tracemalloc.start()
    try:
        rc, out, err = run(capsys, "run", "lenet5", "--batch", "100000")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert rc == 1 and "internal error" not in err
    # input 100000 x 1x32x32 float32 = 390.625 MiB, drawn only after the check
    assert "running this network at batch 100000 needs" in err and "input 391 MiB" in err
    assert "but only 64 MiB of memory is available (NETDSL_MEMORY_LIMIT)" in err
    assert "the largest layer is C1 (Conv, lenet5.net line 10)" in err
    assert "hint: that layer alone does not fit" in err   # C1: 100000 x 6x28x28 x 4 B = 1.75 GiB
    assert peak < 32 * 2**20                    # neither the input nor the arena was allocated


@pytest.mark.parametrize("argv, msg", [
    (["--threads", "9999999999"], "threads = 9999999999 is more than the 1024 netdsl accepts"),
    (["--top", "0"], "--top must be at least 1"),
    (["--bench", "--repeat", "0"], "--repeat must be at least 1"),
    (["--save", "/nonexistent-dir/y.npz"], "cannot write /nonexistent-dir/y.npz"),
], ids=["huge-threads", "top-0", "repeat-0", "save-nowhere"])
def test_run_careless_arguments(capsys, argv, msg):
    rc, out, err = run(capsys, "run", "lenet5", *argv)
    assert rc == 1 and msg in err and "internal error" not in err


def test_run_huge_png_and_16bit_png(capsys, tmp_path):
    import struct
    import zlib
    Image = pytest.importorskip("PIL.Image")

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", 20000, 10000, 8, 0, 0, 0, 0)     # claims 200 megapixels
    (tmp_path / "huge.png").write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) +
                                        chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))
    rc, _, err = run(capsys, "run", "lenet5", "--input", str(tmp_path / "huge.png"))
    assert rc == 1 and "200,000,000 pixels, more than the limit" in err
    v = np.full((32, 32), 65535, np.uint16)
    v[:, :16] = 0
    Image.fromarray(v).save(tmp_path / "g16.png")
    rc, out, err = run(capsys, "run", "lenet5", "--input", str(tmp_path / "g16.png"), "--save", str(tmp_path / "y.npz"))
    assert rc == 0
    import netdsl
    x = np.zeros((1, 1, 32, 32), np.float32)
    x[..., 16:] = 1.0                                # lenet5's input: scale 1/255, no mean/std
    np.testing.assert_allclose(np.load(tmp_path / "y.npz")["output"], netdsl.load("lenet5")(x), rtol=1e-5, atol=1e-6)


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
