"""The epoch progress bar (netdsl/train/progress.py) and the learning curves
(netdsl/train/curves.py): what a log file and a terminal get, the CSV read back, and a PNG
whose curves are where the numbers put them."""
from __future__ import annotations

import io
import math
import re

import numpy as np
import pytest

from netdsl.train import curves
from netdsl.train.progress import Progress


class Tty(io.StringIO):
    def isatty(self):
        return True


LINE = re.compile(r"^epoch 3/10 \[[#.]{24}\] (\d+)/157 loss (\d+\.\d{3}) acc (\d+\.\d)% ([\d,]+) img/s")


def run_bar(stream, steps=157, **kw):
    bar = Progress(steps, "epoch 3/10", stream=stream, **kw)
    for s in range(steps):
        bar.update(64, loss=1.0 / (s + 1), acc=0.5 + 0.5 * s / steps)
    return bar, bar.close({"val_loss": 0.25, "val_acc": 0.9312})


def test_not_a_terminal_writes_a_line_every_tenth_and_one_at_the_end():
    out = io.StringIO()
    bar, last = run_bar(out)
    text = out.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert len(lines) == 10                        # 10%, 20%, ... 90%, and the closing line
    steps = [int(LINE.match(ln).group(1)) for ln in lines]
    assert steps == [16, 32, 48, 63, 79, 95, 110, 126, 142, 157]
    assert lines[-1] == last and last.endswith("s") and "val_loss 0.250 val_acc 93.1%" in last
    # the loss and accuracy shown are running means weighted by images
    want_loss = np.mean([1.0 / (s + 1) for s in range(157)])
    want_acc = np.mean([0.5 + 0.5 * s / 157 for s in range(157)])
    m = LINE.match(lines[-1])
    assert float(m.group(2)) == pytest.approx(want_loss, abs=6e-4)
    assert float(m.group(3)) == pytest.approx(100 * want_acc, abs=0.06)
    assert lines[-1].count("#") == 24 and lines[0].count("#") == round(24 * 16 / 157)


def test_few_steps_still_end_with_one_line():
    out = io.StringIO()
    run_bar(out, steps=3)
    lines = out.getvalue().splitlines()
    assert len(lines) == 3 and lines[-1].startswith("epoch 3/10 [########################] 3/3")


def test_terminal_rewrites_one_line(monkeypatch):
    out = Tty()
    ticks = iter(range(10_000))
    monkeypatch.setattr("netdsl.train.progress.time.perf_counter", lambda: next(ticks) * 0.05)
    run_bar(out, steps=40, use_tqdm=False)
    text = out.getvalue()
    assert text.endswith("\n") and text.count("\n") == 1          # one line, rewritten
    frames = text.rstrip("\n").split("\r")[1:]
    assert 10 <= len(frames) <= 41                                 # at most every 0.1 s
    assert frames[-1].startswith("epoch 3/10 [") and "val_acc 93.1%" in frames[-1]
    assert all(LINE.match(f.replace("/40", "/157")) for f in frames)
    for before, after in zip(frames, frames[1:]):      # a shorter line wipes the longer one
        assert len(after) >= len(before.rstrip())


def test_disabled_writes_nothing_but_keeps_counts():
    out = io.StringIO()
    bar, last = run_bar(out, enabled=False)
    assert out.getvalue() == "" and bar.steps == 157 and bar.images == 157 * 64
    assert last.startswith("epoch 3/10 [########################] 157/157")


def test_rate_and_no_loss():
    out = io.StringIO()
    bar = Progress(2, "", stream=out)
    bar.update(10)
    line = bar.line()
    assert line.startswith("[############............] 1/2 ") and "loss" not in line and "img/s" in line


def history(epochs=8, val=True):
    h = []
    for e in range(1, epochs + 1):
        h.append({"epoch": e, "train_loss": 2.0 * math.exp(-e / 2) + 0.05, "train_acc": 1 - 0.7 * math.exp(-e / 2),
                  "val_loss": (2.0 * math.exp(-e / 2) + 0.2) if val else None,
                  "val_acc": (0.95 - 0.7 * math.exp(-e / 2)) if val else None,
                  "lr": 0.1 * 0.5 ** (e // 3), "images_per_s": 2410.5 + e, "seconds": 4.25})
    return h


def test_csv_round_trip(tmp_path):
    for val in (True, False):
        h = history(val=val)
        p = tmp_path / f"h{val}.csv"
        curves.write_csv(h, p)
        head = p.read_text().splitlines()[0]
        assert head == "epoch,train_loss,train_acc,val_loss,val_acc,lr,images_per_s,seconds"
        back = curves.read_csv(p)
        assert back == h                                    # floats written with repr: exact
        if not val:
            assert ",," in p.read_text().splitlines()[1]


def colour_pixels(a, box, rgb):
    x0, y0, x1, y1 = box
    sub = a[y0:y1, x0:x1].astype(int)
    ys, xs = np.nonzero(np.abs(sub - np.array(rgb)).sum(-1) < 40)
    return xs, ys


@pytest.mark.parametrize("val", [True, False], ids=["with-val", "train-only"])
def test_png_has_both_curves_where_the_numbers_put_them(tmp_path, val):
    Image = pytest.importorskip("PIL.Image")
    p = tmp_path / "c.png"
    boxes = curves.write_png(history(val=val), p, "lenet5 on digits")
    im = Image.open(p)
    assert im.size == curves.SIZE and im.mode == "RGB"
    a = np.asarray(im)
    for name in ("loss", "accuracy"):
        xs, ys = colour_pixels(a, boxes[name], curves.TRAIN_RGB)
        assert len(xs) > 200, name
        vx, _ = colour_pixels(a, boxes[name], curves.VAL_RGB)
        assert (len(vx) > 200) == val, name
        # the loss falls and the accuracy rises: compare the curve's height at both ends
        # (pixels of the curve, not of the legend: take the left and right tenth)
        w = boxes[name][2] - boxes[name][0]
        left, right = ys[xs < w / 10].mean(), ys[xs > 9 * w / 10].mean()
        assert (left < right) if name == "loss" else (left > right), (name, left, right)
    # text was drawn (title, tick numbers): dark pixels above and left of the panels
    assert (a[:40].sum(-1) < 200).sum() > 50
    assert (a[90:350, 20:75].sum(-1) < 200).sum() > 50


def test_nice_ticks():
    assert curves.nice_ticks(0, 2.1) == [0, 0.5, 1.0, 1.5, 2.0, 2.5]
    assert curves.nice_ticks(57.3, 99.1) == [50, 60, 70, 80, 90, 100]
    for lo, hi in [(1, 1), (0.013, 0.02), (3, 97), (-2.5, 7.25), (1, 90)]:
        t = curves.nice_ticks(lo, hi)
        assert t[0] <= lo and t[-1] >= hi and 3 <= len(t) <= 12, (lo, hi, t)
        steps = np.diff(t)
        assert np.allclose(steps, steps[0])
        mant = steps[0] / 10 ** math.floor(math.log10(steps[0]))
        assert min(abs(mant - m) for m in (1, 2, 5)) < 1e-6, (lo, hi, t)


def test_terminal_redraw_wipes_a_longer_line():
    out = Tty()
    bar = Progress(5, "e", stream=out, use_tqdm=False)
    bar._redraw("a long first line")
    bar._redraw("short")
    assert out.getvalue() == "\ra long first line\rshort            "


def test_tqdm_when_installed():
    pytest.importorskip("tqdm")
    out = Tty()
    run_bar(out, steps=20, use_tqdm=True)
    assert "epoch 3/10" in out.getvalue() and "20/20" in out.getvalue()
