"""The compiled kernels: loading `netdsl._kernels`, ISA and thread information.

    from netdsl.runtime import lib
    lib.ffi, lib.lib              # cffi objects (raises KernelsNotBuilt if the extension is missing)
    lib.isa()                     # 'avx512' | 'avx2' | 'portable'
    with lib.using_isa("avx2"):   # force a level (tests); restores the previous one
        ...

The extension is built by `pip install -e .` or `python netdsl/runtime/_build.py`.
Importing this module never fails; touching `ffi`/`lib` without the extension
raises `KernelsNotBuilt` with the command that fixes it.

OpenMP's waiting: libgomp's threads spin for ~3 ms (GOMP_SPINCOUNT=300000) at
every barrier and between parallel regions before they sleep. On a machine
where another process keeps a core busy, those spinning threads take the CPU
from the thread that has the work, and a 2-thread run gets 3-4x slower than a
1-thread one; with OMP_WAIT_POLICY=PASSIVE (sleep at once) that is gone, but every
wake-up then costs tens of microseconds and a quiet 2-thread ResNet-18 got 25% slower.
So just before the kernels (and with them libgomp) load, this module sets
GOMP_SPINCOUNT=3000 (spin ~30 us, then sleep). Measured 2026-12-04 on a 2-core AVX2
machine, ResNet-18 / ResNet-50 at batch 1, 2 threads, median of 15 calls, two rounds:
quiet 34-41 / 77-85 ms (PASSIVE 44-46 / 83-102, spin 30000 34-35 / -); one core kept
busy 57-72 / 153-162 ms (PASSIVE 62-65 / 141-166, spin 30000 107-114 / -). Not if
the user set OMP_WAIT_POLICY or GOMP_SPINCOUNT themselves; libgomp reads it in its
constructor, and the variable is removed again right after, so child processes see the user's
environment unchanged. `wait_policy()` says what libgomp got. When libgomp
was already loaded by another library before netdsl's kernels, the setting
comes too late and OpenMP's default stays (wait_policy() says so).
"""
from __future__ import annotations

import contextlib
import os

ISA_NAMES = ("portable", "avx2", "avx512")
WAIT_SETTING = ("GOMP_SPINCOUNT", "3000")   # spin ~30 us at a barrier, then sleep (libgomp's default: ~3 ms)
WAIT_VARS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")

_mod = None
_err = None
_wait = None        # what _set_wait_env decided, for wait_policy()


def _libgomp_loaded() -> bool:
    """True when this process already maps a libgomp.so.1 (its constructor has read the env)."""
    try:
        with open("/proc/self/maps", encoding="ascii", errors="replace") as f:
            return any("/libgomp.so.1" in line for line in f)     # the file is libgomp.so.1.0.0
    except OSError:
        return False


def _set_wait_env(environ) -> str | None:
    """Set WAIT_SETTING in `environ` unless the user chose a wait policy; returns the
    name set (to be removed after the load) or None."""
    if any(v in environ for v in WAIT_VARS):
        return None
    name, value = WAIT_SETTING
    environ[name] = value
    return name


class KernelsNotBuilt(ImportError):
    """The C extension netdsl._kernels is missing or does not load."""


def _load():
    global _mod, _err, _wait
    if _mod is None and _err is None:
        preloaded = _libgomp_loaded()
        added = _set_wait_env(os.environ)
        try:
            from .. import _kernels as m  # noqa: PLC0415
            _mod = m
        except ImportError as e:  # missing, or built for another Python / stale symbols
            _err = e
        finally:
            if added:
                os.environ.pop(added, None)
        _wait = {"set_by_netdsl": bool(added), "libgomp_preloaded": preloaded}
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


def wait_policy() -> dict:
    """How OpenMP's idle threads wait in this process: the OMP_WAIT_POLICY / GOMP_SPINCOUNT
    the kernels' library saw when it loaded, whether netdsl set them, and whether libgomp was
    loaded earlier by someone else (then it read the environment before netdsl could set it)."""
    m = _load()
    ffi = m.ffi
    env = {v: ffi.string(m.lib.nd_exec_load_env(i)).decode() or None for i, v in enumerate(WAIT_VARS)}
    d = dict(_wait or {})
    d.update(env)
    d["effective"] = bool(d.get("set_by_netdsl")) and not d.get("libgomp_preloaded")
    return d


def info() -> dict:
    """What `netdsl --version`-style reports show about the kernels."""
    if not available():
        return {"built": False}
    return {"built": True, "isa": isa(), "supported_isas": supported_isas(),
            "openmp": has_openmp(), "max_threads": max_threads(), "omp_wait": wait_policy()}
