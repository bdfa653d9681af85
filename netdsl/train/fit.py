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


def _as_dataset(model, x, y, name, loss=None):
    """A Dataset of (x, y): class labels for cross-entropy on class scores, else targets of
    any shape (regression targets, per-pixel class maps) that the loss checks."""
    from .data import Dataset
    if isinstance(x, Dataset):
        return x
    if x is None or y is None:
        raise NetDSLError(f"{name}: pass x and y arrays (or a Dataset)")
    y = np.asarray(y)
    labels = (loss is None or loss.name == "cross_entropy") and (y.ndim == 1 or (y.ndim == 2 and y.shape[1] == 1))
    return Dataset(np.asarray(x), y, name=name, targets=not labels)


def prepare(model, ds):
    """The dataset adapted to the model's input (channels and size once; normalization per
    batch, as the input line says): see Dataset.to_input."""
    return ds.to_input(model.graph[model.graph.inputs[0]])


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
    ds = prepare(model, _as_dataset(model, x, y, "evaluate", loss))
    from .plan import loss_output, training_graph
    logits_node = loss_output(training_graph(model.graph), loss, output)
    outs = dict(model.graph.outputs)
    out_name = output or next(iter(outs))
    last = model.graph[outs[out_name]]
    probs_out = last.op in ("Softmax", "LogSoftmax") and outs[out_name] != logits_node
    total, correct, count = 0.0, 0, 0
    for i in range(0, len(ds), batch):
        xb = ds.normalize(ds.x[i:i + batch])
        yb = ds.y[i:i + batch]
        o = model(xb)
        if isinstance(o, dict):
            o = o[out_name]
        o = np.asarray(o, np.float64)
        if probs_out and last.op == "Softmax":   # log-probabilities are logits of the same softmax
            o = np.log(np.maximum(o, np.finfo(np.float64).tiny))
        t = loss.prepare_targets(yb, tuple(o.shape[1:]), len(xb)).astype(np.float64)
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
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)    # a plain new file's mode (safetensors writes 0600)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


META_KEY = "__netdsl_training__"     # the .npz checkpoint's metadata entry (a JSON string)


def save_checkpoint(path, session, meta: dict):
    """Weights, optimizer state regions and `meta` (JSON) in one file: .safetensors (metadata
    in its header) or .npz (metadata as a string array), written atomically."""
    tensors = {k: np.ascontiguousarray(v, np.float32) for k, v in session.weights().items()}
    for i, r in enumerate(session.optimizer_state()["regions"]):
        tensors[f"{OPT_PREFIX}{i}"] = np.ascontiguousarray(r, np.float32)
    text = json.dumps(dict(meta, step=session.step_count))
    if path.endswith(".npz"):
        _atomic(path, lambda p: np.savez(p, **tensors, **{META_KEY: np.array(text)}))
        return
    from ..runtime.weights import _safetensors
    st = _safetensors()
    _atomic(path, lambda p: st.save_file(tensors, p, metadata={"netdsl": text}))


def load_checkpoint(path):
    """(weights, optimizer regions, meta) of a checkpoint written by fit."""
    if not os.path.exists(path):
        raise NetDSLError(f"no checkpoint {path}",
                          hint=f"fit writes <out>{CKPT_SUFFIX} (or .ckpt.npz) after every epoch")
    try:
        if path.endswith(".npz"):
            with np.load(path, allow_pickle=False) as f:
                tensors = {k: f[k] for k in f.files}
            text = str(tensors.pop(META_KEY)) if META_KEY in tensors else "null"
        else:
            from ..runtime.weights import _safetensors
            _safetensors()
            from safetensors import safe_open
            with safe_open(path, framework="numpy") as f:
                text = (f.metadata() or {}).get("netdsl", "null")
                tensors = {k: f.get_tensor(k) for k in f.keys()}
        meta = json.loads(text)
    except NetDSLError:
        raise
    except Exception as e:  # noqa: BLE001 — a damaged file, whatever the reader raises
        raise NetDSLError(f"cannot read checkpoint {path}: {e}") from None
    if not isinstance(meta, dict):
        raise NetDSLError(f"{path} is not a netdsl training checkpoint (it has no training metadata)",
                          hint=f"resume from the {CKPT_SUFFIX} file training wrote, not the weights file")
    regions = [tensors.pop(f"{OPT_PREFIX}{i}") for i in range(sum(k.startswith(OPT_PREFIX) for k in tensors))]
    return tensors, regions, meta


def checkpoint_path(out):
    """<out without extension>.ckpt.safetensors, or .ckpt.npz for an .npz out."""
    root, ext = os.path.splitext(out)
    return root + (".ckpt.npz" if ext.lower() == ".npz" else CKPT_SUFFIX)


