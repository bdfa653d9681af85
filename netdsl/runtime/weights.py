"""Weights in and out: state dicts with PyTorch names and layouts, .npz and
.safetensors files. Nothing here uses pickle (np.load(allow_pickle=False)).

Loading checks every name and shape against the network and reports all
mismatches at once.
"""
from __future__ import annotations

import os

import numpy as np

from ..errors import Diagnostic, NetDSLError


def expected(graph) -> dict:
    """name -> shape for every parameter and buffer, in source order."""
    out = {}
    for node in graph.nodes():
        for pname, shape in list(node.params.items()) + list(node.buffers.items()):
            out[f"{node.name}.{pname}"] = tuple(shape)
    return out


def check_state_dict(graph, d: dict, strict=True, where="weights"):
    """Validate names, shapes and dtypes; return float32 contiguous arrays. Raises with every problem."""
    want = expected(graph)
    problems = []
    out = {}
    for k, v in d.items():
        if k not in want:
            if strict:
                problems.append(f"unexpected entry '{k}' (no such parameter in the network)")
            continue
        try:
            a = np.asarray(v)
        except Exception:  # noqa: BLE001 — any unconvertible object
            problems.append(f"'{k}' is not an array")
            continue
        if a.dtype.kind not in "fiu":
            problems.append(f"'{k}' has dtype {a.dtype}; expected float32")
            continue
        if tuple(a.shape) != want[k]:
            problems.append(f"'{k}' has shape {list(a.shape)}; the network expects {list(want[k])}")
            continue
        a = np.ascontiguousarray(a, dtype=np.float32)
        if not np.all(np.isfinite(a)):
            problems.append(f"'{k}' contains NaN or infinite values")
            continue
        out[k] = a
    missing = [k for k in want if k not in d]
    if missing and strict:
        shown = ", ".join(missing[:8]) + (f" and {len(missing) - 8} more" if len(missing) > 8 else "")
        problems.append(f"missing {len(missing)} entr{'y' if len(missing) == 1 else 'ies'}: {shown}")
    if problems:
        raise NetDSLError([Diagnostic(f"{where}: {p}", None,
                                      "weights must match the network's names and PyTorch layouts "
                                      "(see m.state_dict() for the expected list)") for p in problems])
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


def load(path: str) -> dict:
    """Read a state dict from .npz or .safetensors. Corrupt files give a NetDSLError."""
    ext = os.path.splitext(path)[1].lower()
    if not os.path.exists(path):
        raise NetDSLError(f"no such weights file: {path}")
    try:
        if ext == ".safetensors":
            return dict(_safetensors().load_file(path))
        if ext == ".npz":
            with np.load(path, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
    except NetDSLError:
        raise
    except Exception as e:  # noqa: BLE001 — zip, npy and safetensors readers raise many kinds
        raise NetDSLError(f"cannot read weights from {path}: {type(e).__name__}: {e}",
                          hint="the file is truncated, corrupt, or not a weights file")
    raise NetDSLError(f"unknown weights format '{ext}' ({path})", hint="use .npz or .safetensors")


def _safetensors():
    try:
        import safetensors.numpy as st
    except ImportError:
        raise NetDSLError("reading .safetensors needs the optional package safetensors",
                          hint='pip install "netdsl[safetensors]" (or use .npz)')
    return st
