"""Per-layer profile of a compiled plan: each step timed alone, on its real activations.

    from netdsl.runtime.profile import profile
    p = profile(m, x)                 # m: a Model; x: an input batch (default: random, batch 1)
    print(netdsl.cli_format.profile_table(p))   # the table `netdsl run MODEL --profile` prints
    d = p.to_dict()                   # what `--profile-json FILE` writes; Profile.from_dict(d) reads it

How it measures. The session's own Program (the records `m(x)` runs: same C
params, same prepacked weights, same arena offsets, so in-place steps and
elided concats are what they are in a real call) runs one step at a time, in
plan order, on the session's own arena (no extra memory) holding `x`: every step reads the activations
the steps before it really produced. Each step is then re-run alone:
several copies of its record in one C call (so the Python call costs
nothing per step), a few such samples, the median per run. A step that
writes over its own input (in place) runs one copy per sample, with its
input restored before each (untimed). The whole plan is also timed as one
call (`plan_s`); the steps' sum differs from it by a few percent (a step
re-run alone finds its weights and input in cache; a shared machine adds noise).

Columns. `algo` is the algorithm the conv kernel takes for exactly these
params, asked from C (nd_conv_algo, which reads the kernel's own
predicates): gemm (im2col panels), gemm-t (transposed GEMM, batch folded
into rows), direct, winograd, pointwise (1x1 GEMM on x itself), depthwise,
fc-like (dot products); "—" for other ops. FLOPs are the analysis's MACs per
node (`netdsl summary`) x 2 x batch. `% peak` is GFLOP/s over the machine's
SGEMM peak: netdsl's own prepacked GEMM, the best of 512^3 and 1024^3 on
the same thread count, measured once per process (about a second) unless given (`peak=`,
`--peak`). `layer` is the source layer that runs plus the layers fused into
it by the optimizer (`conv1+bn1+relu`), names as in the .net file.
"""
from __future__ import annotations

import json
import statistics
import time
from dataclasses import asdict, dataclass, field
from math import prod

import numpy as np

from ..errors import NetDSLError

ALGOS = {1: "gemm", 2: "gemm-t", 3: "direct", 4: "winograd", 5: "pointwise", 6: "depthwise", 7: "fc-like"}
NO_ALGO = "—"
FORMAT = 1                     # of to_dict()


# ---------------------------------------------------------------- what the kernel will do

def conv_algo_code(params, mr: int = 0) -> int:
    """nd_conv_algo for an `nd_conv_params *` (cdata) or a dict of its fields."""
    from . import lib as _lib
    ffi, lib = _lib.ffi, _lib.lib
    if isinstance(params, dict):
        params = ffi.new("nd_conv_params *", params)
    return int(lib.nd_conv_algo(ffi.cast("nd_conv_params *", params), int(mr)))


def algo_name(code: int) -> str:
    return ALGOS.get(code, NO_ALGO if code == 0 else f"invalid ({code})")


def record_algo(prog, i: int) -> str:
    """The algorithm step i of Program `prog` runs, from the params its record holds."""
    st = prog.steps[i]
    if st.call.symbol != "nd_conv_f32":
        return NO_ALGO
    return algo_name(conv_algo_code(prog.records[i].params))


# ---------------------------------------------------------------- the machine's peak

_peak_cache: dict = {}


