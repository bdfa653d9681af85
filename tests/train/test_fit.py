"""Training as a user runs it: Model.fit, checkpoints and resume, Ctrl-C, non-finite losses,
bad data, and `netdsl train` on the command line.

Oracles: the loss must fall and accuracy rise on learnable data (the built-in digits, a
folder of drawn images); a run resumed from its checkpoint must give bit for bit the weights
of the run that was not interrupted (same seeds, same threads); the test accuracy printed
by the CLI must equal evaluate() of the weights it wrote.
"""
from __future__ import annotations

import os
import re
import signal

import numpy as np
import pytest

import netdsl
from netdsl.runtime import lib
from netdsl.train import data as tdata
from netdsl.train.optim import SGD, Adam

pytestmark = pytest.mark.skipif(not lib.available(), reason="C kernels not built")

SMALL_CNN = """
input x: 1x16x16
Conv(8, 3, pad=1) - BN - ReLU - MaxPool(2)
Conv(16, 3, pad=1) - BN - ReLU - MaxPool(2)
FC(10) - SM
"""


@pytest.fixture(scope="module")
def digits16():
    train = tdata.digits("train", n=1200, size=16)
    test = tdata.digits("test", n=400, size=16)
    return train, test


def test_loss_falls_and_accuracy_rises(digits16):
    train, test = digits16
    m = netdsl.parse(SMALL_CNN)
    before = m.evaluate(test)
    hist = m.fit(train, epochs=3, batch=32, optimizer=SGD(lr=0.05, momentum=0.9), progress=False,
                 validation=test)
    assert len(hist) == 3 and hist.stopped == "completed"
    assert hist["train_loss"][-1] < 0.5 * hist["train_loss"][0]
    after = m.evaluate(test)
    assert after["accuracy"] > before["accuracy"] + 0.3, (before, after)
    assert abs(after["accuracy"] - hist["val_acc"][-1]) < 1e-12      # fit evaluates the same way


def test_fit_on_arrays_with_label_smoothing_and_adam():
    rng = np.random.default_rng(0)
    # two classes a linear model separates: bright left half vs bright right half
    x = rng.integers(0, 60, (200, 1, 8, 8)).astype(np.uint8)
    y = rng.integers(0, 2, 200)
    for i in range(200):
        half = slice(0, 4) if y[i] == 0 else slice(4, 8)
        x[i, 0, :, half] += 150
    m = netdsl.parse("input x: 1x8x8\nConv(4, 3, pad=1) - ReLU - FC(2)\n")
    hist = m.fit(x, y, epochs=4, batch=16, optimizer=Adam(lr=0.01), label_smoothing=0.1, progress=False)
    assert hist["train_acc"][-1] >= 0.95


def _folder(tmp_path, n=40):
    from PIL import Image, ImageDraw
    rng = np.random.default_rng(1)
    for cls in ("horizontal", "vertical"):
        d = tmp_path / "bars" / cls
        d.mkdir(parents=True)
        for i in range(n):
            im = Image.new("L", (20, 20), int(rng.integers(0, 40)))
            dr = ImageDraw.Draw(im)
            p = int(rng.integers(3, 16))
            box = (0, p, 19, p + 2) if cls == "horizontal" else (p, 0, p + 2, 19)
            dr.rectangle(box, fill=int(rng.integers(180, 255)))
            im.save(d / f"{i}.png")
    return str(tmp_path / "bars")


def test_a_small_cnn_learns_a_folder_of_images(tmp_path):
    train, test = tdata.get_dataset(_folder(tmp_path), size=(16, 16))
    assert test is None and train.classes == ["horizontal", "vertical"]
    m = netdsl.parse("input x: 1x16x16\nConv(8, 3, pad=1) - ReLU - MaxPool(2) - Conv(8, 3, pad=1) - ReLU - GAP - FC(2)\n")
    hist = m.fit(train, epochs=8, batch=16, optimizer=SGD(lr=0.05, momentum=0.9), progress=False)
    assert hist["train_acc"][-1] >= 0.9, hist.rows


