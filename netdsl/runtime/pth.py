"""PyTorch checkpoints without PyTorch: the zip format `torch.save` writes (torch >= 1.6).

Such a file is a zip archive whose records are stored uncompressed:

    <prefix>/data.pkl       the pickled object (protocol 2). A tensor is a call
                            torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)
                            and a storage the persistent id
                            ('storage', torch.FloatStorage, key, location, numel)
    <prefix>/data/<key>     that storage's raw bytes (numel elements)
    <prefix>/byteorder      'little' or 'big' (absent in early files: little)
    <prefix>/version        the format version, an integer

<prefix> is 'archive' (or, in older torch, the file's base name).

Nothing here imports torch, and the pickle is never run as written. It is first
scanned opcode by opcode (pickletools.genops: every counted length is checked
against the bytes that remain, so a declared 4 GiB string allocates nothing;
memo indices must be sequential; opcodes torch.save never writes are refused),
then unpickled by an Unpickler whose find_class knows only the globals a state
dict needs - OrderedDict, the tensor and parameter rebuild functions, the
storage types and dtypes - and returns inert stand-ins written here for them.
Any other global (os.system, builtins.eval, a pickled nn.Module, ...) is a
NetDSLError naming it. The stand-ins only record: a tensor is (storage key,
dtype, offset, size, stride), checked against its storage's declared length,
and the storage's declared length against its zip record's real size. No data
is read until `Checkpoint.read`, so names and shapes are checked against the
network first, as for .npz and .safetensors.

Values come out as float32 for float16, bfloat16 and float64 storages (netdsl
computes in float32; float64 is rounded), and unchanged for integer ones (the
int64 `num_batches_tracked` counters). A training checkpoint that wraps the
state dict ({'state_dict': ...}, {'model_state_dict': ...}, {'model': ...},
{'net': ...}) is unwrapped, provided the rest of it unpickles safely too.

What it deliberately does not read: the legacy format of torch < 1.6 (a
sequence of pickles; refused with a hint to re-save), TorchScript archives
(torch.jit.save), quantized, sparse or tensor-subclass entries, and pickle
protocol 5 out-of-band buffers.
"""
from __future__ import annotations

import io
import os
import pickle
import pickletools
import re
import zipfile

import numpy as np

from ..errors import NetDSLError

MAX_PICKLE = 64 << 20       # data.pkl bytes; resnet50's is ~30 KiB, a 7B LLM's ~100 KiB
MAX_RANK = 32
MAX_NAME = 1024             # characters in a state dict name (torchvision's longest: ~40)
UNKNOWN_MEMORY_CAP = 4 << 30  # the most a file's tensors may unfold to when free memory is unknown
MAX_SMALL_RECORD = 64       # byteorder / version records
LEGACY_MAGIC = b"\x80\x02\x8a\x0a" + (0x1950a86a20f9469cfc6c).to_bytes(10, "little")
WRAPPERS = ("state_dict", "model_state_dict", "model", "net")
HINT = "re-save only the state dict in PyTorch: torch.save(model.state_dict(), path)"
# Opcodes torch.save never writes and that reach beyond plain data: the copyreg extension registry,
# INST/OBJ class instantiation, protocol 5 out-of-band buffers, text persistent ids.
REFUSED_OPCODES = {"EXT1", "EXT2", "EXT4", "INST", "OBJ", "BYTEARRAY8", "NEXT_BUFFER",
                   "READONLY_BUFFER", "PERSID"}

# code -> (numpy dtype of the stored elements, numpy dtype handed out). 'bf16' is stored as uint16.
CODES = {"f4": ("f4", "f4"), "f8": ("f8", "f4"), "f2": ("f2", "f4"), "bf16": ("u2", "f4"),
         "i8": ("i8", "i8"), "i4": ("i4", "i4"), "i2": ("i2", "i2"), "i1": ("i1", "i1"),
         "u1": ("u1", "u1"), "u2": ("u2", "u2"), "u4": ("u4", "u4"), "u8": ("u8", "u8"),
         "b1": ("?", "?"), "c8": ("c8", "c8"), "c16": ("c16", "c16")}
