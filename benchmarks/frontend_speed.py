"""How fast is the front end? Parse + expand + shape-check times for the big
zoo models, and for generated chains of growing length (should be linear).

    python benchmarks/frontend_speed.py

Prints medians of several runs; not a test (machines are shared and noisy).
"""
from __future__ import annotations

import statistics
import time

import netdsl
from netdsl.model import resolve_path


def median_time(fn, repeat=5):
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def main():
    print("model            parse+expand+check (median of 5)")
    for name in ("resnet18", "resnet152", "densenet201", "googlenet", "unet"):
        try:
            text = open(resolve_path(name)).read()
        except netdsl.NetDSLError:
            continue
        netdsl.load(name)   # warm the grammar cache and imports
        t = median_time(lambda: netdsl.parse(text, name + ".net", resolve_path(name)))
        print(f"{name:16s} {t * 1000:8.1f} ms")
    print("\ngenerated chain  layers   time      per layer")
    prev = None
    for n in (1000, 2500, 5000, 10000):
        text = "input x: 8x8x8\n" + "\n".join("Conv(8, 3, pad=1)-ReLU" for _ in range(n // 2))
        t = median_time(lambda: netdsl.parse(text), repeat=3)
        ratio = f"  x{t / prev[1]:.2f} for x{n / prev[0]:.1f} layers" if prev else ""
        print(f"{'':16s} {n:6d} {t * 1000:8.1f} ms  {t / n * 1e6:6.1f} µs{ratio}")
        prev = (n, t)


if __name__ == "__main__":
    main()
