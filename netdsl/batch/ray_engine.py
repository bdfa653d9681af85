"""`--engine ray`: the shards of a job on a Ray cluster, through Ray Data.

    ray.data.from_items([{"shard": k} for k in todo])
       .map_batches(ShardActor, batch_size=1, compute=ActorPoolStrategy(size=K), num_cpus=T, max_restarts=...)
       .iter_rows()  ->  on_shard(k, data) in the driver, which writes the shard file

Each of the K actors gets the compiled bundle bytes (one object in the object store) and the
Source once, in its constructor, loads the model once and runs one shard per call on T
threads. Actors read the inputs themselves, so on a multi-node cluster the input paths must
be the same on every node (a shared filesystem); the shards come back to the driver, which
alone writes the work folder and the output, so those need not be shared.

A dead actor (killed, out of memory, a node lost) is restarted and its shard retried by Ray
(MAX_RESTARTS, MAX_TASK_RETRIES); a shard that Ray hands back twice is written once (the
driver keys by shard number), and one that never comes back leaves the job unfinished: the
error says so and a rerun does only what is missing.

Connecting: `address` None starts a local Ray instance for the job (and stops it after) unless
one is already initialized in this process (then it is used and left running); "auto" joins
the cluster this machine is part of; "ray://host:port" connects a Ray Client, "host:port" the
cluster's GCS. A host:port is first tried with a plain TCP connection of CONNECT_TIMEOUT_S, so
an unreachable cluster is a quick NetDSLError, not a long retry loop.

Not here: shipping the input files to the cluster, GPUs, autoscaling the actor pool (it has
the fixed size that fits the cluster when the job starts).
"""
from __future__ import annotations

import logging
import os
import socket
import sys
import warnings

import numpy as np

from ..errors import NetDSLError
from . import run

MAX_RESTARTS = 3            # per actor
MAX_TASK_RETRIES = 3        # per shard, after its actor died
CONNECT_TIMEOUT_S = 5.0


def _ray():
    try:
        import ray
        import ray.data  # noqa: F401
        return ray
    except ImportError:
        raise NetDSLError("--engine ray needs Ray Data",
                          hint='pip install "netdsl[ray]"  (or pip install "ray[data]"); --engine local runs without it'
                          ) from None


def _reachable(address: str):
    """Raise NetDSLError unless host:port (of a ray:// or GCS address) accepts a TCP connection."""
    hostport = address[len("ray://"):] if address.startswith("ray://") else address
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        raise NetDSLError(f"--address {address}: expected auto, ray://HOST:PORT or HOST:PORT",
                          hint="the Ray Client port is 10001 by default (ray://head-node:10001)")
    host = host.strip("[]")
    try:
        with socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as e:
        why = "timed out" if isinstance(e, socket.timeout) else (e.strerror or str(e))
        raise NetDSLError(f"cannot reach the Ray cluster at {address}: {why}",
                          hint="is the cluster up (`ray status` on its head node) and the port open from here? "
                               "ray:// needs the head's Ray Client server (port 10001 by default)") from None


