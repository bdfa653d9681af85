"""Achieved SGEMM GFLOP/s of netdsl's kernel next to numpy's matmul, at 1 and 2 threads.

    python benchmarks/gemm_peak.py [--isa avx512|avx2|portable] [--sizes 256 512 1024 2048]

Times the C call alone (buffers prepared once), best of several runs, so the
numbers are the GEMM's and not Python's. numpy's BLAS thread count is set
with threadpoolctl when installed, else through OPENBLAS/OMP env vars set
before numpy loads (hence the re-exec per thread count).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))


def best_time(fn, reps):
    fn()
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def worker(threads, sizes, isa, reps, prepack):
    import numpy as np
    sys.path.insert(0, ROOT)
    from netdsl.runtime import lib as L
    from netdsl.runtime.profile import gemm_gflops     # the one copy of netdsl's GEMM timing
    if isa:
        L.set_isa(isa)
    rng = np.random.default_rng(0)
    for s in sizes:
        m, n, k = s
        a = rng.standard_normal((m, k)).astype(np.float32)
        b = rng.standard_normal((k, n)).astype(np.float32)
        c = np.empty((m, n), np.float32)
        r = max(3, min(50, int(2e10 / (2 * m * n * k))))
        g_nd = gemm_gflops(m, n, k, threads, seconds=0.0, prepack=prepack, min_reps=r)
        t_np = best_time(lambda: np.matmul(a, b, out=c), r)
        f = 2.0 * m * n * k / 1e9
        print(f"{m:>5} x {n:>5} x {k:>5}  threads {threads}  netdsl[{L.isa()}{'+prepacked A' if prepack else ''}]"
              f" {g_nd:7.1f} GFLOP/s"
              f"   numpy {f / t_np:7.1f} GFLOP/s", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--isa", default=None)
    ap.add_argument("--sizes", type=int, nargs="*", default=[256, 512, 1024, 2048])
    ap.add_argument("--threads", type=int, nargs="*", default=[1, 2])
    ap.add_argument("--conv-shapes", action="store_true",
                    help="also ResNet-50-like conv GEMMs (M=out channels, N=pixels, K=C*KH*KW)")
    ap.add_argument("--worker", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--prepack", action="store_true", help="A prepacked (as Conv's weights are)")
    args = ap.parse_args()
    sizes = [(s, s, s) for s in args.sizes]
    if args.conv_shapes:
        sizes += [(64, 3136, 576), (128, 784, 1152), (256, 196, 2304), (512, 49, 4608), (2048, 49, 512)]
    if args.worker:
        worker(args.worker, sizes, args.isa, args.reps, args.prepack)
        return
    for t in args.threads:
        env = dict(os.environ, OMP_NUM_THREADS=str(t), OPENBLAS_NUM_THREADS=str(t), MKL_NUM_THREADS=str(t))
        cmd = [sys.executable, __file__, "--worker", str(t), "--reps", str(args.reps), "--sizes",
               *map(str, args.sizes)] + (["--isa", args.isa] if args.isa else [])
        cmd += ["--conv-shapes"] if args.conv_shapes else []
        cmd += ["--prepack"] if args.prepack else []
        subprocess.run(cmd, env=env, check=True)


if __name__ == "__main__":
    main()
