"""`netdsl compile MODEL --emit c`: the runtime's plan written out as a standalone C library.

    from netdsl.deploy.emit_c import emit_c
    e = emit_c(netdsl.load("lenet5"), "out/", batch=1, threads=4)
    e.files, e.arena_bytes, e.weight_bytes

What is written (docs/EMBED.md is the user's guide):
    model.h        the API and the memory contract as constants (shapes, arena, weights, packing)
    model.c        the plan as straight-line kernel calls: one `static const` params struct and
                   one direct call per step, status checked; no interpreter, no allocation, no
                   stdio, no mutable globals
    netdsl/        the kernel sources the plan needs and nothing else (csources.py: the closure)
    model.weights  the weights, little-endian float32, each tensor at a 64-byte aligned offset
                   (or, with embed_weights, model_weights.c: the same floats as a const array)
    main.c         an example: read or make an input, pack, run, print top-k / stats, time
    Makefile, CMakeLists.txt   the build (per-file flags: none; the kernels pick the ISA at run time)

The plan is the one `netdsl run` executes: the same optimized graph and folded weights
(Model.session()), lowered at `batch`, every KernelCall's fields as the Python executor
would pass them. Two things differ, both on purpose:
- `threads`: the workspace is sized for `threads` (the kernels never use more), not for the
  emitting machine's core count;
- conv weights are written unpacked. Packed GEMM panels depend on the ISA's micro-tile
  (nd_gemm_mr()), known only on the target, so <prefix>_pack() packs them there, at init,
  into a caller buffer, with the same dispatch; run without it (packed = NULL) the kernels
  take the unpacked-weight paths (no Winograd): slower, equal within float rounding.
A conv whose weights are not all finite gets algo = 1, as the Python prepacking does
(netdsl/runtime/kparams/conv.py), so NaN/inf propagate exactly as in the runtime.
"""
from __future__ import annotations

import dataclasses
import math
import os
import platform
import re
import zlib

import numpy as np

from ..errors import NetDSLError
from . import c_templates as tpl
from .csources import Sources

ALIGN = 16                       # floats: weight tensors and the workspace start on 64-byte lines
PACK_HEAD = 16                   # floats at the start of the packed buffer: magic, mr, size
EMBED_WARN_BYTES = 64 * 2**20    # --embed-weights past this: a warning (compilers slow down)
_HEADERS = ("kernels/gemm.h",)   # model.c calls nd_gemm_mr() for the packing


@dataclasses.dataclass
class Emitted:
    """What emit_c wrote, and the numbers of its memory contract."""
    out_dir: str
    prefix: str
    files: list
    kernels: list                # csrc-relative paths copied under netdsl/
    batch: int
    threads: int
    steps: int
    arena_bytes: int
    weight_bytes: int
    packed_bytes_max: int
    packed_isas: list
    warnings: list


def c_prefix(name: str) -> str:
    """A C identifier prefix from a model name: lower case, [a-z0-9_], not starting with a digit."""
    p = re.sub(r"[^a-z0-9_]", "_", name.lower()).strip("_") or "model"
    return "m_" + p if p[0].isdigit() else p


