"""Fuzzing the bundle loader: whatever the bytes, `bundle.loads` returns a
checked bundle or raises a NetDSLError naming the file and the problem —
never another exception and never a crash. The reader has no catch-all: any
other exception is a check it lacks, and fails these tests.

Cases: truncation at many points, byte flips in the prefix, header, blob and
checksum, random garbage (with and without the magic), huge lengths, and —
with the checksum recomputed so the deeper checks are reached — random
header bytes and structured edits of the JSON (types, names, shapes,
offsets, graph edges, input slots, tensor dtypes). A bundle that loads is
also run at batch 1 and 2, so an accepted hostile bundle would have to get
past the runtime's own checks too; under AddressSanitizer (docs/BUNDLE.md)
that proves the C code stays inside its buffers. Deterministic seeds and a
bounded hypothesis run; a few seconds. NETDSL_FUZZ_EXAMPLES=N runs the
hypothesis fuzzer longer (the ASan soak).
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
import random
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import netdsl
from netdsl import NetDSLError, bundle, compiler
from netdsl.runtime import lib

NAME = "fuzz.netc"
RUN_LIMIT = 256 * 2**20      # bytes of arena + inputs up to which an accepted bundle is also run
SMALL = """input x: 3x12x12
[ Conv(4, 3, pad=1)-BN-ReLU | Conv(4, 1) ] - Concat - MaxPool
[ Conv(8, 3, pad=1, bias=false)-BN | Identity ] - Add - ReLU
GAP - Flatten - FC(5) - SM
"""


def _build():
    m = netdsl.parse(SMALL, "fuzz.net")
    g, w, report = compiler.optimize(m.graph, m.weights, 2)
    return bundle.dumps(g, w, name=m.name, opt_level=2, report=report, source="fuzz.net")


DATA = _build()


@pytest.fixture(scope="module")
def data():
    return DATA


def split(data):
    _, _, _, hlen = struct.unpack_from("<8sIIQ", data, 0)
    start = -(-(24 + hlen) // 64) * 64
    return json.loads(data[24:24 + hlen]), data[start:len(data) - 32]


def pack(h, blob, version=bundle.FORMAT_VERSION, raw_header=None):
    hb = raw_header if raw_header is not None else json.dumps(h).encode()
    body = struct.pack("<8sIIQ", bundle.MAGIC, version, 0, len(hb)) + hb
    body += b"\0" * (-(-len(body) // 64) * 64 - len(body)) + blob
    return body + hashlib.sha256(body).digest()


def _run_accepted(b):
    """A bundle the reader accepted must also run (or be refused by the runtime's own checks)."""
    if not lib.available():
        return
    from netdsl.runtime.plan import lower
    from netdsl.runtime.session import Session
    try:
        plan = lower(b.graph, 2, kernels=False)
    except NetDSLError:
        return
    inputs = sum(2 * int(np.prod(b.graph[k].shape)) for k in b.graph.inputs) * 4
    if plan.arena_bytes + inputs > RUN_LIMIT:
        return                  # a valid but large network: memory, not safety (runtime/memory checks it)
    rng = np.random.default_rng(0)
    s = Session(b.graph, b.weights, 1)
    for n in (1, 2):
        x = {k: rng.standard_normal((n, *b.graph[k].shape), dtype=np.float32) for k in b.graph.inputs}
        try:
            s.run(x)
        except NetDSLError:
            pass


def expect_clean_error(buf):
    """Load; success is fine (a harmless edit, which then runs), a clear NetDSLError is fine;
    any other exception propagates and fails the test."""
    try:
        b = bundle.loads(buf, NAME)
    except NetDSLError as e:
        msg = e.render()
        assert NAME in msg and len(msg) > len(NAME) + 10, msg
        assert "unexpected" not in msg, f"a catch-all answered, not a check: {msg}"
        return msg
    _run_accepted(b)
    return None


def test_base_loads(data):
    assert bundle.loads(data, NAME).header["contract"]["params"] > 0
    h, blob = split(data)
    assert bundle.loads(pack(h, blob), NAME).header["contract"]["params"] > 0   # the packer is faithful


def test_truncated_everywhere(data):
    n = len(data)
    rng = random.Random(1)
    cuts = set(range(0, 120)) | {n - k for k in range(1, 80)} | {rng.randrange(n) for _ in range(300)}
    for cut in sorted(cuts):
        msg = expect_clean_error(data[:cut])
        assert msg is not None, cut
    assert "truncated" in expect_clean_error(data[:20]) or "magic" in expect_clean_error(data[:20])


def test_flipped_bytes(data):
    h, _ = split(data)
    hlen = struct.unpack_from("<Q", data, 16)[0]
    rng = random.Random(2)
    n = len(data)
    where = (list(range(24)) +                                          # the prefix, every byte
             [rng.randrange(24, 24 + hlen) for _ in range(150)] +        # the header
             [rng.randrange(24 + hlen, n - 32) for _ in range(100)] +    # padding and blob
             list(range(n - 32, n)))                                     # the checksum
    for pos in where:
        buf = bytearray(data)
        buf[pos] ^= 1 << rng.randrange(8)
        msg = expect_clean_error(bytes(buf))
        assert msg is not None, pos
    buf = bytearray(data)
    buf[-40] ^= 0xFF
    assert "checksum" in expect_clean_error(bytes(buf))


def test_garbage(data):
    rng = random.Random(3)
    for size in [0, 1, 7, 8, 23, 24, 25, 55, 56, 57, 64, 100, 1000, 5000]:
        for prefix in (b"", bundle.MAGIC, data[:24]):
            buf = prefix + bytes(rng.randrange(256) for _ in range(size))
            expect_clean_error(buf)
    assert "magic" in expect_clean_error(b"input x: 3x32x32\nConv(8, 3)\n" * 4)


def test_huge_and_odd_lengths(data):
    h, blob = split(data)
    rest = data[24:]
    for hlen in (0, 1, 2**31, 2**63, 2**64 - 1, len(data), len(data) - 24):
        buf = struct.pack("<8sIIQ", bundle.MAGIC, bundle.FORMAT_VERSION, 0, hlen) + rest
        assert expect_clean_error(buf) is not None
    for version in (0, bundle.FORMAT_VERSION - 1, bundle.FORMAT_VERSION + 1, 2**32 - 1):
        msg = expect_clean_error(pack(h, blob, version=version))
        assert "format" in msg
    buf = bytearray(data)
    buf[12] = 1                                                         # reserved field
    assert "reserved" in expect_clean_error(bytes(buf))
    for bb in (-1, 2**62, len(blob) + 64, len(blob) - 64):
        h2 = copy.deepcopy(h)
        h2["blob_bytes"] = bb
        assert expect_clean_error(pack(h2, blob)) is not None
    assert expect_clean_error(pack(h, blob + b"\0" * 64)) is not None      # trailing bytes


def test_random_header_bytes_with_valid_checksum(data):
    """Mutated JSON text with a correct checksum: the JSON and schema checks must hold."""
    h, blob = split(data)
    text = bytearray(json.dumps(h).encode())
    rng = random.Random(4)
    alphabet = b'{}[]:,"0123456789-.eE tfnaluxyz\\\xff\xc3'
    for _ in range(400):
        t = bytearray(text)
        for _ in range(rng.randrange(1, 4)):
            pos = rng.randrange(len(t))
            op = rng.randrange(3)
            if op == 0:
                t[pos] = rng.choice(alphabet)
            elif op == 1:
                del t[pos:pos + rng.randrange(1, 20)]
            else:
                t[pos:pos] = bytes(rng.choice(alphabet) for _ in range(rng.randrange(1, 5)))
        expect_clean_error(pack(None, blob, raw_header=bytes(t)))
    for raw in (b"", b"null", b"[]", b"1", b'"x"', b"{}", b"[" * 100000, b'{"a": NaN}', b"\xff\xfe"):
        assert expect_clean_error(pack(None, blob, raw_header=raw)) is not None


def _edits(h):
    """Structured edits of the header: each yields a header that is valid JSON but wrong."""
    n0 = next(i for i, nd in enumerate(h["nodes"]) if nd["op"] == "Conv")
    conv = h["nodes"][n0]["name"]
    tname = next(iter(h["tensors"]))

    def node(i, key, value):
        def f(d):
            d["nodes"][i][key] = value
        return f

    def attr(i, key, value):
        def f(d):
            d["nodes"][i]["attrs"][key] = value
        return f

    def top(key, value):
        def f(d):
            d[key] = value
        return f

    def tensor(key, value):
        def f(d):
            d["tensors"][tname][key] = value
        return f

    def drop(key):
        def f(d):
            del d[key]
        return f

    yield from [
        top("format", "other"), top("format_version", 0), top("opt_level", 9), top("opt_level", "2"),
        top("nodes", []), top("nodes", {}), top("nodes", [1, 2]), top("inputs", []), top("inputs", [conv]),
        top("inputs", ["nope"]), top("outputs", {}), top("outputs", {"o": "nope"}), top("outputs", []),
        top("blocks", {"a": 1}), top("tensors", []), top("tensors", {}), top("sources", [1]),
        top("contract", {}), top("contract", None), top("rewrites", [1]), top("model", 5),
        drop("nodes"), drop("tensors"), drop("blob_bytes"), drop("contract"), drop("inputs"),
        node(n0, "op", "Conv2"), node(n0, "op", "conv"), node(n0, "op", 3), node(n0, "op", "__class__"),
        node(n0, "name", ""), node(n0, "name", h["nodes"][0]["name"]), node(n0, "name", 7),
        node(n0, "preds", ["later"]), node(n0, "preds", [conv]), node(n0, "preds", []), node(n0, "preds", "x"),
        node(n0, "preds", [h["nodes"][0]["name"]] * 2),
        node(n0, "shape", [1, 2, 3]), node(n0, "shape", []), node(n0, "shape", [-1]), node(n0, "shape", [1.5]),
        node(n0, "shape", [2**70]), node(n0, "shape", [1] * 50), node(n0, "shape", "4x12x12"),
        node(n0, "params", {"weight": [1, 1, 1, 1]}), node(n0, "params", {}), node(n0, "params", []),
        node(n0, "buffers", {"x": [1]}), node(n0, "attrs", []), node(n0, "attrs", {}),
        node(n0, "src", [99, 1, 1]), node(n0, "src", [0, -1, 1]), node(n0, "src", "line 3"),
        node(n0, "scope", 1), node(0, "preds", [conv]), node(0, "attrs", {"shape": [3, 12]}),
        node(0, "attrs", {"shape": [3, 0, 12]}), node(0, "attrs", {"shape": [2**40, 2**40, 2**40]}),
        attr(n0, "out_channels", 0), attr(n0, "out_channels", 5), attr(n0, "out_channels", "four"),
        attr(n0, "out_channels", 2**70), attr(n0, "out_channels", [4]), attr(n0, "out_channels", {"a": 1}),
        attr(n0, "kernel", [3]), attr(n0, "kernel", [3, 3, 3]), attr(n0, "kernel", [0, 3]),
        attr(n0, "kernel", [10**9, 10**9]), attr(n0, "pad", "weird"), attr(n0, "pad", [1, 1, 1]),
        attr(n0, "pad", [-1, 1, 1, 1]), attr(n0, "stride", [0, 0]), attr(n0, "groups", 3),
        attr(n0, "act", "swish"), attr(n0, "act", None), attr(n0, "residual", True), attr(n0, "residual", "yes"),
        attr(n0, "bias", "maybe"), attr(n0, "in_channels", 99), attr(n0, "bogus", 1), attr(n0, "dilation", [1e9, 1]),
        tensor("offset", -4), tensor("offset", 2**63), tensor("offset", 2), tensor("offset", "0"),
        tensor("offset", len(h["tensors"]) * 10**9), tensor("shape", [1]), tensor("shape", [2**40, 2**40]),
        tensor("shape", [-1]), tensor("shape", None), tensor("dtype", "f64"), tensor("dtype", "pickle"),
        lambda d: d["tensors"].pop(tname), lambda d: d["tensors"].update(extra={"offset": 0, "shape": [1],
                                                                                "dtype": "f32"}),
        lambda d: d["tensors"].update({k: dict(v, offset=0) for k, v in d["tensors"].items()}),
        lambda d: d["nodes"].reverse(), lambda d: d["nodes"].pop(), lambda d: d["nodes"].pop(0),
        lambda d: d["nodes"].append(copy.deepcopy(d["nodes"][-1])),
        lambda d: d["contract"].update(arena_bytes={"1": -5}), lambda d: d["contract"].update(params="many"),
        lambda d: d["contract"]["op_counts"].update(Conv=None),
    ]


def test_structured_header_edits(data):
    h, blob = split(data)
    for i, edit in enumerate(_edits(h)):
        h2 = copy.deepcopy(h)
        edit(h2)
        expect_clean_error(pack(h2, blob))


def test_nan_weights_refused(data):
    h, blob = split(data)
    off = next(iter(h["tensors"].values()))["offset"]
    bad = bytearray(blob)
    bad[off:off + 4] = struct.pack("<f", float("nan"))
    assert "NaN" in expect_clean_error(pack(h, bytes(bad)))


def test_nonzero_padding_refused(data):
    h, blob = split(data)
    hb = json.dumps(h).encode()
    body = struct.pack("<8sIIQ", bundle.MAGIC, bundle.FORMAT_VERSION, 0, len(hb)) + hb
    pad = -(-len(body) // 64) * 64 - len(body)
    if pad == 0:
        hb += b" " * 10
        body = struct.pack("<8sIIQ", bundle.MAGIC, bundle.FORMAT_VERSION, 0, len(hb)) + hb
        pad = -(-len(body) // 64) * 64 - len(body)
    body += b"\1" * pad + blob
    assert "padding" in expect_clean_error(body + hashlib.sha256(body).digest())


def _paths(v, path=()):
    yield path
    if isinstance(v, dict):
        for k, x in v.items():
            yield from _paths(x, path + (k,))
    elif isinstance(v, list):
        for i, x in enumerate(v):
            yield from _paths(x, path + (i,))


def _random_value(rng):
    return rng.choice([None, True, False, 0, 1, -1, 3, 2**31, 2**64, 1.5, float(2**70), "", "x", "Conv",
                       "none", "same", [], [1], [3, 3], [0, 0, 0, 0], [-1, 2], {}, {"a": 1}, [[1, 2]]])


def test_random_json_value_replacement(data):
    """Replace, drop or retype a random JSON value anywhere in the header (checksum recomputed)."""
    h, blob = split(data)
    paths = [p for p in _paths(h) if p]
    rng = random.Random(5)
    errors = 0
    for _ in range(600):
        h2 = copy.deepcopy(h)
        for _ in range(rng.randrange(1, 3)):
            path = rng.choice(paths)
            parent = h2
            try:
                for k in path[:-1]:
                    parent = parent[k]
                if rng.random() < 0.15 and isinstance(parent, dict):
                    del parent[path[-1]]
                else:
                    parent[path[-1]] = _random_value(rng)
            except (KeyError, IndexError, TypeError):
                continue
        errors += expect_clean_error(pack(h2, blob)) is not None
    assert errors > 400          # most edits are caught; the rest are harmless (e.g. a source name)


# ---------------------------------------------------------------- hostile but well-formed

def _node_index(h, op, k=0):
    return [i for i, nd in enumerate(h["nodes"]) if nd["op"] == op][k]


def _hostile(h):
    """Edits a hostile writer would make: valid JSON, valid checksum, every field of the right
    type, but indices, slots, offsets and counts that do not fit the graph. Each must be refused."""
    names = [nd["name"] for nd in h["nodes"]]
    relu = _node_index(h, "Add") if any(nd["op"] == "Add" for nd in h["nodes"]) else 1
    cat = _node_index(h, "Concat")
    conv = _node_index(h, "Conv")
    fc = _node_index(h, "FC")
    t0, t1 = list(h["tensors"])[:2]

    def nodes(i, **kv):
        def f(d):
            d["nodes"][i].update(kv)
        return f

    def tensor(name, **kv):
        def f(d):
            d["tensors"][name].update(kv)
        return f

    yield "no inputs for a one-input op", nodes(fc, preds=[])
    yield "two inputs for a one-input op", nodes(fc, preds=names[:2])
    yield "one input for a merge", nodes(cat, preds=h["nodes"][cat]["preds"][:1])
    yield "an input that is a later node", nodes(relu, preds=[names[-1]] * 2)
    yield "an Input with an input", nodes(0, preds=[names[1]])
    yield "a residual conv with one input", nodes(conv, attrs=dict(h["nodes"][conv]["attrs"], residual=True))
    yield "a second input on a plain conv", nodes(conv, preds=[h["nodes"][conv]["preds"][0], names[0]])
    yield "an undeclared attribute", nodes(conv, attrs=dict(h["nodes"][conv]["attrs"], in_channels=3))
    yield "resolved disagrees", nodes(conv, resolved=dict(h["nodes"][conv]["resolved"], in_channels=99))
    yield "missing resolved", lambda d: d["nodes"][conv].pop("resolved")
    yield "unknown node field", nodes(conv, extra=1)
    yield "source index past the end", nodes(conv, src=[len(h["sources"]), 1, 1])
    yield "output naming no node", lambda d: d["outputs"].update(output="nope")
    yield "empty output name", lambda d: d["outputs"].update({"": names[-1]})
    yield "tensor offset not aligned", tensor(t0, offset=h["tensors"][t0]["offset"] + 4)
    yield "tensor past the blob", tensor(t0, offset=h["blob_bytes"] - 64)
    yield "tensor negative offset", tensor(t0, offset=-64)
    yield "tensor offset huge", tensor(t0, offset=2**62)
    yield "tensors overlapping", tensor(t1, offset=h["tensors"][t0]["offset"])
    yield "tensor shape of another", tensor(t0, shape=h["tensors"][t1]["shape"])
    yield "tensor with 0 elements", tensor(t0, shape=[0])
    yield "tensor with a float64 dtype", tensor(t0, dtype="f64")
    yield "tensor with an extra field", tensor(t0, strides=[4])
    yield "tensor shape of rank 100", tensor(t0, shape=[1] * 100)
    yield "blob_bytes not a multiple of 4", lambda d: d.update(blob_bytes=d["blob_bytes"] - 2)
    yield "node shape of rank 0", nodes(conv, shape=[])
    yield "node shape 2**48 values", nodes(conv, shape=[2**16, 2**16, 2**17])
    yield "contract op count for an op not in the graph", lambda d: d["contract"]["op_counts"].update(Tanh=1)
    yield "contract limits not text", lambda d: d["contract"].update(limits={"8": 5})
    yield "an attribute nested 4 deep", nodes(conv, attrs=dict(h["nodes"][conv]["attrs"], kernel=[[[[3]]]]))
    yield "an attribute list of 10**5 items", nodes(conv, attrs=dict(h["nodes"][conv]["attrs"],
                                                                      kernel=[3] * 10**5))
    yield "an attribute integer of 400 digits", nodes(conv, attrs=dict(h["nodes"][conv]["attrs"],
                                                                         out_channels=10**400))
    yield "nodes out of plan order", lambda d: d["nodes"].insert(1, d["nodes"].pop())


@pytest.mark.parametrize("case", [c for c, _ in _hostile(split(DATA)[0])])
def test_hostile_contents_are_refused(data, case):
    h, blob = split(data)
    edit = dict(_hostile(h))[case]
    h2 = copy.deepcopy(h)
    edit(h2)
    msg = expect_clean_error(pack(h2, blob))
    assert msg is not None, f"accepted: {case}"


def test_blob_bytes_with_valid_checksum(data):
    """Any weight bytes are data, never offsets: flips load (or are refused as non-finite)."""
    h, blob = split(data)
    rng = random.Random(6)
    for _ in range(60):
        b = bytearray(blob)
        for _ in range(rng.randrange(1, 8)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        msg = expect_clean_error(pack(h, bytes(b)))
        assert msg is None or "NaN or infinite" in msg or "padding" in msg, msg


# ---------------------------------------------------------------- hypothesis: mutate and re-sign

_json = st.recursive(st.none() | st.booleans() | st.integers(-2**70, 2**70) |
                     st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
                     lambda kids: st.lists(kids, max_size=5) | st.dictionaries(st.text(max_size=6), kids, max_size=4),
                     max_leaves=8)
_PATHS = [p for p in _paths(split(DATA)[0]) if p]
_EXAMPLES = int(os.environ.get("NETDSL_FUZZ_EXAMPLES", "120"))


@settings(max_examples=_EXAMPLES, deadline=None, derandomize=_EXAMPLES <= 120,
          suppress_health_check=list(HealthCheck))
@given(st.lists(st.tuples(st.sampled_from(_PATHS), st.integers(0, 5), _json, st.integers(-3, 3)),
                min_size=1, max_size=4),
       st.lists(st.tuples(st.integers(0, 10**9), st.integers(0, 255)), max_size=3))
def test_hypothesis_mutations_with_valid_checksum(edits, blob_edits):
    """Structured mutations of the header (replace a value, drop a key, nudge an integer,
    duplicate or drop a list item, swap two nodes) and of the blob, checksum recomputed."""
    h, blob = split(DATA)
    h = copy.deepcopy(h)
    for path, how, value, delta in edits:
        parent = h
        try:
            for k in path[:-1]:
                parent = parent[k]
            key = path[-1]
            old = parent[key]
        except (KeyError, IndexError, TypeError):
            continue
        if how == 0:
            parent[key] = value
        elif how == 1 and isinstance(parent, dict):
            del parent[key]
        elif how == 2 and isinstance(old, int) and not isinstance(old, bool):
            parent[key] = old + delta * (1 if abs(delta) < 3 else 64)
        elif how == 3 and isinstance(old, list) and old:
            old.insert(delta % len(old), copy.deepcopy(old[0]))
        elif how == 4 and isinstance(old, list) and old:
            old.pop(delta % len(old))
        elif how == 5:
            nodes = h.get("nodes")
            if isinstance(nodes, list) and len(nodes) > 2:
                i, j = delta % len(nodes), (delta + 1) % len(nodes)
                nodes[i], nodes[j] = nodes[j], nodes[i]
    b = bytearray(blob)
    for pos, val in blob_edits:
        if b:
            b[pos % len(b)] = val
    expect_clean_error(pack(h, bytes(b)))


# ---------------------------------------------------------------- every op's attributes

_VALUES = [None, True, False, 0, 1, -1, 2, 3, 7, 2**31, 2**62, -2**62, 0.5, -0.0, 1e300, 1e-300, "", "x",
           "same", "valid", "none", "relu", "nearest", "bilinear", "reflect", [], [0], [1], [2, 2], [0, 0],
           [-1, 3], [3, 3, 3], [1, 1, 1, 1], [10**6, 10**6], [[1, 2]], [1.5, 2], ["a", "b"], [True, False],
           [-1], [2**40, 1], [1, 2**40]]
_INPUT_SHAPES = [[3, 4, 4], [1, 1, 1], [2**20, 2**20, 2**20], [5], [1], [2, 1, 2**30]]


def _op_cases():
    from test_bundle_roundtrip import EXTRA, LOCAL
    cases = [(n, a, s) for n, (a, s) in sorted(LOCAL.items()) if n != "Input"] + list(EXTRA)
    return [pytest.param(*c, id=f"{c[0]}-{i}") for i, c in enumerate(cases)]


@pytest.mark.parametrize("op, attrs, shapes", _op_cases())
def test_every_op_with_hostile_attributes(op, attrs, shapes):
    """A one-op bundle per op with its arguments (both forms) and input shape replaced by
    odd values, checksum recomputed: refused cleanly, or loaded and run."""
    from test_bundle_roundtrip import one_op

    from netdsl import ops
    from netdsl.runtime.reference import init_weights
    g = one_op(op, attrs, shapes)
    h, blob = split(bundle.dumps(g, init_weights(g), name=op))
    idx = next(i for i, nd in enumerate(h["nodes"]) if nd["name"] == "op")
    keys = [a.name for a in ops.get(op).attrs] + ["<input shape>"]
    rng = random.Random(op)
    for _ in range(max(15, _EXAMPLES // 8)):
        h2 = copy.deepcopy(h)
        nd = h2["nodes"][idx]
        for _ in range(rng.randrange(1, 3)):
            k = rng.choice(keys)
            if k == "<input shape>":
                s = rng.choice(_INPUT_SHAPES)
                h2["nodes"][0]["attrs"]["shape"] = h2["nodes"][0]["resolved"]["shape"] = s
                h2["nodes"][0]["shape"] = s
            else:
                nd["attrs"][k] = v = rng.choice(_VALUES)
                if rng.random() < 0.5:
                    nd["resolved"][k] = v
        expect_clean_error(pack(h2, blob))
