"""Batch inference at scale: `netdsl batch` and netdsl.batch.predict.

    from netdsl.batch import predict
    p = predict("resnet18", "photos/", "preds.parquet", weights="r18.safetensors", batch=32)
    p.ids[:3], p.outputs["fc"].shape, p.top1, p.score, p.skipped
    predict("resnet18", "photos/", "preds.parquet", engine="ray", address="auto", actors=8, threads=2)

The job: list the inputs (sources.py: a folder, a text file of paths, a .npz/.npy), cut them
into shards, run every shard not finished yet (local.py: this machine; ray_engine.py: a Ray
cluster), keep each finished shard in the work folder next to the output, then assemble the
output (shards.py). Killed half-way, the same call resumes: finished shards are not redone.
Inputs that cannot be read are reported once on stderr, skipped, listed at the end and in
the output's metadata. docs/SCALE.md shows it on a cluster.

Not here: training, several-input networks (one input, the image or array row), writing
outputs anywhere but a local file.
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from ..errors import NetDSLError
from . import run, shards
from .sources import InputDecl, open_source

ENGINES = ("local", "ray")
DEFAULT_BATCH = 32
DEFAULT_SHARD = 256
SKIPS_LISTED = 20       # at the end of a job: the first this many skipped inputs, then a count


@dataclass
class Predictions:
    """What a batch job produced (and wrote to `path`, when it had an output)."""
    ids: list | None                # None with collect=False (then only the file holds the rows)
    outputs: dict | None            # output name -> float32 [N, *shape], rows in `ids` order
    top1: np.ndarray | None         # classifiers: top-1 class per row
    score: np.ndarray | None        # and its probability
    skipped: list                   # [(id, reason)] inputs that could not be read
    path: str | None = None
    n: int = 0                      # rows (inputs that ran)
    shards: int = 0                 # shards in the job
    reused: int = 0                 # of which finished by an earlier run
    ran: int = 0                    # inputs run in this call
    seconds: float = 0.0            # wall time of this call's shards
    stats: dict = field(default_factory=dict)

    @property
    def images_per_s(self) -> float:
        return self.ran / self.seconds if self.seconds > 0 else 0.0


def _model(model, weights, threads):
    from .. import load
    from ..model import Model
    if isinstance(model, Model):
        if weights is not None:
            model.load_weights(weights)
        return model
    if not isinstance(model, (str, os.PathLike)):
        raise NetDSLError(f"model must be a .net/.netc path, a zoo name or a netdsl.Model, got {type(model).__name__}",
                          hint='e.g. predict("resnet18", "photos/", "preds.parquet")')
    return load(os.fspath(model), weights=weights, threads=threads)


def classifier_output(model):
    """(name of the first output when it is one vector of 2+ classes, whether it ends in Softmax),
    else (None, False)."""
    name = next(iter(model.graph.outputs))
    node = model.graph[model.graph.outputs[name]]
    if len(node.shape) == 1 and node.shape[0] >= 2:
        return name, node.op == "Softmax"
    return None, False


class _Reporter:
    """The progress bar, and the skipped inputs reported once as they are found."""

    def __init__(self, total, desc, enabled, stream):
        from ..train.progress import Progress
        self.stream = stream
        self.bar = Progress(total, desc=desc, stream=stream, enabled=enabled and total > 0)
        self.enabled = enabled

    def shard(self, n_inputs, skipped):
        for i, why in skipped:
            self.note(f"skipped {i}: {why}")
        self.bar.update(n_inputs)

    def note(self, text):
        if not self.enabled:
            return
        if self.bar._tq is not None:            # tqdm redraws its bar below the line
            self.bar._tq.write(f"warning: {text}", file=self.stream)
            return
        lead = "\r" if self.bar.tty else ""
        pad = " " * max(0, self.bar._width - len(text)) if lead else ""
        self.stream.write(f"{lead}warning: {text}{pad}\n")
        self.stream.flush()


def predict(model, input, output=None, *, weights=None, batch=DEFAULT_BATCH, shard_size=DEFAULT_SHARD,
            engine="local", address=None, actors=None, threads=None, decoders=None, restart=False,
            keep_parts=False, progress=True, stream=None, collect=True) -> Predictions:
    """Run `model` (a .net/.netc path, a zoo name or a Model) over every input in `input` (a
    folder of images, a text file of image paths, a .npz/.npy) in batches of `batch`.

    output: a .parquet or .npz file (written atomically at the end), or None to only return the
    predictions. With an output the job resumes: shards finished by an interrupted run with the
    same arguments are kept (restart=True discards them; keep_parts keeps the work folder
    after success). engine "local" (actors processes, default 1: this one; threads each) or
    "ray" (actors Ray actors of `threads` CPUs, on the cluster at `address`: None starts one
    for the job, "auto", "ray://host:port"). decoders: image-decoding threads of the local
    engine's one process (None: 4 for inputs of 64x64 or more, else 0; 0: inline).
    progress: a bar on `stream` (stderr). A Model passed in gets `weights` loaded into it.
    collect=False (needs an output) leaves the rows in the file only (ids, outputs, top1 and
    score are None), so with a .parquet, written shard by shard, no step holds all the outputs
    in memory (a .npz is assembled in memory either way).
    Returns Predictions; raises NetDSLError for anything that stops the job (an unreadable
    image does not: it is skipped and listed in Predictions.skipped and the output)."""
    run.check_batch_args(batch, shard_size, threads, actors)
    if decoders is not None and (isinstance(decoders, bool) or not isinstance(decoders, int) or decoders < 0):
        raise NetDSLError(f"--decoders must be 0 or more, got {decoders!r}", hint="0 decodes inline, between batches")
    if engine not in ENGINES:
        raise NetDSLError(f"unknown engine {engine!r}", hint="use --engine local or --engine ray")
    if address not in (None, "") and engine != "ray":
        raise NetDSLError("--address is for --engine ray", hint="add --engine ray, or drop --address")
    stream = sys.stderr if stream is None else stream
    if not collect and output is None:
        raise NetDSLError("collect=False needs an output file", hint="pass output='preds.parquet'")
    if output is not None:
        output = os.fspath(output)
        shards.check_output_path(output)
    if engine == "ray":
        from .ray_engine import _ray
        _ray()                              # a missing Ray is said before any work
    m = _model(model, weights, threads)
    if len(m.graph.inputs) != 1:
        raise NetDSLError(f"{m.name} has inputs {', '.join(m.graph.inputs)}; batch inference feeds one input",
                          hint="call the model from Python for several inputs")
    node = m.graph[m.graph.inputs[0]]
    source = open_source(input, InputDecl(node.name, tuple(node.shape), dict(node.attrs)))
    data = run.compile_bytes(m)
    out_shapes = {k: tuple(v) for k, v in m.output_shapes.items()}
    man = shards.manifest(source, run.sha256(data), m.name, batch, shard_size, out_shapes)
    n_shards = man["n_shards"]
    work, memory = None, {}
    done = []
    if output is not None:
        work = shards.WorkDir(output, man)
        done = work.open(restart=restart)
    done_set = set(done)
    todo = [k for k in range(n_shards) if k not in done_set]
    rep = _Reporter(len(todo), f"batch {m.name}", progress, stream)

    def on_shard(k, blob):
        if k in done_set:           # Ray handed back a retried shard twice: keep the first
            return
        rows, skipped = shards.shard_summary(blob)
        if work is not None:
            work.write_shard(k, blob)
        else:
            memory[k] = blob
        done_set.add(k)
        rep.shard(rows + len(skipped), skipped)

    t0 = time.perf_counter()
    try:
        if todo and engine == "local":
            from .local import run_local
            run_local(data, source, todo, batch, shard_size, on_shard, threads=threads, actors=actors or 1,
                      decoders=decoders)
        elif todo:
            from .ray_engine import run_ray
            run_ray(data, source, todo, batch, shard_size, on_shard, threads=threads, actors=actors,
                    address=address)
    except KeyboardInterrupt:
        if work is not None and progress:
            kept = len(done_set)
            stream.write(f"\ninterrupted: {kept} of {n_shards} shards are kept in {work.path}; "
                         "rerun the same command to finish the job\n")
        raise
    seconds = time.perf_counter() - t0
    missing = [k for k in range(n_shards) if k not in done_set]
    if missing:
        raise NetDSLError(f"{len(missing)} of {n_shards} shards did not come back (first: shard {missing[0]})",
                          hint="rerun the same command: finished shards are kept and only the rest is done")
    rep.bar.close()

    def read(k):
        return shards.decode_shard(memory[k]) if work is None else work.read_shard(k)

    n, skipped = 0, []
    for k in range(n_shards):
        rows, s_skip = shards.shard_summary(memory[k] if work is None else work.shard_path(k))
        n += rows
        skipped += s_skip
    cls, is_sm = classifier_output(m)
    ids = outputs = t1 = p1 = None
    if collect:
        ids, parts = [], {k: [] for k in out_shapes}
        for k in range(n_shards):
            s_ids, s_outs, _ = read(k)
            ids += s_ids
            for name in parts:
                parts[name].append(s_outs[name])
        outputs = {k: np.concatenate(v) if v else np.zeros((0, *out_shapes[k]), np.float32)
                   for k, v in parts.items()}
        if cls is not None:
            t1, p1 = shards.top1(outputs[cls], is_sm)
    ran = sum(len(shards.shard_range(k, len(source), shard_size)) for k in todo)
    result = Predictions(ids, outputs, t1, p1, skipped, output, n, n_shards, len(done), ran, seconds,
                         stats={"weights_loaded": m.weights_loaded, "model": m.name, "engine": engine})
    if output is not None:
        meta = {k: man[k] for k in ("netdsl_version", "input", "n_inputs", "input_sha256", "model",
                                    "model_sha256", "batch", "shard_size")}
        meta.update(engine=engine, weights=(os.fspath(weights) if isinstance(weights, (str, os.PathLike))
                                            else "loaded" if m.weights_loaded else "initial (seed 0)"))
        shards.write_output(output, read, n_shards, out_shapes, skipped, meta, cls, is_sm)
        if not keep_parts:
            work.remove()
    return result


def skipped_text(skipped) -> str:
    """The end-of-job list of inputs that could not be read."""
    n = len(skipped)
    lines = [f"skipped {n} input{'s' if n != 1 else ''} that could not be read:"]
    lines += [f"  {i}: {why}" for i, why in skipped[:SKIPS_LISTED]]
    if n > SKIPS_LISTED:
        lines.append(f"  ... and {n - SKIPS_LISTED} more (all are in the output's metadata)")
    return "\n".join(lines)


__all__ = ["predict", "Predictions", "skipped_text"]