def test_resume_gives_the_uninterrupted_run(tmp_path, digits16):
    train, _ = digits16
    train = tdata.Dataset(train.x[:256], train.y[:256])
    text = "input x: 1x16x16\nConv(6, 3, pad=1) - BN - ReLU - MaxPool(2) - Dropout(0.2) - FC(10)\n"
    opt = lambda: SGD(lr=0.05, momentum=0.9)       # noqa: E731
    straight = netdsl.parse(text)
    straight.fit(train, epochs=2, batch=48, optimizer=opt(), augment="crop=2", progress=False, threads=1)
    out = str(tmp_path / "w.safetensors")
    a = netdsl.parse(text)
    a.fit(train, epochs=1, batch=48, optimizer=opt(), augment="crop=2", progress=False, out=out, threads=1)
    assert os.path.exists(out) and os.path.exists(str(tmp_path / "w.ckpt.safetensors"))
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(out).st_mode & 0o777 == 0o666 & ~umask          # a normal file, not 0600
    b = netdsl.parse(text)
    hist = b.fit(train, epochs=2, batch=48, optimizer=opt(), augment="crop=2", progress=False, out=out,
                 resume=str(tmp_path / "w.ckpt.safetensors"), threads=1)
    assert len(hist) == 2
    for k, v in straight.state_dict().items():
        np.testing.assert_array_equal(b.state_dict()[k], v, err_msg=k)
    # the weights file is what `netdsl run --weights` reads
    c = netdsl.parse(text)
    c.load_weights(out)
    for k, v in b.state_dict().items():
        np.testing.assert_array_equal(c.state_dict()[k], v)