STORAGES = {"FloatStorage": "f4", "DoubleStorage": "f8", "HalfStorage": "f2", "BFloat16Storage": "bf16",
            "LongStorage": "i8", "IntStorage": "i4", "ShortStorage": "i2", "CharStorage": "i1",
            "ByteStorage": "u1", "BoolStorage": "b1", "ComplexFloatStorage": "c8",
            "ComplexDoubleStorage": "c16"}
DTYPES = {"float32": "f4", "float": "f4", "float64": "f8", "double": "f8", "float16": "f2", "half": "f2",
          "bfloat16": "bf16", "int64": "i8", "long": "i8", "int32": "i4", "int": "i4", "int16": "i2",
          "short": "i2", "int8": "i1", "uint8": "u1", "uint16": "u2", "uint32": "u4", "uint64": "u8",
          "bool": "b1", "complex64": "c8", "cfloat": "c8", "complex128": "c16", "cdouble": "c16"}
TORCH_NAMES = {v: k for k, v in DTYPES.items() if k not in ("float", "double", "half", "long", "int",
                                                            "short", "cfloat", "cdouble")}


class Refused(Exception):
    """A problem with the file, raised from inside the unpickler; becomes a NetDSLError."""


def _key(key) -> str:
    """A storage key as shown in messages (persistent_load checked it is a short str)."""
    return ascii(key)[1:-1]


def _short(s, n=80) -> str:
    s = s if isinstance(s, str) else repr(type(s).__name__)
    return ascii(s[:n] + "...") if len(s) > n else ascii(s)


class _Inert:
    """Base of the stand-ins: pickle's BUILD on one of them is refused, never applied."""
    __slots__ = ()

    def __setstate__(self, state):
        raise Refused(f"it applies pickle state to a {type(self).__name__.lstrip('_')}")


class _DType(_Inert):
    __slots__ = ("code",)

    def __init__(self, code):
        self.code = code


class _StorageType(_Inert):
    __slots__ = ("name", "code")          # code None: an untyped storage (numel counts bytes)

    def __init__(self, name, code):
        self.name, self.code = name, code


class _Storage(_Inert):
    __slots__ = ("key", "code", "numel", "info")

    def __init__(self, key, code, numel, info):
        self.key, self.code, self.numel, self.info = key, code, numel, info


class _Tensor(_Inert):
    """A tensor not read yet: where its elements are in which storage."""
    __slots__ = ("storage", "code", "offset", "shape", "stride")

    def __init__(self, storage, code, offset, shape, stride):
        self.storage, self.code, self.offset, self.shape, self.stride = storage, code, offset, shape, stride

    @property
    def dtype(self):
        return np.dtype(CODES[self.code][1])

    @property
    def nbytes(self):
        n = 1
        for s in self.shape:
            n *= s
        return n * self.dtype.itemsize


class _Fn(_Inert):
    """A rebuild function as the unpickler sees it: callable, but unlike a plain function it has no
    attributes that pickle's BUILD could set (a hostile file could otherwise change `__defaults__`
    of our module's functions for every later load)."""
    __slots__ = ("fn",)

    def __init__(self, fn):
        self.fn = fn

    def __call__(self, *args):
        return self.fn(*args)


class _StateDict(dict):
    """collections.OrderedDict's stand-in (dicts keep order). state_dict() pickles its `_metadata`
    (per-module version numbers) as instance state: accepted and dropped."""

    def __setstate__(self, state):
        if not isinstance(state, dict):
            raise Refused("it applies non-dict pickle state to an OrderedDict")

    def __reduce__(self):                 # never pickled by netdsl; keep it a plain dict if it is
        return (dict, (dict(self),))


def _int(v, what) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        shown = (repr(v) if isinstance(v, (bool, int)) and abs(v) < 2**64 else   # never repr a deep tuple
                 f"a {type(v).__name__}")
        raise Refused(f"a tensor's {what} is {shown}, not a non-negative integer")
    return v


