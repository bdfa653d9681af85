"""Bundles: the `.netc` file format — write, read, validate. Nothing else: the compile
pipeline (optimize, plan, write, load back and check) is `netdsl/compiler.py`, the text
`netdsl info` prints is `netdsl/cli_format.py`, and turning a bundle into a Model is
`netdsl.model.load_bundle`.

Layout (little-endian; docs/BUNDLE.md has it byte by byte):

    0   8   magic  b"NETDSLC\\0"
    8   4   u32    format version (FORMAT_VERSION)
    12  4   u32    reserved, 0
    16  8   u64    header length H
    24  H          header: UTF-8 JSON (model, graph in plan order, contract, tensor table)
    ..  pad        zero bytes up to the next multiple of 64
    B   blob_bytes weights (float32; int8 for an int8 bundle's quantized layers), each tensor
               at a 64-byte aligned offset inside the blob
    ..  32         SHA-256 of every byte before it

Attributes. A node stores two forms: `attrs`, the op's declared arguments in a form that
binds cleanly through the op's own validation (what a `.net` line could say), and
`resolved`, what analysis made of them (`same` padding as numbers, Upsample's size next to
its scale, derived `in_channels`). The reader binds `attrs`, re-analyzes, and requires the
result to equal `resolved`; storing only the resolved form does not work, because a
resolved form need not bind (Upsample(2) resolves to scale *and* size, which its
validation refuses), and storing only the declared form would lose the check that this
netdsl resolves the graph as the writer's did.

Safety: nothing is unpickled or evaluated, and no field is used before it is checked. The
prefix is checked before anything else is read; every length, offset, count and index
(header length, blob length, tensor offsets and sizes, edge endpoints, input slots, source
indices, output names) is checked explicitly against the file and the graph; every op
must be registered and take the number of inputs it is given; the graph is re-analyzed
and must give the recorded shapes and parameter shapes; the tensor table must hold
exactly those parameters, inside the blob, aligned and disjoint. Every problem is a
BundleError naming the file: there is no catch-all, and the fuzzer
(tests/unit/test_bundle_fuzz.py) fails on any other exception.

int8 bundles (`netdsl quantize`, docs/QUANTIZE.md) add a header key `quant`: the calibration
method, and per int8 layer the input's scale and zero point. Each such layer's `weight` is
dtype `i8` and a further tensor `<layer>.weight_scale` (float32, one per output channel)
sits next to it; everything else is as in a float32 bundle. A bundle without `quant` is
read exactly as before, and a bundle that has one is checked as strictly (the layer must be
a Conv of groups 1 or an FC, its zero point 0..255, its scale positive and finite).

What it deliberately does not store: the per-batch kernel plan. Lowering is deterministic
and cheap and its offsets depend on the batch size, so the loader re-plans from the
checked graph — a bundle cannot hand the C code an offset. The contract records what the
planner produced at compile time for batch 1 and 8 (`netdsl info` shows it).
"""
from __future__ import annotations

import hashlib
import json
import os
import struct
from dataclasses import dataclass
from math import prod

import numpy as np

from ._version import __version__
from .errors import NetDSLError, Source, Span, did_you_mean
from .fileio import write_bytes_atomic

MAGIC = b"NETDSLC\0"
FORMAT_VERSION = 2                      # 2: nodes carry `attrs` (bindable) and `resolved`
PREFIX = struct.Struct("<8sIIQ")        # magic, version, reserved, header length
ALIGN = 64                              # bytes: blob start and every tensor offset
DIGEST = 32                             # SHA-256 trailer
CONTRACT_BATCHES = (1, 8)
MAX_NODES = 1_000_000
MAX_HEADER = 2**30                      # bytes of JSON
MAX_RANK = 64                           # any rank the language can write (Reshape) fits
MAX_DIM = 2**40
MAX_ELEMS = 2**48                       # per-sample elements of one tensor
MAX_NAME = 4096                         # characters in a node, tensor or output name
MAX_ATTR_LEN = 64                       # items in one attribute list
CHUNK = 1 << 20                         # bytes per read when streaming
_PKG = os.path.dirname(os.path.abspath(__file__))
_NODE_KEYS = {"name", "op", "attrs", "resolved", "preds", "shape", "params", "buffers", "scope", "src"}
_TENSOR_KEYS = {"offset", "shape", "dtype"}
DTYPES = {"f32": "<f4", "i8": "i1"}      # tensor dtype -> numpy; i8 only in an int8 bundle's `weight`
_QUANT_KEYS = {"method", "layers", "skipped"}
QUANT_METHODS = ("minmax", "percentile", "entropy")   # netdsl/quant/observers.py implements each (its METHODS)
_QLAYER_KEYS = {"in_scale", "in_zero", "lo", "hi"}


