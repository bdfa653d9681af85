"""Learning curves of a training run: a CSV table and a PNG picture.

`history` is a list of one dict per epoch with the keys of COLUMNS (a missing key or None
is an empty cell: no validation set, no learning rate):

    epoch, train_loss, train_acc, val_loss, val_acc, lr, images_per_s, seconds

Accuracies are fractions (0.931), shown in percent in the picture. The PNG (Pillow) has a
title and two panels, loss and accuracy against the epoch, train and validation in two
colours with a legend, axes with ticks and numbers.

Not here: plotting libraries (matplotlib is no dependency), per-step curves, smoothing.
"""
from __future__ import annotations

import csv
import math

COLUMNS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "images_per_s", "seconds")
TRAIN_RGB = (31, 119, 180)      # blue
VAL_RGB = (230, 110, 10)        # orange
SIZE = (960, 420)


def write_csv(history, path):
    """One row per epoch, the COLUMNS in order; empty cells where a value is missing."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(COLUMNS)
        for row in history:
            w.writerow(["" if row.get(k) is None else (int(row[k]) if k == "epoch" else repr(float(row[k])))
                        for k in COLUMNS])


def read_csv(path):
    """write_csv's file back as a list of dicts (epoch int, the rest float or None)."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return [{k: (None if r.get(k) in (None, "") else int(r[k]) if k == "epoch" else float(r[k]))
             for k in COLUMNS} for r in rows]


