"""cffi build script (API mode, out of line) for the C kernels in csrc/.

NETDSL_ASAN=1 / NETDSL_UBSAN=1 build instrumented kernels (docs/RUNTIME.md says how to run them).

Every csrc/**/*.c is compiled into `netdsl._kernels`; csrc/nd_common.h and
every csrc/kernels/*.h are the cdef (lines starting with '#' dropped). OpenMP is
used when the compiler accepts -fopenmp, otherwise the kernels run on one
thread. No -march flags: instruction sets are chosen at run time per function.
"""
from __future__ import annotations

import glob
import os
import subprocess
import sys
import tempfile

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
CSRC = os.path.join(ROOT, "csrc")


def _headers():
    hs = [os.path.join(CSRC, "nd_common.h")] + sorted(glob.glob(os.path.join(CSRC, "kernels", "*.h")))
    hs += sorted(glob.glob(os.path.join(CSRC, "runtime", "*.h")))
    return hs


def _cdef_text():
    out = []
    for h in _headers():
        with open(h) as f:
            out += [ln for ln in f.read().splitlines() if not ln.lstrip().startswith("#")]
    return "\n".join(out)


def _has_openmp():
    if os.environ.get("NETDSL_NO_OPENMP"):
        return False
    cc = os.environ.get("CC", "cc")
    with tempfile.TemporaryDirectory() as d:
        src = os.path.join(d, "t.c")
        with open(src, "w") as f:
            f.write("#include <omp.h>\nint main(void){return omp_get_max_threads()>0?0:1;}\n")
        try:
            r = subprocess.run([cc, "-fopenmp", src, "-o", os.path.join(d, "t")],
                               capture_output=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            return False
        return r.returncode == 0


OPENMP = _has_openmp()
print(f"netdsl build: OpenMP {'found' if OPENMP else 'NOT found: kernels will run single-threaded'}",
      file=sys.stderr)

sources = sorted(glob.glob(os.path.join(CSRC, "**", "*.c"), recursive=True))
sources = [os.path.relpath(s, ROOT) for s in sources if os.sep + "cuda" + os.sep not in s]
flags = ["-O3", "-std=c11", "-fno-strict-aliasing", "-fno-math-errno", "-Wall", "-Wno-unused-function"]
flags += ["-fopenmp"] if OPENMP else []
extra_link = ["-fopenmp"] if OPENMP else []
if os.environ.get("NETDSL_ASAN"):
    flags += ["-fsanitize=address", "-fno-omit-frame-pointer", "-O1", "-g"]
    extra_link += ["-fsanitize=address"]
if os.environ.get("NETDSL_UBSAN"):
    # Undefined behaviour (signed overflow, bad shifts, misaligned loads...) aborts the process
    # with a report instead of being recovered from; -fno-wrapv so that signed overflow is UB
    # whatever the compiler's default. See docs/RUNTIME.md "Checking memory safety".
    flags += ["-fsanitize=undefined", "-fno-sanitize-recover=all", "-fno-wrapv", "-fno-omit-frame-pointer", "-g"]
    extra_link += ["-fsanitize=undefined"]

ffi = FFI()
ffi.cdef(_cdef_text())
ffi.set_source(
    "netdsl._kernels",
    "\n".join(f'#include "{os.path.relpath(h, CSRC)}"' for h in _headers()),
    sources=sources,
    include_dirs=[os.path.relpath(CSRC, ROOT)],
    extra_compile_args=flags,
    extra_link_args=extra_link,
    define_macros=[("ND_OPENMP", "1")] if OPENMP else [],
)

if __name__ == "__main__":
    os.chdir(ROOT)
    ffi.compile(verbose=False)
