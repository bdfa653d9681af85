"""Images per second of `netdsl batch` on this machine: the local engine (this process with
decode threads, or worker processes) next to Ray Data actors, end to end from image files.

    python benchmarks/batch_throughput.py [--models lenet5 resnet18] [--images 2000 96] [--repeat 2]

Each model gets a folder of generated images (PNG for LeNet-5's 1x32x32, 320x240 JPEG for
ResNet-18's 3x224x224, so decoding and resizing are part of the work), then each layout runs
the whole folder through netdsl.batch.predict (one process with 4 decode threads and with
inline decoding: the default picks by input size, netdsl/batch/local.py) with no output file (shards kept in memory),
`--repeat` times, and the best wall time is kept. Ray is initialized once, before the timing,
with num_cpus = the cores; its actor start-up is in the times, as the start of the worker
processes is in theirs. `others` is the cores' worth of CPU other processes used in the second
before each layout (from /proc/stat; during the runs our own workers would count): on a shared
machine read the ratios, not the absolute numbers. Not a test.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

import numpy as np

from netdsl.batch import predict
from netdsl.cli import _others_cpu, _proc_cpu

SIZES = {"lenet5": ((32, 32), "L", ".png"), "resnet18": ((320, 240), "RGB", ".jpg")}


def make_folder(root, n, size, mode, ext, seed=0):
    from PIL import Image
    rng = np.random.default_rng(seed)
    os.makedirs(root, exist_ok=True)
    w, h = size
    for i in range(n):
        shape = (h, w) if mode == "L" else (h, w, 3)
        base = rng.random((h // 8 + 1, w // 8 + 1) + shape[2:])            # smooth-ish: JPEG-like content
        a = np.kron(base, np.ones((8, 8) + (1,) * (len(shape) - 2)))[:h, :w]
        Image.fromarray((a * 255).astype(np.uint8), mode).save(os.path.join(root, f"{i:05d}{ext}"))


def layouts(ncpu, have_ray):
    out = [("local, 1 process, 4 decoders", dict(engine="local", actors=1, threads=ncpu, decoders=4)),
           ("local, 1 process, inline", dict(engine="local", actors=1, threads=ncpu, decoders=0)),
           (f"local, {ncpu} processes", dict(engine="local", actors=ncpu, threads=1))]
    if have_ray:
        out += [(f"ray, {ncpu} actors x 1 thread", dict(engine="ray", actors=ncpu, threads=1)),
                (f"ray, 1 actor x {ncpu} threads", dict(engine="ray", actors=1, threads=ncpu))]
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="*", default=["lenet5", "resnet18"])
    ap.add_argument("--images", nargs="*", type=int, default=[2000, 96], help="images per model, in order")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--shard-size", type=int, default=None, help="default: images / (4 x cores), at least --batch")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--no-ray", action="store_true")
    args = ap.parse_args()
    ncpu = os.cpu_count() or 1
    have_ray = False
    if not args.no_ray:
        try:
            import ray
            import ray.data  # noqa: F401
            ray.init(num_cpus=ncpu, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
            have_ray = True
        except ImportError:
            print("(Ray not installed: local layouts only)", file=sys.stderr)
    tmp = tempfile.mkdtemp(prefix="netdsl-batch-bench-")
    try:
        print(f"{ncpu} cores; best of {args.repeat}; batch {args.batch}\n")
        head = f"{'model':9s} {'images':>6s} {'layout':28s} {'images/s':>9s} {'seconds':>8s} {'others':>7s}"
        print(head + "\n" + "-" * len(head))
        for name, n in zip(args.models, args.images):
            size, mode, ext = SIZES.get(name, ((64, 64), "RGB", ".png"))
            root = os.path.join(tmp, name)
            make_folder(root, n, size, mode, ext)
            shard = args.shard_size or max(args.batch, n // (4 * ncpu))
            for label, kw in layouts(ncpu, have_ray):
                c0 = _proc_cpu()
                time.sleep(1.0)
                others = _others_cpu(c0, _proc_cpu())
                best = None
                for _ in range(args.repeat):
                    t0 = time.perf_counter()
                    p = predict(name, root, None, batch=args.batch, shard_size=shard, progress=False, **kw)
                    dt = time.perf_counter() - t0
                    assert len(p.ids) == n, (len(p.ids), n)
                    best = dt if best is None else min(best, dt)
                oth = f"{others:.1f}" if others is not None else "?"
                print(f"{name:9s} {n:6d} {label:28s} {n / best:9.1f} {best:8.2f} {oth:>7s}", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if have_ray:
            import ray
            ray.shutdown()


if __name__ == "__main__":
    main()