def _ints(v, what) -> tuple:
    if not isinstance(v, (tuple, list)) or len(v) > MAX_RANK:
        raise Refused(f"a tensor's {what} is not a tuple of at most {MAX_RANK} integers")
    return tuple(_int(x, what) for x in v)


def _tensor(storage, offset, size, stride, code=None) -> _Tensor:
    if not isinstance(storage, _Storage):
        raise Refused(f"a tensor is rebuilt from a {type(storage).__name__}, not from a storage")
    offset, size, stride = _int(offset, "storage offset"), _ints(size, "size"), _ints(stride, "stride")
    if len(size) != len(stride):
        raise Refused(f"a tensor has size {list(size)} but stride {list(stride)} (different ranks)")
    numel = storage.numel
    if storage.code is None:              # untyped storage: numel is in bytes
        if code is None:
            raise Refused("a tensor on an untyped storage has no dtype")
        item = np.dtype(CODES[code][0]).itemsize
        if numel % item:
            raise Refused(f"storage 'data/{_key(storage.key)}' holds {numel} bytes, not a whole number of "
                          f"{TORCH_NAMES[code]} elements")
        numel //= item
    elif code is not None and code != storage.code:
        raise Refused(f"a {TORCH_NAMES[code]} tensor is rebuilt from a {TORCH_NAMES[storage.code]} storage")
    code = code or storage.code
    if 0 in size:
        end = offset
    else:
        end = offset + 1 + sum((n - 1) * s for n, s in zip(size, stride))
    if end > numel:
        raise Refused(f"a tensor of size {list(size)}, stride {list(stride)} at offset {offset} reaches "
                      f"element {end:,} of storage 'data/{_key(storage.key)}', which holds {numel:,}")
    return _Tensor(storage, code, offset, size, stride)


def _rebuild_tensor(storage, storage_offset, size, stride):
    return _tensor(storage, storage_offset, size, stride)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
                       metadata=None):
    return _tensor(storage, storage_offset, size, stride)


def _rebuild_tensor_v3(storage, storage_offset, size, stride, requires_grad, backward_hooks, dtype,
                       metadata=None):
    if not isinstance(dtype, _DType):
        raise Refused(f"a tensor's dtype is a {type(dtype).__name__}, not a torch dtype")
    return _tensor(storage, storage_offset, size, stride, dtype.code)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, state=None):
    if not isinstance(data, _Tensor):
        raise Refused(f"a Parameter wraps a {type(data).__name__}, not a tensor")
    return data


ALLOWED = {("collections", "OrderedDict"): _StateDict,
           ("torch._utils", "_rebuild_tensor"): _Fn(_rebuild_tensor),
           ("torch._utils", "_rebuild_tensor_v2"): _Fn(_rebuild_tensor_v2),
           ("torch._utils", "_rebuild_tensor_v3"): _Fn(_rebuild_tensor_v3),
           ("torch._utils", "_rebuild_parameter"): _Fn(_rebuild_parameter),
           ("torch._utils", "_rebuild_parameter_with_state"): _Fn(_rebuild_parameter),
           ("torch.storage", "UntypedStorage"): _StorageType("UntypedStorage", None),
           ("torch", "UntypedStorage"): _StorageType("UntypedStorage", None)}
for _name, _code in STORAGES.items():
    ALLOWED["torch", _name] = ALLOWED["torch.cuda", _name] = _StorageType(_name, _code)
for _name, _code in DTYPES.items():
    ALLOWED["torch", _name] = _DType(_code)


