"""The training loop behind `Model.fit` and `netdsl train`.

    hist = fit(model, x_train, y_train, epochs=10, batch=64, optimizer=SGD(lr=0.05, momentum=0.9),
               loss="cross_entropy", augment="crop,flip", validation=(x_val, y_val))

Per epoch: a seeded shuffle (epoch e draws with seed + e, so a resumed run sees the same
batches), augmentation on the uint8 images, normalization as the model's input line says,
one compiled training step per batch (netdsl/train/session.py), then evaluation of the
validation set through the model's ordinary inference path (-O3: BatchNorm folded with its
running statistics, fusions applied) — the numbers a user gets from `netdsl run` later.

Checkpoints: after every epoch the weights go to `out` (.safetensors or .npz: what
`netdsl run --weights` reads) and, next to it, `<out>.ckpt.safetensors` holds the weights,
the optimizer's state regions, the epoch, the step count, the history and the settings,
for `resume=`. Both are written to a temporary file and renamed, so an interrupted write
never leaves a broken file. Ctrl-C stops after the current step and writes both.
A non-finite loss or gradient stops training (NonFiniteError: the step and the first layer
whose output went non-finite); the weights kept are those of the last good step.
"""
from __future__ import annotations

import json
import math
import os
import signal
import sys
import threading
import time

import numpy as np

from ..errors import NetDSLError
from .losses import get_loss
from .session import NonFiniteError, TrainSession

CKPT_SUFFIX = ".ckpt.safetensors"
OPT_PREFIX = "__optimizer__."


class History:
    """One row per epoch: epoch, train_loss, train_acc, val_loss, val_acc, lr, images_per_s, seconds."""

    def __init__(self, rows=None):
        self.rows = list(rows or [])
        self.stopped = "completed"      # completed | interrupted | nonfinite
        self.message = ""

    def __getitem__(self, key):
        return [r.get(key) for r in self.rows]

    def __len__(self):
        return len(self.rows)

    def __repr__(self):
        last = self.rows[-1] if self.rows else {}
        return f"History({len(self.rows)} epochs, last {last}, {self.stopped})"

    def write_csv(self, path):
        from .curves import write_csv
        write_csv(self.rows, path)

    def write_png(self, path, title=""):
        from .curves import write_png
        write_png(self.rows, path, title=title) if title else write_png(self.rows, path)


def _as_dataset(model, x, y, name):
    from .data import Dataset
    if isinstance(x, Dataset):
        return x
    if x is None or y is None:
        raise NetDSLError(f"{name}: pass x and y arrays (or a Dataset)")
    return Dataset(np.asarray(x), np.asarray(y), name=name)


def _input_decl(model):
    name = model.graph.inputs[0]
    nd = model.graph[name]
    return tuple(nd.shape), nd.attrs.get("mean"), nd.attrs.get("std"), nd.attrs.get("scale", 1 / 255)


def prepare(model, ds):
    """The dataset's images in the model's input form (size, channels, normalization), float32."""
    shape, mean, std, scale = _input_decl(model)
    return ds.to_input(shape, mean, std, scale)


def _optimizer(optimizer, lr=None):
    from .optim import SGD, from_name
    if optimizer is None:
        return SGD(lr=lr if lr is not None else 0.01, momentum=0.9)
    if isinstance(optimizer, str):
        return from_name(optimizer, **({"lr": lr} if lr is not None else {}))
    return optimizer


def evaluate(model, x, y=None, loss="cross_entropy", batch=256, output=None):
    """{"loss", "accuracy", "n"} of the model (inference path) on a dataset or (x, y)."""
    loss = get_loss(loss) if isinstance(loss, str) else loss
    ds = _as_dataset(model, x, y, "evaluate")
    xs = prepare(model, ds)
    from .plan import loss_output
    logits_node = loss_output(model.graph, loss, output)
    outs = dict(model.graph.outputs)
    out_name = output or next(iter(outs))
    probs_out = outs[out_name] != logits_node        # the net ends in Softmax/LogSoftmax
    log_softmax = probs_out and model.graph[outs[out_name]].op == "LogSoftmax"
    total, correct, count = 0.0, 0, 0
    for i in range(0, len(ds), batch):
        xb = xs[i:i + batch]
        yb = ds.y[i:i + batch]
        o = model(xb)
        if isinstance(o, dict):
            o = o[out_name]
        o = np.asarray(o, np.float64)
        if probs_out:          # log-probabilities are logits of the same softmax
            o = o if log_softmax else np.log(np.maximum(o, np.finfo(np.float64).tiny))
        t = loss.prepare_targets(yb, tuple(model.graph[logits_node].shape), len(xb)).astype(np.float64)
        tshape = (len(xb),) + o.shape[2:] if loss.name == "cross_entropy" else o.shape
        lv, _, c = loss.reference(o, t.reshape(tshape))
        total += lv * len(xb)
        correct += int(c)
        count += len(xb) * (int(np.prod(o.shape[2:])) if loss.name == "cross_entropy" else 1)
    n = len(ds)
    return {"loss": total / max(n, 1), "accuracy": correct / max(count, 1), "n": n}


