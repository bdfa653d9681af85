"""Run a list of kernel calls in one call into C (csrc/runtime/executor.c).

    from netdsl.runtime.executor import Program, Step
    prog = Program([Step(call, out=0, ins=[4096], w=weight, bias=bias, out_floats=..., in_floats=[...]),
                    ...], arena_floats=...)
    arena = prog.new_arena()          # float32, every activation buffer at its offset
    arena[in_off:in_off + x.size] = x.ravel()
    prog.run(arena, threads=2)        # one C call for the whole plan

Offsets and sizes are in floats. `call` is a KernelCall from netdsl.runtime.kparams.
Everything is checked here, in Python, before C sees it: symbols exist, params
fields exist and fit their C types, buffers lie inside the arena, workspace
slices inside the workspace, weights are contiguous float32 (converted and kept
alive here; C never frees). Failures raise `PlanError` (bad plan, before any C
runs) or `KernelError` (a kernel returned a status). Both are NetDSLErrors,
located at the step's source span when the Step carries one, so callers pass
them on as they are.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ..errors import Diagnostic, NetDSLError, Span
from . import lib as _lib

INT64_MAX = 2**63 - 1
MAX_INPUTS = 256                       # csrc/runtime/executor.c ND_EXEC_MAX_IN
STATUS = {0: "ok", 1: "a size or parameter out of range (ND_EINVAL)",
          2: "a combination this kernel does not implement (ND_EUNSUPPORTED)",
          3: "a NaN or inf where finite values were required (ND_ENONFINITE)"}


PLAN_HINT = "a size is out of range for the C kernels; try a smaller batch or input"


class PlanError(NetDSLError):
    """A step that cannot be run: unknown symbol, bad field, buffer out of range, size overflow."""

    def __init__(self, message: str, span: Span | None = None, hint: str | None = PLAN_HINT):
        super().__init__(message, span, hint)

    def located(self, where: str, span: Span | None = None) -> "PlanError":
        """The same error prefixed with the step it is about (and its span, when not already set)."""
        d = self.diagnostics[0]
        return PlanError(f"{where}: {d.message}", d.span or span, d.hint)


class KernelError(NetDSLError):
    """A kernel returned a non-zero status."""

    def __init__(self, status, index, name, span: Span | None = None):
        self.status, self.index, self.name = status, index, name
        super().__init__(Diagnostic(
            f"kernel failed in layer {name or '#' + str(index)}: {STATUS.get(status, status)} (status {status})",
            span, "this is a bug in netdsl or an unsupported size; please report it"))


def check_int64(what: str, *factors: int) -> int:
    """The product of sizes, or PlanError if any is negative or the product passes int64."""
    prod = 1
    for f in factors:
        f = int(f)
        if f < 0:
            raise PlanError(f"{what}: negative size {f}")
        prod *= f
    if prod > INT64_MAX:
        raise PlanError(f"{what}: {' x '.join(str(int(f)) for f in factors)} = {prod} overflows int64")
    return prod


_fn_cache: dict = {}


def kernel_fn(symbol: str):
    """The C function `symbol` as an `nd_kernel_fn` pointer (cached)."""
    fn = _fn_cache.get(symbol)
    if fn is None:
        ffi, lib = _lib.ffi, _lib.lib
        try:
            addr = ffi.addressof(lib, symbol)
        except (AttributeError, ffi.error) as e:
            raise PlanError(f"no kernel named {symbol!r} in netdsl._kernels ({e}); "
                            f"is its header in csrc/kernels/ and the extension rebuilt?") from None
        fn = _fn_cache[symbol] = ffi.cast("nd_kernel_fn", addr)
    return fn


def make_params(struct: str, fields: dict):
    """A new `struct *` filled from fields; PlanError on unknown fields or values out of range."""
    ffi = _lib.ffi
    try:
        p = ffi.new(f"{struct} *")
    except ffi.error as e:
        raise PlanError(f"no params struct {struct!r} ({e})") from None
    known = {f for f, _ in ffi.typeof(f"{struct}").fields}
    for k, v in fields.items():
        if k not in known:
            raise PlanError(f"{struct} has no field {k!r} (fields: {', '.join(sorted(known))})")
        try:
            setattr(p, k, v)
        except (OverflowError, TypeError) as e:
            raise PlanError(f"{struct}.{k} = {v!r}: {e}") from None
    return p


def as_f32(a):
    """Contiguous float32 view or copy of a weight array (None stays None)."""
    return None if a is None else np.ascontiguousarray(a, dtype=np.float32)


@dataclass
class Step:
    """One kernel call: KernelCall + where its buffers are."""
    call: object                        # kparams.KernelCall
    out: int                            # arena offset of the output (floats)
    ins: Sequence[int] = ()             # arena offsets of the inputs
    w: np.ndarray | None = None
    bias: np.ndarray | None = None
    ws: int = 0                         # workspace offset (floats); steps run in turn, so 0 is usual
    out_floats: int | None = None       # sizes, checked against the arena when given
    in_floats: Sequence[int] | None = None
    name: str = ""                      # for error messages (the graph node)
    extra: dict = field(default_factory=dict)
    span: Span | None = None            # the node's source span, for located errors


class Program:
    """A checked, ready-to-run array of C records (see csrc/runtime/executor.h)."""

    def __init__(self, steps: Sequence[Step], arena_floats: int, *, prepack: bool = True):
        ffi = _lib.ffi
        self.arena_floats = check_int64("arena", arena_floats)
        self.steps = list(steps)
        self.names = [s.name for s in self.steps]
        self.spans = [s.span for s in self.steps]
        self._keep = []                 # every cdata / array the records point to
        n = len(self.steps)
        self.records = ffi.new("nd_record[]", max(n, 1))
        ws_need = 0
        for i, s in enumerate(self.steps):
            where = s.name or f"step {i} ({s.call.symbol})"
            try:
                ws_need = max(ws_need, self._fill(self.records[i], s, prepack))
            except PlanError as e:
                raise e.located(where, s.span) from None
        self.ws_floats = ws_need
        self.n = n

    def _fill(self, rec, s: Step, prepack: bool) -> int:
        ffi = _lib.ffi
        call = s.call
        fields = dict(call.fields)
        w = as_f32(s.w)
        pack = call.extra.get("prepack_weight") if prepack else None
        if pack is not None and w is not None:
            w, updates = pack(w)
            fields.update(updates)
        params = make_params(call.struct, fields)
        ins = [int(x) for x in s.ins]
        if len(ins) > MAX_INPUTS:
            raise PlanError(f"{len(ins)} inputs; the executor takes at most {MAX_INPUTS}")
        self._check_buf("output", int(s.out), s.out_floats)
        in_sizes = list(s.in_floats) if s.in_floats is not None else [None] * len(ins)
        if len(in_sizes) != len(ins):
            raise PlanError(f"{len(ins)} input offsets but {len(in_sizes)} input sizes")
        for j, (off, size) in enumerate(zip(ins, in_sizes)):
            self._check_buf(f"input {j}", off, size)
        ws_floats = check_int64("workspace", call.ws_floats)
        ws_end = check_int64("workspace end", int(s.ws) + ws_floats)
        if int(s.ws) < 0:
            raise PlanError(f"negative workspace offset {s.ws}")
        b = as_f32(s.bias)
        in_arr = ffi.new("int64_t[]", ins) if ins else ffi.NULL
        rec.fn = kernel_fn(call.symbol)
        rec.params = params
        rec.out_off = int(s.out)
        rec.in_offs = in_arr
        rec.n_in = len(ins)
        rec.flags = 0
        rec.w = ffi.from_buffer("float[]", w) if w is not None else ffi.NULL
        rec.bias = ffi.from_buffer("float[]", b) if b is not None else ffi.NULL
        rec.ws_off = int(s.ws)
        self._keep += [params, in_arr, w, b, rec.w, rec.bias]
        return ws_end

    def _check_buf(self, what, off, size):
        if off < 0 or off >= max(self.arena_floats, 1):
            raise PlanError(f"{what} offset {off} outside the arena of {self.arena_floats} floats")
        if size is not None and check_int64(f"{what} end", off + check_int64(what, size)) > self.arena_floats:
            raise PlanError(f"{what} [{off}, {off + size}) runs past the arena of {self.arena_floats} floats")

    def new_arena(self) -> np.ndarray:
        return np.zeros(max(self.arena_floats, 1), np.float32)

    def new_ws(self) -> np.ndarray:
        return np.zeros(max(self.ws_floats, 1), np.float32)

    def bind(self, arena: np.ndarray, ws: np.ndarray | None = None) -> "Bound":
        """Check an arena (and workspace) once and keep the C call's arguments ready: the
        returned Bound runs the plan on them with no per-call checks or conversions."""
        return Bound(self, arena, ws)

    def run(self, arena: np.ndarray, ws: np.ndarray | None = None, threads: int = 0) -> None:
        """Run every step in order in one C call; threads <= 0 keeps OpenMP's default."""
        self.bind(arena, ws).run(int(threads))


