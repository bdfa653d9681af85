"""netdsl's compiled training step next to PyTorch CPU: same network, weights, optimizer, threads.

    python benchmarks/train_compare.py [--configs lenet5:32:64 resnet18:32:32 resnet18:224:16]
                                       [--threads 1 2] [--budget S] [--busy] [--no-peak] [--json FILE]

A config is MODEL:SIZE:BATCH (the zoo file with its input resized to SIZExSIZE). Each engine
runs full training steps — forward, cross-entropy loss, backward, SGD(lr=0.01, momentum=0.9)
update — on the same random batch: netdsl's TrainSession (one C call per step) and the
network ported to PyTorch (benchmarks/torch_port.py, train mode: BatchNorm on batch
statistics) with torch.optim.SGD, zero_grad(set_to_none=True) and backward() per step. The
first step's losses are compared (a mismatch is a bug, not noise). PyTorch runs in a child
process (`--worker`): its OpenMP runtime is not netdsl's, and in one process the idle
threads of one spin on the cores the other needs (netdsl's 2-thread ResNet-18 step measured
87 ms alone and 129 ms next to torch). The engines take turns, block by block (rotating
order, an idle gap and the block once untimed before each timed block), until --budget timed
seconds are spent; medians of all timed steps. The machine's SGEMM peak is measured in the
same run (compare.py's); --busy keeps one core busy with a spinning process.

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


def setup(cfg, seed=0):
    """(model, state dict, x, y, batch) of a config, the same in both processes."""
    name, size, batch = cfg.split(":")
    size, batch = int(size), int(batch)
    m = zoo_at(name, size)
    sd = m.state_dict()
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, *m.graph[m.graph.inputs[0]].shape)).astype(np.float32)
    k = m.graph[next(iter(m.graph.outputs.values()))].shape[0]
    y = rng.integers(0, k, batch)
    return m, sd, x, y, batch


def torch_worker(cfg, threads):
    """The PyTorch side, in its own process (--worker): torch's OpenMP runtime is not
    netdsl's, and in one process the idle threads of one spin on the cores the other needs
    (measured: netdsl's 2-thread ResNet-18 step 87 ms alone, 129 ms next to torch). Reads
    "N" lines, answers each with the N step times in seconds; "q" ends."""
    import time
    import torch
    import torch.nn.functional as F
    from torch_port import to_torch
    torch.set_num_threads(threads)
    m, sd, x, y, _ = setup(cfg)
    mod = to_torch(m.graph, sd, train=True)
    opt = torch.optim.SGD(list(mod.parameters()), lr=0.01, momentum=0.9)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    ends_in_softmax = m.graph[next(iter(m.graph.outputs.values()))].op == "Softmax"

    def step():
        opt.zero_grad(set_to_none=True)
        z = mod(xt)
        loss = F.nll_loss(z.clamp_min(1e-30).log(), yt) if ends_in_softmax else F.cross_entropy(z, yt)
        loss.backward()
        opt.step()
        return float(loss.detach())
    print(f"ready {step():.9g}", flush=True)
    for line in sys.stdin:
        if line.strip() == "q":
            break
        out = []
        for _ in range(int(line)):
            t = time.perf_counter()
            step()
            out.append(time.perf_counter() - t)
        print(" ".join(f"{v:.9f}" for v in out), flush=True)


class TorchProcess:
    def __init__(self, cfg, threads):
        import subprocess
        env = dict(os.environ, OMP_NUM_THREADS=str(threads))
        self.p = subprocess.Popen([sys.executable, __file__, "--worker", cfg, str(threads)], env=env,
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = self.p.stdout.readline().split()
        if not line or line[0] != "ready":
            self.close()
            raise RuntimeError("the torch worker did not start (is torch installed?)")
        self.first_loss = float(line[1])

    def run(self, n):
        self.p.stdin.write(f"{n}\n")
        self.p.stdin.flush()
        return [float(v) for v in self.p.stdout.readline().split()]

    def close(self):
        try:
            self.p.stdin.write("q\n")
            self.p.stdin.flush()
            self.p.wait(timeout=10)
        except Exception:  # noqa: BLE001
            self.p.kill()


def interleaved(runners, budget, gap=0.1):
    """Median step seconds per engine: rounds that run each engine in turn (rotating the order,
    an idle gap before each block, then the block once untimed), until the budget of timed
    seconds is spent. The untimed block (~50 ms of steps) is there because a training loop runs
    its steps back to back: after the idle gap the first steps run slower while the threads
    wake up (measured on a 2-core KVM guest, AMD EPYC, 2026-12-06: LeNet-5 batch 64 at 2
    threads, 7-8 ms for the first ~7 steps after a 0.1 s sleep, then 2.3-3 ms), and the same
    treatment is given to both engines."""
    import statistics
    import time
    names = list(runners)
    one = {nm: statistics.median(runners[nm](2)) for nm in names}
    block = {nm: max(1, min(10, int(0.05 / max(one[nm], 1e-6)))) for nm in names}
    samples = {nm: [] for nm in names}
    spent, r = 0.0, 0
    while r < 3 or (spent < budget and r < 40):
        for nm in names[r % len(names):] + names[:r % len(names)]:
            time.sleep(gap)
            runners[nm](block[nm])
            got = runners[nm](block[nm])
            samples[nm] += got
            spent += sum(got)
        r += 1
    return {nm: statistics.median(v) for nm, v in samples.items()}, r


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        return torch_worker(argv[1], int(argv[2]))
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
    import time
    from netdsl.train.losses import get_loss
    from netdsl.train.optim import SGD
    from netdsl.train.session import TrainSession
    for cfg in args.configs:
        for t in args.threads:
            m, sd, x, y, batch = setup(cfg)
            sess = TrainSession(m.graph, sd, get_loss("cross_entropy"), SGD(lr=0.01, momentum=0.9), [batch],
                                threads=t)

            def nd_steps(k, sess=sess, x=x, y=y):
                out = []
                for _ in range(k):
                    t0 = time.perf_counter()
                    sess.step(x, y)
                    out.append(time.perf_counter() - t0)
                return out
            first = sess.step(x, y)[0]
            runners, diff, tp = {"netdsl": nd_steps}, None, None
            try:
                tp = TorchProcess(cfg, t)
                runners["torch"] = tp.run
                diff = abs(first - tp.first_loss) / max(abs(tp.first_loss), 1e-12)
            except (RuntimeError, OSError) as e:
                print(f"# torch not run: {e}")
            try:
                med, quiet = interleaved(runners, args.budget)
            finally:
                if tp is not None:
                    tp.close()
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
                  f"{'' if diff is None else f'{diff:.1e}'}  ({quiet} rounds)")
            rows.append({"config": cfg, "threads": t, "netdsl_s": nd, "torch_s": med.get("torch"), "ratio": ratio,
                         "images_per_s": batch / nd, "gflops": gf, "arena_mib": arena, "loss_rel_diff": diff,
                         "peak": pk})
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": info, "busy": args.busy, "rows": rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