class _StopFlag:
    """Ctrl-C during fit: the first stops after the current step, a second one at once."""

    def __init__(self):
        self.stop = False
        self._old = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._old = signal.getsignal(signal.SIGINT)
            signal.signal(signal.SIGINT, self._handler)
        return self

    def _handler(self, signum, frame):
        if self.stop:
            raise KeyboardInterrupt
        self.stop = True

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
        return False


def _atomic(path, write):
    tmp = f"{path}.tmp{os.getpid()}{os.path.splitext(path)[1]}"
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def save_checkpoint(path, session, meta: dict):
    from ..runtime.weights import _safetensors
    st = _safetensors()
    tensors = {k: np.ascontiguousarray(v, np.float32) for k, v in session.weights().items()}
    for i, r in enumerate(session.optimizer_state()["regions"]):
        tensors[f"{OPT_PREFIX}{i}"] = np.ascontiguousarray(r, np.float32)
    meta = dict(meta, step=session.step_count)
    _atomic(path, lambda p: st.save_file(tensors, p, metadata={"netdsl": json.dumps(meta)}))


def load_checkpoint(path):
    """(weights, optimizer regions, meta) of a checkpoint written by fit."""
    from ..runtime.weights import _safetensors, _safetensors_errors
    st = _safetensors()
    if not os.path.exists(path):
        raise NetDSLError(f"no checkpoint {path}", hint=f"fit writes <out>{CKPT_SUFFIX} after every epoch")
    try:
        from safetensors import safe_open
        with safe_open(path, framework="numpy") as f:
            meta = json.loads((f.metadata() or {}).get("netdsl", "null"))
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (_safetensors_errors() + (OSError, ValueError, json.JSONDecodeError)) as e:
        raise NetDSLError(f"cannot read checkpoint {path}: {e}") from None
    del st
    if not isinstance(meta, dict):
        raise NetDSLError(f"{path} is not a netdsl training checkpoint (no netdsl metadata)",
                          hint=f"resume from the {CKPT_SUFFIX} file fit wrote, not the weights file")
    regions = [tensors.pop(f"{OPT_PREFIX}{i}") for i in range(sum(k.startswith(OPT_PREFIX) for k in tensors))]
    return tensors, regions, meta


def checkpoint_path(out):
    root = out
    for ext in (".safetensors", ".npz"):
        if root.endswith(ext):
            root = root[:-len(ext)]
    return root + CKPT_SUFFIX


