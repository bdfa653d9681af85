"""What the compiler buys: latency of every zoo model at -O0, -O2 and -O3,
and the activation arena each level needs, side by side.

    python benchmarks/opt_levels.py [--models resnet18 ...] [--batch 1] [--threads 2] [--repeat 7]

Same weights (seed 0) and input at every level; runs of the levels are
interleaved so machine noise hits them alike; medians are printed. Not a
test: numbers on a shared machine move, ratios are what to read.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import netdsl
from netdsl.runtime.plan import lower

LEVELS = (0, 2, 3)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="*", default=netdsl.zoo_names())
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--budget", type=float, default=20.0, help="seconds of timing per model at most")
    args = ap.parse_args()
    print(f"batch {args.batch}, {args.threads} threads, median of up to {args.repeat} interleaved runs\n")
    head = f"{'model':13s}" + "".join(f" {'-O' + str(l) + ' ms':>10s}" for l in LEVELS) + \
        f" {'O0/O3':>7s}" + "".join(f" {'arena -O' + str(l):>12s}" for l in LEVELS) + f" {'layers O0→O3':>13s}"
    print(head)
    print("-" * len(head))
    for name in args.models:
        base = netdsl.load(name, threads=args.threads, opt=0)
        weights = base.state_dict()
        models = {}
        for lvl in LEVELS:
            m = netdsl.load(name, threads=args.threads, opt=lvl)
            m.load_state_dict(weights)
            models[lvl] = m
        shape = base.input_shapes[base.graph.inputs[0]]
        x = np.random.default_rng(0).standard_normal((args.batch, *shape)).astype(np.float32)
        for m in models.values():      # build plans, pack weights, warm caches
            m(x)
        times = {lvl: [] for lvl in LEVELS}
        t_end = time.perf_counter() + args.budget
        for _ in range(args.repeat):
            for lvl, m in models.items():
                t0 = time.perf_counter()
                m(x)
                times[lvl].append(time.perf_counter() - t0)
            if time.perf_counter() > t_end:
                break
        med = {lvl: statistics.median(ts) * 1000 for lvl, ts in times.items()}
        arenas, layers = {}, {}
        for lvl, m in models.items():
            g = m.session().graph
            arenas[lvl] = lower(g, args.batch, kernels=False).arena_bytes / 2**20
            layers[lvl] = len(g)
        print(f"{name:13s}" + "".join(f" {med[l]:10.2f}" for l in LEVELS) + f" {med[0] / med[3]:7.2f}"
              + "".join(f" {arenas[l]:8.1f} MiB" for l in LEVELS) + f" {layers[0]:>6d}→{layers[3]:<6d}")


if __name__ == "__main__":
    main()
