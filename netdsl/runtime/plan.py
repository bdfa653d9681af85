"""Lowering and memory planning: an analyzed Graph -> a Plan for one batch size.

A Plan is the ordered kernel calls (one per node that computes something),
each with its C params (netdsl/runtime/kparams), the tensors it reads and
writes, and one activation arena in which every tensor has an offset.

Tensors and buffers. Every node output is a tensor; a tensor lives in a
*root buffer* at some offset. Usually each tensor is its own root, but:
- views (ops flagged `no_op`: Flatten, Reshape, Dropout, Identity) are
  their input's tensor: no copy, no kernel;
- in place: an op flagged `inplace_ok` (activations, BatchNorm, Add, Mul)
  writes over its first input, a residual Conv over its residual r
  (OpSpec.overwrites), when that input has the output's size and
  dies at this step, is not a graph input or output, and is not part
  of a concat buffer;
- concat elision (batch 1 only, channel concat only, where slices are contiguous): when
  every input of a Concat is computed by a kernel here, used by this concat
  once, and not already placed in another concat, the producers write
  straight into their slices of the concat's buffer and the Concat step
  disappears. Chained concats (DenseNet) nest: a dense block is one buffer.

Placement: liveness over the plan order (a root is live from its first
write to its last read; inputs from the start, outputs to the end), then a
greedy best-fit by size. `lower_bound` is the largest total of roots live
at one time: no placement of these buffers can use less.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

from .. import ops
from ..errors import NetDSLError

INT64_MAX = 2**63 - 1
ALIGN = 16     # floats: 64-byte aligned roots for the vector kernels


@dataclass
class Buffer:
    """A root buffer: one region of the arena."""
    id: int
    floats: int                 # size for the whole batch (aligned)
    first: int = 0              # step that first writes it (-1: an input)
    last: int = 0               # last step that reads it
    offset: int = -1            # in floats, inside the arena
    nodes: list = field(default_factory=list)


@dataclass
class Step:
    node: str
    op: str
    call: object                # kparams.KernelCall (None in memory-only plans)
    ins: list                   # node names of the inputs
    out: str                    # node name of the output


@dataclass
class Plan:
    n: int
    steps: list
    buffers: list
    where: dict                 # node name -> (buffer id, offset inside it in floats)
    inputs: list
    outputs: dict               # output name -> node name
    arena_floats: int = 0
    elided: list = field(default_factory=list)     # (concat node, producers) whose copy was removed
    inplace: list = field(default_factory=list)    # (node, input) that write over their input
    naive: int = 0

    def offset(self, node):
        bid, off = self.where[node]
        return self.buffers[bid].offset + off

    @property
    def arena_bytes(self):
        return self.arena_floats * 4

    @property
    def naive_bytes(self):
        """One buffer per computed tensor, nothing shared."""
        return self.naive * 4

    @property
    def lower_bound_bytes(self):
        """The largest total of buffers live at one step (a sweep over lifetime ends)."""
        delta: dict[int, int] = {}
        for b in self.buffers:
            delta[b.first] = delta.get(b.first, 0) + b.floats
            delta[b.last + 1] = delta.get(b.last + 1, 0) - b.floats
        best = live = 0
        for t in sorted(delta):
            live += delta[t]
            best = max(best, live)
        return best * 4

    def memory(self) -> dict:
        return {"arena_bytes": self.arena_bytes, "naive_bytes": self.naive_bytes,
                "lower_bound_bytes": self.lower_bound_bytes}


def checked_prod(dims, what, span=None):
    n = 1
    for d in dims:
        if d <= 0:
            raise NetDSLError(f"{what}: size {d} is not positive", span)
        n *= int(d)
        if n > INT64_MAX // 16:
            raise NetDSLError(f"{what}: {' x '.join(map(str, dims))} elements overflow 64-bit sizes",
                              span, hint="use a smaller batch or input")
    return n


def _aligned(f):
    return -(-f // ALIGN) * ALIGN


def lower(graph, n: int, kernels: bool = True, elide_concat: bool = True, inplace: bool = True,
          not_in_place=frozenset()) -> Plan:
    """Lower an analyzed graph for batch size n. kernels=False plans memory only
    (no C extension needed: what `netdsl summary` uses). not_in_place: nodes whose kernels
    will be other than the float ones (netdsl/quant) and never write over an input."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise NetDSLError(f"batch size must be a positive integer, got {n!r}")
    from .executor import PlanError
    from .kparams import builder
    nodes = graph.nodes()
    size = {nd.name: checked_prod((n, *nd.shape), nd.name, nd.span) for nd in nodes}
    outputs = set(graph.outputs.values())

    # 1. which nodes run a kernel, which are views
    view_of: dict[str, str] = {}
    computed = []
    for nd in nodes:
        spec = ops.get(nd.op)
        if nd.op == "Input":
            continue
        if "no_op" in spec.flags:
            view_of[nd.name] = graph.preds(nd.name)[0]
        else:
            computed.append(nd.name)

    def real(name):
        while name in view_of:
            name = view_of[name]
        return name

    # 2. concat elision (batch 1): producer -> (concat, offset in floats)
    parent: dict[str, tuple] = {}
    elided = []
    if elide_concat and n == 1:
        for nd in reversed(nodes):
            if nd.op != "Concat" or nd.attrs.get("axis", 1) != 1:
                continue           # off the channel axis the inputs' slices interleave: no elision
            preds = graph.preds(nd.name)
            ok = len(set(preds)) == len(preds)
            for p in preds:
                if p in view_of or graph[p].op == "Input" or p in parent or p not in computed:
                    ok = False
            if not ok or nd.name in view_of:
                continue
            off = 0
            for p in preds:
                parent[p] = (nd.name, off)
                off += size[p]
            elided.append((nd.name, preds))
    elided.reverse()                       # source order for reports
    elided_set = {c for c, _ in elided}

    # 3. steps, and last uses (by step index) of each real tensor
    steps = []
    for name in computed:
        if name in elided_set:
            continue
        steps.append(Step(name, graph[name].op, None, [real(p) for p in graph.preds(name)], name))
    step_of = {s.node: i for i, s in enumerate(steps)}
    last_use: dict[str, int] = {}
    for i, s in enumerate(steps):
        for p in s.ins:
            last_use[p] = i
    # a read of an elided concat is a read of its slices' buffer: resolved through roots below

    # 4. roots: union-find over tensors (in place and concat slices share a root)
    root_of: dict[str, tuple] = {}     # tensor -> (root tensor, offset)

    def find(t):
        off = 0
        while t in root_of:
            t, o = root_of[t]
            off += o
        return t, off

    for child, (par, off) in parent.items():
        root_of[child] = (par, off)
    concat_roots = {find(p)[0] for p in parent}
    inplace_pairs = []
    if inplace:
        for i, s in enumerate(steps):
            nd = graph[s.node]
            spec = ops.get(nd.op)
            k = spec.overwrites(nd.attrs, [graph[p].shape for p in graph.preds(s.node)]) \
                if s.ins else None                 # the op's own declaration (OpSpec), never its name
            if k is None or k >= len(s.ins) or s.node in parent or s.node in concat_roots or \
                    s.node in not_in_place:
                continue
            src = s.ins[k]
            if size[src] != size[s.node] or graph[src].op == "Input" or src in outputs or \
                    any(v in outputs for v in view_of if real(v) == src) or \
                    s.ins.count(src) > 1 or last_use.get(src) != i or find(src)[0] in concat_roots:
                continue
            root_of[s.node] = (src, 0)
            inplace_pairs.append((s.node, src))

    # 5. root buffers with lifetimes
    buffers: list[Buffer] = []
    bid_of: dict[str, int] = {}
    where: dict[str, tuple] = {}
    for nd in nodes:
        t = real(nd.name)
        r, off = find(t)
        if r not in bid_of:
            bid_of[r] = len(buffers)
            buffers.append(Buffer(len(buffers), _aligned(size[r]), first=10**9, last=-1))
        b = buffers[bid_of[r]]
        where[nd.name] = (b.id, off)
        b.nodes.append(nd.name)
    for nd in nodes:
        b = buffers[where[nd.name][0]]
        t = real(nd.name)
        if graph[t].op == "Input":
            b.first = -1
        elif t in step_of:
            b.first = min(b.first, step_of[t])
        if t in last_use:
            b.last = max(b.last, last_use[t])
        if nd.name in outputs:
            b.last = len(steps)
    for s_i, s in enumerate(steps):
        for p in s.ins:
            b = buffers[where[p][0]]
            b.last = max(b.last, s_i)
    for b in buffers:
        if b.first == 10**9:
            b.first = b.last
        b.last = max(b.last, b.first)

    plan = Plan(n, steps, buffers, where, list(graph.inputs), dict(graph.outputs),
                elided=elided, inplace=inplace_pairs)
    plan.naive = sum(_aligned(size[nd.name]) for nd in nodes if nd.name not in view_of)
    plan.arena_floats = place(buffers)

    # 6. kernel calls
    if kernels:
        for s in steps:
            fn = builder(s.op)
            nd = graph[s.node]
            if fn is None:
                raise NetDSLError(f"no C kernel for {s.op} (layer {s.node})", nd.span,
                                  "this op runs only in the numpy reference executor for now")
            try:
                s.call = fn(nd.attrs, [graph[p].shape for p in graph.preds(s.node)], nd.shape, n)
            except PlanError as e:          # a builder knows the sizes, not the layer: add it
                raise e.located(f"layer {s.node}", nd.span) from None
    return plan


