"""Lowering: an analyzed Graph -> a Plan for one batch size.

A Plan is the ordered kernel calls (one per non-view node), each with its C
params (from netdsl/runtime/kparams), the buffers it reads and writes, and
one activation arena in which every buffer has an offset. Views (Flatten,
Reshape, Dropout, Identity: ops flagged `no_op`) share their input's buffer
and cost nothing.

Memory: liveness over the plan order, then a greedy best-fit placement
(largest buffers first, each at the lowest offset that does not overlap a
placed buffer whose lifetime overlaps). Inputs are live from the start,
outputs to the end.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from math import prod

from .. import ops
from ..errors import NetDSLError
from .kparams import KernelCall, builder

INT64_MAX = 2**63 - 1
ALIGN = 16     # floats


@dataclass
class Buffer:
    id: int
    floats: int                 # size for the whole batch
    first: int = 0              # step index that writes it (-1: an input)
    last: int = 0               # last step index that reads it
    offset: int = -1            # in floats, inside the arena
    nodes: list = field(default_factory=list)


@dataclass
class Step:
    node: str
    op: str
    call: KernelCall
    ins: list                   # buffer ids
    out: int                    # buffer id


@dataclass
class Plan:
    n: int
    steps: list
    buffers: list
    node_buffer: dict           # node name -> buffer id
    inputs: dict                # input name -> buffer id
    outputs: dict               # output name -> node name
    arena_floats: int = 0
    ws_floats: int = 0

    @property
    def arena_bytes(self):
        return self.arena_floats * 4

    def naive_floats(self):
        return sum(b.floats for b in self.buffers)

    def lower_bound_floats(self):
        """The largest total of buffers live at the same time (no placement can beat it)."""
        best = 0
        for t in range(-1, len(self.steps)):
            best = max(best, sum(b.floats for b in self.buffers if b.first <= t <= b.last))
        return best


def _checked_prod(dims, what):
    n = 1
    for d in dims:
        if d <= 0:
            raise NetDSLError(f"{what}: size {d} is not positive")
        n *= int(d)
        if n > INT64_MAX // 8:
            raise NetDSLError(f"{what}: {' x '.join(map(str, dims))} elements overflow 64-bit sizes",
                              hint="use a smaller batch or input")
    return n


def lower(graph, n: int) -> Plan:
    """Lower an analyzed graph for batch size n."""
    if not isinstance(n, int) or n < 1:
        raise NetDSLError(f"batch size must be a positive integer, got {n!r}")
    buffers: list[Buffer] = []
    node_buffer: dict[str, int] = {}
    steps: list[Step] = []
    for node in graph.nodes():
        spec = ops.get(node.op)
        preds = graph.preds(node.name)
        if node.op == "Input":
            b = Buffer(len(buffers), _checked_prod((n, *node.shape), node.name), first=-1, last=-1)
            buffers.append(b)
            node_buffer[node.name] = b.id
            b.nodes.append(node.name)
            continue
        if "no_op" in spec.flags:
            bid = node_buffer[preds[0]]
            node_buffer[node.name] = bid
            buffers[bid].nodes.append(node.name)
            continue
        fn = builder(node.op)
        if fn is None:
            raise NetDSLError(f"no C kernel for {node.op} (layer {node.name})", node.span,
                              "this op runs only in the numpy reference executor for now")
        in_shapes = [graph[p].shape for p in preds]
        for s in in_shapes + [node.shape]:
            _checked_prod((n, *s), node.name)
        call = fn(node.attrs, in_shapes, node.shape, n)
        b = Buffer(len(buffers), _checked_prod((n, *node.shape), node.name), first=len(steps))
        buffers.append(b)
        b.nodes.append(node.name)
        node_buffer[node.name] = b.id
        ins = [node_buffer[p] for p in preds]
        steps.append(Step(node.name, node.op, call, ins, b.id))
    for i, st in enumerate(steps):
        for bid in st.ins:
            buffers[bid].last = max(buffers[bid].last, i)
    end = len(steps)
    for out_node in graph.outputs.values():
        buffers[node_buffer[out_node]].last = end
    for b in buffers:
        b.last = max(b.last, b.first)
    plan = Plan(n, steps, buffers, node_buffer, {name: node_buffer[name] for name in graph.inputs},
                dict(graph.outputs))
    plan.arena_floats = place(buffers)
    plan.ws_floats = max([s.call.ws_floats for s in steps] + [0])
    return plan


def place(buffers) -> int:
    """Greedy best-fit placement by size; returns the arena size in floats."""
    placed: list[Buffer] = []
    for b in buffers:            # 64-byte aligned slots for the vector kernels
        b.floats = -(-b.floats // ALIGN) * ALIGN
    for b in sorted(buffers, key=lambda b: (-b.floats, b.first)):
        live = sorted((p for p in placed if p.first <= b.last and b.first <= p.last), key=lambda p: p.offset)
        best, best_gap, cursor = None, None, 0
        for p in live:
            gap = p.offset - cursor
            if gap >= b.floats and (best_gap is None or gap < best_gap):
                best, best_gap = cursor, gap
            cursor = max(cursor, p.offset + p.floats)
        b.offset = best if best is not None else cursor
        placed.append(b)
    return max((b.offset + b.floats for b in buffers), default=0)
