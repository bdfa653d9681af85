"""Weights in and out: state dicts with PyTorch names and layouts, .npz,
.safetensors and (read only) torch.save .pth files. Nothing here runs pickle:
np.load(allow_pickle=False), and .pth files go through pth.py's restricted
unpickler, which never imports torch and refuses every global a plain state
dict does not need.

Loading checks every name and shape against the network and reports all
mismatches at once. Values are checked too: no NaN or infinity anywhere, and
no negative BatchNorm `running_var` (sqrt(var + eps) of a negative variance
gives finite garbage, not an error, further down).

Files are read header first: with the network's expected names and shapes
(`load(path, expected)`), every .npz member's name, declared uncompressed
size (zip header) and shape and dtype (npy header) are checked before any of
its data is decompressed, and safetensors entries likewise from their JSON
header; an unexpected or misshapen entry is reported without being read. So
a small hostile file cannot make the loader decompress gigabytes.
"""
from __future__ import annotations

import os
import struct
import zipfile
import zlib

import numpy as np

from ..errors import Diagnostic, NetDSLError

NPY_HEADER_MAX = 65536 + 16      # npy v1 headers are at most 65535 bytes; real ones are ~128
MAX_ITEMSIZE = 16                # the widest numeric dtype accepted (float128); float32 is 4
# What zipfile, zlib and numpy's npy reader raise on a truncated, corrupt or hostile file (found by
# flipping bytes of real .npz files: unknown zip versions and encryption flags are NotImplementedError
# and RuntimeError, a damaged deflate stream zlib.error). Anything else is a bug, not a bad file.
READ_ERRORS = (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error, NotImplementedError,
               RuntimeError, struct.error, OverflowError)
HINT = ("weights must match the network's names and PyTorch layouts "
        "(see m.state_dict() for the expected list)")


def expected(graph) -> dict:
    """name -> shape for every parameter and buffer, in source order."""
    out = {}
    for node in graph.nodes():
        for pname, shape in list(node.params.items()) + list(node.buffers.items()):
            out[f"{node.name}.{pname}"] = tuple(shape)
    return out


def _entry_problem(k, shape, dtype, want) -> str | None:
    """What is wrong with entry k declared as (shape, dtype), or None; want: name -> shape."""
    if getattr(dtype, "kind", "?") not in "fiu":        # a str: a file dtype numpy has no name for
        return f"'{k}' has dtype {dtype}; expected float32"
    if tuple(shape) != want[k]:
        return f"'{k}' has shape {list(shape)}; the network expects {list(want[k])}"
    return None


def _value_problem(k, a) -> str | None:
    """NaN / infinity anywhere, or a negative variance, with the first bad index."""
    bad = ~np.isfinite(a)
    if bad.any():
        i = tuple(int(j) for j in np.argwhere(bad)[0])
        return f"'{k}' contains NaN or infinite values (first at index {list(i)}: {a[i]})"
    if k.endswith(".running_var") and (a < 0).any():
        i = tuple(int(j) for j in np.argwhere(a < 0)[0])
        return (f"'{k}' has a negative variance {a[i]:g} at index {list(i)}; a BatchNorm running "
                f"variance is never negative (is this a bias or a mean?)")
    return None


def _missing(want, have, problems):
    missing = [k for k in want if k not in have]
    if missing:
        shown = ", ".join(missing[:8]) + (f" and {len(missing) - 8} more" if len(missing) > 8 else "")
        problems.append(f"missing {len(missing)} entr{'y' if len(missing) == 1 else 'ies'}: {shown}")


def _raise(problems, where):
    if problems:
        raise NetDSLError([Diagnostic(f"{where}: {p}", None, HINT) for p in problems])