def gemm_gflops(m: int, n: int, k: int, threads: int, seconds: float = 1.0, prepack: bool = True,
                min_reps: int = 3) -> float:
    """Best GFLOP/s of netdsl's SGEMM C (m, n) = A (m, k) . B (k, n) at `threads`, the C call alone
    (buffers prepared once; A prepacked as Conv's weights are, unless prepack=False), over about
    `seconds` of runs (at least min_reps)."""
    from . import lib as _lib
    ffi, lib = _lib.ffi, _lib.lib
    rng = np.random.default_rng(0)
    a = rng.standard_normal((m, k)).astype(np.float32)
    b = rng.standard_normal((k, n)).astype(np.float32)
    c = np.empty((m, n), np.float32)
    p = ffi.new("nd_gemm_params *", dict(m=m, n=n, k=k, threads=threads))
    a_nd = a
    if prepack:
        mr = lib.nd_gemm_mr()
        a_nd = np.empty(lib.nd_gemm_packed_a_floats(m, k, mr), np.float32)
        lib.nd_gemm_pack_a(ffi.from_buffer("float[]", a_nd), ffi.from_buffer("float[]", a), m, k, k, 1, mr)
        p.a_packed_mr = mr
    ws = np.empty(max(1, lib.nd_gemm_ws_floats(m, n, k, threads)), np.float32)
    ins = ffi.new("const float *[1]", [ffi.from_buffer("float[]", a_nd)])
    args = (p, ffi.from_buffer("float[]", c), ins, ffi.from_buffer("float[]", b), ffi.NULL,
            ffi.from_buffer("float[]", ws))
    lib.nd_gemm_f32(*args)                      # warm: pages, caches
    best, reps, t_end = float("inf"), 0, time.perf_counter() + seconds
    while reps < min_reps or time.perf_counter() < t_end:
        t = time.perf_counter()
        lib.nd_gemm_f32(*args)
        best = min(best, time.perf_counter() - t)
        reps += 1
    return 2.0 * m * n * k / best / 1e9


PEAK_SIZES = (512, 1024)


def machine_peak(threads: int, seconds: float = 1.0) -> float:
    """The SGEMM peak (GFLOP/s) of this machine at `threads` for the ISA in use: the best of
    netdsl's prepacked GEMM at 512^3 and 1024^3 (`seconds` in all), measured on first use and
    cached for the process."""
    from . import lib as _lib
    key = (int(threads), _lib.isa())
    if key not in _peak_cache:
        _peak_cache[key] = max(gemm_gflops(s, s, s, int(threads), seconds / len(PEAK_SIZES))
                               for s in PEAK_SIZES)
    return _peak_cache[key]


# ---------------------------------------------------------------- other processes

class LoadMeter:
    """CPUs kept busy by *other* processes since the last call (from /proc; None elsewhere): all
    busy ticks on the machine minus this process's own, minus `expected` (a load started on purpose)."""

    def __init__(self, expected: float = 0.0):
        import os
        self.expected = expected
        self.tck = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self.last = self._read()

    def _read(self):
        try:
            with open("/proc/stat") as f:
                v = [int(t) for t in f.readline().split()[1:]]
            busy = sum(v) - v[3] - (v[4] if len(v) > 4 else 0)       # minus idle and iowait
            with open("/proc/self/stat") as f:
                own = f.read().rsplit(")", 1)[1].split()
            mine = int(own[11]) + int(own[12])                        # utime + stime, all threads
            return time.perf_counter(), busy, mine
        except (OSError, ValueError, IndexError):
            return None

    def foreign(self):
        now = self._read()
        prev, self.last = self.last, now
        if now is None or prev is None or now[0] - prev[0] < 1e-3:
            return None
        used = ((now[1] - prev[1]) - (now[2] - prev[2])) / self.tck / (now[0] - prev[0])
        return max(0.0, used - self.expected)


BUSY_NOTE = 0.25       # CPUs used by others during a profile above which the table says so


# ---------------------------------------------------------------- layer names

def fused_layers(source, run, records=()) -> dict:
    """{layer of `run`: [layers of `source` the optimizer fused into it, in source order]}.

    `records` are the optimizer's rewrite records (passes.optimize's report): each names the layer
    that absorbed something and carries the absorbed layer's source span; the absorbed layer is the
    removed one with that span that is connected to the absorber through removed layers only (the
    same span recurs once per block instance, the connection tells them apart). A layer fused into
    one that was itself fused later (ReLU -> Add -> residual Conv) ends at the survivor."""
    run_names = {nd.name for nd in run.nodes()}
    removed = {nd.name for nd in source.nodes() if nd.name not in run_names}
    if not removed:
        return {}

    def key(sp):
        return None if sp is None else (sp.source.name, sp.line, sp.col)

    by_span: dict = {}
    for r in removed:
        by_span.setdefault(key(source[r].span), []).append(r)
    dists: dict = {}

    def dist(s):
        """{removed layer: hops from s}, walking through removed layers only (either direction)."""
        if s not in dists:
            d, frontier = {}, [s]
            while frontier:
                nxt = []
                for t in frontier:
                    for u in (*source.preds(t), *source.succs(t)):
                        if u in removed and u not in d and u != s:
                            d[u] = (d[t] if t in d else 0) + 1
                            nxt.append(u)
                frontier = nxt
            dists[s] = d
        return dists[s]

    into: dict = {}
    for rec in records:
        s = rec.node
        if s not in source or rec.span is None:
            continue
        d = dist(s)
        cands = [r for r in by_span.get(key(rec.span), ()) if r != s and r not in into and r in d]
        if cands:
            into[min(cands, key=d.get)] = s
    order = {nd.name: i for i, nd in enumerate(source.nodes())}
    out: dict = {}
    for r in sorted(into, key=order.get):
        s, hops = into[r], 0
        while s in into and hops < len(into):
            s, hops = into[s], hops + 1
        if s in run_names:
            out.setdefault(s, []).append(r)
    return out


