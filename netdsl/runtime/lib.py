"""The compiled kernels: loading `netdsl._kernels`, ISA and thread information.

    from netdsl.runtime import lib
    lib.ffi, lib.lib              # cffi objects (raises KernelsNotBuilt if the extension is missing)
    lib.isa()                     # 'avx512' | 'avx2' | 'portable'
    with lib.using_isa("avx2"):   # force a level (tests); restores the previous one
        ...

The extension is built by `pip install -e .` or `python netdsl/runtime/_build.py`.
Importing this module never fails; touching `ffi`/`lib` without the extension
raises `KernelsNotBuilt` with the command that fixes it.
"""
from __future__ import annotations

import contextlib
import os

ISA_NAMES = ("portable", "avx2", "avx512")

_mod = None
_err = None


class KernelsNotBuilt(ImportError):
    """The C extension netdsl._kernels is missing or does not load."""


def _load():
    global _mod, _err
    if _mod is None and _err is None:
        try:
            from .. import _kernels as m  # noqa: PLC0415
            _mod = m
        except ImportError as e:  # missing, or built for another Python / stale symbols
            _err = e
    if _mod is None:
        root = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
        raise KernelsNotBuilt(
            f"netdsl's C kernels are not built or do not load ({_err}).\n"
            f"hint: build them with `pip install -e {root}` or `python {root}/netdsl/runtime/_build.py` "
            f"(needs a C compiler; OpenMP is optional)")
    return _mod


def available() -> bool:
    """True when the compiled kernels load."""
    try:
        _load()
        return True
    except KernelsNotBuilt:
        return False


def __getattr__(name):
    if name in ("ffi", "lib"):
        return getattr(_load(), name)
    raise AttributeError(name)


def isa() -> str:
    """The instruction-set level the kernels use now."""
    return ISA_NAMES[_load().lib.nd_isa_level()]


def isa_level(name: str) -> int:
    try:
        return ISA_NAMES.index(name)
    except ValueError:
        raise ValueError(f"unknown ISA {name!r}; choose one of {', '.join(ISA_NAMES)}") from None


def set_isa(name: str) -> str:
    """Force a level ('portable', 'avx2', 'avx512'); returns the level actually set
    (the best the CPU has at or below the request)."""
    return ISA_NAMES[_load().lib.nd_set_isa(isa_level(name))]


def supported_isas() -> list[str]:
    """Every level this CPU can run, lowest first."""
    m = _load()
    cur = m.lib.nd_isa_level()
    best = m.lib.nd_set_isa(len(ISA_NAMES) - 1)
    m.lib.nd_set_isa(cur)
    return list(ISA_NAMES[:best + 1])


@contextlib.contextmanager
def using_isa(name: str):
    """Run a block with a forced ISA level, then restore the previous one."""
    m = _load()
    prev = m.lib.nd_isa_level()
    try:
        yield set_isa(name)
    finally:
        m.lib.nd_set_isa(prev)


def max_threads() -> int:
    """OpenMP's default thread count (1 without OpenMP)."""
    return int(_load().lib.nd_max_threads())


def has_openmp() -> bool:
    return bool(_load().lib.nd_has_openmp())


def info() -> dict:
    """What `netdsl --version`-style reports show about the kernels."""
    if not available():
        return {"built": False}
    return {"built": True, "isa": isa(), "supported_isas": supported_isas(),
            "openmp": has_openmp(), "max_threads": max_threads()}
