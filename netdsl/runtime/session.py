"""Session: runs an analyzed graph with the C kernels.

One Program (lowered plan + checked C records, with its prepacked weights)
is built per batch size and cached; only the CACHED_BATCHES most recently
used batch sizes are kept (a caller cycling through batch sizes 1..64 would
otherwise keep every plan, packed weight copy and arena alive). Concurrency:
the Program is shared and read-only; every calling thread gets its own arena
and workspace (thread-local, also cached for CACHED_BATCHES batch sizes), so
several Python threads may call one model at once without a lock. The C call
releases the GIL (cffi does), so those calls run in parallel.

Memory is checked before anything is allocated (netdsl/runtime/memory.py):
a batch whose arena and weights do not fit in the machine's memory is a
NetDSLError naming both numbers and the largest layer.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from math import prod

import numpy as np

from ..errors import NetDSLError
from . import lib
from .executor import Program, Step
from .memory import check_plan_fits
from .plan import lower

CACHED_BATCHES = 4      # batch sizes whose programs and arenas stay cached (least recently used go)


class Session:
    def __init__(self, graph, weights: dict, threads: int | None = None):
        self.graph = graph
        self.weights = weights
        self.threads = threads
        self._programs: OrderedDict[int, tuple] = OrderedDict()
        self._build_lock = threading.Lock()
        self._local = threading.local()

    # -- building
    def _node_weights(self, node_name, call):
        node = self.graph[node_name]
        names = list(node.params) + list(node.buffers)
        params = {p: self.weights[f"{node_name}.{p}"] for p in names}
        prep = call.extra.get("prepare_weights")
        if prep is not None:
            return prep(params)
        wname, bname = (tuple(call.weights) + (None, None))[:2]
        return params.get(wname) if wname else None, params.get(bname) if bname else None

    def program(self, n: int):
        """(plan, Program) for batch n, built on first use; keeps the CACHED_BATCHES most recent."""
        with self._build_lock:
            prog = self._programs.get(n)
            if prog is None:
                prog = self._programs[n] = self._build(n)
            self._programs.move_to_end(n)
            while len(self._programs) > CACHED_BATCHES:
                self._programs.popitem(last=False)
        return prog

    def cached_batches(self) -> tuple:
        """Batch sizes whose programs are cached, and those of this thread's arenas (tests, debugging)."""
        with self._build_lock:
            progs = list(self._programs)
        return progs, list(getattr(self._local, "arenas", {}) or {})

    def _build(self, n):
        plan = lower(self.graph, n)
        check_plan_fits(self.graph, plan, self.weights)      # before the packed weights and the arena
        size = {name: n * prod(self.graph[name].shape) for name in plan.where}
        steps = []
        for st in plan.steps:
            w, bias = self._node_weights(st.node, st.call)
            steps.append(Step(st.call, plan.offset(st.out), [plan.offset(i) for i in st.ins], w, bias, 0,
                              size[st.out], [size[i] for i in st.ins], st.node,
                              span=self.graph[st.node].span))
        return plan, Program(steps, plan.arena_floats)

    # -- running
    def _arena(self, n, prog):
        cache = getattr(self._local, "arenas", None)
        if cache is None:
            cache = self._local.arenas = OrderedDict()
        got = cache.get(n)
        if got is None or got[0] is not prog:          # new, or its program was evicted and rebuilt
            cache.pop(n, None)
            while len(cache) >= CACHED_BATCHES:       # free before allocating the new one
                cache.popitem(last=False)
            got = cache[n] = (prog, prog.new_arena(), prog.new_ws() if prog.ws_floats else None)
        cache.move_to_end(n)
        return got[1], got[2]

    def run(self, inputs: dict) -> dict:
        n = next(iter(inputs.values())).shape[0]
        plan, prog = self.program(n)
        arena, ws = self._arena(n, prog)
        for name, x in inputs.items():
            off = plan.offset(name)
            arena[off:off + x.size] = x.reshape(-1)
        threads = self.threads if self.threads else lib.max_threads()
        prog.run(arena, ws, threads)        # PlanError / KernelError are located NetDSLErrors
        out = {}
        for oname, node in plan.outputs.items():
            off = plan.offset(node)
            shape = (n, *self.graph[node].shape)
            out[oname] = arena[off:off + prod(shape)].reshape(shape).copy()
        return out


def prepare_inputs(graph, x, before_convert=None) -> dict:
    """Validate and convert user inputs to C-contiguous float32 [N, *shape] arrays.
    before_convert(n, nbytes), when given, is called after validation and before any copy
    (nbytes: what the conversions will allocate), so a caller can refuse a batch that
    cannot fit before it is materialized."""
    if not isinstance(x, dict):
        if len(graph.inputs) != 1:
            raise NetDSLError(f"this network has inputs {', '.join(graph.inputs)}: pass a dict "
                              f"{{name: array}}")
        x = {graph.inputs[0]: x}
    unknown = [k for k in x if k not in graph.inputs]
    if unknown:
        raise NetDSLError(f"unknown input {unknown[0]!r}; the network's inputs are {', '.join(graph.inputs)}")
    missing = [k for k in graph.inputs if k not in x]
    if missing:
        raise NetDSLError(f"missing input {missing[0]!r}")
    out, n0 = {}, None
    for name in graph.inputs:
        a = x[name]
        shape = tuple(graph[name].shape)
        want = f"[N, {', '.join(map(str, shape))}]"
        try:
            a = np.asarray(a)
        except Exception as e:  # noqa: BLE001
            raise NetDSLError(f"input {name!r} is not an array ({type(a).__name__}): {e}") from None
        if a.dtype.kind not in "fiu":
            raise NetDSLError(f"input {name!r} has dtype {a.dtype}; expected float32 numbers",
                              hint="convert it with x.astype(np.float32)")
        if a.ndim == len(shape) and a.shape == shape:
            raise NetDSLError(f"input {name!r} has shape {list(a.shape)} but needs a batch dimension: {want}",
                              hint="add one with x[None] (a batch of 1)")
        if a.ndim != len(shape) + 1 or tuple(a.shape[1:]) != shape:
            raise NetDSLError(f"input {name!r} has shape {list(a.shape)}; the network expects {want}",
                              graph[name].span, f"the file declares `input {name}: {'x'.join(map(str, shape))}`")
        if a.shape[0] < 1:
            raise NetDSLError(f"input {name!r} has an empty batch")
        if n0 is not None and a.shape[0] != n0:
            raise NetDSLError("all inputs must have the same batch size")
        n0 = a.shape[0]
        out[name] = a
    if before_convert is not None:
        copies = sum(a.size * 4 for a in out.values()
                     if a.dtype != np.float32 or not a.flags.c_contiguous)
        before_convert(n0, copies)
    return {k: np.ascontiguousarray(a, dtype=np.float32) for k, a in out.items()}