def _aligned(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


def _c_float(v, double=False) -> str:
    v = float(v)
    if math.isnan(v):
        return "NAN"
    if math.isinf(v):
        return "INFINITY" if v > 0 else "-INFINITY"
    s = repr(v) if double else "%.9g" % np.float32(v)
    if not re.search(r"[.eE]", s):
        s += ".0"
    return s if double else s + "f"


def _c_value(ctype, v, where) -> str:
    kind = ctype.kind
    if kind == "primitive":
        if ctype.cname in ("float", "double"):
            return _c_float(v, ctype.cname == "double")
        return str(int(v))
    if kind == "array" and ctype.item.kind == "primitive":
        vals = list(v)
        if len(vals) > ctype.length:
            raise NetDSLError(f"{where}: {len(vals)} values for a {ctype.cname} field")
        return "{" + ", ".join(_c_value(ctype.item, x, where) for x in vals) + "}"
    raise NetDSLError(f"{where}: a {ctype.cname} field cannot be written as C")


def _struct_init(ffi, struct, fields, where) -> str:
    types = dict(ffi.typeof(struct).fields)
    parts = []
    for k, v in fields.items():
        if k not in types:
            raise NetDSLError(f"{where}: {struct} has no field {k!r}")
        parts.append(f".{k} = {_c_value(types[k].type, v, where)}")
    return "{" + ", ".join(parts) + "}"


def _layer_where(graph, node) -> str:
    nd = graph[node]
    span = getattr(nd, "span", None)
    return f"layer {node!r} ({nd.op}{', ' + str(span) if span else ''})"


def _with_threads(lib, call, threads):
    """The call with its workspace sized for `threads` (the kernels' nd_<op>_ws_floats)."""
    from ..runtime.executor import make_params
    if "threads" not in call.fields:
        return call
    fields = dict(call.fields, threads=threads)
    ws = call.ws_floats
    fn = getattr(lib, call.symbol.replace("_f32", "_ws_floats"), None) if call.symbol.endswith("_f32") else None
    if fn is not None:
        ws = int(fn(make_params(call.struct, fields)))
        if ws < 0:
            raise NetDSLError(f"{call.struct}: the kernel rejects these sizes at {threads} threads")
    return dataclasses.replace(call, fields=fields, ws_floats=ws)


@dataclasses.dataclass
class _Step:
    node: str
    call: object
    out: int
    ins: list
    w: int | None                # weight offset in floats, or None
    b: int | None
    packable: bool
    where: str
    wfloats: int = 0


def _packed_bound(lib, steps):
    """(largest packed-buffer floats over the ISAs this machine can reach, their names)."""
    from ..runtime import lib as rlib
    from ..runtime.executor import make_params
    convs = [make_params(s.call.struct, s.call.fields) for s in steps if s.packable]
    best, isas = PACK_HEAD, []
    for name in rlib.supported_isas():
        with rlib.using_isa(name):
            mr = int(lib.nd_gemm_mr())
            total = PACK_HEAD + sum(_aligned(max(0, int(lib.nd_conv_packed_w_floats(p, mr)))) for p in convs)
        best = max(best, total)
        isas.append(f"{name} (mr {mr})")
    return best, isas


def emit_c(model, out_dir: str, *, batch: int = 1, threads: int = 4, embed_weights: bool = False,
           prefix: str | None = None, force: bool = False, warn=None) -> Emitted:
    """Write `model` (a netdsl Model) as C sources into out_dir; see the module docstring.
    warn(message), when given, hears each warning as it arises (before the slow writes);
    Emitted.warnings has them all."""
    from ..runtime import lib as rlib
    from ..runtime.executor import Program, Step
    from ..runtime.plan import lower
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise NetDSLError(f"--batch must be a positive integer, got {batch!r}")
    if isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= 1024:
        raise NetDSLError(f"--threads must be 1 .. 1024, got {threads!r}",
                          hint="the most threads the target will run; the workspace is sized for it")
    prefix = c_prefix(prefix or model.name)
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", prefix):
        raise NetDSLError(f"--name {prefix!r} is not a C identifier")
    _check_out_dir(out_dir, force)
    if os.environ.get("NETDSL_GEMM_BLOCKS"):
        raise NetDSLError("NETDSL_GEMM_BLOCKS is set: the emitted workspace would be sized for those tuning "
                          "blocks, and the target runs the built-in ones",
                          hint="unset NETDSL_GEMM_BLOCKS to emit C (it is a tuning knob for the Python runtime)")
    ffi, lib = rlib.ffi, rlib.lib
    sess = model.session()                  # what `netdsl run` executes: optimized graph, folded weights
    graph = sess.graph
    plan = lower(graph, batch)
    check_steps, steps, blobs, seen = [], [], [], {}
    woff = 0

    def place(a):
        nonlocal woff
        if a is None:
            return None
        a = np.ascontiguousarray(a, dtype=np.float32).reshape(-1)
        key = (a.__array_interface__["data"][0], a.size)
        if key in seen:
            return seen[key]
        off = woff
        blobs.append((off, a))
        seen[key] = off
        woff = _aligned(off + a.size)
        return off

    size = {name: batch * math.prod(graph[name].shape) for name in plan.where}
    for st in plan.steps:
        where = _layer_where(graph, st.node)
        call = st.call
        if call is None or not getattr(lib, call.symbol, None):
            raise NetDSLError(f"{where}: its kernel {getattr(call, 'symbol', '?')} cannot be emitted as C",
                              graph[st.node].span, "run this model with `netdsl run`; the C emitter "
                              "writes only the kernels in csrc/kernels")
        unknown = set(call.extra) - {"prepack_weight", "prepare_weights"}
        if unknown:
            raise NetDSLError(f"{where}: its kernel needs plan-time steps the C emitter does not know "
                              f"({', '.join(sorted(unknown))})", graph[st.node].span,
                              "run this model with `netdsl run`, or teach netdsl/deploy/emit_c.py the step")
        call = _with_threads(lib, call, threads)
        w, b = sess._node_weights(st.node, call)      # the runtime's own weight preparation (BN fold)
        packable = call.symbol == "nd_conv_f32" and w is not None and "prepack_weight" in call.extra
        if packable and call.fields.get("algo") in (0, 4) and not np.isfinite(np.asarray(w)).all():
            call = dataclasses.replace(call, fields=dict(call.fields, algo=1))   # as prepack_weight does
        check_steps.append(Step(call, plan.offset(st.out), [plan.offset(i) for i in st.ins], w, b, 0,
                                size[st.out], [size[i] for i in st.ins], st.node, span=graph[st.node].span))
        wo, bo = place(w), place(b)
        steps.append(_Step(st.node, call, plan.offset(st.out), [plan.offset(i) for i in st.ins], wo, bo,
                           packable, where, 0 if w is None else int(np.asarray(w).size)))
    prog = Program(check_steps, plan.arena_floats, prepack=False)   # the executor's checks, unchanged
    weight_floats = woff
    act_floats = _aligned(plan.arena_floats)
    arena_floats = act_floats + _aligned(prog.ws_floats)
    packed_floats, packed_isas = _packed_bound(lib, steps)

    weights = np.zeros(max(weight_floats, 1), np.float32)
    for off, a in blobs:
        weights[off:off + a.size] = a
    weights = weights[:weight_floats]
    wbytes = weights.astype("<f4").tobytes()
    crc = zlib.crc32(wbytes) & 0xFFFFFFFF
    warnings = []
    if platform.machine().lower() not in ("x86_64", "amd64", "i386", "i686", "x86"):
        warnings.append(f"emitting on {platform.machine()}: the workspace is sized for this build's ISA "
                        "tables only (portable C), so run the output on non-x86 CPUs; emit on x86-64 for "
                        "code that also runs on x86 (its sizes cover AVX2 and AVX-512 as well)")
    if embed_weights and len(wbytes) > EMBED_WARN_BYTES:
        warnings.append(f"--embed-weights: {len(wbytes) / 2**20:.0f} MiB of weights become a C file of about "
                        f"{len(wbytes) * 4.0 / 2**20:.0f} MiB that compilers take minutes and GBs of memory to "
                        "build; the model.weights file (mmap it, or link it with `ld -r -b binary`) avoids that")
    if warn is not None:
        for w in warnings:
            warn(w)

    src = Sources()
    symbols = sorted({s.call.symbol for s in steps} | {"nd_gemm_mr", "nd_isa_level", "nd_has_openmp"}
                     | ({"nd_conv_pack_w", "nd_conv_packed_w_floats"} if any(s.packable for s in steps) else set()))
    kernels = src.closure(symbols)
    headers = sorted({_declaring_header(src, s) for s in symbols} | set(_HEADERS))

    inputs = [(name, (batch, *graph[name].shape), plan.offset(name)) for name in graph.inputs]
    outputs = [(oname, (batch, *graph[node].shape), plan.offset(node)) for oname, node in plan.outputs.items()]
    ctx = dict(prefix=prefix, P=prefix.upper(), model=model.name, batch=batch, threads=threads,
               inputs=inputs, outputs=outputs, act_floats=act_floats, ws_floats=_aligned(prog.ws_floats),
               arena_floats=arena_floats, weight_floats=weight_floats, crc=crc, packed_floats=packed_floats,
               packed_isas=packed_isas, embed=embed_weights, steps=steps, graph=graph, ffi=ffi,
               headers=headers, kernels=kernels, opt_level=getattr(model, "run_level", None),
               blobs=blobs, batch_arenas=_batch_arenas(graph, batch, threads, lib),
               pack_head=PACK_HEAD, weights_note=None if model.weights_loaded else
               "the model's deterministic initial weights (seed 0), not trained ones")

    written = []

    def write(rel, text, mode="w"):
        path = os.path.join(out_dir, rel)
        try:
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            with open(path, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
                f.write(text)
        except OSError as e:
            raise NetDSLError(f"cannot write {path}: {e.strerror or e}",
                              hint="give -o a directory you can write to") from None
        written.append(rel)

    for rel in kernels:
        write(f"netdsl/{rel}", src.text[rel])
    write("model.h", tpl.model_h(ctx))
    write("model.c", model_c(ctx))
    if embed_weights:
        write("model_weights.c", _weights_c(ctx, weights))
    else:
        write("model.weights", wbytes, "wb")
    write("main.c", tpl.main_c(ctx))
    write("Makefile", tpl.makefile(ctx, [k for k in kernels if k.endswith(".c")]))
    write("CMakeLists.txt", tpl.cmakelists(ctx, [k for k in kernels if k.endswith(".c")]))
    write("README.txt", tpl.readme(ctx, [k for k in kernels if k.endswith(".c")]))
    return Emitted(out_dir, prefix, written, kernels, batch, threads, len(steps), arena_floats * 4,
                   weight_floats * 4, packed_floats * 4, packed_isas, warnings)


def _check_out_dir(out_dir, force):
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise NetDSLError(f"-o {out_dir}: exists and is not a directory",
                          hint="--emit c writes a folder of files: give -o a directory")
    if os.path.isdir(out_dir):
        if not os.access(out_dir, os.W_OK | os.X_OK):
            raise NetDSLError(f"-o {out_dir}: the directory is not writable",
                              hint="give -o a directory you can write to")
        if os.path.exists(os.path.join(out_dir, "model.c")) and not force and \
                not _is_ours(os.path.join(out_dir, "model.c")):
            raise NetDSLError(f"-o {out_dir}: it holds a model.c that netdsl did not write",
                              hint="choose an empty directory, or pass --force to overwrite it")
        return
    parent = os.path.dirname(os.path.abspath(out_dir))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise NetDSLError(f"-o {out_dir}: cannot create it ({parent} is a file, not a directory)",
                          hint="give -o a directory you can write to")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise NetDSLError(f"-o {out_dir}: cannot create it ({parent} is not writable)",
                          hint="give -o a directory you can write to")


def _is_ours(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return "Generated by netdsl" in f.read(400)
    except OSError:
        return False


def _declaring_header(src, symbol):
    rx = re.compile(rf"\b{re.escape(symbol)}\s*\(")
    for rel in sorted(src.text):
        if rel.endswith(".h") and (rel.startswith("kernels/") or rel == "nd_common.h") and rx.search(src.text[rel]):
            return rel
    raise NetDSLError(f"no header in csrc/kernels declares {symbol}",
                      hint="this is a bug in netdsl's kernel sources; please report it")


def _batch_arenas(graph, batch, threads, lib):
    """[(n, arena bytes)] for a few batch sizes around `batch`: the header's table (activations
    plus workspace as this emitter sizes them)."""
    from ..runtime.plan import lower
    out = []
    for n in sorted({1, 2, 4, 8, batch}):
        try:
            plan = lower(graph, n)
        except NetDSLError:
            continue
        ws = max([_with_threads(lib, st.call, threads).ws_floats for st in plan.steps] + [0])
        out.append((n, (_aligned(plan.arena_floats) + _aligned(ws)) * 4))
    return out


def _weights_c(ctx, weights) -> str:
    P, p = ctx["P"], ctx["prefix"]
    lines = [f"/* model_weights.c — {ctx['model']}'s weights as one const array ({weights.size:,} floats).",
             " * Generated by netdsl (`--embed-weights`); do not edit. The same floats as model.weights,",
             f" * at the offsets model.h lists; {P}_WEIGHTS_CRC32 is their checksum. */",
             '#include "model.h"', "#include <math.h>", "",
             f"_Alignas(64) const float {p}_weights[{P}_WEIGHT_FLOATS > 0 ? {P}_WEIGHT_FLOATS : 1] = {{"]
    vals = weights.astype(np.float64).tolist()
    fmt = _c_float
    for i in range(0, len(vals), 8):
        lines.append("    " + ", ".join(fmt(v) for v in vals[i:i + 8]) + ",")
    if not vals:
        lines.append("    0.0f")
    lines.append("};")
    return "\n".join(lines) + "\n"


def model_c(ctx) -> str:
    """model.c: one static const params struct per step, then <prefix>_run as straight-line calls."""
    P, p, ffi, graph = ctx["P"], ctx["prefix"], ctx["ffi"], ctx["graph"]
    steps = ctx["steps"]
    L = [f"/* model.c — {ctx['model']} at batch {ctx['batch']} as straight-line kernel calls.",
         f" * Generated by netdsl (`netdsl compile {ctx['model']} --emit c`); do not edit.",
         " *",
         " * Each step is the KernelCall the Python executor would make: its params struct as a",
         " * static const initializer, its buffers as arena offsets (floats), its weights as offsets",
         f" * into the caller's weights ({P}_WEIGHT_FLOATS floats, model.h). No allocation, no stdio,",
         " * no mutable globals: all state is in the caller's arena and packed buffer. */",
         '#include "model.h"', "", "#include <math.h>", "#include <stddef.h>", "#include <stdint.h>",
         "#include <stdlib.h>", "#include <string.h>", "", '#include "nd_common.h"']
    L += [f'#include "{h}"' for h in ctx["headers"] if h != "nd_common.h"]
    L += ["", f"#define PK_MAGIC 0x4B50444Eu   /* 'NDPK': the head of a buffer {p}_pack() filled */",
          f"#define PK_HEAD {ctx['pack_head']}            /* floats before the first panel */", ""]
    L.append("/* the steps' params, as the planner filled them (netdsl/runtime/kparams) */")
    for i, s in enumerate(steps):
        nd = graph[s.node]
        L.append(f"/* {i}: {s.where} -> {list(nd.shape)} */")
        L.append(f"static const {s.call.struct} p{i} = {_struct_init(ffi, s.call.struct, s.call.fields, s.where)};")
    names = ", ".join(_c_string(s.node) for s in steps) or '""'
    L += ["", f"static const char *const layer_names[{max(len(steps), 1)}] = {{{names}}};", ""]
    pk = [i for i, s in enumerate(steps) if s.packable]
    if pk:
        L.append(f"static const nd_conv_params *const packable[{len(pk)}] = {{{', '.join(f'&p{i}' for i in pk)}}};")
        L.append(f"static const int64_t packable_w[{len(pk)}] = {{{', '.join(str(steps[i].w) for i in pk)}}};")
        L.append(f"static const int64_t packable_wfloats[{len(pk)}] = "
                 f"{{{', '.join(str(steps[i].wfloats) for i in pk)}}};")
    L += [tpl.MODEL_C_HELPERS.replace("PFXU", P).replace("PFX", p).replace("NPACK", str(len(pk)))]
    L.append(f"int {p}_run_io(const float *weights, const float *packed, void *arena_mem, size_t arena_bytes,")
    L.append("                const float *const inputs[], float *const outputs[])")
    L.append("{")
    L.append("    int32_t mr = 0;")
    L.append("    const int e0 = check_args(weights, packed, arena_mem, arena_bytes, &mr);")
    L.append("    if (e0 != 0)")
    L.append("        return e0;")
    L.append("    float *const arena = (float *)arena_mem;")
    L.append(f"    float *const ws = arena + {P}_WS_OFFSET;")
    L.append("    int64_t po = PK_HEAD;     /* the next packed conv's panels */")
    L.append("    nd_status st;")
    L.append("    (void)po;")
    L.append("    (void)ws;")
    for k, (name, shape, off) in enumerate(ctx["inputs"]):
        L.append(f"    if (!inputs || !inputs[{k}])")
        L.append(f"        return {P}_EARG;")
        L.append(f"    if (inputs[{k}] != arena + {off})   /* {name}: {list(shape)} */")
        L.append(f"        memcpy(arena + {off}, inputs[{k}], (size_t){math.prod(shape)} * sizeof(float));")
    for i, s in enumerate(steps):
        L.append(f"    /* {i}: {s.where} */")
        L.append("    {")
        if s.ins:
            L.append(f"        const float *const in[{len(s.ins)}] = {{{', '.join(f'arena + {o}' for o in s.ins)}}};")
        else:
            L.append("        const float *const *const in = NULL;")
        w = "NULL" if s.w is None else f"weights + {s.w}"
        b = "NULL" if s.b is None else f"weights + {s.b}"
        if s.packable:
            L.append(f"        nd_conv_params p = p{i};")
            L.append(f"        const float *w = {w};")
            L.append("        const int64_t f = mr > 0 ? pk_floats(&p, mr) : 0;")
            L.append("        if (f > 0) {")
            L.append("            p.w_packed_mr = mr;")
            L.append("            w = packed + po;")
            L.append("            po += f;")
            L.append("        }")
            L.append(f"        st = {s.call.symbol}(&p, arena + {s.out}, in, w, {b}, ws);")
        else:
            L.append(f"        st = {s.call.symbol}(&p{i}, arena + {s.out}, in, {w}, {b}, ws);")
        L.append("        if (st != ND_OK)")
        L.append(f"            return {P}_KERNEL_ERROR({i}, st);")
        L.append("    }")
    for k, (name, shape, off) in enumerate(ctx["outputs"]):
        L.append(f"    if (!outputs || !outputs[{k}])")
        L.append(f"        return {P}_EARG;")
        L.append(f"    memcpy(outputs[{k}], arena + {off}, (size_t){math.prod(shape)} * sizeof(float));   "
                 f"/* {name}: {list(shape)} */")
    L += ["    return 0;", "}", ""]
    if len(ctx["inputs"]) == 1 and len(ctx["outputs"]) == 1:
        L += [f"int {p}_run(const float *weights, const float *packed, void *arena, size_t arena_bytes,",
              "           const float *input, float *output)",
              "{",
              "    const float *const ins[1] = {input};",
              "    float *const outs[1] = {output};",
              f"    return {p}_run_io(weights, packed, arena, arena_bytes, ins, outs);",
              "}", ""]
    return "\n".join(L)


def _c_string(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'