def _short(base: str, other: str) -> str:
    """`other` without the dotted prefix it shares with `base`: layer1.0.conv3 + layer1.0.bn3 -> bn3."""
    a, b = base.split("."), other.split(".")
    i = 0
    while i < min(len(a), len(b)) - 1 and a[i] == b[i]:
        i += 1
    while i > 0 and b[i].isdigit():      # downsample.1, not 1
        i -= 1
    return ".".join(b[i:])


def _display(op: str) -> str:
    try:
        from ..passes.rewrite import display
        return display(op)
    except Exception:  # noqa: BLE001 — an op the specs do not know (a planner step): its own name
        return op


# ---------------------------------------------------------------- timing

@dataclass
class Row:
    index: int
    layer: str                  # survivor + fused layers, e.g. "conv1+bn1+relu"
    node: str                   # the layer of the run graph (the step's name)
    fused: list                 # source layers fused into it
    op: str                     # e.g. "Conv 7x7/2+BN+ReLU"
    kernel: str                 # C symbol
    algo: str
    input: list                 # shapes without the batch, one per input
    output: list
    shape: str                  # "64x56x56 → 256x56x56" (a fused residual's input left out: it is the output's shape)
    seconds: float
    flops: float                # per call, whole batch
    gflops: float | None
    pct_peak: float | None
    share: float                # of the steps' sum, in percent
    in_plan: float | None = None   # seconds as timed inside whole-plan runs (median), cold caches included


@dataclass
class Profile:
    model: str
    batch: int
    threads: int
    isa: str
    peak_gflops: float | None
    peak_source: str            # "measured" | "given" | "none"
    total_s: float              # sum of the steps
    plan_s: float               # the whole plan as one call (median)
    rows: list = field(default_factory=list)
    elided: list = field(default_factory=list)     # concats whose producers write their slices
    foreign_cpus: float | None = None              # CPUs other processes used meanwhile (None: unknown)
    cpus: int | None = None                        # CPUs this process may use
    format: int = FORMAT

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self, **kw) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, **kw)

    @classmethod
    def from_dict(cls, d: dict) -> "Profile":
        d = dict(d)
        rows = [Row(**r) for r in d.pop("rows", [])]
        return cls(**d, rows=rows)

    def by_algo(self) -> list:
        """[(label, seconds, share %)] by algorithm for convs, by op otherwise, largest first."""
        acc: dict = {}
        for r in self.rows:
            k = f"conv {r.algo}" if r.algo != NO_ALGO else r.op.split(" ")[0].split("+")[0]
            acc[k] = acc.get(k, 0.0) + r.seconds
        tot = self.total_s or 1.0
        return sorted(((k, t, 100 * t / tot) for k, t in acc.items()), key=lambda kv: -kv[1])


def _overlaps(st) -> list:
    """[(start, end)] of the arena ranges step `st` both reads and writes (in place), merged with its output."""
    if st.out_floats is None:
        return []
    o0, o1 = int(st.out), int(st.out) + int(st.out_floats)
    sizes = st.in_floats if st.in_floats is not None else [None] * len(st.ins)
    hit = []
    for off, size in zip(st.ins, sizes):
        i0 = int(off)
        i1 = i0 + (int(size) if size is not None else 1)
        if i0 < o1 and o0 < i1:
            hit.append((i0, i1))
    if not hit:
        return []
    return [(min(o0, *(a for a, _ in hit)), max(o1, *(b for _, b in hit)))]