class Bound:
    """A Program bound to one arena and workspace (Program.bind): `run(threads)` is one C call.
    Not for sharing between threads (each has its own arena, and the failed-index cell)."""

    __slots__ = ("prog", "arena", "ws", "_fn", "_records", "_n", "_arena_p", "_ws_p", "_failed")

    def __init__(self, prog: Program, arena: np.ndarray, ws: np.ndarray | None):
        ffi, lib = _lib.ffi, _lib.lib
        if arena is None:
            raise PlanError("run() needs an arena (Program.new_arena())")
        if ws is None and prog.ws_floats > 0:
            raise PlanError(f"this program needs a workspace of {prog.ws_floats} floats (Program.new_ws())")
        for what, a, need in (("arena", arena, prog.arena_floats), ("workspace", ws, prog.ws_floats)):
            if a is None:
                continue
            if not isinstance(a, np.ndarray) or a.dtype != np.float32 or not a.flags.c_contiguous \
                    or not a.flags.writeable:
                raise PlanError(f"the {what} must be a writeable C-contiguous float32 array")
            if a.size < need:
                raise PlanError(f"the {what} holds {a.size} floats, the program needs {need}")
        self.prog, self.arena, self.ws = prog, arena, ws
        self._fn = lib.nd_run_plan
        self._records, self._n = prog.records, prog.n
        self._arena_p = ffi.from_buffer("float[]", arena)       # keeps the arrays alive
        self._ws_p = ffi.from_buffer("float[]", ws) if ws is not None else ffi.NULL
        self._failed = ffi.new("int64_t *")

    def run(self, threads: int = 0) -> None:
        st = self._fn(self._records, self._n, self._arena_p, self._ws_p, threads, self._failed)
        if st != 0:
            self._raise(st)

    def run_timed(self, threads: int = 0) -> np.ndarray:
        """run(), returning each step's seconds as timed inside the plan (one clock read after
        each kernel call: the caches and threads are as the plan leaves them)."""
        ffi = _lib.ffi
        stamps = np.zeros(self._n + 1, np.float64)
        st = _lib.lib.nd_run_plan_timed(self._records, self._n, self._arena_p, self._ws_p, threads,
                                        self._failed, ffi.from_buffer("double[]", stamps))
        if st != 0:
            self._raise(st)
        return np.diff(stamps)

    def _raise(self, st):
        prog, i = self.prog, int(self._failed[0])
        ok = 0 <= i < prog.n
        raise KernelError(int(st), i, prog.names[i] if ok else "", prog.spans[i] if ok else None)


def run_call(call, x_list, w=None, bias=None, out_floats=None, threads=0, overwrite=None):
    """Run one KernelCall on numpy inputs and return the flat output (tests, debugging).
    overwrite=k: the output is written over input k (its buffer), as the planner places it
    for an op whose spec says so (OpSpec.overwrites)."""
    xs = [np.ascontiguousarray(x, dtype=np.float32).ravel() for x in x_list]
    offs, out_off = [], 0
    off = check_int64("output", out_floats) + 16
    for x in xs:
        offs.append(off)
        off += x.size + 16
    if overwrite is not None:
        out_off = offs[overwrite]
    prog = Program([Step(call, out_off, offs, w, bias, out_floats=out_floats,
                         in_floats=[x.size for x in xs])], off)
    arena = prog.new_arena()
    if overwrite is None:
        arena[:out_floats] = np.nan      # a kernel that skips a cell shows up as NaN
    for o, x in zip(offs, xs):
        arena[o:o + x.size] = x
    prog.run(arena, prog.new_ws(), threads)
    return arena[out_off:out_off + out_floats].copy()