def check_state_dict(graph, d: dict, strict=True, where="weights"):
    """Validate names, shapes, dtypes and values; return float32 contiguous arrays. Raises with every problem."""
    want = expected(graph)
    problems = []
    out = {}
    for k, v in d.items():
        if k not in want:
            if strict and not k.endswith(".num_batches_tracked"):   # PyTorch's BN counter: not a weight
                problems.append(f"unexpected entry '{k}' (no such parameter in the network)")
            continue
        try:
            a = np.asarray(v)
        except Exception:  # noqa: BLE001 — any unconvertible object
            problems.append(f"'{k}' is not an array")
            continue
        p = _entry_problem(k, a.shape, a.dtype, want)
        if p is None:
            a = np.ascontiguousarray(a, dtype=np.float32)
            p = _value_problem(k, a)
        if p is not None:
            problems.append(p)
            continue
        out[k] = a
    if strict:
        _missing(want, d, problems)
    _raise(problems, where)
    return out


def save(path: str, state: dict):
    """Write a state dict to .npz or .safetensors (by extension)."""
    ext = os.path.splitext(path)[1].lower()
    arrays = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in state.items()}
    if ext == ".safetensors":
        st = _safetensors()
        st.save_file(arrays, path)
    elif ext == ".npz":
        np.savez(path, **arrays)
    else:
        raise NetDSLError(f"cannot save weights as '{ext or path}'", hint="use a .npz or .safetensors file name")


PTH_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")      # what torch.save files are called in the wild
FORMATS = ".npz, .safetensors or .pth/.pt (torch.save)"


def _format(path: str) -> str:
    """'npz', 'safetensors' or 'pth': by suffix, else by content (a torch.save zip or legacy pickle)."""
    ext = os.path.splitext(path)[1].lower()
    if ext in (".npz", ".safetensors"):
        return ext[1:]
    from . import pth
    if ext in PTH_SUFFIXES or pth.is_torch_file(path):
        return "pth"
    raise NetDSLError(f"unknown weights format '{ext or os.path.basename(path)}' ({path})", hint=f"use {FORMATS}")


def load(path: str, expected: dict | None = None, strict: bool = True) -> dict:
    """Read a state dict from .npz, .safetensors or a torch.save .pth. Corrupt files give a NetDSLError.

    With `expected` (name -> shape, see `expected(graph)`) names, shapes and dtypes are
    checked from the file's headers before any data is read, and every problem is reported
    at once; with strict=False unknown entries are skipped unread. Without it, the declared
    sizes together must fit in the memory available."""
    if not os.path.exists(path):
        raise NetDSLError(f"no such weights file: {path}")
    fmt = _format(path)
    try:
        if fmt == "safetensors":
            return _load_safetensors(path, expected, strict)
        if fmt == "pth":
            return _load_pth(path, expected, strict)
        return _load_npz(path, expected, strict)
    except NetDSLError:
        raise
    except READ_ERRORS + _safetensors_errors() as e:   # what the readers raise on a bad file (fuzzed)
        raise NetDSLError(f"cannot read weights from {path}: {type(e).__name__}: {e}",
                          hint="the file is truncated, corrupt, or not a weights file")


def _select(path, headers: dict, expected, strict) -> list:
    """headers: name -> (shape, dtype, declared bytes). The names to read; raises on any problem."""
    problems, keep = [], []
    if expected is None:
        from .memory import available_memory, size_text
        total = sum(b for _, _, b in headers.values())
        avail, _ = available_memory()
        if avail is not None and total > avail:
            raise NetDSLError(f"cannot read weights from {path}: its entries declare {size_text(total)}, "
                              f"more than the {size_text(avail)} of memory available",
                              hint="the file is corrupt or not meant for this machine")
        return list(headers)
    for k, (shape, dtype, _) in headers.items():
        if k not in expected:
            if strict:
                problems.append(f"unexpected entry '{k}' (no such parameter in the network)")
            continue
        p = _entry_problem(k, shape, dtype, expected)
        if p is not None:
            problems.append(p)
            continue
        keep.append(k)
    if strict:
        _missing(expected, headers, problems)
    _raise(problems, f"weights in {path}")
    return keep


