"""Hostile .pth files: every one is a NetDSLError with a clear message, never another exception,
never a crash, never code execution, never a large allocation.

The malicious pickles are written here opcode by opcode (no torch needed), with test_pth.py's writer.
Code execution is checked with a sentinel file the payload would create; allocation with tracemalloc
(numpy and the C unpickler allocate through Python's tracked allocators).
"""
from __future__ import annotations

import os
import pickle
import struct
import tracemalloc
import zipfile

import numpy as np
import pytest
from test_pth import (ODICT, op_dict, op_global, op_int, op_str, op_tensor, op_tuple, pickle_bytes, write_pth,
                      write_zip)

from netdsl import NetDSLError
from netdsl.runtime import weights as wio

LIMIT = 32 << 20          # no hostile file below may make the loader allocate this much


def load_error(path, expected=None) -> str:
    """Load; it must fail with a NetDSLError naming the file, allocating little. Returns the text."""
    tracemalloc.start()
    try:
        with pytest.raises(NetDSLError) as e:
            wio.load(str(path), expected)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < LIMIT, f"{path}: peak allocation {peak:,} bytes"
    text = str(e.value)
    assert str(path) in text and "Traceback" not in text
    return text


def evil(tmp_path, body: bytes, name="evil.pth", records=None, raw=False) -> str:
    data = body if raw else pickle_bytes(body)
    return str(write_zip(tmp_path / name, {"data.pkl": data, **(records or {})}))


@pytest.fixture
def good(tmp_path):
    rng = np.random.default_rng(0)
    sd = {"c.weight": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
          "c.bias": rng.standard_normal(4).astype(np.float32),
          "bn.num_batches_tracked": np.array(3, np.int64)}
    return write_pth(tmp_path / "good.pth", sd), sd


# ---------------------------------------------------------------- damaged files

def test_truncated_at_every_cut_point(good, tmp_path):
    path, _ = good
    data = path.read_bytes()
    cut = tmp_path / "cut.pth"
    for n in list(range(0, len(data), 7)) + [len(data) - 1]:
        cut.write_bytes(data[:n])
        text = load_error(cut)
        assert f"cannot read weights from {cut}" in text, n


def test_flipped_bytes(good, tmp_path):
    """A flipped byte either fails cleanly or (a byte zip/torch never reads, e.g. a timestamp) loads."""
    path, sd = good
    data = path.read_bytes()
    bad = tmp_path / "flip.pth"
    want = {k: v.shape for k, v in sd.items() if "num_batches" not in k}
    failures = 0
    for i in range(0, len(data), 5):
        for mask in (0xFF, 0x01):
            b = bytearray(data)
            b[i] ^= mask
            bad.write_bytes(bytes(b))
            try:
                got = wio.load(str(bad), want)
            except NetDSLError as e:
                assert str(bad) in str(e)
                failures += 1
                continue
            assert set(got) == set(want)           # a survivor is still a correct, complete load
            for k in want:
                np.testing.assert_array_equal(got[k], sd[k])
    assert failures > len(data) // 5               # most flips are caught (CRC, structure, checks)


def test_mutated_pickles_behind_a_valid_zip(good, tmp_path):
    """Bytes of data.pkl itself changed, inserted or cut, the zip rewritten with a correct CRC so the
    unpickler sees them: a clean error or a load that still matches the network."""
    import random
    path, sd = good
    with zipfile.ZipFile(path) as z:
        records = {n.split("/", 1)[1]: z.read(n) for n in z.namelist()}
    pkl = records["data.pkl"]
    want = {k: v.shape for k, v in sd.items() if "num_batches" not in k}
    rng = random.Random(0)
    bad = tmp_path / "mut.pth"
    failures = 0
    for it in range(300):
        b = bytearray(pkl)
        for _ in range(rng.choice([1, 2, 4])):
            b[rng.randrange(len(b))] = rng.randrange(256)
        if it % 5 == 0:
            i, j = rng.randrange(len(b)), rng.randrange(len(b))
            b[i:i] = b[j:j + rng.randrange(1, 20)]
        write_zip(bad, {**records, "data.pkl": bytes(b)}, byteorder=None, version=None)
        try:
            got = wio.load(str(bad), want if it % 2 else None)
        except NetDSLError as e:
            assert str(bad) in str(e)
            failures += 1
            continue
        assert isinstance(got, dict) and all(isinstance(v, np.ndarray) for v in got.values())
    assert failures > 200