def test_ctrl_c_stops_after_the_current_step_and_keeps_the_checkpoint(tmp_path, digits16):
    train, _ = digits16
    out = str(tmp_path / "w.npz")
    m = netdsl.parse(SMALL_CNN)
    hist = m.fit(train, epochs=5, batch=64, progress=False, out=out,
                 on_epoch=lambda row: signal.raise_signal(signal.SIGINT))
    assert hist.stopped == "interrupted" and len(hist) == 1
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler      # restored
    from netdsl.train.fit import load_checkpoint
    w, regions, meta = load_checkpoint(str(tmp_path / "w.ckpt.npz"))
    assert meta["epoch"] == 1 and meta["step"] == -(-len(train) // 64)
    assert len(regions) == 1                                               # SGD momentum


def test_diverging_training_stops_with_the_step_and_layer():
    m = netdsl.parse("input x: 1x8x8\nc1:Conv(4, 3) - ReLU - fc:FC(3)\n")
    x = np.random.default_rng(0).standard_normal((64, 1, 8, 8)).astype(np.float32) * 50
    y = np.arange(64) % 3
    with pytest.raises(netdsl.NetDSLError) as ei:
        m.fit(x, y, epochs=50, batch=16, optimizer=SGD(lr=1e4, momentum=0.9), progress=False)
    msg = ei.value.render()
    assert "not finite at step" in msg and ("first layer whose output is not finite" in msg
                                            or "overflowed" in msg), msg
    assert all(np.isfinite(v).all() for v in m.state_dict().values())     # the last good weights


@pytest.mark.parametrize("case, match", [
    ("label_range", "outside [0, 10)"),
    ("lengths", "200"),
    ("float_labels", "integer"),
])
def test_bad_data_is_a_clear_error(case, match):
    m = netdsl.parse(SMALL_CNN)
    x = np.zeros((200, 1, 16, 16), np.uint8)
    y = np.zeros(200, np.int64)
    if case == "label_range":
        y[7] = 10
    elif case == "lengths":
        y = y[:150]
    else:
        y = y + 0.5
    with pytest.raises(netdsl.NetDSLError, match=re.escape(match)):
        m.fit(x, y, epochs=1, progress=False)


def test_empty_folder_is_a_clear_error(tmp_path):
    (tmp_path / "cats").mkdir()
    with pytest.raises(netdsl.NetDSLError, match="no images|empty"):
        tdata.get_dataset(str(tmp_path))


def test_cli_train(tmp_path, capsys, digits16):
    from netdsl.cli import main
    train, test = digits16
    data = str(tmp_path / "d.npz")
    np.savez(data, x=train.x[:300], y=train.y[:300], x_test=test.x[:100], y_test=test.y[:100])
    net = tmp_path / "small.net"
    net.write_text(SMALL_CNN)
    out = str(tmp_path / "w.safetensors")
    rc = main(["train", str(net), "--data", data, "--epochs", "2", "--batch", "32", "--lr", "0.1",
               "-o", out, "--no-progress"])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "training arena" in text and "epoch 2/2" in text and "test: loss" in text
    for suffix in (".safetensors", ".ckpt.safetensors", ".curves.csv", ".curves.png"):
        assert os.path.exists(str(tmp_path / ("w" + suffix)))
    m = netdsl.load(str(net), weights=out)
    acc = m.evaluate(test.x[:100], test.y[:100])["accuracy"]
    assert f"accuracy {100 * acc:.2f}%" in text
    # the epoch lines show the epoch's means, the numbers the curves file holds
    from netdsl.train.curves import read_csv
    rows = read_csv(str(tmp_path / "w.curves.csv"))
    for r in rows:
        line = next(ln for ln in text.splitlines() if ln.startswith(f"epoch {r['epoch']}/2"))
        assert f"loss {r['train_loss']:.3f} acc {100 * r['train_acc']:.1f}%" in line, (line, r)


@pytest.mark.parametrize("argv, match", [
    (["--data", "digitz"], "did you mean"),
    (["--data", "digits", "--epochs", "0"], "--epochs must be at least 1"),
    (["--data", "digits", "-o", "w.txt"], ".safetensors or .npz"),
    (["--data", "digits", "--resume", "nothere.ckpt.safetensors"], "no checkpoint"),
])
def test_cli_train_errors(argv, match, capsys, tmp_path, monkeypatch):
    from netdsl.cli import main
    monkeypatch.chdir(tmp_path)
    net = tmp_path / "small.net"
    net.write_text(SMALL_CNN)
    rc = main(["train", str(net)] + argv)
    err = capsys.readouterr().err
    assert rc == 1 and match in err and "Traceback" not in err, err


@pytest.mark.slow
def test_lenet5_reaches_97_percent_on_digits():
    """The issue's bar: LeNet-5 on the built-in digits, SGD momentum, 10 epochs (~1 min)."""
    train, test = tdata.digits("train"), tdata.digits("test")
    m = netdsl.load("lenet5")
    m.fit(train, epochs=10, batch=64, optimizer=SGD(lr=0.05, momentum=0.9), augment="crop", progress=False)
    assert m.evaluate(test)["accuracy"] >= 0.97


def test_regression_targets_with_mse():
    """Targets of the output's shape (not class labels): mse learns a fixed map of the input."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 2, 9, 9)).astype(np.float32)
    t = np.concatenate([x, x[:, :1] * 0.5], axis=1)          # a 1x1 conv can produce exactly this
    m = netdsl.parse("input x: 2x9x9\nConv(3, 1)\n")
    hist = m.fit(x, t, loss="mse", epochs=30, batch=16, optimizer=SGD(lr=0.1, momentum=0.9),
                 progress=False, validation=0.25)
    assert hist["train_loss"][-1] < 1e-3 * hist["train_loss"][0] + 1e-6, hist["train_loss"]
    assert hist["val_loss"][-1] < 1e-3


def test_nothing_to_train_and_untrainable_outputs_are_clear_errors():
    m = netdsl.parse("input x: 4x8x8\nReLU - GAP\n")
    with pytest.raises(netdsl.NetDSLError, match="nothing to train"):
        m.fit(np.zeros((4, 4, 8, 8), np.float32), np.zeros(4, int), epochs=1, progress=False)
    m = netdsl.parse("input x: 3x8x8\nConv(30, 3, pad=1) - RegionDecode(classes=10, anchors=(1, 1, 2, 2))\n")
    out = m.output_shape
    with pytest.raises(netdsl.NetDSLError, match="RegionDecode cannot be trained through"):
        m.fit(np.zeros((2, 3, 8, 8), np.float32), np.zeros((2, *out), np.float32), loss="mse",
              epochs=1, progress=False)


def test_a_last_batch_of_one_is_left_out_when_batchnorm_needs_statistics(capsys):
    m = netdsl.parse("input x: 3x8x8\nConv(4, 3) - BN - ReLU - GAP - FC(8) - BN - FC(3)\n")
    x = np.random.default_rng(0).random((9, 3, 8, 8)).astype(np.float32)
    hist = m.fit(x, np.arange(9) % 3, epochs=1, batch=4, progress=False)
    assert "last batch of 1" in capsys.readouterr().out
    assert len(hist) == 1 and np.isfinite(hist["train_loss"][0])


def test_per_pixel_cross_entropy_segments():
    """A class per pixel (FCN / U-Net style): label = whether the pixel is brighter than its
    neighbourhood; a two-layer conv net learns it far above the majority class."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((96, 1, 10, 10)).astype(np.float32)
    y = (x[:, 0] > 0.3).astype(np.int64)                     # [N, H, W] class map
    m = netdsl.parse("input x: 1x10x10\nConv(8, 3, pad=1) - ReLU - Conv(2, 1)\n")
    hist = m.fit(x, y, epochs=15, batch=16, optimizer=Adam(lr=0.02), progress=False)
    majority = max(y.mean(), 1 - y.mean())
    assert hist["train_acc"][-1] > majority + 0.1, (hist["train_acc"], majority)
    ev = m.evaluate(x, y)
    assert abs(ev["accuracy"] - hist["train_acc"][-1]) < 0.05


def test_a_trained_model_compiles_and_exports_like_any_other(tmp_path, digits16):
    from netdsl.cli import main
    train, test = digits16
    net = tmp_path / "small.net"
    net.write_text(SMALL_CNN)
    m = netdsl.load(str(net))
    m.fit(tdata.Dataset(train.x[:256], train.y[:256]), epochs=1, batch=32, progress=False)
    w = str(tmp_path / "w.safetensors")
    m.save_weights(w)
    x = tdata.Dataset(test.x[:8], test.y[:8]).to_input(m.graph[m.graph.inputs[0]]).inputs()
    bundle = str(tmp_path / "small.netc")
    assert main(["compile", str(net), "--weights", w, "-o", bundle]) == 0
    np.testing.assert_allclose(netdsl.load(bundle)(x), m(x), rtol=1e-5, atol=1e-6)
    ort = pytest.importorskip("onnxruntime")
    onnx_path = str(tmp_path / "small.onnx")
    m.to_onnx(onnx_path)
    sess = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    np.testing.assert_allclose(got, m(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("schedule", ["constant", "step", "cosine"])
def test_cli_schedules(schedule, tmp_path, capsys, digits16):
    """Every --schedule the help names runs; step ends at a hundredth of the rate, cosine near 0."""
    from netdsl.cli import main
    from netdsl.train.curves import read_csv
    train, _ = digits16
    data = str(tmp_path / "d.npz")
    np.savez(data, x=train.x[:128], y=train.y[:128])
    net = tmp_path / "small.net"
    net.write_text(SMALL_CNN)
    rc = main(["train", str(net), "--data", data, "--epochs", "4", "--batch", "32", "--lr", "0.1",
               "--schedule", schedule, "--curves", str(tmp_path / "c"), "--no-progress"])
    assert rc == 0, capsys.readouterr()
    last = read_csv(str(tmp_path / "c.csv"))[-1]["lr"]
    want = {"constant": 0.1, "step": 0.001, "cosine": None}[schedule]
    if want is None:
        assert last < 0.01
    else:
        assert abs(last - want) < 1e-12