def place(buffers) -> int:
    """Greedy best-fit under a few orders (by size, by lifetime, by first use);
    keeps the smallest arena. Returns its size in floats."""
    orders = (lambda b: (-b.floats, b.first), lambda b: (-(b.last - b.first), -b.floats),
              lambda b: (b.first, -b.floats))
    best_size, best_offsets = None, None
    for key in orders:
        size = _place_in_order(sorted(buffers, key=key))
        if best_size is None or size < best_size:
            best_size, best_offsets = size, [b.offset for b in buffers]
    for b, off in zip(buffers, best_offsets):
        b.offset = off
    return best_size or 0


def _place_in_order(ordered) -> int:
    """Best fit in this order: each buffer takes the smallest gap between the buffers already
    placed whose lifetimes overlap its own (or goes on top). The placed buffers are indexed by
    the steps they are live at, so finding the overlapping ones costs their lifetimes, not a
    scan of every buffer placed so far (which made a 20,000-layer plan take minutes)."""
    placed: list[Buffer] = []
    at: dict[int, list] = {}          # step -> indices into `placed` of the buffers live then
    for b in ordered:
        seen = set()
        for t in range(b.first, b.last + 1):
            seen.update(at.get(t, ()))
        live = [placed[i] for i in sorted(seen, key=lambda i: (placed[i].offset, i))]
        best, best_gap, cursor = None, None, 0
        for p in live:
            gap = p.offset - cursor
            if gap >= b.floats and (best_gap is None or gap < best_gap):
                best, best_gap = cursor, gap
            cursor = max(cursor, p.offset + p.floats)
        b.offset = best if best is not None else cursor
        for t in range(b.first, b.last + 1):
            at.setdefault(t, []).append(len(placed))
        placed.append(b)
    return max((b.offset + b.floats for b in ordered), default=0)


def report_lines(plan, graph) -> list:
    """What the planner did, one line per decision, then the memory totals (for --report)."""
    def line(node):
        sp = graph[node].span
        return f" ({os.path.basename(sp.source.name)} line {sp.line})" if sp else ""
    out = []
    for concat, producers in plan.elided:
        out.append(f"concat elided: {len(producers)} producers write slices of {concat}{line(concat)}")
    for node, src in plan.inplace:
        out.append(f"in place: {node} writes over {src}{line(node)}")
    out.append(f"elide_concat: {len(plan.elided)} concats, in_place: {len(plan.inplace)} buffers")
    mib = 2 ** 20
    out.append(f"memory (batch {plan.n}): arena {plan.arena_bytes / mib:.2f} MiB peak, naive sum "
               f"{plan.naive_bytes / mib:.2f} MiB, lower bound {plan.lower_bound_bytes / mib:.2f} MiB")
    return out