# ---------------------------------------------------------------- lying sizes, offsets, strides

LIES = {
    "numel larger than record": (dict(numel=100, size=(4,), stride=(1,)), "declares 100 float32 elements"),
    "numel smaller than record": (dict(numel=2, size=(2,), stride=(1,)), "but its record holds 16 bytes"),
    "offset past the end": (dict(numel=4, offset=4, size=(1,), stride=(1,)), "reaches element 5 of storage"),
    "size past the end": (dict(numel=4, size=(5,), stride=(1,)), "reaches element 5 of storage 'data/0'"),
    "stride past the end": (dict(numel=4, size=(2, 2), stride=(3, 1)), "reaches element 5"),
    "huge size": (dict(numel=4, size=(2**40,), stride=(1,)), "reaches element 1,099,511,627,776"),
    "rank mismatch": (dict(numel=4, size=(2, 2), stride=(1,)), "(different ranks)"),
    "negative size": (dict(numel=4, size=(-1,), stride=(1,)), "a tensor's size is -1, not a non-negative"),
    "negative offset": (dict(numel=4, offset=-1, size=(1,), stride=(1,)), "storage offset is -1"),
    "bool stride": (dict(numel=4, size=(1,), stride=(b"\x88",)), "stride is True"),
    "string size": (dict(numel=4, size=op_str("4"), stride=(1,)), "size is not a tuple"),
    "rank 40": (dict(numel=4, size=(1,) * 40, stride=(1,) * 40), "at most 32 integers"),
    "huge numel": (dict(numel=2**62, size=(1,), stride=(1,)), "declares 4,611,686,018,427,387,904 float32"),
    "negative numel": (dict(numel=-4, size=(1,), stride=(1,)), "storage size is -4"),
    "missing record": (dict(numel=4, size=(1,), stride=(1,), key="9"), "storage record 'data/9' is missing"),
    "untyped, odd bytes": (dict(stype="UntypedStorage", smodule="torch.storage", numel=16, size=(1,), stride=(1,),
                                rebuild="_rebuild_tensor_v3", dtype="float64", key="odd"),
                           "holds 15 bytes, not a whole number of float64 elements"),
    "v3 dtype mismatch": (dict(numel=4, size=(1,), stride=(1,), rebuild="_rebuild_tensor_v3", dtype="int64"),
                          "a int64 tensor is rebuilt from a float32 storage"),
}


@pytest.mark.parametrize("case", list(LIES), ids=[c.replace(" ", "-") for c in LIES])
def test_lying_storage_sizes_offsets_strides(tmp_path, case):
    kw, message = LIES[case]
    kw = dict(kw)
    key = kw.pop("key", "0")
    if key == "odd":
        key, kw["numel"] = "0", 15
        records = {"data/0": b"\0" * 15}
    else:
        records = {"data/0": np.arange(4, dtype=np.float32).tobytes()}
    body = op_dict([("w", op_tensor(key, **kw))])
    text = load_error(evil(tmp_path, body, records=records))
    assert message in text, text
    assert "hint: the file is corrupt or was crafted" in text