def fit(model, x=None, y=None, *, epochs=10, batch=64, optimizer=None, lr=None, loss="cross_entropy",
        label_smoothing=0.0, augment=None, validation=None, shuffle=True, seed=0, clip=None,
        threads=None, progress=True, out=None, resume=None, output=None, stream=None,
        curves=None, on_epoch=None, on_start=None) -> History:
    """Train `model` in place (its weights are the trained ones after every epoch); see the
    module docstring. Returns the History."""
    from .data import Dataset, Loader
    from .plan import loss_output, training_graph
    stream = stream or sys.stdout
    for what, v in (("batch", batch), ("epochs", epochs)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise NetDSLError(f"{what} must be a positive integer, got {v!r}")
    if isinstance(loss, str):
        lossf = get_loss(loss, label_smoothing=label_smoothing) if label_smoothing else get_loss(loss)
    else:
        lossf = loss
    opt = _optimizer(optimizer, lr)
    train = _as_dataset(model, x, y, "training data", lossf)
    if isinstance(validation, float):
        train, val = train.split(validation, seed=seed)
    elif isinstance(validation, tuple):
        val = _as_dataset(model, validation[0], validation[1], "validation data", lossf)
    elif validation is None or isinstance(validation, Dataset):
        val = validation
    else:
        raise NetDSLError("validation must be (x, y), a Dataset or a fraction like 0.1")
    if len(train) == 0:
        raise NetDSLError("the training set is empty")
    tg = training_graph(model.graph)
    lossf.prepare_targets(train.y, tuple(tg[loss_output(tg, lossf, output)].shape), len(train))  # every label, up front
    train_in = prepare(model, train)
    thr = threads if threads is not None else model.threads
    sizes = {min(batch, len(train))}
    drop_last = False
    if len(train) % batch and len(train) > batch:
        rest = len(train) % batch
        sizes.add(rest)
        if rest == 1 and any(nd.op == "BatchNorm" for nd in model.graph.nodes()):
            # a batch of one has no batch statistics: leave that one sample out of each epoch
            sizes.discard(rest)
            drop_last = True
            print(f"note: {len(train)} samples in batches of {batch} leave a last batch of 1, which "
                  "BatchNorm cannot train on: each epoch leaves one (shuffled) sample out", file=stream)
    loader = Loader(train_in, batch, shuffle=shuffle, seed=seed, augment=augment, drop_last=drop_last)
    steps_per_epoch = len(loader)
    hist = History()
    start_epoch, start_step = 0, 0
    regions = None
    if resume:
        w, regions, meta0 = load_checkpoint(resume)
        model.load_state_dict(w)
        start_epoch, start_step = int(meta0.get("epoch", 0)), int(meta0.get("epoch_step", 0))
        hist.rows = list(meta0.get("history", []))
    session = TrainSession(model.graph, model.weights, lossf, opt, sorted(sizes), clip=clip,
                           threads=thr, seed=seed, output=output)
    if regions is not None:
        session.load_optimizer_state({"regions": regions, "step": meta0.get("step", 0)})
    meta = {"model": model.name, "loss": lossf.name, "optimizer": opt.state_dict(), "batch": batch,
            "seed": seed, "epochs": epochs}
    ckpt = checkpoint_path(out) if out else None
    if on_start:
        on_start(session)
    if resume and start_epoch >= epochs:
        print(f"{resume}: already trained {start_epoch} epochs; nothing to do (ask for more with --epochs)",
              file=stream)

    def save(epoch_done, epoch_step):
        model._set_weights(session.weights())
        if out:
            from ..runtime import weights as wio
            _atomic(out, lambda p: wio.save(p, model.weights))
            save_checkpoint(ckpt, session, dict(meta, epoch=epoch_done, epoch_step=epoch_step, history=hist.rows))

    from .progress import Progress
    with _StopFlag() as flag:
        for e in range(start_epoch, epochs):
            first = start_step if e == start_epoch else 0
            bar = Progress(steps_per_epoch - first, f"epoch {e + 1}/{epochs}", stream=stream,
                           enabled=progress is True)
            t0 = time.perf_counter()
            tot_loss, tot_correct, seen, units, done_steps = 0.0, 0, 0, 0, first
            try:
                for xb, yb in loader.epoch(e, start=first):
                    lv, c = session.step(xb, yb)
                    nb = len(xb)
                    ub = lossf.target_floats(session.layout.out_shape, nb) if lossf.name == "cross_entropy" else nb
                    tot_loss += lv * nb
                    tot_correct += c
                    seen += nb
                    units += ub
                    done_steps += 1
                    bar.update(nb, loss=lv, acc=c / max(ub, 1))      # the bar keeps the running means
                    if flag.stop:
                        break
            except NonFiniteError as err:
                bar.close()
                hist.stopped, hist.message = "nonfinite", err.diagnostics[0].message
                save(e, done_steps)
                raise
            dt = time.perf_counter() - t0
            row = {"epoch": e + 1, "train_loss": tot_loss / max(seen, 1), "train_acc": tot_correct / max(units, 1),
                   "lr": opt.step_fields(max(session.step_count - 1, 0))["lr"],
                   "images_per_s": seen / dt if dt > 0 else 0.0, "seconds": dt}
            interrupted = flag.stop and done_steps < steps_per_epoch
            model._set_weights(session.weights())
            if val is not None and len(val) and not interrupted:
                ev = evaluate(model, val, loss=lossf, output=output)
                row["val_loss"], row["val_acc"] = ev["loss"], ev["accuracy"]
            line = bar.close({k: row[k] for k in ("val_loss", "val_acc") if k in row})
            if progress == "lines":          # no bar: one plain line per epoch
                print(line, file=stream, flush=True)
            if interrupted:
                hist.stopped = "interrupted"
                save(e, done_steps)          # resume continues this epoch from done_steps
                break
            hist.rows.append(row)
            save(e + 1, 0)
            if curves:
                hist.write_csv(curves + ".csv")
                hist.write_png(curves + ".png", title=f"{model.name}: {opt.describe()}")
            if on_epoch:
                on_epoch(row)
            if flag.stop:
                hist.stopped = "interrupted"
                break
    hist.session = session
    return hist