class _Unpickler(pickle.Unpickler):
    def __init__(self, data: bytes, prefix: str, records: dict):
        super().__init__(io.BytesIO(data))
        self.prefix, self.records = prefix, records

    def find_class(self, module, name):
        obj = ALLOWED.get((module, name))
        if obj is None:
            raise Refused(f"it uses the global {_short(f'{module}.{name}')}, which a plain state dict "
                          f"never needs; netdsl does not run it", "forbidden")
        return obj

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise Refused("it holds a persistent id that is not a storage ('storage', type, key, "
                          "location, numel)")
        _, stype, key, _location, numel = pid
        if not isinstance(stype, _StorageType):
            raise Refused(f"a storage's type is a {type(stype).__name__}, not a torch storage type")
        if not isinstance(key, str) or not 0 < len(key) <= 100:
            raise Refused(f"a storage key is {_short(key, 40)}, not a short name")
        numel = _int(numel, "storage size")
        info = self.records.get(f"{self.prefix}/data/{key}")
        if info is None:
            raise Refused(f"storage record 'data/{_key(key)}' is missing from the archive")
        item = 1 if stype.code is None else np.dtype(CODES[stype.code][0]).itemsize
        if numel * item != info.file_size:
            what = "bytes" if stype.code is None else f"{TORCH_NAMES[stype.code]} elements"
            raise Refused(f"storage 'data/{_key(key)}' declares {numel:,} {what} ({numel * item:,} bytes) "
                          f"but its record holds {info.file_size:,} bytes")
        return _Storage(key, stype.code, numel, info)


def _scan(data: bytes):
    """Check the opcode stream before unpickling: lengths that fit, sequential memo, no exotic opcodes."""
    puts = 0
    stop = False
    for op, arg, pos in pickletools.genops(io.BytesIO(data)):
        if op.name in REFUSED_OPCODES:
            raise Refused(f"data.pkl uses the pickle opcode {op.name} (byte {pos}), which torch.save "
                          f"never writes", "forbidden")
        if op.name in ("PUT", "BINPUT", "LONG_BINPUT"):
            if not isinstance(arg, int) or arg > puts:
                raise Refused(f"data.pkl stores memo entry {arg} out of order (byte {pos})")
            puts += arg == puts
        elif op.name == "MEMOIZE":
            puts += 1
        elif op.name == "STOP":
            stop = True
    if not stop:                                            # pragma: no cover - genops raises first
        raise Refused("data.pkl has no STOP opcode")


def is_torch_file(path: str) -> bool:
    """Does this file look like torch.save's output (zip with <prefix>/data.pkl, or the legacy format)?"""
    try:
        with open(path, "rb") as f:
            head = f.read(len(LEGACY_MAGIC))
        if head == LEGACY_MAGIC:
            return True
        if not head.startswith(b"PK"):
            return False
        with zipfile.ZipFile(path) as z:
            return any(re.fullmatch(r"[^/]+/data\.pkl", n) for n in z.namelist())
    except (OSError, zipfile.BadZipFile, ValueError, EOFError, NotImplementedError, RuntimeError):
        return False


