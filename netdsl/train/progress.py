"""The progress bar of one training epoch.

    epoch 3/10 [################........] 120/157 loss 0.231 acc 93.1% 2,410 img/s

On a terminal the line is rewritten in place (\\r) at most 10 times a second, through tqdm
when it is installed, else by the built-in bar. When the stream is not a terminal (a log
file, CI) the built-in bar writes plain lines instead, one every 10% of the steps and one
at the end, and never uses tqdm (whose \\r updates would fill the log).

loss and acc are the running means over the epoch of what update() is given (weighted by
the images of each step); acc is a fraction, shown in percent.

Not here: nested bars, multi-line layouts, colours.
"""
from __future__ import annotations

import sys
import time

WIDTH = 24              # the bar's characters
PLAIN_EVERY = 0.10      # non-terminal: one line per this fraction of the steps
REFRESH_S = 0.1         # terminal: the least time between two redraws


def _tty(stream):
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _tqdm():
    try:
        from tqdm import tqdm
        return tqdm
    except ImportError:
        return None


class Progress:
    """One epoch's bar: `total_steps` update() calls are expected; `desc` opens the line.
    enabled=False writes nothing (and still keeps the running means). use_tqdm: None = when
    installed and the stream is a terminal."""

    def __init__(self, total_steps, desc="", stream=None, enabled=True, use_tqdm=None):
        self.total, self.desc = max(1, int(total_steps)), desc
        self.stream = sys.stdout if stream is None else stream
        self.enabled, self.tty = enabled, _tty(self.stream)
        self.steps = self.images = 0
        self._loss = self._acc = 0.0            # image-weighted sums
        self._loss_n = self._acc_n = 0
        self.start = self._last_draw = time.perf_counter()
        self._next_plain = 1
        self._width = 0
        tq = _tqdm() if (use_tqdm is None and self.tty) or use_tqdm else None
        self._tq = tq(total=self.total, desc=desc, file=self.stream, leave=True, unit="step",
                      dynamic_ncols=True) if (tq and enabled) else None

    @property
    def loss(self):
        return self._loss / self._loss_n if self._loss_n else None

    @property
    def acc(self):
        return self._acc / self._acc_n if self._acc_n else None

    def rate(self):
        """Images per second since the bar opened."""
        dt = time.perf_counter() - self.start
        return self.images / dt if dt > 0 else 0.0

    def update(self, n_images, loss=None, acc=None):
        """One step of `n_images` images, with that step's loss and accuracy (a fraction)."""
        self.steps += 1
        self.images += n_images
        if loss is not None:
            self._loss += float(loss) * n_images
            self._loss_n += n_images
        if acc is not None:
            self._acc += float(acc) * n_images
            self._acc_n += n_images
        if not self.enabled:
            return
        if self._tq is not None:
            self._tq.set_postfix_str(self._stats(), refresh=False)
            self._tq.update(1)
        elif self.tty:
            now = time.perf_counter()
            if now - self._last_draw >= REFRESH_S or self.steps >= self.total:
                self._last_draw = now
                self._redraw(self.line())
        elif self.steps >= self._next_plain * PLAIN_EVERY * self.total and self.steps < self.total:
            while self.steps >= self._next_plain * PLAIN_EVERY * self.total:
                self._next_plain += 1
            self.stream.write(self.line() + "\n")
            self.stream.flush()

    def _stats(self):
        out = []
        if self.loss is not None:
            out.append(f"loss {self.loss:.3f}")
        if self.acc is not None:
            out.append(f"acc {100 * self.acc:.1f}%")
        out.append(f"{self.rate():,.0f} img/s")
        return " ".join(out)

    def line(self):
        """The bar as one line of text."""
        done = min(self.steps, self.total)
        fill = round(WIDTH * done / self.total)
        bar = "#" * fill + "." * (WIDTH - fill)
        head = f"{self.desc} " if self.desc else ""
        return f"{head}[{bar}] {done}/{self.total} {self._stats()}"

    def _redraw(self, text):
        pad = " " * max(0, self._width - len(text))      # wipe a longer previous line
        self._width = len(text)
        self.stream.write("\r" + text + pad)
        self.stream.flush()

    def close(self, summary=None):
        """End the bar; `summary` ({"val_loss": 0.2, "val_acc": 0.95, ...}) is appended to
        the last line. Returns that line (also when disabled)."""
        extra = " ".join(_fmt(k, v) for k, v in (summary or {}).items() if v is not None)
        text = self.line() + (f" {extra}" if extra else "") + f" {time.perf_counter() - self.start:.1f}s"
        if not self.enabled:
            return text
        if self._tq is not None:
            self._tq.set_postfix_str(self._stats() + (f" {extra}" if extra else ""), refresh=True)
            self._tq.close()
        elif self.tty:
            self._redraw(text)
            self.stream.write("\n")
        else:
            self.stream.write(text + "\n")
        self.stream.flush()
        return text


def _fmt(key, value):
    """`val_acc` 0.953 -> 'val_acc 95.3%', losses with 3 decimals, other numbers as given."""
    if isinstance(value, float):
        if key.endswith("acc"):
            return f"{key} {100 * value:.1f}%"
        return f"{key} {value:.4g}" if key == "lr" else f"{key} {value:.3f}"
    return f"{key} {value}"