def nice_ticks(lo, hi, n=5):
    """About n round tick values (steps of 1, 2 or 5 times a power of ten) covering lo..hi."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        lo, hi = 0.0, 1.0
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    raw = (hi - lo) / max(1, n)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(s * mag for s in (1, 2, 5, 10) if s * mag >= raw)
    first = math.floor(lo / step + 1e-9) * step
    ticks, t = [], first
    while t < hi + step * 0.999:
        ticks.append(round(t, 12))
        t += step
    return ticks


def _font(px):
    from PIL import ImageFont
    try:
        f = ImageFont.load_default(size=px)
        if isinstance(f, ImageFont.FreeTypeFont):
            return f
    except (TypeError, OSError, AttributeError):
        pass
    return ImageFont.load_default()                  # Pillow < 10.1: the small bitmap font


def _text_size(draw, text, font):
    x0, y0, x1, y1 = draw.textbbox((0, 0), text, font=font)
    return x1 - x0, y1 - y0


def _label(v):
    return f"{v:.0f}" if abs(v - round(v)) < 1e-9 else f"{v:g}"


def _panel(draw, box, title, series, ylabel, font, small, ylim=None):
    """One panel: frame, ticks, grid, the series [(name, colour, [(epoch, value)])], legend."""
    x0, y0, x1, y1 = box
    pts = [p for _, _, s in series for p in s]
    epochs = [e for e, _ in pts] or [1]
    values = [v for _, v in pts] or [0.0]
    e_lo, e_hi = min(epochs), max(epochs)
    if e_hi == e_lo:
        e_lo, e_hi = e_lo - 1, e_hi + 1
    v_lo, v_hi = ylim if ylim else (min(values), max(values))
    yt = nice_ticks(v_lo, v_hi)
    v_lo, v_hi = min(yt[0], v_lo), max(yt[-1], v_hi)
    xt = [t for t in nice_ticks(e_lo, e_hi, min(10, e_hi - e_lo)) if t == int(t) and e_lo <= t <= e_hi]

    def X(e):
        return x0 + (e - e_lo) / (e_hi - e_lo) * (x1 - x0)

    def Y(v):
        return y1 - (v - v_lo) / (v_hi - v_lo) * (y1 - y0)

    for t in yt:
        y = Y(t)
        draw.line([(x0, y), (x1, y)], fill=(228, 228, 228))
        draw.line([(x0 - 5, y), (x0, y)], fill=(0, 0, 0))
        w, h = _text_size(draw, _label(t), small)
        draw.text((x0 - 8 - w, y - h / 2 - 2), _label(t), fill=(0, 0, 0), font=small)
    for t in xt:
        x = X(t)
        draw.line([(x, y1), (x, y1 + 5)], fill=(0, 0, 0))
        w, _ = _text_size(draw, _label(t), small)
        draw.text((x - w / 2, y1 + 8), _label(t), fill=(0, 0, 0), font=small)
    draw.rectangle(box, outline=(0, 0, 0))
    w, _ = _text_size(draw, "epoch", small)
    draw.text(((x0 + x1) / 2 - w / 2, y1 + 26), "epoch", fill=(0, 0, 0), font=small)
    w, h = _text_size(draw, title, font)
    draw.text(((x0 + x1) / 2 - w / 2, y0 - h - 12), title, fill=(0, 0, 0), font=font)
    draw.text((x0 + 4, y0 - h - 10), ylabel, fill=(90, 90, 90), font=small)
    for _, colour, s in series:
        xy = [(X(e), Y(v)) for e, v in s]
        if len(xy) > 1:
            draw.line(xy, fill=colour, width=3, joint="curve")
        for x, y in (xy if len(xy) <= 40 else []):          # dots while they stay apart
            draw.ellipse((x - 3.5, y - 3.5, x + 3.5, y + 3.5), fill=colour)
    shown = [(name, colour) for name, colour, s in series if s]
    lw, lh = 118, 20 * len(shown) + 6
    dense = []                                      # the drawn lines, sampled, to keep clear of
    for _, _, s in series:
        xy = [(X(e), Y(v)) for e, v in s]
        dense += xy + [(a[0] + (b[0] - a[0]) * t / 16, a[1] + (b[1] - a[1]) * t / 16)
                       for a, b in zip(xy, xy[1:]) for t in range(1, 16)]
    corners = [(x1 - lw - 8, y0 + 4), (x1 - lw - 8, y1 - lh - 8), (x0 + 8, y0 + 4), (x0 + 8, y1 - lh - 8)]
    cx, cy = min(corners, key=lambda c: sum(c[0] - 6 <= x <= c[0] + lw + 6 and c[1] - 6 <= y <= c[1] + lh + 6
                                            for x, y in dense))
    lx, ly = cx + 8, cy + 6
    if shown:
        draw.rectangle((cx, cy, cx + lw, cy + lh), fill=(255, 255, 255), outline=(160, 160, 160))
    for k, (name, colour) in enumerate(shown):
        y = ly + 20 * k + 7
        draw.line([(lx, y), (lx + 26, y)], fill=colour, width=3)
        draw.text((lx + 34, y - 8), name, fill=(0, 0, 0), font=small)


def write_png(history, path, title="learning curves"):
    """The learning curves as a PNG of SIZE pixels: loss (left) and accuracy in percent
    (right) against the epoch, train blue, validation orange. Returns the two plot areas
    {"loss": (x0, y0, x1, y1), "accuracy": (...)} in pixels."""
    from PIL import Image, ImageDraw
    im = Image.new("RGB", SIZE, (255, 255, 255))
    draw = ImageDraw.Draw(im)
    font, small = _font(16), _font(13)
    w, _ = _text_size(draw, title, _font(20))
    draw.text(((SIZE[0] - w) / 2, 10), title, fill=(0, 0, 0), font=_font(20))

    def series(key, scale=1.0):
        return [(r["epoch"], scale * r[key]) for r in history
                if r.get(key) is not None and math.isfinite(r[key])]

    boxes = {"loss": (80, 90, 460, 350), "accuracy": (560, 90, 940, 350)}
    _panel(draw, boxes["loss"], "loss", [("train", TRAIN_RGB, series("train_loss")),
                                         ("validation", VAL_RGB, series("val_loss"))],
           "cross-entropy", font, small,
           ylim=(0.0, max([v for _, v in series("train_loss") + series("val_loss")] or [1.0])))
    acc = [("train", TRAIN_RGB, series("train_acc", 100.0)), ("validation", VAL_RGB, series("val_acc", 100.0))]
    vals = [v for _, _, s in acc for _, v in s] or [0.0, 100.0]
    _panel(draw, boxes["accuracy"], "accuracy", acc, "%", font, small,
           ylim=(max(0.0, min(vals) - 2), min(100.0, max(vals) + 2)))
    im.save(path)
    return boxes
