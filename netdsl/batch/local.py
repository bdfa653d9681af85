"""`--engine local`: the shards of a job on this machine's cores.

Two layouts, chosen by `actors` (docs/SCALE.md measures them):
- actors=1 (the default): this process runs the model on `threads` OpenMP threads (default
  all cores) while a small thread pool decodes images — the next shard's as well as the
  current one's, so the model seldom waits for Pillow (which releases the GIL while it
  decodes and resizes). Only for inputs of DECODE_THREADS_MIN_PIXELS or more: small images
  (LeNet's 32x32) decode in microseconds, and there the threads cost more in Python overhead
  and GIL traffic than they save (docs/SCALE.md measures both), so they are decoded inline;
- actors=K>1: K worker processes (spawned, not forked: the parent's OpenMP runtime must not
  be copied mid-flight), each loading the bundle once and running whole shards on `threads`
  threads (default cores // K), decoding inline. Each worker hands its encoded shard back and
  this process writes it, so a worker that dies loses only the shard it was running: the job
  stops with an error that says to rerun, and the rerun does only what is missing.

on_shard(k, data) receives every finished shard, in completion order.

Not here: retrying a dead worker's shard within the run (the rerun does it), pinning
workers to cores.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

from ..errors import NetDSLError
from . import run

MAX_DECODERS = 4
DECODE_THREADS_MIN_PIXELS = 64 * 64     # network input H x W from which decode threads pay


def default_decoders(source) -> int:
    """Decode threads for one process: none for arrays and small images (see the docstring)."""
    shape = source.decl.shape
    if source.kind != "files" or len(shape) != 3 or shape[1] * shape[2] < DECODE_THREADS_MIN_PIXELS:
        return 0
    return min(MAX_DECODERS, os.cpu_count() or 1)


def run_local(data: bytes, source, todo, batch, shard_size, on_shard, threads=None, actors=1, decoders=None):
    if not todo:
        return
    if actors and actors > 1:
        return _run_processes(data, source, todo, batch, shard_size, on_shard, threads, actors)
    model = run.model_from_bytes(data, threads)
    decoders = default_decoders(source) if decoders is None else decoders
    pool = ThreadPoolExecutor(decoders, thread_name_prefix="netdsl-decode") if decoders > 0 else None
    try:
        nxt = run.submit_loads(pool, source, todo[0], shard_size)
        for j, k in enumerate(todo):
            cur = nxt
            if j + 1 < len(todo):
                nxt = run.submit_loads(pool, source, todo[j + 1], shard_size)
            run.maybe_fault("local", k)
            on_shard(k, run.run_shard(model, source, k, batch, shard_size, cur))
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


# -- worker processes

_W = {}     # per worker process: the model and the job, set once by _init_worker


def _init_worker(data, source, batch, shard_size, threads, fault):
    _W.update(model=run.model_from_bytes(data, threads), source=source, batch=batch,
              shard_size=shard_size, fault=fault)


def _work(k):
    run.maybe_fault("worker", k, _W["fault"])
    return k, run.run_shard(_W["model"], _W["source"], k, _W["batch"], _W["shard_size"])


def _run_processes(data, source, todo, batch, shard_size, on_shard, threads, actors):
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool
    ncpu = os.cpu_count() or 1
    threads = threads or max(1, ncpu // actors)
    fault = os.environ.get(run.FAULT_ENV, "")
    ex = ProcessPoolExecutor(actors, mp_context=mp.get_context("spawn"), initializer=_init_worker,
                             initargs=(data, source, batch, shard_size, threads, fault))
    try:
        futs = [ex.submit(_work, k) for k in todo]
        for f in as_completed(futs):
            k, out = f.result()
            on_shard(k, out)
    except BrokenProcessPool:
        raise NetDSLError("a worker process died (killed, or out of memory) before the job finished",
                          hint="rerun the same command: the shards already written are kept and only the "
                               "rest is done; fewer --actors or a smaller --batch use less memory") from None
    finally:
        ex.shutdown(wait=True, cancel_futures=True)
