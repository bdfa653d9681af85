"""`netdsl quantize`: int8 post-training static quantization (netdsl/quant does the work).

    netdsl quantize resnet18 --weights r18.safetensors --calibrate images/ --method entropy \\
                    --skip conv1 --held digits -o resnet18.int8.netc

Calibrates every Conv / FC input on the calibration data with the float32 model, writes the
int8 bundle (-o), and prints the per-layer table: each int8 layer's input scale and zero
point and the relative error of its output against float32 on the held set (default: the
calibration data), the layers that stay float32 and why, and the top-1 agreement.
`netdsl run model.int8.netc` runs the bundle. docs/QUANTIZE.md.
"""
from __future__ import annotations

import sys
import time

from .errors import NetDSLError


def add_parser(sub):
    s = sub.add_parser("quantize", help="int8 post-training quantization: calibrate, report per layer, "
                       "write an int8 bundle")
    s.add_argument("model", help="a .net file or a zoo name")
    s.add_argument("--weights", default=None, help="the trained float32 weights (.safetensors, .npz, .pth)")
    s.add_argument("--calibrate", required=True, metavar="DATA",
                   help="digits (built in), a .npz with an array x, a .npy, or a folder of images")
    s.add_argument("--method", default="minmax", choices=["minmax", "percentile", "entropy"],
                   help="how an activation range is chosen (default minmax)")
    s.add_argument("--percentile", type=float, default=99.99, help="for --method percentile (default 99.99)")
    s.add_argument("--skip", default="", metavar="LAYER,...",
                   help="Conv/FC layers that stay float32 (names as `netdsl summary -O3` shows them)")
    s.add_argument("-n", "--samples", type=int, default=256, help="calibration samples to use (default 256)")
    s.add_argument("--held", default=None, metavar="DATA",
                   help="data for the error report (default: the calibration data; `digits` uses its test split)")
    s.add_argument("--threads", type=int, default=None)
    s.add_argument("-o", "--out", default=None, help="write the int8 bundle here (.netc)")
    s.set_defaults(fn=cmd_quantize)
    return s


def cmd_quantize(args):
    from . import load
    from .quant import quantize
    from .quant.data import calibration_inputs
    if args.samples < 1:
        raise NetDSLError(f"-n must be at least 1, got {args.samples}")
    if args.threads is not None and args.threads < 1:
        raise NetDSLError(f"--threads must be at least 1, got {args.threads}")
    if not 50 < args.percentile <= 100:
        raise NetDSLError(f"--percentile must be in (50, 100], got {args.percentile}")
    if args.out is not None and not args.out.endswith(".netc"):
        raise NetDSLError(f"-o {args.out}: an int8 bundle is a .netc file", hint="name it like model.int8.netc")
    m = load(args.model, weights=args.weights, threads=args.threads)
    if not m.weights_loaded:
        print(f"note: {m.name} has its deterministic initial weights (seed 0), not trained ones: the "
              "agreement below says little\nhint: pass the trained weights with --weights W", file=sys.stderr)
    t0 = time.perf_counter()
    qm = quantize(m, args.calibrate, method=args.method, skip=args.skip, n=args.samples,
                  threads=args.threads, percentile=args.percentile)
    t1 = time.perf_counter()
    print(f"{m.name}: {len(qm.qlayers)} layers int8, {len(qm.skipped)} float32; calibrated with "
          f"{args.method} in {t1 - t0:.1f} s")
    held = args.held or args.calibrate
    x = calibration_inputs(held, qm.graph, args.samples, split="test" if held == "digits" else "train")
    print(qm.report(x).table())
    if args.out:
        qm.save(args.out)
        print(f"wrote {args.out}")
    return 0
