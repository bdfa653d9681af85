"""Time of the transcendental activations, forward and backward, on ~1M float32 values.

    python benchmarks/activation_speed.py [--n 1048576] [--threads 1] [--isa avx512 avx2 portable]

Each kernel (the standalone activation kernels, their training backward kernels, Softmax /
LogSoftmax over C = 10 on vectors) runs through netdsl.runtime.executor.run_call's plan on
one N(0, 3^2) batch: median of 7 runs after one warm-up, printed as ms and ns per value, per
ISA level. Not a test: quote medians.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import numpy as np  # noqa: E402

from netdsl.runtime import lib as L  # noqa: E402
from netdsl.runtime.executor import Program, Step  # noqa: E402


def _forward(op, attrs, shape):
    from netdsl import ops
    from netdsl.runtime.kparams import builder
    spec = ops.get(op)
    a = spec.resolve(spec.bind((), attrs), [shape[1:]])
    out = tuple(spec.infer(a, [shape[1:]]))
    return builder(op)(a, [shape[1:]], out, shape[0])


def _time(call, xs, out_floats, threads, reps=7):
    xs = [np.ascontiguousarray(x, np.float32).ravel() for x in xs]
    offs, off = [], out_floats + 16
    for x in xs:
        offs.append(off)
        off += x.size + 16
    prog = Program([Step(call, 0, offs, None, None, out_floats=out_floats, in_floats=[x.size for x in xs])], off)
    arena, ws = prog.new_arena(), prog.new_ws()
    for o, x in zip(offs, xs):
        arena[o:o + x.size] = x
    prog.run(arena, ws, threads)
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        prog.run(arena, ws, threads)
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


FORWARD = [("Sigmoid", {}), ("Tanh", {}), ("SiLU", {}), ("GELU", {}), ("GELU", dict(approximate="tanh")),
           ("Mish", {}), ("HardSwish", {})]
BACKWARD = ["sigmoid", "tanh", "silu", "gelu", "gelu_tanh", "mish"]


def _bwd_call(name, n):
    """KernelCall of nd_<name>_bwd_data_f32 / nd_actfn_bwd_data_f32 for (n,) values."""
    from netdsl.runtime.kparams import KernelCall
    acts = {"silu": "ND_ACT_SILU", "gelu": "ND_ACT_GELU", "gelu_tanh": "ND_ACT_GELU_TANH", "mish": "ND_ACT_MISH"}
    if name in acts:
        return KernelCall("nd_actfn_bwd_data_f32", "nd_actfn_bwd_params",
                          dict(n=1, size=n, act=getattr(L.lib, acts[name])), weights=(None, None))
    return KernelCall(f"nd_{name}_bwd_data_f32", f"nd_{name}_bwd_params", dict(n=1, size=n, slope=0.0),
                      weights=(None, None))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1 << 20)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--isa", nargs="*", default=None)
    args = ap.parse_args(argv)
    n = args.n
    x = (np.random.default_rng(0).standard_normal(n) * 3).astype(np.float32)
    dy = np.random.default_rng(1).standard_normal(n).astype(np.float32)
    isas = args.isa or [i for i in ("avx512", "avx2", "portable") if i in L.supported_isas()]
    print(f"{n} values, {args.threads} thread(s); ms (ns/value)")
    for isa in isas:
        with L.using_isa(isa):
            print(f"--- {isa}")
            for op, attrs in FORWARD:
                call = _forward(op, attrs, (1, n))
                t = _time(call, [x], n, args.threads)
                tag = op + ("(tanh)" if attrs else "")
                print(f"  fwd {tag:16s} {t * 1e3:8.3f} ({t / n * 1e9:6.2f})")
            for name in BACKWARD:
                y = x if name not in ("sigmoid", "tanh") else np.tanh(x)
                t = _time(_bwd_call(name, n), [dy, y], n, args.threads)
                print(f"  bwd {name:16s} {t * 1e3:8.3f} ({t / n * 1e9:6.2f})")
            for op in ("Softmax", "LogSoftmax"):
                call = _forward(op, {}, (n // 10, 10))
                t = _time(call, [x[: n // 10 * 10]], n // 10 * 10, args.threads)
                print(f"  fwd {op + '(C=10)':16s} {t * 1e3:8.3f} ({t / n * 1e9:6.2f})")


if __name__ == "__main__":
    main()
