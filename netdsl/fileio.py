"""Writing a file so that a reader never sees half of it.

    replace_atomic(path, lambda tmp: open(tmp, "wb").write(data), hint="check ...")

The content goes to a temporary file beside `path` (same folder, so the rename stays on one
file system), which is renamed over `path` once it is complete: a crash or a full disk
leaves the old file (or none), never a torn one. The temporary file is removed when writing
fails, and an OSError becomes a NetDSLError naming the file, with the caller's hint.
"""
from __future__ import annotations

import os

from .errors import NetDSLError


def replace_atomic(path: str, write, hint: str):
    """Call write(tmp) to write the whole file at a temporary path, then rename it over path."""
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as e:
        raise NetDSLError(f"cannot write {path}: {e.strerror or e}", hint=hint) from None
    finally:
        if os.path.exists(tmp):
            try:
                os.unlink(tmp)
            except OSError:
                pass


def write_bytes_atomic(path: str, data: bytes, hint: str):
    """replace_atomic for bytes already in memory."""
    def write(tmp):
        with open(tmp, "wb") as f:
            f.write(data)
    replace_atomic(path, write, hint)