class Checkpoint:
    """An open torch.save file: `headers()` lists its tensors unread, `read(name)` reads one."""

    def __init__(self, path: str):
        self.path = path
        self.where = path
        self._cache = {}                  # storage key -> its bytes, while a tensor still to read uses it
        self._uses = {}                   # storage key -> tensors still to read from it (check_reads)
        with open(path, "rb") as f:
            head = f.read(len(LEGACY_MAGIC))
        if head == LEGACY_MAGIC:
            self._fail("it is in the legacy torch.save format (before torch 1.6), which is not supported",
                       "re-save it with torch >= 1.6: torch.save(torch.load(path), path) "
                       "(the zip format is the default since 1.6)")
        if head[:1] == b"\x80":
            self._fail("it is a plain pickle, not a torch.save zip archive (netdsl never unpickles "
                       "arbitrary files)", HINT)
        if not head.startswith(b"PK"):
            self._fail("it is not a torch.save file (not a zip archive)",
                       "weights files are .pth/.pt (torch.save), .npz or .safetensors")
        self.size = os.path.getsize(path)
        self.zip = zipfile.ZipFile(path)
        try:
            self._open()
        except BaseException:
            self.zip.close()
            raise

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.zip.close()

    def _fail(self, message, hint=HINT):
        raise NetDSLError(f"cannot read weights from {self.path}: {message}", hint=hint)

    def _small(self, name) -> bytes | None:
        info = self.records.get(f"{self.prefix}/{name}")
        if info is None:
            return None
        if info.file_size > MAX_SMALL_RECORD:
            self._fail(f"its '{name}' record declares {info.file_size:,} bytes (a few are expected)",
                       "the file is corrupt or was crafted")
        return self.zip.read(info)

    def _open(self):
        self.records = {i.filename: i for i in self.zip.infolist()}
        prefixes = sorted({n[:-9] for n in self.records if re.fullmatch(r"[^/]+/data\.pkl", n)})
        if not prefixes:
            if any(n.endswith("/constants.pkl") or "/code/" in n for n in self.records):
                self._fail("it is a TorchScript archive (torch.jit.save), not a state dict",
                           "in PyTorch: torch.save(torch.jit.load(path).state_dict(), 'w.pth')")
            self._fail("it is a zip archive without a <name>/data.pkl record, not a torch.save file",
                       "weights files are .pth/.pt (torch.save), .npz or .safetensors")
        if len(prefixes) > 1:
            self._fail(f"it holds {len(prefixes)} pickles ({', '.join(map(_short, prefixes[:4]))}); "
                       f"torch.save writes one", "the file is corrupt or was crafted")
        self.prefix = prefixes[0]
        order = self._small("byteorder")
        if order is None or order.strip() == b"little":      # files from torch < 1.10 have none: little
            self.order = "<"
        elif order.strip() == b"big":
            self.order = ">"
        else:
            self._fail(f"its byteorder record says {_short(order.decode('latin-1'), 20)}; expected "
                       f"'little' or 'big'", "the file is corrupt or was crafted")
        version = self._small("version")
        if version is not None and not re.fullmatch(rb"\s*\d{1,4}\s*", version):
            self._fail(f"its version record {_short(version.decode('latin-1'), 20)} is not a number",
                       "the file is corrupt or was crafted")
        info = self.records[f"{self.prefix}/data.pkl"]
        if info.file_size > MAX_PICKLE:
            self._fail(f"its data.pkl declares {info.file_size:,} bytes, more than the {MAX_PICKLE:,} "
                       f"a state dict's pickle needs", "the file is corrupt or was crafted")
        data = self.zip.read(info)
        try:
            _scan(data)
            obj = _Unpickler(data, self.prefix, self.records).load()
        except Refused as e:
            self._refused(e)
        except RecursionError:
            self._fail("its data.pkl nests too deeply", "the file is corrupt or was crafted")
        except Exception as e:  # noqa: BLE001 — the C unpickler raises many types on hostile input
            self._fail(f"its data.pkl is not a valid pickle ({type(e).__name__}: {_short(str(e), 120)[1:-1]})",
                       "the file is truncated, corrupt, or not a weights file")
        self.tensors = self._state_dict(obj)

    def _refused(self, e: Refused):
        if e.args[1:] == ("forbidden",):
            self._fail(f"{e.args[0]}", "netdsl reads only plain state dicts (names -> tensors) from .pth "
                       f"files and never runs other pickled code; if you trust the file, {HINT}")
        self._fail(e.args[0], "the file is corrupt or was crafted")

    def _state_dict(self, obj) -> dict:
        if not isinstance(obj, dict):
            self._fail(f"it holds a {type(obj).__name__}, not a state dict (a dict of tensors)", HINT)
        if not all(isinstance(v, _Tensor) for v in obj.values()):
            for w in WRAPPERS:                                 # a training checkpoint: unwrap
                v = obj.get(w)
                if isinstance(v, dict) and v and all(isinstance(t, _Tensor) for t in v.values()):
                    self.where = f"{self.path} (its '{w}' entry)"
                    obj = v
                    break
            else:
                bad = next(k for k, v in obj.items() if not isinstance(v, _Tensor))
                keys = ", ".join(_short(k, 30) for k in list(obj)[:8]) + (", ..." if len(obj) > 8 else "")
                self._fail(f"it is not a state dict: entry {_short(bad, 60)} is a {type(obj[bad]).__name__}, "
                           f"not a tensor (keys: {keys})",
                           f"a training checkpoint is unwrapped when its state dict is under one of "
                           f"{', '.join(map(repr, WRAPPERS))}; otherwise {HINT}")
        for k in obj:
            if not isinstance(k, str):
                self._fail(f"it has a key of type {type(k).__name__}; state dict names are strings", HINT)
            if len(k) > MAX_NAME:
                self._fail(f"it has a name of {len(k):,} characters ({_short(k, 40)})",
                           "the file is corrupt or was crafted")
        return obj

    def headers(self) -> dict:
        """name -> (shape, dtype handed out, bytes) for every tensor, nothing read."""
        return {k: (t.shape, t.dtype, t.nbytes) for k, t in self.tensors.items()}

    def check_reads(self, names):
        """Before reading these tensors: their storage records must be stored uncompressed inside the
        file, and together (each once) no larger than it, so no declared size can make us allocate
        more than the file really holds (overlapping records are refused too)."""
        total, seen = 0, set()
        for k in names:
            st = self.tensors[k].storage
            self._uses[st.key] = self._uses.get(st.key, 0) + 1
            if st.key in seen:
                continue
            seen.add(st.key)
            info = st.info
            if info.compress_type != zipfile.ZIP_STORED or info.compress_size != info.file_size:
                self._fail(f"storage record 'data/{_key(st.key)}' is compressed; torch.save stores records "
                           f"uncompressed", "the file was re-zipped, is corrupt or was crafted")
            if info.header_offset + info.file_size > self.size:
                self._fail(f"storage record 'data/{_key(st.key)}' declares {info.file_size:,} bytes at offset "
                           f"{info.header_offset:,}, past the end of the {self.size:,}-byte file",
                           "the file is truncated or corrupt")
            total += info.file_size
        if total > self.size:
            self._fail(f"the storages these tensors use declare {total:,} bytes together, more than the "
                       f"{self.size:,}-byte file holds", "the file is corrupt or was crafted")
        # The arrays handed out can be larger than the storages only through stride-0 (expanded) views.
        # weights._select checks them against the memory available when the network does not bound
        # them; where that is unknown (no /proc/meminfo), a fixed bound keeps a view from asking for TiB.
        from .memory import available_memory, size_text
        out = sum(self.tensors[k].nbytes for k in names)
        avail = available_memory()[0]
        cap = avail if avail is not None else UNKNOWN_MEMORY_CAP + 2 * self.size
        if out > cap:
            self._fail(f"its tensors declare {size_text(out)} together, more than the {size_text(cap)} "
                       f"{'of memory available' if avail is not None else 'netdsl allows'}",
                       "the file is corrupt or was crafted")

    def read(self, name) -> np.ndarray:
        """One tensor as a contiguous native-order array (float32 for any float storage but complex)."""
        t = self.tensors[name]
        st = t.storage
        stored, out = (np.dtype(c) for c in CODES[t.code])
        raw = self._cache.get(st.key)
        if raw is None:
            raw = self._cache[st.key] = self.zip.read(st.info)
            if len(raw) != st.info.file_size:                    # pragma: no cover - zipfile checks
                self._fail(f"storage record 'data/{_key(st.key)}' is short", "the file is truncated")
        self._uses[st.key] = self._uses.get(st.key, 1) - 1
        if self._uses[st.key] <= 0:                              # its last reader: free it after this copy
            del self._cache[st.key]
        if 0 in t.shape:
            return np.zeros(t.shape, out)
        flat = np.frombuffer(raw, stored.newbyteorder(self.order), count=len(raw) // stored.itemsize)
        view = np.lib.stride_tricks.as_strided(flat[t.offset:], shape=t.shape,
                                               strides=[s * stored.itemsize for s in t.stride],
                                               writeable=False)
        if t.code == "bf16":                                  # bfloat16: the high half of a float32
            return (view.astype(np.uint32) << 16).view(np.float32)
        return np.array(view, dtype=out.newbyteorder("="), order="C")