def test_huge_declared_sizes_allocate_nothing(tmp_path, monkeypatch):
    rec = {"data/0": np.zeros(4, np.float32).tobytes()}
    # a size the extent check cannot catch (stride 0): the shape check (with a network) or the memory check
    body = op_dict([("w", op_tensor("0", numel=4, size=(2**20, 2**20), stride=(0, 0)))])
    p = evil(tmp_path, body, records=rec)
    assert "'w' has shape [1048576, 1048576]; the network expects [4]" in load_error(p, {"w": (4,)})
    assert "its entries declare 4 TiB, more than the" in load_error(p)
    import netdsl.runtime.memory as memory
    with monkeypatch.context() as mp:
        mp.setattr(memory, "available_memory", lambda: (None, "unknown"))   # no /proc/meminfo: a fixed bound
        assert "its tensors declare 4 TiB together, more than the 4 GiB netdsl allows" in load_error(p)
    # counted pickle strings and bytes declaring gigabytes in a few bytes
    for op in (b"X" + struct.pack("<I", 2**32 - 1), b"B" + struct.pack("<I", 2**32 - 1),
               b"\x8e" + struct.pack("<Q", 2**62), b"\x8d" + struct.pack("<Q", 2**40)):
        text = load_error(evil(tmp_path, b"\x80\x04" + op + b"abc", raw=True))
        assert "its data.pkl is not a valid pickle" in text
    # a memo index of 2**32-1 would make the unpickler size its memo table to it
    text = load_error(evil(tmp_path, b"]r" + struct.pack("<I", 2**32 - 1)))
    assert "stores memo entry 4294967295 out of order" in text
    # a data.pkl whose zip header declares 4 GiB
    p = tmp_path / "bigpkl.pth"
    write_zip(p, {"data.pkl": pickle_bytes(op_dict([]))})
    b = bytearray(p.read_bytes())
    cd = b.rindex(b"PK\x01\x02", 0, b.index(b"archive/data.pkl", len(b) // 2))   # its central record
    b[cd + 24:cd + 28] = struct.pack("<I", 2**32 - 2)       # (2**32 - 1 would mean zip64)
    p.write_bytes(bytes(b))
    assert "its data.pkl declares 4,294,967,294 bytes" in load_error(p)


def test_compressed_or_overlapping_storage_records_are_not_read(tmp_path):
    a = np.zeros(1 << 16, np.float32)
    p = write_pth(tmp_path / "z.pth", {"w": a}, compress=True)       # 256 KiB that deflate to ~300 bytes
    assert "storage record 'data/0' is compressed" in load_error(p, {"w": a.shape})
    # a storage record whose central directory entry claims 1 MiB more than the file holds
    body = op_dict([("a", op_tensor("0", numel=8, size=(8,), stride=(1,))),
                    ("b", op_tensor("1", numel=1 << 18, size=(8,), stride=(1,)))])
    p = tmp_path / "overlap.pth"
    write_zip(p, {"data.pkl": pickle_bytes(body), "data/0": b"\0" * 32, "data/1": b"\1" * 32})
    b = bytearray(p.read_bytes())
    size = len(b)
    cd = b.rindex(b"PK\x01\x02", 0, b.rindex(b"archive/data/1"))
    b[cd + 20:cd + 28] = struct.pack("<II", 1 << 20, 1 << 20)
    p.write_bytes(bytes(b))
    text = load_error(p, {"a": (8,), "b": (8,)})
    assert f"storage record 'data/1' declares 1,048,576 bytes at offset" in text
    assert f"past the end of the {size:,}-byte file" in text


# ---------------------------------------------------------------- code execution

def _payloads(sentinel):
    cmd = f"touch {sentinel}"
    py = f"open({str(sentinel)!r}, 'w').write('x')"
    call = lambda mod, name, arg: op_global(mod, name) + op_tuple(op_str(arg)) + b"R"   # noqa: E731
    stack_global = lambda mod, name, arg: (b"\x80\x04" + op_str(mod) + op_str(name) + b"\x93"  # noqa: E731
                                           + op_tuple(op_str(arg)) + b"R.")
    return {
        "os.system": (call("os", "system", cmd), "'os.system'"),
        "posix.system": (call("posix", "system", cmd), "'posix.system'"),
        "builtins.eval": (call("builtins", "eval", py), "'builtins.eval'"),
        "builtins.exec": (call("builtins", "exec", py), "'builtins.exec'"),
        "__builtin__.eval": (call("__builtin__", "eval", py), "'__builtin__.eval'"),
        "subprocess.Popen": (op_global("subprocess", "Popen") + op_tuple(op_tuple(op_str("touch"), op_str(
            str(sentinel)))) + b"R", "'subprocess.Popen'"),
        "getattr chain": (op_global("builtins", "getattr") + op_tuple(op_global("os", "system")) + b"R",
                          "'builtins.getattr'"),
        "stack global": (stack_global("os", "system", cmd), "'os.system'"),
        "dotted stack global": (stack_global("collections", "OrderedDict.__class__.__subclasses__", ""),
                                "'collections.OrderedDict.__class__.__subclasses__'"),
        "torch.load itself": (call("torch", "load", str(sentinel)), "'torch.load'"),
        "nested in a tensor": (op_dict([("w", op_global("torch._utils", "_rebuild_tensor_v2") + op_tuple(
            call("os", "system", cmd), op_int(0), op_tuple(), op_tuple(), b"\x89", ODICT) + b"R")]), "'os.system'"),
        "nested in hooks": (op_dict([("w", op_global("torch._utils", "_rebuild_parameter") + op_tuple(
            op_int(0), b"\x89", call("os", "system", cmd)) + b"R")]), "'os.system'"),
        "nested in a list": (op_dict([("w", b"]" + call("os", "system", cmd) + b"a")]), "'os.system'"),
        "INST opcode": (b"(" + op_str(cmd) + b"ios\nsystem\n", "opcode INST"),
        "OBJ opcode": (b"(" + op_global("os", "system") + op_str(cmd) + b"o", "opcode OBJ"),
        "EXT1 opcode": (b"\x82\x01", "opcode EXT1"),
        "text persistent id": (b"P" + cmd.encode() + b"\n", "opcode PERSID"),
        "BUILD on a storage type": (op_global("torch", "FloatStorage") + b"}" + op_str("x") + op_int(1) + b"sb",
                                    "it applies pickle state to a StorageType"),
        "BUILD on OrderedDict with a list": (ODICT + b"]b", "non-dict pickle state"),
        "BUILD on a rebuild function": (op_global("torch._utils", "_rebuild_tensor_v2") + b"N" + b"}" + op_str(
            "__defaults__") + op_tuple() + b"s\x86b", "it applies pickle state to a Fn"),
        "BUILD on the OrderedDict class": (op_global("collections", "OrderedDict") + b"}b",
                                           "its data.pkl is not a valid pickle (TypeError"),
    }


def test_forbidden_globals_never_run(tmp_path):
    sentinel = tmp_path / "pwned"
    for name, (body, message) in _payloads(sentinel).items():
        p = evil(tmp_path, body, name=f"{name.replace(' ', '_')}.pth", raw=body.startswith(b"\x80"))
        text = load_error(p)
        assert not sentinel.exists(), f"{name}: code ran"
        assert message in text, f"{name}: {text}"
        if "it uses the global" in text:
            assert "netdsl reads only plain state dicts" in text and "never runs other pickled code" in text


class _Reduce:
    def __init__(self, sentinel):
        self.sentinel = sentinel

    def __reduce__(self):
        return (os.system, (f"touch {self.sentinel}",))


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_reduce_payloads_from_pickle_dumps(tmp_path, protocol):
    sentinel = tmp_path / "pwned"
    for obj in (_Reduce(sentinel), {"w": [_Reduce(sentinel)]}, {"state_dict": {"w": _Reduce(sentinel)}}):
        p = evil(tmp_path, pickle.dumps(obj, protocol=protocol), raw=True)
        text = load_error(p)
        assert not sentinel.exists()
        assert "it uses the global 'posix.system'" in text or "it uses the global 'os.system'" in text, text


# ---------------------------------------------------------------- recursion, structure, records

def test_recursion_bombs_and_cycles(tmp_path):
    deep = b"]" * 30_000 + b"a" * 29_999                          # a list nested 30,000 deep
    assert "entry 'w' is a list, not a tensor" in load_error(evil(tmp_path, op_dict([("w", deep)])))
    deep_tuple = b"(" * 30_000 + b"t" * 30_000                    # as a tensor size
    body = op_dict([("w", op_tensor("0", numel=4, size=deep_tuple, stride=(1,)))])
    text = load_error(evil(tmp_path, body, records={"data/0": b"\0" * 16}))
    assert "a tensor's size is a tuple, not a non-negative integer" in text
    cyc = b"}q\x00" + op_str("w") + b"h\x00s"                    # d = {'w': d}
    assert "entry 'w' is a dict, not a tensor" in load_error(evil(tmp_path, cyc))
    many = b"\x80\x02" + b"]q\x00" + b"h\x00" * 50_000 + b"."   # a small file, many references
    assert "it holds a list, not a state dict" in load_error(evil(tmp_path, many[2:-1]))


STRUCTURE = {
    "top-level list": (b"]", "it holds a list, not a state dict"),
    "int key": (ODICT + op_int(1) + op_tensor("0", numel=4, size=(4,), stride=(1,)) + b"s",
                "a key of type int"),
    "short persistent id": (op_dict([("w", op_tuple(op_str("storage"), op_str("x")) + b"Q")]),
                            "a persistent id that is not a storage"),
    "dtype as storage type": (op_dict([("w", op_tensor("0", stype="float32", numel=4, size=(4,), stride=(1,)))]),
                              "a storage's type is a _DType"),
    "long storage key": (op_dict([("w", op_tensor("k" * 500, numel=4, size=(4,), stride=(1,)))]),
                         "not a short name"),
    "tensor from an int": (op_dict([("w", op_global("torch._utils", "_rebuild_tensor_v2") + op_tuple(
        op_int(3), op_int(0), op_tuple(), op_tuple(), b"\x89", ODICT) + b"R")]), "rebuilt from a int"),
    "wrong arity": (op_dict([("w", op_global("torch._utils", "_rebuild_tensor_v2") + op_tuple() + b"R")]),
                    "its data.pkl is not a valid pickle (TypeError"),
    "calling a storage type": (op_global("torch", "FloatStorage") + op_tuple() + b"R",
                               "its data.pkl is not a valid pickle (TypeError"),
    "no STOP": (b"\x80\x02}", "its data.pkl is not a valid pickle"),
    "unknown opcode": (b"\x80\x02\xff.", "its data.pkl is not a valid pickle"),
    "empty pickle": (b"", "its data.pkl is not a valid pickle"),
    "bad memo get": (b"\x80\x02h\x05.", "its data.pkl is not a valid pickle"),
    "long name": (op_dict([("k" * 2000, op_tensor("0", numel=4, size=(4,), stride=(1,)))]),
                  "it has a name of 2,000 characters ('kkkk"),
    "huge LONG text": (b"\x80\x02L" + b"9" * 10_000 + b"L\n.", "its data.pkl is not a valid pickle"),
}


@pytest.mark.parametrize("case", list(STRUCTURE), ids=[c.replace(" ", "-") for c in STRUCTURE])
def test_malformed_structures(tmp_path, case):
    body, message = STRUCTURE[case]
    raw = not body or body.startswith(b"\x80")
    text = load_error(evil(tmp_path, body, raw=raw, records={"data/0": b"\0" * 16}))
    assert message in text, text


@pytest.mark.parametrize("order,message", [(b"middle", "its byteorder record says 'middle'"),
                                           (b"", "its byteorder record says ''"),
                                           (b"\xff" * 100, "its 'byteorder' record declares 100 bytes")])
def test_wrong_byteorder_record(tmp_path, order, message):
    body = pickle_bytes(op_dict([("w", op_tensor("0", numel=4, size=(4,), stride=(1,)))]))
    p = write_zip(tmp_path / "bo.pth", {"data.pkl": body, "data/0": b"\0" * 16}, byteorder=order)
    assert message in load_error(p)


def test_bad_archives(tmp_path):
    body = pickle_bytes(op_dict([]))
    p = write_zip(tmp_path / "v.pth", {"data.pkl": body}, version=b"three")
    assert "its version record 'three' is not a number" in load_error(p)
    p = tmp_path / "two.pth"
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("a/data.pkl", body)
        z.writestr("b/data.pkl", body)
    assert "it holds 2 pickles ('a', 'b'); torch.save writes one" in load_error(p)
    p = tmp_path / "nopkl.pth"
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("a/other.pkl", body)
    assert "without a <name>/data.pkl record" in load_error(p)
    p = tmp_path / "junk.pth"
    p.write_bytes(b"PK\x03\x04 not really a zip")
    assert f"cannot read weights from {p}: BadZipFile" in load_error(p)
    p.write_bytes(b"hello world")
    assert "it is not a torch.save file (not a zip archive)" in load_error(p)
