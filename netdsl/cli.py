"""The `netdsl` command line. Every failure is a located message and a
non-zero exit, never a Python traceback."""
from __future__ import annotations

import argparse
import json
import sys

from .errors import NetDSLError


def _load(target):
    from . import load
    return load(target)


def cmd_check(args):
    m = _load(args.model)
    outs = ", ".join(f"{k} {'x'.join(map(str, s))}" for k, s in m.output_shapes.items())
    print(f"{args.model}: ok — {len(m.graph)} layers, {m.total_params:,} params, outputs {outs}")
    return 0


def cmd_summary(args):
    m = _load(args.model)
    if args.json:
        print(json.dumps(m.summary_dict(args.depth), indent=2))
    else:
        print(m.summary(args.depth))
    return 0


def cmd_explain(args):
    print(_load(args.model).explain())
    return 0


def cmd_ops(args):
    from . import ops
    for name, spec in sorted(ops.all_specs().items()):
        if name == "Input":
            continue
        al = f" ({', '.join(spec.aliases)})" if spec.aliases else ""
        attrs = ", ".join(a.name if a.required else f"{a.name}={_show(a.default)}" for a in spec.attrs)
        print(f"{name}{al}: {spec.doc}\n    {name}({attrs})")
    return 0


def cmd_zoo(args):
    from . import load, zoo_names
    for n in zoo_names():
        m = load(n)
        print(f"{n:14s} {m.total_params:>13,} params   {len(m.graph):4d} layers")
    return 0


def cmd_run(args):
    import statistics
    import time

    import numpy as np

    from . import load
    from .runtime.inputs import read_input
    if args.batch < 1:
        raise NetDSLError(f"--batch must be at least 1, got {args.batch}")
    if args.threads is not None and args.threads < 1:
        raise NetDSLError(f"--threads must be at least 1, got {args.threads}")
    m = load(args.model, weights=args.weights, threads=args.threads)
    x = read_input(args.input, m.graph, args.batch)
    y = m(x)
    outs = y if isinstance(y, dict) else {next(iter(m.graph.outputs)): y}
    for name, arr in outs.items():
        print(f"{name}: shape {list(arr.shape)}")
        if arr.ndim == 2:
            k = min(args.top, arr.shape[1])
            for b in range(min(arr.shape[0], 4)):
                idx = np.argsort(-arr[b])[:k]
                cells = ", ".join(f"{i}: {arr[b, i]:.4g}" for i in idx)
                print(f"  [{b}] top-{k}: {cells}")
        else:
            print(f"  min {arr.min():.4g}  max {arr.max():.4g}  mean {arr.mean():.4g}")
    if args.save:
        np.savez(args.save, **outs)
        print(f"saved outputs to {args.save}")
    if args.bench:
        for _ in range(2):
            m(x)
        times, t_end = [], time.perf_counter() + args.bench_seconds
        while len(times) < args.repeat or (time.perf_counter() < t_end and len(times) < 1000):
            t0 = time.perf_counter()
            m(x)
            times.append(time.perf_counter() - t0)
        med = statistics.median(times)
        from .runtime import lib
        th = m.threads or lib.max_threads()
        print(f"bench: batch {args.batch}, {th} thread{'s' if th != 1 else ''}, {len(times)} runs: "
              f"median {med * 1000:.2f} ms, min {min(times) * 1000:.2f} ms, "
              f"{args.batch / med:.1f} images/s, {2 * m.totals()['total_macs'] * args.batch / med / 1e9:.1f} GFLOP/s")
    return 0


def cmd_info(args):
    from . import __version__
    from .runtime import lib
    print(f"netdsl {__version__}")
    inf = lib.info()
    if not inf.get("built"):
        print("kernels: NOT BUILT — run `pip install -e .` (or python netdsl/runtime/_build.py)")
    else:
        print(f"kernels: {inf['isa']} (this CPU supports: {', '.join(inf['supported_isas'])}; "
              f"force one with NETDSL_ISA=portable|avx2|avx512)")
        print(f"threads: {inf['max_threads']} (OpenMP {'on' if inf['openmp'] else 'off: single-threaded build'})")
    print("CUDA plugin: not present (netdsl/plugins/cuda is not part of this build)")
    return 0


def _show(v):
    from .ops.base import fmt
    return fmt(v) if v is not None else "none"


def build_parser():
    p = argparse.ArgumentParser(prog="netdsl", description="Check, explain, compile and run CNNs written "
                                "the way the lecture writes them (Conv-ReLU-Pool-FC-SM).")
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND")
    s = sub.add_parser("check", help="parse and shape-check a network; exit 0 when valid")
    s.add_argument("model", help=".net file or zoo name")
    s.set_defaults(fn=cmd_check)
    s = sub.add_parser("summary", help="per-layer table: shapes, params, MACs, memory, receptive field")
    s.add_argument("model", help=".net file or zoo name")
    s.add_argument("--json", action="store_true", help="print a JSON document instead")
    s.add_argument("--depth", type=int, default=None, help="collapse layers below this name depth")
    s.set_defaults(fn=cmd_summary)
    s = sub.add_parser("explain", help="the arithmetic per layer, as done by hand")
    s.add_argument("model")
    s.set_defaults(fn=cmd_explain)
    s = sub.add_parser("run", help="run a network on an input and print its outputs")
    s.add_argument("model", help=".net file or zoo name")
    s.add_argument("--weights", help=".npz or .safetensors weights (default: deterministic init, seed 0)")
    s.add_argument("--input", default="random", help="x.npy, an image (needs Pillow), or random (default)")
    s.add_argument("--batch", type=int, default=1, help="batch size (default 1)")
    s.add_argument("--threads", type=int, default=None, help="threads (default: all cores)")
    s.add_argument("--top", type=int, default=5, help="top-k classes to print for vector outputs")
    s.add_argument("--save", help="write the outputs to this .npz file")
    s.add_argument("--bench", action="store_true", help="time repeated runs: median latency and throughput")
    s.add_argument("--repeat", type=int, default=10, help="at least this many timed runs with --bench")
    s.add_argument("--bench-seconds", type=float, default=2.0, help="keep timing for this long with --bench")
    s.set_defaults(fn=cmd_run)
    s = sub.add_parser("info", help="version, kernel instruction set, threads, plugins")
    s.set_defaults(fn=cmd_info)
    s = sub.add_parser("ops", help="list the ops and their arguments")
    s.set_defaults(fn=cmd_ops)
    s = sub.add_parser("zoo", help="list the zoo models with their parameter counts")
    s.set_defaults(fn=cmd_zoo)
    return p


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "fn", None):
        parser.print_help()
        return 2
    try:
        return args.fn(args)
    except NetDSLError as e:
        print(e.render(), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except Exception as e:   # a bug in netdsl: still no traceback for the user
        print(f"netdsl: internal error: {type(e).__name__}: {e}\n"
              "hint: this is a bug in netdsl; please report it with the file that caused it "
              "(NETDSL_DEBUG=1 shows the traceback)", file=sys.stderr)
        import os
        if os.environ.get("NETDSL_DEBUG"):
            raise
        return 3


if __name__ == "__main__":
    sys.exit(main())
