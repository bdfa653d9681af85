"""The model side of `netdsl batch`: the compiled bundle every engine runs, and one shard's work.

Every engine — in this process, in worker processes, in Ray actors — runs the same thing: the
model compiled into `.netc` bundle bytes once by the driver (netdsl.bundle.dumps of the graph
optimized at the model's run level, with its weights), loaded once per process with
netdsl.bundle.loads, and fed shard after shard. So the outputs do not depend on the engine,
the bytes' sha256 names the model and weights in the work folder's manifest, and a worker
needs neither the .net source nor the parser.

run_shard takes a shard's inputs (decoded inline, or by the futures submit_loads started on a
thread pool, so decoding goes on while the model runs the batches already loaded on its own
OpenMP threads), runs them in batches of `batch` in input order, and returns the encoded
shard (shards.encode_shard). Unreadable inputs are left out of the batches and recorded.
"""
from __future__ import annotations

import hashlib
import os

import numpy as np

from ..errors import NetDSLError
from . import shards

FAULT_ENV = "NETDSL_BATCH_FAULT"    # test hook, see maybe_fault()


def compile_bytes(model) -> bytes:
    """The bundle bytes of `model` as it runs: a loaded bundle's graph as it is, a source's
    graph optimized at its run level (what Model.__call__ would run)."""
    from .. import bundle
    from ..quant import QuantizedModel
    if isinstance(model, QuantizedModel):   # an int8 model ships as its int8 bundle (model_from_bytes)
        from ..quant.bundle import quantized_bytes
        return quantized_bytes(model)
    graph, weights, report = model.graph, model.weights, None
    level = max(model.run_level, model.opt_level)
    if model.run_level > model.opt_level:
        from ..compiler import optimize
        graph, weights, report = optimize(graph, weights, model.run_level)
    return bundle.dumps(graph, weights, name=model.name, opt_level=level, report=report,
                        source=model.path or model.name, initial_weights=not model.weights_loaded)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def model_from_bytes(data: bytes, threads=None):
    """A ready-to-run Model from bundle bytes (as netdsl.model.load_bundle does for a file)."""
    from .. import bundle
    from ..model import Model
    b = bundle.loads(data, "<batch model>")
    if "quant" in b.header:                 # an int8 bundle (netdsl quantize): its int8 kernels
        from ..quant.bundle import from_bundle
        return from_bundle(b, None, threads)
    m = Model(b.graph, b.header["model"], None, threads=threads)
    m._weights = b.weights
    m._weights_loaded = b.header["weights"] == "loaded"
    m.opt_level = m.run_level = b.header["opt_level"]
    m.bundle = b.header
    return m


def maybe_fault(where: str, shard: int, spec: str | None = None):
    """Fault injection for the crash tests: NETDSL_BATCH_FAULT="WHERE:SHARD:MARKER" makes the
    process that is about to run shard SHARD in WHERE (local, worker or ray) exit at once,
    without cleanup, the first time only (MARKER, a file path, records that it happened), or
    every time when MARKER is `always`. Unset in normal use. `spec` overrides the variable
    (engines pass the driver's value on)."""
    spec = os.environ.get(FAULT_ENV) if spec is None else spec
    if not spec:
        return
    w, _, rest = spec.partition(":")
    k, _, marker = rest.partition(":")
    if w != where or k != str(shard) or not marker:
        return
    if marker == "always":
        os._exit(17)
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return
    os.close(fd)
    os._exit(17)


def submit_loads(pool, source, k: int, shard_size: int):
    """Start decoding shard k's inputs on `pool` (a ThreadPoolExecutor; None: decode them
    inline later); returns what run_shard takes as `loaded`."""
    rows = shards.shard_range(k, len(source), shard_size)
    if pool is None or source.kind != "files":      # an array row is a slice: nothing to overlap
        return None
    return [pool.submit(source.load, i) for i in rows]


def run_shard(model, source, k: int, batch: int, shard_size: int, loaded=None) -> bytes:
    """Shard k of `source` through `model` in batches of `batch`: the encoded shard. `loaded`:
    the futures of submit_loads (decoding goes on while the first batches run), or None to
    read each input when its batch is filled."""
    rows = shards.shard_range(k, len(source), shard_size)
    items = (f.result() for f in loaded) if loaded is not None else (source.load(i) for i in rows)
    return _run_loaded(model, source, rows, items, batch)


def _run_loaded(model, source, rows, loaded, batch):
    names = list(model.graph.outputs)
    ids, skipped, pending = [], [], []
    parts = {n: [] for n in names}

    def flush():
        x = np.stack(pending)
        y = model(x)
        y = y if isinstance(y, dict) else {names[0]: y}
        for n in names:
            parts[n].append(np.asarray(y[n], np.float32))
        pending.clear()

    for i, (x, why) in zip(rows, loaded):
        if x is None:
            skipped.append((source.ids[i], why))
            continue
        ids.append(source.ids[i])
        pending.append(x)
        if len(pending) == batch:
            flush()
    if pending:
        flush()
    shapes = {n: tuple(model.graph[model.graph.outputs[n]].shape) for n in names}
    outs = {n: (np.concatenate(parts[n]) if parts[n] else np.zeros((0, *shapes[n]), np.float32)) for n in names}
    return shards.encode_shard(ids, outs, skipped)


def check_batch_args(batch, shard_size, threads, actors):
    for name, v in (("--batch", batch), ("--shard-size", shard_size)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise NetDSLError(f"{name} must be a positive integer, got {v!r}",
                              hint=f"leave {name} out for its default, or give a count of inputs such as 32")
    for name, v in (("--threads", threads), ("--actors", actors)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise NetDSLError(f"{name} must be a positive integer, got {v!r}",
                              hint=f"leave {name} out for its default (see `netdsl batch --help`)")
