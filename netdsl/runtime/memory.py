"""Memory limits: will this network fit in this machine, checked before allocating.

    from netdsl.runtime.memory import available_memory, check_fits
    available_memory()              # (bytes, where the number came from) or (None, why not)
    check_fits(graph, n)            # NetDSLError when weights + arena for batch n do not fit

What is counted: the float32 weights (parameters and buffers, `totals()`), the
activation arena the planner gives for batch n (`lower(..., kernels=False)`:
no C, no allocation), and any extra bytes the caller is about to allocate
(the input of `netdsl run`). What is compared with: NETDSL_MEMORY_LIMIT
(bytes; tests and containers set it) or else the kernel's MemAvailable
(/proc/meminfo), or else free physical pages (os.sysconf). The check is a
guard against asking for the impossible, not an exact account: kernel
workspaces and Python's own objects are small next to these and not counted.

A failure names both numbers, the largest layer (with its source line, the
error's span) and what to do.
"""
from __future__ import annotations

import os
from math import prod

from ..errors import Diagnostic, NetDSLError

ENV = "NETDSL_MEMORY_LIMIT"
BYTES = 4   # float32


def size_text(b: int) -> str:
    """Bytes as B / KiB / MiB / GiB / TiB with three significant digits."""
    b = float(b)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if b < 1024 or unit == "TiB":
            return f"{int(b)} B" if unit == "B" else f"{b:.3g} {unit}"
        b /= 1024
    return f"{b:.3g} TiB"   # pragma: no cover


def available_memory() -> tuple:
    """(bytes, source) of memory a new allocation can use, or (None, reason) when unknown."""
    v = os.environ.get(ENV)
    if v not in (None, ""):
        try:
            n = int(v.strip().replace("_", ""))
            if n < 0:
                raise ValueError
        except ValueError:
            raise NetDSLError(f"{ENV}={v!r} is not a number of bytes",
                              hint=f"set {ENV} to a whole number of bytes (e.g. {ENV}=8000000000), or unset it")
        return n, ENV
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024, "MemAvailable"
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"), "free physical memory"
    except (ValueError, OSError, AttributeError):
        return None, "unknown on this system"


def weight_bytes(graph) -> int:
    """Parameters and buffers in float32: the analysis's own total."""
    from ..analysis.infer import totals
    return totals(graph)["weight_bytes"]


def _largest_weights(graph):
    best, size = None, -1
    for nd in graph.nodes():
        b = sum(prod(s) for s in list(nd.params.values()) + list(nd.buffers.values())) * BYTES
        if b > size:
            best, size = nd, b
    return best, size


def _largest_output(graph, n):
    best, size = None, -1
    for nd in graph.nodes():
        if nd.shape is None:
            continue
        b = n * prod(nd.shape) * BYTES
        if b > size:
            best, size = nd, b
    return best, size


def _where(nd) -> str:
    if nd.span is None:
        return f"{nd.name} ({nd.op})"
    return f"{nd.name} ({nd.op}, {os.path.basename(nd.span.source.name)} line {nd.span.line})"


def _refuse(what, need_parts, avail, source, nd, nd_bytes, nd_what, hint):
    need = sum(b for _, b in need_parts)
    parts = " + ".join(f"{k} {size_text(b)}" for k, b in need_parts if b)
    src = source
    msg = (f"{what} needs {size_text(need)} ({parts}) but only {size_text(avail)} of memory "
           f"is available ({src})")
    notes = [f"the largest layer is {_where(nd)}: {nd_what} {size_text(nd_bytes)}"] if nd is not None else []
    return NetDSLError(Diagnostic(msg, nd.span if nd is not None else None, hint, notes))


def _hint(n, nd_bytes, avail) -> str:
    if nd_bytes > avail:        # one layer alone is too large
        what = "fewer channels or a smaller input size" if n == 1 else \
            "a smaller batch (--batch), fewer channels or a smaller input size"
        return f"that layer alone does not fit: use {what}; {ENV}=BYTES overrides the memory limit"
    return f"use a smaller batch (--batch) or a smaller input size; {ENV}=BYTES overrides the memory limit"


def check_weights_fit(graph) -> None:
    """Before initializing weights: refuse when they alone cannot fit."""
    avail, source = available_memory()
    if avail is None:
        return
    wb = weight_bytes(graph)
    if wb > avail:
        nd, b = _largest_weights(graph)
        raise _refuse("initializing this network's weights", [("weights", wb)], avail, source, nd, b,
                      "its weights are", "use fewer channels or smaller layers; "
                      f"{ENV}=BYTES overrides the memory limit")


def arena_bytes(graph, n: int) -> int:
    """The planner's arena for batch n (memory plan only: no C, nothing allocated)."""
    from .plan import lower
    return lower(graph, n, kernels=False).arena_bytes


def check_fits(graph, n: int, weights_allocated: bool = False, extra: int = 0, extra_what: str = "input",
               arena: int | None = None) -> None:
    """Before the first run at batch n: weights (unless already allocated) + arena + extra must fit.
    `arena`: the arena bytes when the caller has them (see arena_bytes)."""
    avail, source = available_memory()
    if avail is None:
        return
    wb = 0 if weights_allocated else weight_bytes(graph)
    arena = arena_bytes(graph, n) if arena is None else arena
    parts = [("weights", wb), (f"arena for batch {n}", arena), (extra_what, extra)]
    if sum(b for _, b in parts) > avail:
        nd, b = _largest_output(graph, n)
        raise _refuse(f"running this network at batch {n}", parts, avail, source, nd, b,
                      f"its output for batch {n} is", _hint(n, b, avail))


def check_plan_fits(graph, plan, weights: dict) -> None:
    """Before building a Program (packed weight copies) and its arena for a lowered plan."""
    avail, source = available_memory()
    if avail is None:
        return
    wb = sum(getattr(a, "nbytes", 0) for a in weights.values())
    parts = [(f"arena for batch {plan.n}", plan.arena_bytes), ("packed weights", wb)]
    if sum(b for _, b in parts) > avail:
        nd, b = _largest_output(graph, plan.n)
        raise _refuse(f"running this network at batch {plan.n}", parts, avail, source, nd, b,
                      f"its output for batch {plan.n} is", _hint(plan.n, b, avail))