def time_steps(prog, arena: np.ndarray, ws, threads: int, seconds: float = 0.03,
               max_samples: int = 25) -> list:
    """Seconds per step of Program `prog` (median per run), each step run alone, in order, on
    `arena` (which holds the plan's inputs; on return it holds what a full run leaves). About
    `seconds` of samples per step (at least 5)."""
    from . import lib as _lib
    from .executor import KernelError, PlanError
    ffi, lib = _lib.ffi, _lib.lib
    for what, a, need in (("arena", arena, prog.arena_floats), ("workspace", ws, prog.ws_floats)):
        if a is None and need > 0:
            raise PlanError(f"this program needs a {what} of {need} floats")
        if a is not None and (a.dtype != np.float32 or not a.flags.c_contiguous or not a.flags.writeable
                              or a.size < need):
            raise PlanError(f"the {what} must be a writeable C-contiguous float32 array of >= {need} floats")
    a_ptr = ffi.from_buffer("float[]", arena)
    w_ptr = ffi.from_buffer("float[]", ws) if ws is not None else ffi.NULL
    failed = ffi.new("int64_t *")
    out = []

    def run(recs, n, i):
        st = lib.nd_run_plan(recs, n, a_ptr, w_ptr, int(threads), failed)
        if st != 0:
            raise KernelError(int(st), i, prog.names[i], prog.spans[i])

    for i, st in enumerate(prog.steps):
        one = prog.records + i
        keep = [(a, b, arena[a:b].copy()) for a, b in _overlaps(st)]

        def restore():
            for a, b, saved in keep:
                arena[a:b] = saved
        run(one, 1, i)                                  # warm (first touch of its weights)
        restore()
        t1 = float("inf")
        for _ in range(2):                              # the shorter of two: one may be preempted
            restore()
            t = time.perf_counter()
            run(one, 1, i)
            t1 = min(t1, time.perf_counter() - t)
        t1 = max(t1, 1e-7)
        reps = 1 if keep else max(1, min(200, int(2e-4 / t1)))
        recs = one
        if reps > 1:
            recs = ffi.new("nd_record[]", reps)
            for j in range(reps):
                recs[j] = prog.records[i]
        samples = []
        n_samples = max(5, min(max_samples, int(seconds / (t1 * reps))))
        for _ in range(n_samples):
            if threads > 1:                             # wake the worker threads (idle ones sleep): untimed
                restore()
                run(one, 1, i)
            restore()
            t = time.perf_counter()
            run(recs, reps, i)
            samples.append((time.perf_counter() - t) / reps)
        if keep:                                        # leave the state one application gives
            restore()
            run(one, 1, i)
        out.append(statistics.median(samples))
    return out


def _write_inputs(plan, arena, inputs):
    for name, x in inputs.items():
        off = plan.offset(name)
        arena[off:off + x.size] = x.reshape(-1)


def _op_text(node, fused_ops):
    op = _display(node.op)
    a = node.attrs
    if node.op in ("Conv", "ConvTranspose", "Local", "MaxPool", "AvgPool", "MinPool") and "kernel" in a:
        (kh, kw), (sh, sw) = a["kernel"], a.get("stride", (1, 1))
        op += f" {kh}x{kw}" + (f"/{sh}" if sh == sw and sh != 1 else f"/{sh}x{sw}" if sh != sw else "")
        if a.get("groups", 1) > 1:
            op += f" g{a['groups']}"
    if fused_ops:
        extra = fused_ops
    else:                       # no source names (a bundle): the fused epilogue from the attributes
        extra = []
        if a.get("residual"):
            extra.append("Add")
        act = a.get("act", "none")
        if act not in (None, "none"):
            from ..ops import activations
            extra.append(activations.TABLE[act].op if act in activations.TABLE else str(act))
    return op + "".join(f"+{o}" for o in extra)