def fit(model, x=None, y=None, *, epochs=10, batch=64, optimizer=None, lr=None, loss="cross_entropy",
        label_smoothing=0.0, augment=None, validation=None, shuffle=True, seed=0, clip=None,
        threads=None, progress=True, out=None, resume=None, output=None, stream=None,
        curves=None, on_epoch=None, on_start=None) -> History:
    """Train `model` in place (its weights are replaced by the trained ones after every epoch)."""
    from .data import Dataset, Loader
    stream = stream or sys.stdout
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise NetDSLError(f"batch must be a positive integer, got {batch!r}")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise NetDSLError(f"epochs must be a positive integer, got {epochs!r}")
    lossf = get_loss(loss, label_smoothing=label_smoothing) if isinstance(loss, str) and \
        label_smoothing else (get_loss(loss) if isinstance(loss, str) else loss)
    opt = _optimizer(optimizer, lr)
    train = _as_dataset(model, x, y, "training data")
    if isinstance(validation, float):
        train, val = train.split(validation, seed=seed)
    elif isinstance(validation, tuple):
        val = _as_dataset(model, validation[0], validation[1], "validation data")
    elif validation is None or isinstance(validation, Dataset):
        val = validation
    else:
        raise NetDSLError("validation must be (x, y), a Dataset or a fraction like 0.1")
    if len(train) == 0:
        raise NetDSLError("the training set is empty")
    from .plan import loss_output
    logits = loss_output(model.graph, lossf, output)
    lossf.prepare_targets(train.y, tuple(model.graph[logits].shape), len(train))   # labels checked up front
    if augment is not None and not callable(augment):
        from .augment import Augment
        augment = Augment.from_spec(augment) if isinstance(augment, str) else augment

    sizes = {min(batch, len(train))}
    if len(train) % batch and len(train) > batch:
        sizes.add(len(train) % batch)
    steps_per_epoch = math.ceil(len(train) / batch)
    if getattr(opt, "schedule", None) is not None and hasattr(opt.schedule, "bind"):
        opt.schedule.bind(epochs * steps_per_epoch)
    session = TrainSession(model.graph, model.weights, lossf, opt, sorted(sizes), clip=clip,
                           threads=threads if threads is not None else model.threads, seed=seed, output=output)
    hist = History()
    start_epoch = 0
    meta = {"model": model.name, "loss": lossf.name, "optimizer": opt.state_dict(), "batch": batch,
            "seed": seed, "epochs": epochs}
    if resume:
        w, regions, m = load_checkpoint(resume)
        model.load_state_dict(w)
        session_w = model.weights
        session = TrainSession(model.graph, session_w, lossf, opt, sorted(sizes), clip=clip,
                               threads=threads if threads is not None else model.threads, seed=seed, output=output)
        session.load_optimizer_state({"regions": regions, "step": m.get("step", 0)})
        start_epoch = int(m.get("epoch", 0))
        hist.rows = list(m.get("history", []))
        if start_epoch >= epochs:
            print(f"{resume}: already trained {start_epoch} epochs; nothing to do (ask for more with --epochs)",
                  file=stream)
    ckpt = checkpoint_path(out) if out else None
    if on_start:
        on_start(session)

    def finish_epoch(e, row):
        hist.rows.append(row)
        model._set_weights(session.weights())
        if out:
            from ..runtime import weights as wio
            _atomic(out, lambda p: wio.save(p, model.weights))
            save_checkpoint(ckpt, session, dict(meta, epoch=e + 1, history=hist.rows))
        if curves:
            hist.write_csv(curves + ".csv")
            hist.write_png(curves + ".png", title=f"{model.name}: {opt.describe()}")
        if on_epoch:
            on_epoch(row)

    from .progress import Progress
    with _StopFlag() as flag:
        for e in range(start_epoch, epochs):
            loader = Loader(train, batch, shuffle=shuffle, seed=seed + e, augment=augment,
                            transform=lambda xb: _to_input(model, xb))
            bar = Progress(steps_per_epoch, f"epoch {e + 1}/{epochs}", stream=stream, enabled=progress)
            t0 = time.perf_counter()
            tot_loss, tot_correct, seen, units = 0.0, 0, 0, 0
            try:
                for xb, yb in loader:
                    lv, c = session.step(xb, yb)
                    nb = len(xb)
                    per = lossf.target_floats(lay_shape(session), nb) // nb if lossf.name == "cross_entropy" else 1
                    tot_loss += lv * nb
                    tot_correct += c
                    seen += nb
                    units += nb * per
                    bar.update(nb, loss=tot_loss / seen, acc=tot_correct / max(units, 1))
                    if flag.stop:
                        break
            except NonFiniteError as err:
                bar.close({})
                hist.stopped, hist.message = "nonfinite", err.diagnostics[0].message
                model._set_weights(session.weights())
                raise
            dt = time.perf_counter() - t0
            row = {"epoch": e + 1, "train_loss": tot_loss / max(seen, 1), "train_acc": tot_correct / max(units, 1),
                   "lr": opt.step_fields(max(session.step_count - 1, 0))["lr"],
                   "images_per_s": seen / dt if dt > 0 else 0.0, "seconds": dt}
            if flag.stop:
                row["partial"] = True
            model._set_weights(session.weights())
            if val is not None and len(val):
                ev = evaluate(model, val, loss=lossf, output=output)
                row["val_loss"], row["val_acc"] = ev["loss"], ev["accuracy"]
            bar.close(row)
            finish_epoch(e, row)
            if flag.stop:
                hist.stopped = "interrupted"
                break
    hist.session = session
    return hist


def lay_shape(session):
    return session.layout.out_shape


def _to_input(model, xb):
    """A batch (uint8 images or floats) in the model's input form."""
    from .data import Dataset
    return Dataset(xb, np.zeros(len(xb), np.int64)).to_input(*_input_decl(model))