class BundleError(NetDSLError):
    """A bundle that cannot be read (corrupt, truncated, wrong version, hostile)."""


@dataclass
class Bundle:
    """A read and checked bundle: its header, the analyzed graph, and the weights (views of
    the file's bytes, or None when only the header was read)."""
    header: dict
    graph: object
    weights: dict | None


def _align(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


# ---------------------------------------------------------------- writing

def contract(graph) -> dict:
    """The memory contract: weight bytes, arena/workspace bytes per batch size, op counts.

    The arena comes from the memory plan alone, which every graph has. The workspace needs
    the kernels' parameters; a batch size whose kernels refuse the graph (a merge wider
    than a kernel takes, say) is recorded under `limits` with the reason instead of
    failing the write — the runtime refuses that batch size the same way."""
    from .analysis.infer import totals
    from .runtime.executor import PlanError
    from .runtime.plan import lower
    t = totals(graph)
    arena, ws, limits = {}, {}, {}
    for n in CONTRACT_BATCHES:
        arena[str(n)] = int(lower(graph, n, kernels=False).arena_bytes)
        try:
            plan = lower(graph, n)
        except (PlanError, NetDSLError) as e:
            limits[str(n)] = e.diagnostics[0].message if isinstance(e, NetDSLError) else str(e)
            continue
        ws[str(n)] = 4 * int(max([getattr(st.call, "ws_floats", 0) or 0 for st in plan.steps] + [0]))
    out = {"weight_bytes": int(t["weight_bytes"]), "arena_bytes": arena, "workspace_bytes": ws,
           "op_counts": op_counts(graph), "params": int(t["total_params"]),
           "macs": int(t["total_macs"]), "layers": len(graph)}
    if limits:
        out["limits"] = limits
    return out


def op_counts(graph) -> dict:
    counts: dict[str, int] = {}
    for node in graph.nodes():
        counts[node.op] = counts.get(node.op, 0) + 1
    return dict(sorted(counts.items()))


def source_name(name: str) -> str:
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
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return _enc(float(v))
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    raise NetDSLError(f"cannot store attribute value {v!r} ({type(v).__name__}) in a bundle")


def bindable_attrs(spec, node, shapes) -> dict:
    """The declared attributes of `node` in a form that binds through the op's validation
    and resolves to exactly `node.attrs` (what the reader will do). The resolved values
    themselves usually are that form; where resolution adds a value the op refuses next to
    another (Upsample: scale and size), one of them is dropped back to its default."""
    from .ops.attrs import OpError
    declared = [a.name for a in spec.attrs]
    full = {k: node.attrs[k] for k in declared if k in node.attrs}

    def rebinds(cand):
        try:
            return spec.resolve(spec.bind([], cand), shapes) == node.attrs
        except OpError:
            return False

    if rebinds(full):
        return full
    for k in declared:
        cand = {x: v for x, v in full.items() if x != k}
        if k in full and rebinds(cand):
            return cand
    raise NetDSLError(f"cannot store layer {node.name} ({node.op}): its resolved attributes "
                      f"{node.attrs} do not re-bind through the op's validation", node.span,
                      "this is a bug in netdsl (the op's resolve and check disagree); please report it")


def encode_header(graph, *, name="model", opt_level=0, report=None, source=None,
                  initial_weights=False, quant=None) -> dict:
    """The header (a JSON-ready dict) for an analyzed graph: everything but the weight bytes.
    The tensor table lays out the graph's parameters and buffers, 64-byte aligned.
    quant: an int8 bundle's `quant` section (netdsl/quant/bundle.py)."""
    from . import ops
    from .runtime.weights import expected
    sources: list[str] = []
    src_index: dict[str, int] = {}

    def where(span):
        if span is None:
            return None
        sname = span.source.name
        if sname not in src_index:
            src_index[sname] = len(sources)
            sources.append(source_name(sname))
        return [src_index[sname], span.line, span.col]

    nodes = []
    for node in graph.nodes():
        if node.shape is None:
            raise NetDSLError(f"internal: layer {node.name} has no shape; analyze the graph before saving")
        preds = graph.preds(node.name)
        spec = ops.get(node.op)
        attrs = bindable_attrs(spec, node, [graph[p].shape for p in preds])
        nodes.append({"name": node.name, "op": node.op,
                      "attrs": {k: _enc(v) for k, v in attrs.items()},
                      "resolved": {k: _enc(v) for k, v in node.attrs.items()},
                      "preds": preds, "shape": list(node.shape),
                      "params": {k: list(v) for k, v in node.params.items()},
                      "buffers": {k: list(v) for k, v in node.buffers.items()},
                      "scope": node.scope, "src": where(node.span)})
    tensors, off = {}, 0
    table = dict(expected(graph))
    qlayers = (quant or {}).get("layers", {})
    for layer in qlayers:
        table[f"{layer}.weight_scale"] = (graph[layer].shape[0],)
    for tname, shape in table.items():
        dt = "i8" if tname.endswith(".weight") and tname[:-len(".weight")] in qlayers else "f32"
        tensors[tname] = {"offset": off, "shape": list(shape), "dtype": dt}
        off = _align(off + (1 if dt == "i8" else 4) * prod(shape))
    report_lines = list(report.render()) if report is not None and hasattr(report, "render") else []
    return {
        "format": "netdsl-bundle", "format_version": FORMAT_VERSION, "netdsl_version": __version__,
        "model": name, "source": source_name(source or name),
        "opt_level": int(opt_level), "sources": sources,
        "weights": "initial" if initial_weights else "loaded",    # seed-0 init, or real ones
        "inputs": list(graph.inputs), "outputs": dict(graph.outputs), "blocks": dict(graph.blocks),
        "nodes": nodes, "contract": contract(graph), "rewrites": report_lines,
        "tensors": tensors, "blob_bytes": off,
        **({"quant": quant} if quant is not None else {}),
    }


def dumps(graph, weights, *, name="model", opt_level=0, report=None, source=None,
          initial_weights=False, quant=None) -> bytes:
    """The bundle bytes for an analyzed (optionally optimized) graph and its weights;
    initial_weights: the weights are the deterministic initialization, not trained ones;
    quant: the `quant` section of an int8 bundle (its layers' weights int8)."""
    header = encode_header(graph, name=name, opt_level=opt_level, report=report, source=source,
                           initial_weights=initial_weights, quant=quant)
    hbytes = json.dumps(header, separators=(",", ":"), allow_nan=False).encode("utf-8")
    start = _align(PREFIX.size + len(hbytes))
    out = bytearray(start + header["blob_bytes"])
    out[:PREFIX.size] = PREFIX.pack(MAGIC, FORMAT_VERSION, 0, len(hbytes))
    out[PREFIX.size:PREFIX.size + len(hbytes)] = hbytes
    for tname, t in header["tensors"].items():
        a = np.ascontiguousarray(weights[tname], dtype=DTYPES[t["dtype"]])
        if list(a.shape) != t["shape"]:
            raise NetDSLError(f"internal: weight {tname} has shape {list(a.shape)}, the graph says {t['shape']}")
        o = start + t["offset"]
        out[o:o + a.nbytes] = a.tobytes()
    out += hashlib.sha256(out).digest()
    return bytes(out)


def check_header(h, name: str = "<header>") -> Bundle:
    """Run the reader's header and graph checks on a header dict alone (no file, no weights):
    what `encode_header` wrote must come back as the same graph."""
    blob = h.get("blob_bytes") if isinstance(h, dict) else None
    size = _align(PREFIX.size + 1) + (blob if isinstance(blob, int) and blob >= 0 else 0) + DIGEST
    r = _Reader(name, size)
    r.hlen = 1
    return r.build(r.header(h), None, 0)


def write(path: str, data: bytes, atomic: bool = True):
    """Write bundle bytes to `path`: atomically (a temporary file renamed over it), or, with
    atomic=False, straight to `path` (for a caller that renames the file itself)."""
    hint = "check the directory exists and is writable"
    if atomic:
        write_bytes_atomic(path, data, hint)
        return
    try:
        with open(path, "wb") as f:
            f.write(data)
    except OSError as e:
        try:
            os.unlink(path)
        except OSError:
            pass
        raise NetDSLError(f"cannot write {path}: {e.strerror or e}", hint=hint) from None


# ---------------------------------------------------------------- reading

def is_bundle(path: str) -> bool:
    """True for a .netc name or a file that starts with the bundle magic."""
    if str(path).lower().endswith(".netc"):
        return True
    try:
        with open(path, "rb") as f:
            return f.read(len(MAGIC)) == MAGIC
    except OSError:
        return False


def _open(path):
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise NetDSLError(f"no such bundle: {path}", hint="make one with `netdsl compile MODEL -o MODEL.netc`")
    except OSError as e:
        raise NetDSLError(f"cannot read {path}: {e.strerror or e}")


def _read_exact(f, n, path, what):
    try:
        data = f.read(n)
    except OSError as e:
        raise NetDSLError(f"cannot read {path}: {e.strerror or e}")
    if len(data) != n:
        raise BundleError(f"{path}: the file changed while it was read (short read of the {what})")
    return data


def read_file(path: str, weights: bool = True) -> Bundle:
    """Read and check a bundle file. The prefix and header are read and checked first, so a
    file that is not a bundle (or whose header promises another size) is refused after
    reading a few bytes. With weights=False (what `netdsl info` needs) the rest is
    streamed through the checksum and the weights are not kept."""
    with _open(path) as f:
        size = os.fstat(f.fileno()).st_size
        r = _Reader(path, size)
        hlen = r.prefix(_read_exact(f, min(size, PREFIX.size), path, "prefix"))
        text = _read_exact(f, hlen, path, "header")
        h = r.header(r.json(text))
        start = r.layout(h)
        pad = _read_exact(f, start - PREFIX.size - hlen, path, "padding")
        r.padding(pad)
        digest = hashlib.sha256(PREFIX.pack(MAGIC, FORMAT_VERSION, 0, hlen) + text + pad)
        if weights:
            buf = bytearray(size - start)
            view = memoryview(buf)
            got = 0
            try:
                while got < len(buf):
                    k = f.readinto(view[got:])
                    if not k:
                        break
                    got += k
            except OSError as e:
                raise NetDSLError(f"cannot read {path}: {e.strerror or e}")
            if got != len(buf):
                raise BundleError(f"{path}: the file changed while it was read ({start + got} of {size} bytes)")
            digest.update(view[:len(buf) - DIGEST])
            r.checksum(digest.digest(), bytes(view[len(buf) - DIGEST:]))
            return r.build(h, buf, 0)
        left = size - start - DIGEST
        while left > 0:
            chunk = _read_exact(f, min(CHUNK, left), path, "weights")
            digest.update(chunk)
            left -= len(chunk)
        r.checksum(digest.digest(), _read_exact(f, DIGEST, path, "checksum"))
        return r.build(h, None, 0)


def loads(data, name: str = "<bundle>") -> Bundle:
    """Read and check bundle bytes (the weights are views of a private copy of `data`)."""
    buf = bytearray(data)
    r = _Reader(name, len(buf))
    hlen = r.prefix(bytes(buf[:PREFIX.size]))
    h = r.header(r.json(bytes(buf[PREFIX.size:PREFIX.size + hlen])))
    start = r.layout(h)
    r.padding(bytes(buf[PREFIX.size + hlen:start]))
    r.checksum(hashlib.sha256(memoryview(buf)[:len(buf) - DIGEST]).digest(), bytes(buf[len(buf) - DIGEST:]))
    return r.build(h, buf, start)


def read_header(path: str) -> dict:
    """The checked header of a bundle file: the whole file goes through the checksum and the
    graph is re-analyzed, but the weights are streamed, not kept."""
    return read_file(path, weights=False).header


class _Reader:
    """The checks, in the order docs/BUNDLE.md lists them. Each method checks one part and
    raises BundleError naming the file; none lets another exception out."""

    def __init__(self, name, size):
        self.name, self.size = name, size

    def fail(self, msg, hint="the file is truncated or corrupt; recompile it with `netdsl compile`"):
        raise BundleError(f"{self.name}: {msg}", hint=hint)

    # -- the container
    def prefix(self, head: bytes) -> int:
        size = self.size
        if len(head) < PREFIX.size or head[:len(MAGIC)] != MAGIC:
            if size < PREFIX.size and head == MAGIC[:len(head)]:
                self.fail(f"truncated bundle ({size} bytes, the fixed prefix alone is {PREFIX.size})")
            self.fail("not a netdsl bundle (bad magic bytes)",
                      "a .netc file is written by `netdsl compile MODEL -o MODEL.netc`; .net sources are text")
        _, version, reserved, hlen = PREFIX.unpack(head)
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
        if hlen > MAX_HEADER:
            self.fail(f"header length {hlen} is over the {MAX_HEADER}-byte limit")
        if size % 4 != 0:
            self.fail(f"file size {size} is not a multiple of 4 bytes")
        self.hlen = hlen
        return hlen

    def json(self, raw: bytes):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            self.fail(f"header is not UTF-8 ({e.reason} at byte {e.start})")
        try:
            return json.loads(text, parse_constant=self._bad_constant)
        except json.JSONDecodeError as e:
            self.fail(f"header is not valid JSON ({e.msg} at line {e.lineno} column {e.colno})")
        except RecursionError:
            self.fail("header is nested too deeply to be a bundle header")

    def _bad_constant(self, c):
        self.fail(f"header holds the non-JSON number {c}")

    def layout(self, h) -> int:
        start = _align(PREFIX.size + self.hlen)
        if start + h["blob_bytes"] + DIGEST != self.size:
            self.fail(f"the header promises {h['blob_bytes']} weight bytes at offset {start}, but the "
                      f"file has {self.size - DIGEST - start} there")
        return start

    def padding(self, pad: bytes):
        if any(pad):
            self.fail("non-zero padding between header and weights")

    def checksum(self, got: bytes, stored: bytes):
        if got != stored:
            self.fail("checksum mismatch: the file is corrupt or was truncated")

    # -- the JSON header, field by field
    def field(self, d, key, kinds, where="header"):
        if not isinstance(d, dict):
            self.fail(f"{where} is not a JSON object")
        if key not in d:
            self.fail(f"{where} lacks '{key}'")
        v = d[key]
        kinds = kinds if isinstance(kinds, tuple) else (kinds,)
        if not isinstance(v, kinds) or (isinstance(v, bool) and bool not in kinds):
            want = " or ".join(k.__name__ for k in kinds)
            self.fail(f"{where}: '{key}' must be {want}, got {type(v).__name__}")
        return v

    def count(self, v, what, lo=0, hi=2**62):
        if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
            self.fail(f"{what} must be an integer in [{lo}, {hi}], got {_short(v)}")
        return v

    def text(self, v, what, empty=False):
        if not isinstance(v, str) or (not v and not empty) or len(v) > MAX_NAME:
            self.fail(f"{what} must be a{'' if empty else ' non-empty'} string of at most {MAX_NAME} "
                      f"characters, got {_short(v)}")
        return v

    def shape(self, v, what, lo=1):
        if not isinstance(v, list) or len(v) > MAX_RANK or (lo and not v):
            self.fail(f"{what} must be a list of 1 to {MAX_RANK} sizes, got {_short(v)}")
        dims = tuple(self.count(x, what, lo, MAX_DIM) for x in v)
        if prod(dims) > MAX_ELEMS:
            self.fail(f"{what} {_short(list(dims))} holds over {MAX_ELEMS} values")
        return dims

    def strmap(self, d, what, value_ok):
        if not isinstance(d, dict):
            self.fail(f"{what} must be a JSON object")
        for k, v in d.items():
            self.text(k, f"{what} key")
            value_ok(k, v)
        return d

    def header(self, h):
        f = self.field
        if not isinstance(h, dict):
            self.fail("the header is not a JSON object")
        if f(h, "format", str) != "netdsl-bundle":
            self.fail("header 'format' is not netdsl-bundle")
        if self.count(f(h, "format_version", int), "format_version") != FORMAT_VERSION:
            self.fail("header format_version disagrees with the file prefix")
        for k in ("netdsl_version", "model", "source"):
            f(h, k, str)
        self.count(f(h, "opt_level", int), "opt_level", 0, 3)
        if f(h, "weights", str) not in ("initial", "loaded"):
            self.fail("header 'weights' must be initial or loaded")
        sources = f(h, "sources", list)
        for s in sources:
            self.text(s, "a 'sources' entry")
        nodes = f(h, "nodes", list)
        if not 1 <= len(nodes) <= MAX_NODES:
            self.fail(f"header has {len(nodes)} nodes (1 to {MAX_NODES})")
        seen = {}
        for i, nd in enumerate(nodes):
            self.node(nd, i, seen, len(sources))
        ins = f(h, "inputs", list)
        if not ins or any(not isinstance(x, str) or x not in seen or seen[x]["op"] != "Input" for x in ins):
            self.fail("header 'inputs' must name Input nodes of the graph")
        if len(set(ins)) != len(ins):
            self.fail("header 'inputs' repeats a name")
        outs = f(h, "outputs", dict)
        if not outs:
            self.fail("header 'outputs' is empty")
        for k, v in outs.items():
            self.text(k, "an output name")
            if not isinstance(v, str) or v not in seen:
                self.fail(f"output {_short(k)} names {_short(v)}, not a node of the graph")
        self.strmap(f(h, "blocks", dict), "header 'blocks'",
                    lambda k, v: self.text(v, f"block {_short(k)}"))
        c = f(h, "contract", dict)
        for key in ("weight_bytes", "params", "macs", "layers"):
            self.count(f(c, key, int, "contract"), f"contract {key}")
        for key in ("arena_bytes", "workspace_bytes"):
            self.strmap(f(c, key, dict, "contract"), f"contract {key}",
                        lambda k, v, key=key: self.count(v, f"contract {key}[{_short(k)}]"))
        self.strmap(f(c, "op_counts", dict, "contract"), "contract op_counts",
                    lambda k, v: self.count(v, f"contract op_counts[{_short(k)}]"))
        if "limits" in c:
            self.strmap(f(c, "limits", dict, "contract"), "contract limits",
                        lambda k, v: self.text(v, f"contract limits[{_short(k)}]"))
        for r in f(h, "rewrites", list):
            self.text(r, "a 'rewrites' line", empty=True)
        blob = self.count(f(h, "blob_bytes", int), "blob_bytes", 0, self.size)
        if blob % 4:
            self.fail(f"blob_bytes {blob} is not a whole number of float32 values")
        tensors = f(h, "tensors", dict)
        for tname, t in tensors.items():
            self.tensor(tname, t, blob)
        if "quant" in h:
            self.quant(h["quant"])
        return h

    def quant(self, q):
        """An int8 bundle's `quant` section: shapes of the values only (weights_table checks
        the layers against the graph)."""
        if not isinstance(q, dict) or set(q) != _QUANT_KEYS:
            self.fail("header 'quant' must be an object with exactly method, layers and skipped")
        if q["method"] not in QUANT_METHODS:
            self.fail(f"quant method {_short(q['method'])} is not one of {', '.join(QUANT_METHODS)}")
        self.strmap(q["skipped"], "quant skipped", lambda k, v: self.text(v, f"quant skipped[{_short(k)}]"))
        if not isinstance(q["layers"], dict) or not q["layers"]:
            self.fail("quant layers must be a non-empty object")
        for name, L in q["layers"].items():
            where = f"quant layer {_short(name)}"
            self.text(name, where)
            if not isinstance(L, dict) or set(L) != _QLAYER_KEYS:
                self.fail(f"{where} must have exactly in_scale, in_zero, lo and hi")
            for k in ("in_scale", "lo", "hi"):
                v = L[k]
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v):
                    self.fail(f"{where}: {k} must be a finite number")
            if not 1e-30 < L["in_scale"] < 1e30:
                self.fail(f"{where}: in_scale {L['in_scale']!r} is not a usable positive scale")
            self.count(L["in_zero"], f"{where} in_zero", 0, 255)

    def node(self, nd, i, seen, n_sources):
        f = self.field
        where = f"node {i}"
        name = self.text(f(nd, "name", str, where), f"{where} name")
        where = f"node {i} ({_short(name)})"
        if name in seen:
            self.fail(f"{where}: duplicate node name")
        extra = set(nd) - _NODE_KEYS
        if extra:
            self.fail(f"{where}: unknown field {_short(sorted(extra)[0])}")
        self.text(f(nd, "op", str, where), f"{where} op")
        for key in ("attrs", "resolved"):
            self.strmap(f(nd, key, dict, where), f"{where} {key}", lambda k, v: self.value(v, where, k))
        preds = f(nd, "preds", list, where)
        for p in preds:
            if not isinstance(p, str) or p not in seen:
                self.fail(f"{where}: input {_short(p)} is not an earlier node (nodes must be in plan order)")
        if len(set(preds)) != len(preds):
            self.fail(f"{where}: inputs {_short(preds)} repeat a layer")
        self.shape(f(nd, "shape", list, where), f"{where} shape")
        for key in ("params", "buffers"):
            self.strmap(f(nd, key, dict, where), f"{where} {key}",
                        lambda k, s, key=key: self.shape(s, f"{where} {key} {_short(k)}", lo=0))
        f(nd, "scope", str, where)
        src = f(nd, "src", (list, type(None)), where)
        if src is not None:
            if len(src) != 3:
                self.fail(f"{where}: 'src' must be [file, line, col] or null")
            self.count(src[0], f"{where} src file", 0, n_sources - 1)
            self.count(src[1], f"{where} src line", 0, 2**31)
            self.count(src[2], f"{where} src col", 0, 2**31)
        seen[name] = nd

    def value(self, v, where, key, depth=0):
        """An attribute value: a JSON scalar or a short list of them (nested at most 3 deep)."""
        if isinstance(v, list):
            if depth >= 3 or len(v) > MAX_ATTR_LEN:
                self.fail(f"{where}: attribute {_short(key)} holds {_short(v)}, not a value")
            for x in v:
                self.value(x, where, key, depth + 1)
        elif not (v is None or isinstance(v, (bool, int, float, str))):
            self.fail(f"{where}: attribute {_short(key)} holds {_short(v)}, not a value")
        elif isinstance(v, int) and not isinstance(v, bool) and abs(v) > 2**63:
            self.fail(f"{where}: attribute {_short(key)} = {_short(v)} is out of range")
        elif isinstance(v, str) and len(v) > MAX_NAME:
            self.fail(f"{where}: attribute {_short(key)} is a string of {len(v)} characters")

    def tensor(self, tname, t, blob):
        where = f"tensor {_short(tname)}"
        self.text(tname, where)
        if not isinstance(t, dict) or set(t) != _TENSOR_KEYS:
            self.fail(f"{where} must be an object with exactly offset, shape and dtype")
        off = self.count(t["offset"], f"{where} offset", 0, blob)
        if off % ALIGN:
            self.fail(f"{where}: offset {off} is not a multiple of {ALIGN}")
        if not isinstance(t["dtype"], str) or t["dtype"] not in DTYPES:
            self.fail(f"{where}: dtype {_short(t['dtype'])} is not supported (f32, or i8 in an int8 bundle)")
        n = prod(self.shape(t["shape"], f"{where} shape", lo=0)) * (1 if t["dtype"] == "i8" else 4)
        if off + n > blob:
            self.fail(f"{where}: {n} bytes at offset {off} lie outside the {blob}-byte weight blob")

    # -- the graph and the weights
    def build(self, h, buf, start) -> Bundle:
        g = self.graph(h)
        want = self.weights_table(h, g)
        weights = None
        if buf is not None:
            weights = {}
            for tname, shape in want.items():
                t = h["tensors"][tname]
                a = np.frombuffer(buf, dtype=DTYPES[t["dtype"]], count=prod(shape),
                                  offset=start + t["offset"]).reshape(shape)
                if t["dtype"] == "f32" and not np.isfinite(a).all():
                    self.fail(f"tensor {tname} holds NaN or infinite values")
                if t["dtype"] == "i8" and a.size and a.min() < -127:
                    self.fail(f"tensor {tname} holds -128; int8 weights are symmetric, -127 .. 127")
                if tname.endswith(".weight_scale") and a.size and not (a > 0).all():
                    self.fail(f"tensor {tname} holds a scale that is not positive")
                weights[tname] = a
        return Bundle(h, g, weights)

    def graph(self, h):
        from . import ops
        from .analysis.infer import analyze, totals
        from .graph import Graph
        from .ops.attrs import OpError
        srcs = [Source(s, "") for s in h["sources"]]
        g = Graph()
        for nd in h["nodes"]:
            name, op = nd["name"], nd["op"]
            spec = ops.lookup(op)
            if spec is None or spec.name != op:
                self.fail(f"node {_short(name)}: unknown op {_short(op)}",
                          (did_you_mean(op, ops.all_names()) or "") +
                          " the bundle was written by a netdsl with ops this one lacks; recompile it")
            self.arity(spec, nd)
            declared = {a.name for a in spec.attrs}
            undeclared = sorted(set(nd["attrs"]) - declared)
            if undeclared:
                self.fail(f"node {_short(name)} ({op}) has no argument {_short(undeclared[0])}")
            try:
                bound = spec.bind([], {k: _dec(v) for k, v in nd["attrs"].items()})
            except OpError as e:
                self.fail(f"node {_short(name)} ({op}): bad attribute: {e.message}")
            span = None
            if nd["src"] is not None:
                fi, line, col = nd["src"]
                span = Span(srcs[fi], line, col)
            g.add(name, op, bound, span, scope=nd["scope"])
            for slot, p in enumerate(nd["preds"]):
                g.connect(p, name, slot)
        if list(g.inputs) != list(h["inputs"]):
            self.fail("header 'inputs' does not list the graph's Input nodes in order")
        g.outputs = dict(h["outputs"])
        g.blocks = dict(h["blocks"])
        try:
            analyze(g)
        except NetDSLError as e:
            self.fail("the stored graph does not check: " + e.diagnostics[0].message,
                      "the bundle is corrupt or was written by an incompatible netdsl; recompile it")
        order = [n.name for n in g.nodes()]
        if order != [nd["name"] for nd in h["nodes"]]:
            self.fail("the nodes are not stored in the graph's plan order")
        for nd in h["nodes"]:
            node = g[nd["name"]]
            resolved = {k: _dec(v) for k, v in nd["resolved"].items()}
            if node.attrs != resolved:
                diff = sorted(k for k in set(resolved) | set(node.attrs)
                              if resolved.get(k, _MISSING) != node.attrs.get(k, _MISSING))
                self.fail(f"node {node.name}: stored attributes disagree with the op's resolution "
                          f"({', '.join(map(str, diff))})")
            if tuple(nd["shape"]) != tuple(node.shape):
                self.fail(f"node {node.name}: stored shape {nd['shape']} but the graph gives {list(node.shape)}")
            for key in ("params", "buffers"):
                have = {k: tuple(v) for k, v in getattr(node, key).items()}
                if {k: tuple(v) for k, v in nd[key].items()} != have:
                    self.fail(f"node {node.name}: stored {key} disagree with the op ({have})")
        t, c = totals(g), h["contract"]
        actual = {"weight_bytes": t["weight_bytes"], "params": t["total_params"], "macs": t["total_macs"],
                  "layers": len(g), "op_counts": op_counts(g)}
        for key, v in actual.items():
            if c[key] != v:
                self.fail(f"the memory contract's {key} ({_short(c[key])}) disagrees with the graph ({_short(v)})")
        return g

    def arity(self, spec, nd):
        """The number of inputs against the op's arity (what the front end enforces for sources)."""
        k, ar, where = len(nd["preds"]), spec.arity, f"node {_short(nd['name'])} ({spec.name})"
        if spec.name == "Input":
            ok, want = k == 0, "no inputs"
        elif ar is None:
            ok, want = k >= 2, "two or more inputs"
        elif isinstance(ar, tuple):
            ok, want = ar[0] <= k <= ar[1], f"{ar[0]} to {ar[1]} inputs"
        else:
            ok, want = k == ar, f"{ar} input{'s' if ar != 1 else ''}"
        if not ok:
            self.fail(f"{where} has {k} inputs; the op takes {want}")

    def weights_table(self, h, g) -> dict:
        """The tensor table against the graph: exactly its parameters and buffers, with their
        shapes, disjoint inside the blob. Returns name -> shape."""
        from .runtime.weights import expected
        want = dict(expected(g))
        tensors = h["tensors"]
        qlayers = h.get("quant", {}).get("layers", {})
        for layer in qlayers:
            if layer not in g or g[layer].op not in ("Conv", "FC") or g[layer].attrs.get("groups", 1) != 1 \
                    or "weight" not in g[layer].params:
                self.fail(f"quant layer {_short(layer)} is not a Conv (groups 1) or FC of the graph")
            want[f"{layer}.weight_scale"] = (g[layer].shape[0],)
        missing = [k for k in want if k not in tensors]
        extra = [k for k in tensors if k not in want]
        if missing or extra:
            what = (f"missing {', '.join(map(_short, missing[:3]))}" if missing
                    else f"tensors the graph lacks: {', '.join(map(_short, extra[:3]))}")
            self.fail(f"the tensor table does not match the graph's parameters ({what})")
        spans = []
        for k, shape in want.items():
            t = tensors[k]
            if tuple(t["shape"]) != tuple(shape):
                self.fail(f"tensor {k} has shape {t['shape']}; the graph needs {list(shape)}")
            int8 = k.endswith(".weight") and k[:-len(".weight")] in qlayers
            if t["dtype"] != ("i8" if int8 else "f32"):
                self.fail(f"tensor {k} has dtype {t['dtype']}; it must be {'i8' if int8 else 'f32'}")
            spans.append((t["offset"], t["offset"] + (1 if int8 else 4) * prod(shape), k))
        spans.sort()
        for (a0, a1, an), (b0, b1, bn) in zip(spans, spans[1:]):
            if b0 < a1 and b1 > b0:
                self.fail(f"tensors {_short(an)} and {_short(bn)} overlap in the weight blob")
        return want


_MISSING = object()


def _dec(v):
    """JSON attribute value -> the IR's: lists become tuples (checked by _Reader.value)."""
    return tuple(_dec(x) for x in v) if isinstance(v, list) else v


def _short(v, n=40):
    s = repr(v)
    return s if len(s) <= n else s[:n - 1] + "…"
