"""Session: runs an analyzed graph with the C kernels.

One Program (lowered plan + checked C records, with its prepacked weights)
is built per batch size and cached; only the CACHED_BATCHES most recently
used batch sizes are kept (a caller cycling through batch sizes 1..64 would
otherwise keep every plan, packed weight copy and arena alive). Concurrency:
the Program is shared and read-only; every calling thread gets its own arena
and workspace (thread-local, also cached for CACHED_BATCHES batch sizes), so
several Python threads may call one model at once without a lock. The C call
releases the GIL (cffi does), so those calls run in parallel.

Threads: a plan whose whole work (MACs plus output elements, all images) is
under SERIAL_WORK runs on the calling thread whatever `threads` says
(plan_threads): a parallel region costs more than such a plan can gain, and on
a shared machine much more. The decision is made once per program.

The call path is kept short: each thread's arena comes with its C call's
arguments prebuilt (executor.Bound) and numpy views of the inputs and outputs,
so a call copies the inputs in, makes one C call and copies the outputs out.

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
_F32 = np.dtype(np.float32)
SERIAL_WORK = 10_000_000   # MACs + output elements of a whole plan below which it runs on 1 thread
# (LeNet-5 b8, ~3.4M: 0.56 ms on 1 thread, 1.01 ms on 2; AlexNet b1 is ~700M)


def plan_work(graph, plan, n: int) -> int:
    """The work of a plan at batch n: every step's MACs plus its output elements."""
    total = 0
    for st in plan.steps:
        node = graph[st.node]
        total += (getattr(node, "macs", 0) or 0) + prod(node.shape)
    return total * n


def plan_threads(work: int, threads: int | None) -> int:
    """The thread count a plan run asks for: 1 below SERIAL_WORK (the whole plan on the
    calling thread), else `threads` (None or 0: OpenMP's default, 0 to the C side)."""
    if work < SERIAL_WORK:
        return 1
    return int(threads) if threads else 0


class _Runner:
    """One thread's arena for one program, with everything a call needs prebuilt."""

    __slots__ = ("prog", "arena", "ws", "bound", "inputs", "outputs")

    def __init__(self, graph, plan, prog, n):
        self.prog = prog
        self.arena = prog.new_arena()
        self.ws = prog.new_ws() if prog.ws_floats else None
        self.bound = prog.bind(self.arena, self.ws)
        self.inputs = {name: self._view(plan, graph, name, n) for name in graph.inputs}
        self.outputs = [(oname, self._view(plan, graph, node, n)) for oname, node in plan.outputs.items()]

    def _view(self, plan, graph, node, n):
        shape = (n, *graph[node].shape)
        off = plan.offset(node)
        return self.arena[off:off + prod(shape)].reshape(shape)


class Session:
    def __init__(self, graph, weights: dict, threads: int | None = None):
        self.graph = graph
        self.weights = weights
        self.threads = threads
        self._programs: OrderedDict[int, tuple] = OrderedDict()
        self._build_lock = threading.Lock()
        self._local = threading.local()
        self._last = (None, None)       # (batch, (plan, Program)) of the latest program() call

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
        last = self._last               # the most recent batch is already last in the LRU order
        if last[0] == n:
            return last[1]
        with self._build_lock:
            prog = self._programs.get(n)
            if prog is None:
                prog = self._programs[n] = self._build(n)
            self._programs.move_to_end(n)
            while len(self._programs) > CACHED_BATCHES:
                self._programs.popitem(last=False)
            self._last = (n, prog)
        return prog

    def cached_batches(self) -> tuple:
        """Batch sizes whose programs are cached, and those of this thread's arenas (tests, debugging)."""
        with self._build_lock:
            progs = list(self._programs)
        return progs, list(getattr(self._local, "arenas", {}) or {})

    def _lower(self, n, not_in_place=frozenset()):
        """The plan for batch n (a subclass may change its kernel calls: netdsl/quant)."""
        return lower(self.graph, n, not_in_place=not_in_place)

    def _build(self, n):
        plan = self._lower(n)
        check_plan_fits(self.graph, plan, self.weights)      # before the packed weights and the arena
        size = {name: n * prod(self.graph[name].shape) for name in plan.where}
        steps = []
        for st in plan.steps:
            w, bias = self._node_weights(st.node, st.call)
            steps.append(Step(st.call, plan.offset(st.out), [plan.offset(i) for i in st.ins], w, bias, 0,
                              size[st.out], [size[i] for i in st.ins], st.node,
                              span=self.graph[st.node].span))
        prog = Program(steps, plan.arena_floats)
        prog.work = plan_work(self.graph, plan, n)
        return plan, prog

    # -- running
    def _runner(self, n, plan, prog) -> _Runner:
        local = self._local
        last = getattr(local, "last", None)     # this thread's latest runner: already last in its LRU
        if last is not None and last.prog is prog:
            return last
        cache = getattr(local, "arenas", None)
        if cache is None:
            cache = self._local.arenas = OrderedDict()
        got = cache.get(n)
        if got is None or got.prog is not prog:        # new, or its program was evicted and rebuilt
            cache.pop(n, None)
            while len(cache) >= CACHED_BATCHES:       # free before allocating the new one
                cache.popitem(last=False)
            got = cache[n] = _Runner(self.graph, plan, prog, n)
        cache.move_to_end(n)
        local.last = got
        return got

    def threads_for(self, n: int) -> int:
        """The thread count a run at batch n asks the C side for (0: OpenMP's default)."""
        return plan_threads(self.program(n)[1].work, self.threads)

    def run(self, inputs: dict) -> dict:
        n = next(iter(inputs.values())).shape[0]
        plan, prog = self.program(n)
        r = self._runner(n, plan, prog)
        for name, x in inputs.items():
            view = r.inputs[name]
            if x.shape == view.shape:
                view[...] = x
            else:                                   # a caller's own layout: same size, flat copy
                view.reshape(-1)[...] = x.reshape(-1)
        r.bound.run(plan_threads(prog.work, self.threads))   # PlanError / KernelError: located NetDSLErrors
        return {oname: view.copy() for oname, view in r.outputs}


def prepare_inputs(graph, x, before_convert=None) -> dict:
    """Validate and convert user inputs to C-contiguous float32 [N, *shape] arrays.
    before_convert(n, nbytes), when given, is called after validation and before any copy
    (nbytes: what the conversions will allocate), so a caller can refuse a batch that
    cannot fit before it is materialized."""
    if type(x) is np.ndarray and x.dtype is _F32 and x.flags.c_contiguous and len(graph.inputs) == 1:
        # the common call, already right: no conversion, no copy (same checks as below)
        name = graph.inputs[0]
        shape = graph[name].shape
        if x.ndim == len(shape) + 1 and x.shape[1:] == tuple(shape) and x.shape[0] >= 1:
            if before_convert is not None:
                before_convert(x.shape[0], 0)
            return {name: x}
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