def profile(model, x=None, batch: int = 1, threads: int | None = None, peak: float | None = None,
            measure_peak: bool = True, seconds_per_step: float = 0.03) -> Profile:
    """Profile `model` (a netdsl Model) on input `x` (array or {name: array}; default: a random
    batch of `batch`). threads: default the model's (else all cores). peak: the machine's SGEMM
    GFLOP/s; None measures it once per process (measure_peak=False: no % of peak)."""
    from . import lib as _lib
    from .session import prepare_inputs
    sess = model.session()
    g = sess.graph
    if x is None:
        rng = np.random.default_rng(0)
        x = {nm: rng.standard_normal((batch, *g[nm].shape)).astype(np.float32) for nm in g.inputs}
    inputs = prepare_inputs(model.graph, x)
    n = next(iter(inputs.values())).shape[0]
    th = threads or sess.threads_for(n) or _lib.max_threads()   # a tiny plan runs on 1 thread
    if peak is not None and not peak > 0:
        raise NetDSLError(f"the peak must be a positive GFLOP/s figure, got {peak}")
    plan, prog = sess.program(n)
    runner = sess._runner(n, plan, prog)     # this thread's arena for batch n: no second copy of it
    arena, ws = runner.arena, runner.ws
    _write_inputs(plan, arena, inputs)
    meter = LoadMeter()
    times = time_steps(prog, arena, ws, th, seconds_per_step)
    plan_samples, in_plan = [], []
    bound = prog.bind(arena, ws)
    t_end = time.perf_counter() + max(0.2, 10 * seconds_per_step)
    while len(plan_samples) < 3 or (time.perf_counter() < t_end and len(plan_samples) < 50):
        _write_inputs(plan, arena, inputs)       # the plan may reuse an input's buffer after its last read
        t = time.perf_counter()
        in_plan.append(bound.run_timed(th))      # each step timed where it runs: caches as the plan leaves them
        plan_samples.append(time.perf_counter() - t)
    in_plan = np.median(np.array(in_plan), axis=0)
    foreign = meter.foreign()
    source = "given"
    if peak is None and measure_peak:
        peak, source = machine_peak(th), "measured"
    elif peak is None:
        source = "none"

    fused, src = {}, model.graph
    if g is not src:
        records = ()
        if getattr(model, "run_level", 0) > getattr(model, "opt_level", 0):
            from ..passes import optimize
            _, _, records = optimize(src, None, level=model.run_level)
        fused = fused_layers(src, g, records)
    total = sum(times)
    rows = []
    for i, (st, t) in enumerate(zip(prog.steps, times)):
        node = g[st.name] if st.name in g else None
        names = fused.get(st.name, [])
        layer = "+".join([st.name] + [_short(st.name, r) for r in names])
        fops = [_display(src[r].op) for r in names if src[r].op not in ("Dropout", "Identity")]
        flops = 2.0 * (node.macs or 0) * n if node is not None else 0.0
        gf = flops / t / 1e9 if flops and t > 0 else None
        ins = [list(g[p].shape) for p in g.preds(st.name)] if node is not None else []
        shown = ins[:1] if node is not None and node.attrs.get("residual") else ins
        shape = (" + ".join("x".join(map(str, s)) for s in shown) + " → " + "x".join(map(str, node.shape))
                 if node is not None else "")
        rows.append(Row(
            index=i + 1, layer=layer, node=st.name, fused=list(names),
            op=_op_text(node, fops) if node is not None else st.call.symbol,
            kernel=st.call.symbol, algo=record_algo(prog, i),
            input=ins, output=list(node.shape) if node is not None else [], shape=shape,
            seconds=t, flops=flops, gflops=gf,
            pct_peak=100 * gf / peak if gf is not None and peak else None,
            share=100 * t / total if total > 0 else 0.0, in_plan=float(in_plan[i])))
    return Profile(model=model.name, batch=n, threads=th, isa=_lib.isa(), peak_gflops=peak,
                   peak_source=source, total_s=total, plan_s=statistics.median(plan_samples), rows=rows,
                   elided=[c for c, _ in plan.elided], foreign_cpus=foreign, cpus=_cpus())


def _cpus():
    import os
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count()


__all__ = ["ALGOS", "LoadMeter", "Profile", "Row", "algo_name", "conv_algo_code", "fused_layers", "gemm_gflops",
           "machine_peak", "profile", "record_algo", "time_steps"]