def connect(ray, address, num_cpus=None) -> bool:
    """Initialize Ray for the job; True when this call started it (and so must stop it)."""
    if ray.is_initialized():
        return False
    kw = dict(log_to_driver=False, include_dashboard=False, configure_logging=True, logging_level="ERROR")
    if address not in (None, "", "local"):
        if address != "auto":
            _reachable(address)
            # a port that answers but is not Ray's: no screen of C++ retry warnings while Ray gives up
            os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "error")
        if address.startswith("ray://"):
            try:
                import grpc  # noqa: F401  (the Ray Client's transport, not in ray[data])
            except ImportError:
                raise NetDSLError(f"--address {address} needs the Ray Client, which is not installed",
                                  hint='pip install "ray[client]"; or run netdsl on a node of the cluster with '
                                       "--address auto") from None
        try:
            if address.startswith("ray://"):
                ray.init(address=address)       # a Ray Client passes other keywords on to the server
            else:
                ray.init(address=address, **{k: v for k, v in kw.items() if k != "include_dashboard"})
        except (ConnectionError, RuntimeError, ValueError, OSError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise NetDSLError(f"cannot connect to the Ray cluster at {address}: {first}",
                              hint="`--address auto` joins the cluster this machine belongs to (started with "
                                   "`ray start`); leave --address out to run on a Ray instance started for "
                                   "the job") from None
        return True
    ray.init(num_cpus=num_cpus, **kw)
    return True


def node_cpus(ray) -> list:
    """The CPUs of each live node of the cluster."""
    try:
        return [int(n.get("Resources", {}).get("CPU", 0)) for n in ray.nodes() if n.get("Alive")]
    except Exception:           # a client that cannot list nodes: the cluster total as one node
        return [int(ray.cluster_resources().get("CPU", 1))]


def _fit_actors(ray, threads, actors):
    """The actors to start: `actors`, or as many of `threads` CPUs as the nodes hold, checked
    against the nodes (an actor needs its CPUs on one node, or Ray waits for it forever)."""
    per_node = node_cpus(ray) or [0]
    fits = sum(c // threads for c in per_node)
    if fits == 0:
        raise NetDSLError(f"--threads {threads}: no node of the Ray cluster has {threads} CPUs "
                          f"(the largest has {max(per_node)})",
                          hint=f"each actor asks Ray for --threads CPUs on one node; use at most {max(per_node)}")
    if actors is None:
        return fits
    if actors > fits:
        sys.stderr.write(f"note: the Ray cluster holds {fits} actors of {threads} CPU{'s' if threads > 1 else ''}; "
                         f"running {fits}, not {actors}\n")
        return fits
    return actors


class ShardActor:
    """One Ray Data actor: the model loaded once, one shard per call."""

    def __init__(self, model_ref, source_ref, batch, shard_size, threads, fault):
        import ray
        self.model = run.model_from_bytes(ray.get(model_ref[0]), threads)
        self.source = ray.get(source_ref[0])
        self.batch, self.shard_size, self.fault = batch, shard_size, fault

    def __call__(self, rows):
        ks = [int(k) for k in rows["shard"]]
        out = []
        for k in ks:
            run.maybe_fault("ray", k, self.fault)
            out.append(run.run_shard(self.model, self.source, k, self.batch, self.shard_size))
        return {"shard": np.array(ks, np.int64), "data": np.array(out, dtype=object)}


def run_ray(data: bytes, source, todo, batch, shard_size, on_shard, threads=None, actors=None, address=None):
    ray = _ray()
    started = connect(ray, address)
    quiet = _Quiet(ray)
    try:
        threads = threads or 1
        actors = _fit_actors(ray, threads, actors)
        actors = min(actors, len(todo))
        if not todo:
            return
        model_ref, source_ref = ray.put(data), ray.put(source)
        ds = ray.data.from_items([{"shard": k} for k in todo], override_num_blocks=len(todo))
        with warnings.catch_warnings():
            # Ray 2.5x deprecates passing remote args (max_restarts, ...) to map_batches in favour of
            # its own defaults, which retry forever; a shard that kills every actor must stop the job
            warnings.simplefilter("ignore", DeprecationWarning)
            ds = ds.map_batches(ShardActor, batch_size=1, batch_format="numpy",
                                compute=ray.data.ActorPoolStrategy(size=actors), num_cpus=threads,
                                fn_constructor_kwargs=dict(model_ref=[model_ref], source_ref=[source_ref],
                                                           batch=batch, shard_size=shard_size, threads=threads,
                                                           fault=os.environ.get(run.FAULT_ENV, "")),
                                max_restarts=MAX_RESTARTS, max_task_retries=MAX_TASK_RETRIES)
        try:
            for row in ds.iter_rows():
                on_shard(int(row["shard"]), bytes(row["data"]))
        except NetDSLError:
            raise
        except Exception as e:      # a task failed past its retries, the cluster went away, ...
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise NetDSLError(f"the Ray job failed: {type(e).__name__}: {first[:300]}",
                              hint="rerun the same command: the shards already written are kept and only "
                                   "the rest is done") from None
    finally:
        quiet.restore()
        if started:
            ray.shutdown()


class _Quiet:
    """Ray Data's progress bars and INFO/WARNING chatter (deprecations, "execution finished
    in ...") off while the job runs — netdsl prints its own bar and summary — and back as
    they were after it, for a caller's own Ray session."""

    SETTINGS = {"enable_progress_bars": False, "print_on_execution_start": False}

    def __init__(self, ray):
        self.levels, self.settings = {}, {}
        for name in ("ray.data", "ray"):
            lg = logging.getLogger(name)
            self.levels[name] = lg.level
            lg.setLevel(logging.ERROR)      # before touching the context: it warns about the bars
        self.ctx = ray.data.DataContext.get_current()
        for key, value in self.SETTINGS.items():
            if hasattr(self.ctx, key):
                self.settings[key] = getattr(self.ctx, key)
                setattr(self.ctx, key, value)

    def restore(self):
        for key, value in self.settings.items():
            setattr(self.ctx, key, value)
        for name, level in self.levels.items():
            logging.getLogger(name).setLevel(level)
