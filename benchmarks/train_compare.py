"""netdsl's compiled training step next to PyTorch CPU: same network, weights, optimizer, threads.

    python benchmarks/train_compare.py [--configs lenet5:32:64 resnet18:32:32 resnet18:224:16]
                                       [--threads 1 2] [--budget S] [--busy] [--no-peak] [--json FILE]

A config is MODEL:SIZE:BATCH (the zoo file with its input resized to SIZExSIZE). Each engine
runs full training steps — forward, cross-entropy loss, backward, SGD(lr=0.01, momentum=0.9)
update — on the same random batch: netdsl's TrainSession (one C call per step) and the
network ported to PyTorch (benchmarks/torch_port.py, train mode: BatchNorm on batch
statistics) with torch.optim.SGD, zero_grad(set_to_none=True) and backward() per step. The
first step's losses are compared (a mismatch is a bug, not noise). Timing is compare.py's:
engines interleaved round by round, medians, quiet rounds preferred, the machine's SGEMM
peak measured in the same run; --busy keeps one core busy with a spinning process.

Printed per config and thread count: median step time of each engine, images/s, the ratio
netdsl/torch (below 1: netdsl is faster), netdsl's GFLOP/s (3 x forward FLOPs, the usual
estimate of forward + backward) and the training arena. Not a test: quote medians and ratios.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import compare  # noqa: E402  (sets the thread env vars, puts the repo on sys.path)
import numpy as np  # noqa: E402

import netdsl  # noqa: E402


def zoo_at(name, size):
    """The zoo model with its input resized to size x size (the file's own text, one line changed)."""
    from netdsl.model import resolve_path
    import re
    path = resolve_path(name)
    text = open(path).read()
    text = re.sub(r"(input\s+\w+\s*:\s*\d+)x\d+x\d+", lambda m: f"{m.group(1)}x{size}x{size}", text, count=1)
    return netdsl.parse(text, f"{name}.net")


def build(cfg, threads, seed=0):
    from netdsl.train.losses import get_loss
    from netdsl.train.optim import SGD
    from netdsl.train.session import TrainSession
    name, size, batch = cfg.split(":")
    size, batch = int(size), int(batch)
    m = zoo_at(name, size)
    sd = m.state_dict()
    rng = np.random.default_rng(seed)
    shape = m.graph[m.graph.inputs[0]].shape
    x = rng.standard_normal((batch, *shape)).astype(np.float32)
    k = m.graph[next(iter(m.graph.outputs.values()))].shape[0]
    y = rng.integers(0, k, batch)
    sess = TrainSession(m.graph, sd, get_loss("cross_entropy"), SGD(lr=0.01, momentum=0.9), [batch],
                        threads=threads)
    fns, first = {}, {}

    def nd_step(_):
        return sess.step(x, y)[0]
    fns["netdsl"] = nd_step
    first["netdsl"] = None
    try:
        import torch
        from torch_port import to_torch
        torch.set_num_threads(threads)
        mod = to_torch(m.graph, sd, train=True)
        # the port ends in the model's Softmax: train on its input like netdsl does
        logits_graph_out = _logits_module(mod, m)
        opt = torch.optim.SGD([p for p in mod.parameters()], lr=0.01, momentum=0.9)
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)

        def torch_step(_):
            opt.zero_grad(set_to_none=True)
            loss = logits_graph_out(xt, yt)
            loss.backward()
            opt.step()
            return float(loss.detach())
        fns["torch"] = torch_step
    except ImportError:
        pass
    return m, sess, fns, batch, x


def _logits_module(mod, m):
    """loss(x, y) for the port: cross-entropy on the logits (the Softmax's input when the
    network ends in one), as netdsl's fused softmax cross-entropy computes it."""
    import torch.nn.functional as F
    out = m.graph[next(iter(m.graph.outputs.values()))]
    ends_in_softmax = out.op == "Softmax"

    def loss(x, y):
        z = mod(x)
        if ends_in_softmax:
            return F.nll_loss(z.clamp_min(1e-30).log(), y)
        return F.cross_entropy(z, y)
    return loss


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--configs", nargs="+", default=["lenet5:32:64", "resnet18:32:32", "resnet18:224:16"])
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--budget", type=float, default=20.0, help="timed seconds per configuration, engines together")
    ap.add_argument("--busy", action="store_true", help="keep one core busy with a spinning process")
    ap.add_argument("--no-peak", action="store_true")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    if args.busy:
        compare.EXPECTED_LOAD = 1.0
        with compare.Busy() as b:
            print(f"# one core kept busy by a spinning process (pid {b.proc.pid})")
            return run(args)
    return run(args)


def run(args):
    info = compare.machine_info(max(args.threads))
    print(f"# {info.get('cpu')} ({info.get('cpus')} CPUs), netdsl ISA {info.get('netdsl_isa')}, {info['date']}")
    peaks = {}
    if not args.no_peak:
        for t in args.threads:
            peaks[t], _ = compare.measure_peak(t)
            print(f"# SGEMM peak at {t} thread{'s' if t > 1 else ''}: "
                  f"{peaks[t]:.1f} GFLOP/s" if peaks[t] else "# peak not measured")
    rows = []
    print(f"{'config':<18} {'thr':>3} {'netdsl ms':>10} {'torch ms':>9} {'nd/torch':>8} {'img/s':>8} "
          f"{'GFLOP/s':>8} {'%peak':>6} {'arena MiB':>9}  loss diff")
    for cfg in args.configs:
        for t in args.threads:
            m, sess, fns, batch, x = build(cfg, t)
            l0 = {nm: fn(None) for nm, fn in fns.items()}       # first step: the same loss
            diff = abs(l0["netdsl"] - l0["torch"]) / max(abs(l0["torch"]), 1e-12) if "torch" in l0 else None
            med, _, quiet = compare.interleaved_medians(fns, None, 0, args.budget)
            flops = 3 * 2 * m.totals()["total_macs"] * batch
            nd = med["netdsl"]
            ratio = med["netdsl"] / med["torch"] if "torch" in med else None
            gf = flops / nd / 1e9
            pk = peaks.get(t)
            arena = sess.memory(batch)["arena_bytes"] / 2 ** 20
            print(f"{cfg:<18} {t:>3} {nd * 1e3:>10.1f} "
                  f"{(med['torch'] * 1e3 if 'torch' in med else float('nan')):>9.1f} "
                  f"{(ratio if ratio else float('nan')):>8.2f} {batch / nd:>8.0f} {gf:>8.1f} "
                  f"{(100 * gf / pk if pk else float('nan')):>6.0f} {arena:>9.1f}  "
                  f"{'' if diff is None else f'{diff:.1e}'}  (quiet rounds {quiet})")
            rows.append({"config": cfg, "threads": t, "netdsl_s": nd, "torch_s": med.get("torch"), "ratio": ratio,
                         "images_per_s": batch / nd, "gflops": gf, "arena_mib": arena, "loss_rel_diff": diff,
                         "peak": pk})
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": info, "busy": args.busy, "rows": rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
