"""Bundles: one `.netc` file holding an optimized graph, its memory contract
and its (folded) weights, loadable without the front end (no lark).

Layout (little-endian; docs/BUNDLE.md has it byte by byte):

    0   8   magic  b"NETDSLC\\0"
    8   4   u32    format version (FORMAT_VERSION)
    12  4   u32    reserved, 0
    16  8   u64    header length H
    24  H          header: UTF-8 JSON (model, graph in plan order, contract, tensor table)
    ..  pad        zero bytes up to the next multiple of 64
    B   blob_bytes float32 weights, each tensor at a 64-byte aligned offset inside the blob
    ..  32         SHA-256 of every byte before it

Safety: nothing is unpickled or evaluated. Every length and offset is checked
against the file size before it is used, the JSON is checked field by field,
op names must be registered ops, attributes go through each op's own
validation, the graph is re-analyzed and must give the recorded shapes and
parameter shapes, and the tensor table must cover exactly those parameters,
inside the blob. Any problem is a NetDSLError naming the file.

What it deliberately does not store: the per-batch kernel plan. Lowering is
deterministic and cheap and its offsets depend on the batch size, so the
loader re-plans; the contract records what the planner produced at compile
time for batch 1 and 8 (`netdsl info` shows it before anything runs).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import struct
from math import prod

import numpy as np

from .errors import NetDSLError, Source, Span
from .passes import DEFAULT_LEVEL

MAGIC = b"NETDSLC\0"
FORMAT_VERSION = 1
PREFIX = struct.Struct("<8sIIQ")        # magic, version, reserved, header length
ALIGN = 64                              # bytes: blob start and every tensor offset
DIGEST = 32                             # SHA-256 trailer
CONTRACT_BATCHES = (1, 8)
MAX_NODES = 1_000_000
MAX_RANK = 8
MAX_DIM = 2**40
_PKG = os.path.dirname(os.path.abspath(__file__))


class BundleError(NetDSLError):
    """A bundle that cannot be read (corrupt, truncated, wrong version)."""


def _align(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


# ---------------------------------------------------------------- compiling

def optimize(model, level: int = DEFAULT_LEVEL, outputs=None):
    """Run the optimization passes on a Model; returns (optimized Model, report or None).

    The input model is left untouched. Level 0 returns an equivalent copy."""
    from .model import Model
    if not isinstance(level, int) or not 0 <= level <= 3:
        raise NetDSLError(f"optimization level must be 0, 1, 2 or 3, got {level!r}", hint="use -O0 .. -O3")
    from .passes import optimize as run_passes
    graph, weights, report = run_passes(model.graph, model.weights, level=level, outputs=outputs)
    m = Model(graph, model.name, model.path, threads=model.threads)
    m._weights = weights
    m.opt_level = level
    m.run_level = level                    # runs exactly as optimized here (and as a bundle would)
    return m, report


def contract(graph) -> dict:
    """The memory contract: weight bytes, arena/workspace bytes per batch size, op counts."""
    from .analysis.infer import totals
    from .runtime.plan import lower
    t = totals(graph)
    arena, ws = {}, {}
    for n in CONTRACT_BATCHES:
        plan = lower(graph, n)
        arena[str(n)] = int(plan.arena_bytes)
        wsf = getattr(plan, "ws_floats", None)
        if wsf is None:
            wsf = max([getattr(getattr(st, "call", None), "ws_floats", 0) or 0 for st in plan.steps] + [0])
        ws[str(n)] = int(wsf) * 4
    counts: dict[str, int] = {}
    for node in graph.nodes():
        counts[node.op] = counts.get(node.op, 0) + 1
    return {"weight_bytes": int(t["weight_bytes"]), "arena_bytes": arena, "workspace_bytes": ws,
            "op_counts": dict(sorted(counts.items())), "params": int(t["total_params"]),
            "macs": int(t["total_macs"]), "layers": len(graph)}


def _source_name(name: str) -> str:
    """Package files under their package-relative name; user files as given (no absolute paths)."""
    full = os.path.abspath(name) if os.path.isabs(name) or os.path.exists(name) else None
    if full and full.startswith(_PKG + os.sep):
        return os.path.relpath(full, _PKG)
    return os.path.basename(name) if os.path.isabs(name) else name


def _enc(v):
    """An attribute value as JSON: tuples become lists (restored as tuples on load)."""
    if isinstance(v, (tuple, list)):
        return [_enc(x) for x in v]
    if isinstance(v, float) and not np.isfinite(v):
        raise NetDSLError(f"cannot store the non-finite attribute value {v} in a bundle")
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return float(v)
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    raise NetDSLError(f"cannot store attribute value {v!r} ({type(v).__name__}) in a bundle")


def dumps(model, opt_level: int = 0, report=None, source: str | None = None) -> bytes:
    """The bundle bytes for an analyzed (optionally optimized) Model."""
    from . import __version__
    from .runtime.weights import expected
    g = model.graph
    sources: list[str] = []
    src_index: dict[str, int] = {}

    def where(span):
        if span is None:
            return None
        name = span.source.name
        if name not in src_index:
            src_index[name] = len(sources)
            sources.append(_source_name(name))
        return [src_index[name], span.line, span.col]

    nodes = []
    for node in g.nodes():
        if node.shape is None:
            raise NetDSLError(f"internal: layer {node.name} has no shape; analyze the graph before saving")
        nodes.append({"name": node.name, "op": node.op,
                      "attrs": {k: _enc(v) for k, v in node.attrs.items()},
                      "preds": g.preds(node.name), "shape": list(node.shape),
                      "params": {k: list(v) for k, v in node.params.items()},
                      "buffers": {k: list(v) for k, v in node.buffers.items()},
                      "scope": node.scope, "src": where(node.span)})
    tensors, chunks, off = {}, [], 0
    weights = model.weights
    for name, shape in expected(g).items():
        a = np.ascontiguousarray(weights[name], dtype="<f4")
        if tuple(a.shape) != tuple(shape):
            raise NetDSLError(f"internal: weight {name} has shape {list(a.shape)}, the graph says {list(shape)}")
        tensors[name] = {"offset": off, "shape": list(shape), "dtype": "f32"}
        chunks.append((off, a.tobytes()))
        off = _align(off + a.nbytes)
    blob_bytes = off
    report_lines = list(report.render()) if report is not None and hasattr(report, "render") else []
    header = {
        "format": "netdsl-bundle", "format_version": FORMAT_VERSION, "netdsl_version": __version__,
        "model": model.name, "source": _source_name(source or model.path or model.name),
        "opt_level": int(opt_level), "sources": sources,
        "inputs": list(g.inputs), "outputs": dict(g.outputs), "blocks": dict(g.blocks),
        "nodes": nodes, "contract": contract(g), "rewrites": report_lines,
        "tensors": tensors, "blob_bytes": blob_bytes,
    }
    hbytes = json.dumps(header, separators=(",", ":"), allow_nan=False).encode("utf-8")
    start = _align(PREFIX.size + len(hbytes))
    out = bytearray(start + blob_bytes)
    out[:PREFIX.size] = PREFIX.pack(MAGIC, FORMAT_VERSION, 0, len(hbytes))
    out[PREFIX.size:PREFIX.size + len(hbytes)] = hbytes
    for o, b in chunks:
        out[start + o:start + o + len(b)] = b
    out += hashlib.sha256(out).digest()
    return bytes(out)


def save(model, path: str, opt_level: int = 0, report=None, source: str | None = None) -> dict:
    """Write `model` as a bundle; returns its header (contract under 'contract')."""
    data = dumps(model, opt_level, report, source)
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise NetDSLError(f"cannot write {path}: {e.strerror or e}", hint="check the directory exists and is writable")
    return _parse(data, path)[0]


def compile_model(target, out: str | None = None, level: int = DEFAULT_LEVEL, weights=None):
    """Load `target` (.net path or zoo name), optimize at `level`, and write a bundle to `out`.
    Returns (optimized Model, report, header or None when out is None)."""
    from .model import load_source
    m = load_source(target, weights=weights)
    opt, report = optimize(m, level)
    header = save(opt, out, level, report, m.path) if out else None
    return opt, report, header


# ---------------------------------------------------------------- loading

def is_bundle(path: str) -> bool:
    """True for a .netc name or a file that starts with the bundle magic."""
    if str(path).lower().endswith(".netc"):
        return True
    try:
        with open(path, "rb") as f:
            return f.read(len(MAGIC)) == MAGIC
    except OSError:
        return False


def _read(path: str) -> bytearray:
    try:
        size = os.path.getsize(path)
        buf = bytearray(size)
        with open(path, "rb") as f:
            got = f.readinto(buf)
    except FileNotFoundError:
        raise NetDSLError(f"no such bundle: {path}", hint="make one with `netdsl compile MODEL -o MODEL.netc`")
    except OSError as e:
        raise NetDSLError(f"cannot read {path}: {e.strerror or e}")
    if got != size:
        raise BundleError(f"{path}: the file changed while it was read ({got} of {size} bytes)")
    return buf


def load(path: str, weights=None, threads: int | None = None):
    """Open a bundle as a ready-to-run Model (its weights view the file's bytes; nothing is pickled)."""
    header, model = _parse(_read(path), path, build=True)
    if threads is not None:
        model.threads = threads
    if weights is not None:
        model.load_weights(weights)
    return model


def loads(data, name: str = "<bundle>"):
    """A Model from bundle bytes (see `load`)."""
    return _parse(bytearray(data), name, build=True)[1]


def read_header(path: str) -> dict:
    """The validated header of a bundle (the whole file is checked, the runtime is not built)."""
    return _parse(_read(path), path, build=True)[0]


def _parse(buf, name, build=False):
    try:
        return _Reader(buf, name).parse(build)
    except NetDSLError:
        raise
    except (RecursionError, MemoryError) as e:
        raise BundleError(f"{name}: corrupt bundle: the header is too deeply nested or too large "
                          f"({type(e).__name__})", hint="recompile it with `netdsl compile`") from None
    except Exception as e:  # noqa: BLE001 — a check the reader lacks; still a clear error, never a crash
        raise BundleError(f"{name}: corrupt bundle (unexpected {type(e).__name__}: {e})",
                          hint="recompile it with `netdsl compile`") from None


class _Reader:
    def __init__(self, buf, name):
        self.buf, self.name = buf, name

    def fail(self, msg, hint="the file is truncated or corrupt; recompile it with `netdsl compile`"):
        raise BundleError(f"{self.name}: {msg}", hint=hint)

    # -- the container
    def parse(self, build):
        buf, size = self.buf, len(self.buf)
        if size < PREFIX.size or bytes(buf[:len(MAGIC)]) != MAGIC:
            if bytes(buf[:len(MAGIC)]) == MAGIC[:min(size, len(MAGIC))] and size < PREFIX.size:
                self.fail(f"truncated bundle ({size} bytes, the fixed prefix alone is {PREFIX.size})")
            self.fail("not a netdsl bundle (bad magic bytes)",
                      "a .netc file is written by `netdsl compile MODEL -o MODEL.netc`; .net sources are text")
        _, version, reserved, hlen = PREFIX.unpack_from(buf, 0)
        if version != FORMAT_VERSION:
            if version < FORMAT_VERSION:
                self.fail(f"written by bundle format {version}; this netdsl reads format {FORMAT_VERSION}",
                          "recompile it from its .net source with `netdsl compile`")
            self.fail(f"written by bundle format {version}, newer than this netdsl (reads format "
                      f"{FORMAT_VERSION})", "upgrade netdsl, or recompile the model with this version")
        if reserved != 0:
            self.fail(f"reserved prefix field is {reserved}, not 0")
        if hlen == 0 or hlen > size - PREFIX.size - DIGEST:
            self.fail(f"header length {hlen} does not fit in a file of {size} bytes")
        if size % 4 != 0:
            self.fail(f"file size {size} is not a multiple of 4 bytes")
        digest = hashlib.sha256(memoryview(buf)[:size - DIGEST]).digest()
        if digest != bytes(buf[size - DIGEST:]):
            self.fail("checksum mismatch: the file is corrupt or was truncated")
        try:
            text = bytes(buf[PREFIX.size:PREFIX.size + hlen]).decode("utf-8")
            h = json.loads(text, parse_constant=self._bad_constant)
        except UnicodeDecodeError as e:
            self.fail(f"header is not UTF-8 ({e.reason} at byte {e.start})")
        except json.JSONDecodeError as e:
            self.fail(f"header is not valid JSON ({e.msg} at line {e.lineno} column {e.colno})")
        start = _align(PREFIX.size + hlen)
        if any(buf[PREFIX.size + hlen:min(start, size)]):
            self.fail("non-zero padding between header and weights")
        h = self.header(h)
        if start + h["blob_bytes"] + DIGEST != size:
            self.fail(f"the header promises {h['blob_bytes']} weight bytes at offset {start}, but the "
                      f"file has {size - DIGEST - start} there")
        weights = self.tensors(h, start)
        if not build:
            return h, None
        return h, self.model(h, weights)

    def _bad_constant(self, c):
        self.fail(f"header holds the non-JSON number {c}")

    # -- the JSON header, field by field
    def field(self, d, key, kinds, where="header"):
        if not isinstance(d, dict):
            self.fail(f"{where} is not a JSON object")
        if key not in d:
            self.fail(f"{where} lacks '{key}'")
        v = d[key]
        if not isinstance(v, kinds) or (isinstance(v, bool) and bool not in _tuple(kinds)):
            want = " or ".join(k.__name__ for k in _tuple(kinds))
            self.fail(f"{where}: '{key}' must be {want}, got {type(v).__name__}")
        return v

    def count(self, v, what, lo=0, hi=2**62):
        if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
            self.fail(f"{what} must be an integer in [{lo}, {hi}], got {_short(v)}")
        return v

    def shape(self, v, what, lo=1):
        if not isinstance(v, list) or len(v) > MAX_RANK:
            self.fail(f"{what} must be a list of at most {MAX_RANK} sizes, got {_short(v)}")
        return tuple(self.count(x, what, lo, MAX_DIM) for x in v)

    def header(self, h):
        f = self.field
        if f(h, "format", str) != "netdsl-bundle":
            self.fail("header 'format' is not netdsl-bundle")
        if self.count(f(h, "format_version", int), "format_version") != FORMAT_VERSION:
            self.fail("header format_version disagrees with the file prefix")
        for k in ("netdsl_version", "model", "source"):
            f(h, k, str)
        self.count(f(h, "opt_level", int), "opt_level", 0, 3)
        sources = f(h, "sources", list)
        if not all(isinstance(s, str) for s in sources):
            self.fail("header 'sources' must be a list of file names")
        nodes = f(h, "nodes", list)
        if not 1 <= len(nodes) <= MAX_NODES:
            self.fail(f"header has {len(nodes)} nodes")
        seen = {}
        for i, nd in enumerate(nodes):
            where = f"node {i}"
            name = f(nd, "name", str, where)
            where = f"node {i} ({_short(name)})"
            if not name or name in seen:
                self.fail(f"{where}: empty or duplicate node name")
            f(nd, "op", str, where)
            f(nd, "attrs", dict, where)
            preds = f(nd, "preds", list, where)
            for p in preds:
                if not isinstance(p, str) or p not in seen:
                    self.fail(f"{where}: input {_short(p)} is not an earlier node (nodes must be in plan order)")
            self.shape(f(nd, "shape", list, where), f"{where} shape")
            for key in ("params", "buffers"):
                for k, s in f(nd, key, dict, where).items():
                    self.shape(s, f"{where} {key} {_short(k)}", lo=0)
            f(nd, "scope", str, where)
            src = nd.get("src")
            if src is not None:
                if not (isinstance(src, list) and len(src) == 3):
                    self.fail(f"{where}: 'src' must be [file, line, col] or null")
                self.count(src[0], f"{where} src file", 0, len(sources) - 1)
                self.count(src[1], f"{where} src line", 0)
                self.count(src[2], f"{where} src col", 0)
            seen[name] = nd
        ins = f(h, "inputs", list)
        if not ins or any(not isinstance(x, str) or x not in seen or seen[x]["op"] != "Input" for x in ins):
            self.fail("header 'inputs' must name Input nodes of the graph")
        if len(set(ins)) != len(ins):
            self.fail("header 'inputs' repeats a name")
        outs = f(h, "outputs", dict)
        if not outs or any(not isinstance(v, str) or v not in seen for v in outs.values()):
            self.fail("header 'outputs' must map names to nodes of the graph")
        blocks = f(h, "blocks", dict)
        if not all(isinstance(v, str) for v in blocks.values()):
            self.fail("header 'blocks' must map prefixes to block names")
        c = f(h, "contract", dict)
        for key in ("weight_bytes", "params", "macs", "layers"):
            self.count(f(c, key, int, "contract"), f"contract {key}")
        for key in ("arena_bytes", "workspace_bytes"):
            for k, v in f(c, key, dict, "contract").items():
                self.count(v, f"contract {key}[{_short(k)}]")
        for k, v in f(c, "op_counts", dict, "contract").items():
            self.count(v, f"contract op_counts[{_short(k)}]")
        rewrites = f(h, "rewrites", list)
        if not all(isinstance(s, str) for s in rewrites):
            self.fail("header 'rewrites' must be a list of lines")
        f(h, "tensors", dict)
        self.count(f(h, "blob_bytes", int), "blob_bytes", 0, len(self.buf))
        return h

    # -- the tensor table
    def tensors(self, h, start):
        blob = h["blob_bytes"]
        out, spans = {}, []
        for tname, t in h["tensors"].items():
            where = f"tensor {_short(tname)}"
            off = self.count(self.field(t, "offset", int, where), f"{where} offset", 0, blob)
            if self.field(t, "dtype", str, where) != "f32":
                self.fail(f"{where}: dtype {_short(t['dtype'])} is not supported (only f32)")
            shape = self.shape(self.field(t, "shape", list, where), f"{where} shape", lo=0)
            n = prod(shape)
            if off % 4 or off + 4 * n > blob:
                self.fail(f"{where}: {4 * n} bytes at offset {off} lie outside the {blob}-byte weight blob")
            spans.append((off, off + 4 * n, tname))
            a = np.frombuffer(self.buf, dtype="<f4", count=n, offset=start + off).reshape(shape)
            out[tname] = a
        spans.sort()
        for (a0, a1, an), (b0, b1, bn) in zip(spans, spans[1:]):
            if b0 < a1 and a1 > a0 and b1 > b0:
                self.fail(f"tensors {_short(an)} and {_short(bn)} overlap in the weight blob")
        return out

    def attr(self, v, nd, key, depth=0):
        """JSON attribute value -> the IR's: lists become tuples; scalars stay; objects are refused."""
        if isinstance(v, list) and depth < 4:
            return tuple(self.attr(x, nd, key, depth + 1) for x in v)
        if v is None or isinstance(v, (bool, int, float, str)):
            return v
        self.fail(f"node {_short(nd['name'])}: attribute {_short(key)} holds {_short(v)}, not a value")

    # -- the graph
    def model(self, h, weights):
        from . import ops
        from .analysis.infer import analyze
        from .graph import Graph
        from .model import Model
        from .ops.base import OpError
        srcs = [Source(s, "") for s in h["sources"]]
        g = Graph()
        stored = {}
        for nd in h["nodes"]:
            spec = ops.lookup(nd["op"])
            if spec is None or spec.name != nd["op"]:
                from .errors import did_you_mean
                self.fail(f"node {_short(nd['name'])}: unknown op {_short(nd['op'])}",
                          (did_you_mean(nd["op"], ops.all_names()) or "") +
                          " the bundle was written by a netdsl with ops this one lacks; recompile it")
            attrs = {k: self.attr(v, nd, k) for k, v in nd["attrs"].items()}
            declared = {a.name for a in spec.attrs}
            try:
                bound = spec.bind([], {k: v for k, v in attrs.items() if k in declared})
            except OpError as e:
                self.fail(f"node {_short(nd['name'])} ({nd['op']}): bad attribute: {e.message}")
            span = None
            if nd.get("src") is not None:
                fi, line, col = nd["src"]
                span = Span(srcs[fi], line, col)
            if nd["op"] == "Input" and nd["preds"]:
                self.fail(f"node {_short(nd['name'])}: an Input has no inputs")
            g.add(nd["name"], nd["op"], bound, span, scope=nd["scope"])
            for slot, p in enumerate(nd["preds"]):
                g.connect(p, nd["name"], slot)
            if g.preds(nd["name"]) != nd["preds"]:
                self.fail(f"node {_short(nd['name'])}: inputs {_short(nd['preds'])} repeat a layer")
            stored[nd["name"]] = (attrs, nd)
        if list(g.inputs) != list(h["inputs"]):
            self.fail("header 'inputs' does not list the graph's Input nodes in order")
        g.outputs = dict(h["outputs"])
        g.blocks = dict(h["blocks"])
        try:
            analyze(g)
        except NetDSLError as e:
            self.fail("the stored graph does not check: " + e.diagnostics[0].message,
                      "the bundle is corrupt or was written by an incompatible netdsl; recompile it")
        for node in g.nodes():
            attrs, nd = stored[node.name]
            if node.attrs != attrs:
                diff = sorted(k for k in set(attrs) | set(node.attrs) if attrs.get(k, _MISSING) != node.attrs.get(k))
                self.fail(f"node {node.name}: stored attributes disagree with the op's resolution ({', '.join(diff)})")
            if tuple(nd["shape"]) != tuple(node.shape):
                self.fail(f"node {node.name}: stored shape {nd['shape']} but the graph gives {list(node.shape)}")
            for key in ("params", "buffers"):
                want = {k: tuple(v) for k, v in getattr(node, key).items()}
                if {k: tuple(v) for k, v in nd[key].items()} != want:
                    self.fail(f"node {node.name}: stored {key} disagree with the op ({want})")
        from .runtime.weights import expected
        want = expected(g)
        missing = [k for k in want if k not in weights]
        extra = [k for k in weights if k not in want]
        if missing or extra:
            what = f"missing {', '.join(missing[:3])}" if missing else f"unexpected {', '.join(extra[:3])}"
            self.fail(f"the tensor table does not match the graph's parameters ({what})")
        for k, shape in want.items():
            if tuple(weights[k].shape) != tuple(shape):
                self.fail(f"tensor {k} has shape {list(weights[k].shape)}; the graph needs {list(shape)}")
            if not np.isfinite(weights[k]).all():
                self.fail(f"tensor {k} holds NaN or infinite values")
        from .analysis.infer import totals
        t, c = totals(g), h["contract"]
        counts: dict[str, int] = {}
        for node in g.nodes():
            counts[node.op] = counts.get(node.op, 0) + 1
        actual = {"weight_bytes": t["weight_bytes"], "params": t["total_params"], "macs": t["total_macs"],
                  "layers": len(g), "op_counts": counts}
        for key, v in actual.items():
            if c[key] != v:
                self.fail(f"the memory contract's {key} ({_short(c[key])}) disagrees with the graph ({_short(v)})")
        m = Model(g, h["model"], self.name)
        m._weights = {k: weights[k] for k in want}
        m.opt_level = h["opt_level"]
        m.run_level = m.opt_level          # run the graph exactly as it was compiled
        m.bundle = h
        return m


_MISSING = object()


def _tuple(kinds):
    return kinds if isinstance(kinds, tuple) else (kinds,)


def _short(v, n=40):
    s = repr(v)
    return s if len(s) <= n else s[:n - 1] + "…"


# ---------------------------------------------------------------- showing the contract

def size_text(b: int) -> str:
    """Bytes for people: KiB below a MiB, else MiB."""
    return f"{b / 2**20:,.1f} MiB" if b >= 2**20 else f"{b / 1024:,.1f} KiB"


def info_text(h: dict, path: str = "") -> str:
    """What `netdsl info MODEL.netc` prints: where it came from and its memory contract."""
    c = h["contract"]
    size = os.path.getsize(path) if path and os.path.exists(path) else None
    lines = [f"{path or h['model']}: netdsl bundle, format {h['format_version']}"
             + (f", {size:,} bytes" if size is not None else ""),
             f"  model:    {h['model']} (from {h['source']}, netdsl {h['netdsl_version']}, -O{h['opt_level']})",
             "  inputs:   " + ", ".join(f"{n} {'x'.join(map(str, nd['shape']))}"
                                        for n in h["inputs"] for nd in h["nodes"] if nd["name"] == n),
             "  outputs:  " + ", ".join(f"{k} {'x'.join(map(str, nd['shape']))}"
                                        for k, v in h["outputs"].items() for nd in h["nodes"] if nd["name"] == v),
             f"  layers:   {c['layers']}, {c['params']:,} params, "
             + (f"{c['macs'] / 1e9:.2f} GMACs" if c["macs"] >= 1e8 else f"{c['macs'] / 1e6:.2f} MMACs")
             + " per image",
             f"  weights:  {c['weight_bytes']:,} bytes ({size_text(c['weight_bytes'])})"]
    for n, b in c["arena_bytes"].items():
        ws = c["workspace_bytes"].get(n, 0)
        lines.append(f"  arena:    batch {n}: {b:,} bytes ({size_text(b)})"
                     + (f" + workspace {ws:,} bytes" if ws else ""))
    lines.append("  ops:      " + ", ".join(f"{op} {k}" for op, k in
                                            sorted(c["op_counts"].items(), key=lambda x: (-x[1], x[0]))))
    totals = [r for r in h.get("rewrites", []) if re.fullmatch(r"[A-Za-z_]\w*: \d+ rewrites?", r)]
    shown = [r.replace(" rewrites", "").replace(" rewrite", "") for r in totals if not r.endswith(": 0 rewrites")]
    lines.append(f"  compiled: -O{h['opt_level']}" + (": " + ", ".join(shown) if shown else ", no rewrites")
                 + " (rewrites per pass; `netdsl compile --report` lists each)")
    return "\n".join(lines)