def _npy_header(fp):
    """(shape, dtype) from an open .npy stream, reading only its header."""
    fmt = np.lib.format
    version = fmt.read_magic(fp)
    if version == (1, 0):
        shape, fortran, dtype = fmt.read_array_header_1_0(fp)
    elif version == (2, 0):
        shape, fortran, dtype = fmt.read_array_header_2_0(fp)
    else:
        shape, fortran, dtype = fmt._read_array_header(fp, version)   # noqa: SLF001 — v3 (utf-8 names)
    if dtype.hasobject:
        raise ValueError("the array holds Python objects (pickled data is never loaded)")
    return tuple(shape), dtype


def _load_npz(path, expected, strict):
    with zipfile.ZipFile(path) as z:
        members, headers = {}, {}
        for info in z.infolist():
            k = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
            if expected is not None and k.endswith(".num_batches_tracked"):
                continue                                   # PyTorch's counter: not a weight
            if expected is not None and k not in expected and not strict:
                continue                                   # ignored: not even its header is read
            if expected is not None and k not in expected:
                headers[k] = ((), np.dtype(np.float32), 0)   # reported as unexpected, never read
                continue
            with z.open(info) as fp:
                shape, dtype = _npy_header(fp)
            need = int(np.prod(shape, dtype=object)) * dtype.itemsize
            if info.file_size > need + NPY_HEADER_MAX or dtype.itemsize > MAX_ITEMSIZE:
                raise NetDSLError(f"cannot read weights from {path}: entry '{k}' declares "
                                  f"{info.file_size:,} bytes for a {list(shape)} {dtype} array "
                                  f"({need:,} bytes)", hint="the file is corrupt or was crafted")
            members[k], headers[k] = info, (shape, dtype, need)
        out = {}
        for k in _select(path, headers, expected, strict):
            with z.open(members[k]) as fp:
                out[k] = np.lib.format.read_array(fp, allow_pickle=False)
        return out


def _load_pth(path, expected, strict):
    """torch.save's zip: names, shapes and dtypes come from the pickle (run by pth.py's restricted
    unpickler, data unread); only the selected tensors' storage records are read."""
    from . import pth
    with pth.Checkpoint(path) as ck:
        headers = {k: h for k, h in ck.headers().items()
                   if expected is None or not k.endswith(".num_batches_tracked")}
        keep = _select(ck.where, headers, expected, strict)
        ck.check_reads(keep)
        return {k: ck.read(k) for k in keep}


def _load_safetensors(path, expected, strict):
    _safetensors()
    from safetensors import safe_open
    with safe_open(path, framework="numpy") as f:
        headers = {}
        for k in f.keys():
            if expected is not None and k.endswith(".num_batches_tracked"):
                continue
            sl = f.get_slice(k)
            shape = tuple(sl.get_shape())
            dt = {"F64": "f8", "F32": "f4", "F16": "f2", "BF16": None, "I64": "i8", "I32": "i4", "I16": "i2",
                  "I8": "i1", "U8": "u1", "BOOL": "?"}.get(sl.get_dtype(), None)
            dtype = np.dtype(dt) if dt else sl.get_dtype()        # e.g. BF16: reported, never read
            headers[k] = (shape, dtype, int(np.prod(shape, dtype=object)) * getattr(dtype, "itemsize", 2))
        return {k: f.get_tensor(k) for k in _select(path, headers, expected, strict)}


def _safetensors_errors() -> tuple:
    try:
        from safetensors import SafetensorError
        return (SafetensorError,)
    except ImportError:
        return ()


def _safetensors():
    try:
        import safetensors.numpy as st
    except ImportError:
        raise NetDSLError("reading .safetensors needs the optional package safetensors",
                          hint='pip install "netdsl[safetensors]" (or use .npz)')
    return st
