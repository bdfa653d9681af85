"""Where a training step's time goes: each kernel of netdsl's compiled step timed alone.

    python benchmarks/train_profile.py MODEL SIZE BATCH THREADS [--top N]
    python benchmarks/train_profile.py resnet18 32 32 2

Builds the training step of the zoo model at SIZE x SIZE (its `input` line changed), runs a
few whole steps (their median is printed), then times every plan step alone on the same
arena (5 runs each, after one warm-up) and sums by (kind, C symbol): forward, loss, guard,
sum, backward, clip, optim. The sum of the parts is close to the whole step; the difference
is the executor's loop and the Python side of a step. Not a test.
"""
from __future__ import annotations

import argparse
import collections
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from train_compare import zoo_at  # noqa: E402  (puts the repo on sys.path)

import numpy as np  # noqa: E402

from netdsl.runtime.executor import Program  # noqa: E402
from netdsl.train.losses import get_loss  # noqa: E402
from netdsl.train.optim import SGD  # noqa: E402
from netdsl.train.session import TrainSession  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model")
    ap.add_argument("size", type=int)
    ap.add_argument("batch", type=int)
    ap.add_argument("threads", type=int)
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args(argv)
    m = zoo_at(args.model, args.size)
    s = TrainSession(m.graph, m.state_dict(), get_loss("cross_entropy"), SGD(lr=0.01, momentum=0.9),
                     [args.batch], threads=args.threads)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.batch, *m.graph[m.graph.inputs[0]].shape)).astype(np.float32)
    k = m.graph[next(iter(m.graph.outputs.values()))].shape[0]
    y = rng.integers(0, k, args.batch)
    for _ in range(3):
        s.step(x, y)
    times = []
    for _ in range(10):
        t = time.perf_counter()
        s.step(x, y)
        times.append(time.perf_counter() - t)
    print(f"{args.model} {args.size}x{args.size} batch {args.batch}, {args.threads} thread(s): "
          f"step median {statistics.median(times) * 1e3:.1f} ms")
    p = s._progs[args.batch]
    sp = p["plan"]
    agg, count, total = collections.Counter(), collections.Counter(), 0.0
    for i, st in enumerate(sp.steps):
        single = Program([p["prog"].steps[i]], s.layout.arena_floats, prepack=False)
        bound = single.bind(s.arena, single.new_ws() if single.ws_floats else None)
        bound.run(args.threads)
        t = time.perf_counter()
        for _ in range(5):
            bound.run(args.threads)
        dt = (time.perf_counter() - t) / 5
        agg[(st.kind, st.call.symbol)] += dt
        count[(st.kind, st.call.symbol)] += 1
        total += dt
    for key, v in agg.most_common(args.top):
        print(f"{v * 1e3:9.2f} ms {100 * v / total:5.1f}%  x{count[key]:<3d} {key[0]:<9s} {key[1]}")
    print(f"{total * 1e3:9.2f} ms  sum of the parts")
    return 0


if __name__ == "__main__":
    sys.exit(main())
