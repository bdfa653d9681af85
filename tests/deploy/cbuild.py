"""Compiling what `--emit c` wrote, for the tests: kernel objects cached by content.

Every emitted folder carries copies of the same csrc/ files, so a kernel object is keyed by
the compiler, the flags and the text of the file and of every header and .inc it can include
(the whole netdsl/ folder's headers): 19 zoo models build the kernels once per configuration.
model.c, model_weights.c and main.c are compiled per folder. The plain `cc` line of the
emitted README does the same in one command; test_emit_c.py builds one folder with `make`.
"""
from __future__ import annotations

import glob
import hashlib
import os
import shutil
import subprocess

from netdsl.deploy.c_templates import CFLAGS


class Builder:
    def __init__(self, cache_dir: str):
        self.cache = cache_dir
        os.makedirs(cache_dir, exist_ok=True)

    def _run(self, cmd, cwd):
        r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=900)
        if r.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)}\n{r.stdout}\n{r.stderr[-4000:]}")
        return r

    def build(self, d: str, cc: str = "cc", openmp: bool = True, static: bool = False, opt: str = "-O2") -> str:
        """Compile and link the emitted folder d; returns the demo binary's path."""
        flags = [opt] + CFLAGS.split() + (["-fopenmp"] if openmp else []) + ["-I.", "-Inetdsl"]
        headers = sorted(glob.glob(os.path.join(d, "netdsl", "**", "*.h"), recursive=True)
                         + glob.glob(os.path.join(d, "netdsl", "**", "*.inc"), recursive=True))
        htext = b"".join(open(h, "rb").read() for h in headers)
        objs = []
        for src in sorted(glob.glob(os.path.join(d, "netdsl", "**", "*.c"), recursive=True)):
            rel = os.path.relpath(src, d)
            key = hashlib.sha256(repr((cc, flags, rel)).encode() + open(src, "rb").read() + htext).hexdigest()[:24]
            obj = os.path.join(self.cache, f"{os.path.basename(src)[:-2]}-{key}.o")
            if not os.path.exists(obj):
                tmp = obj + f".tmp{os.getpid()}"
                self._run([cc, *flags, "-c", rel, "-o", tmp], d)
                os.replace(tmp, obj)
            objs.append(obj)
        own = [f for f in ("model.c", "model_weights.c", "main.c") if os.path.exists(os.path.join(d, f))]
        for f in own:
            self._run([cc, *flags, "-c", f, "-o", f[:-2] + ".o"], d)
        exe = os.path.join(d, "demo" + ("-static" if static else ""))
        self._run([cc, *flags[:1], *(["-fopenmp"] if openmp else []), *(["-static"] if static else []),
                   *[f[:-2] + ".o" for f in own], *objs, "-o", exe, "-lm"], d)
        return exe


def have(tool: str) -> bool:
    return shutil.which(tool) is not None
