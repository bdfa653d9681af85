"""The `netdsl` command line. Every failure is a located message and a
non-zero exit, never a Python traceback."""
from __future__ import annotations

import argparse
import json
import sys

from .errors import NetDSLError


def _load(target, **kw):
    """Load a model and print its warnings (not fatal) on stderr, where errors go."""
    from . import load
    from .errors import render_warnings
    m = load(target, **kw)
    if getattr(m.graph, "warnings", None):
        print(render_warnings(m.graph.warnings), file=sys.stderr)
    return m


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


def ops_markdown() -> str:
    """The op reference table of docs/LANGUAGE.md, generated from the specs."""
    from . import ops
    rows = ["| op | aliases | arguments (defaults) | what it does |", "| --- | --- | --- | --- |"]
    for name, spec in sorted(ops.all_specs().items()):
        if name == "Input":
            continue
        al = ", ".join(f"`{a}`" for a in spec.aliases)
        attrs = ", ".join(a.name if a.required else f"{a.name}={_show(a.default)}" for a in spec.attrs)
        rows.append(f"| `{name}` | {al} | `{name}({attrs})` | {spec.doc} |")
    return "\n".join(rows)


def cmd_ops(args):
    from . import ops
    if args.markdown:
        print(ops_markdown())
        return 0
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

    from .runtime.inputs import read_input
    if args.batch < 1:
        raise NetDSLError(f"--batch must be at least 1, got {args.batch}")
    if args.threads is not None and args.threads < 1:
        raise NetDSLError(f"--threads must be at least 1, got {args.threads}")
    m = _load(args.model, weights=args.weights, threads=args.threads)
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
    if getattr(args, "model", None):
        from . import bundle
        if not bundle.is_bundle(args.model):
            raise NetDSLError(f"{args.model} is not a compiled bundle",
                              hint=f"`netdsl info` describes .netc files; for a .net source use "
                                   f"`netdsl summary {args.model}`, or compile it with `netdsl compile {args.model}`")
        h = bundle.read_header(args.model)
        print(bundle.info_text(h, args.model))
        return 0
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


def _opt_level(v):
    try:
        n = int(v)
    except ValueError:
        n = -1
    if not 0 <= n <= 3:
        raise argparse.ArgumentTypeError(f"invalid optimization level {v!r} (use -O0, -O1, -O2 or -O3)")
    return n


def _graph_for(args):
    """(graph, title) for compile --emit dot and graph: a bundle as stored, a source at -O level."""
    from . import bundle
    if bundle.is_bundle(args.model):
        m = bundle.load(args.model)
        return m, f"{m.name} (bundle, -O{m.opt_level})"
    from . import load
    m = load(args.model, weights=getattr(args, "weights", None))
    level = args.opt if getattr(args, "optimized", True) else 0
    if level:
        m, _ = bundle.optimize(m, level)
    return m, f"{m.name} -O{level}"


def cmd_compile(args):
    import os

    from . import bundle
    if bundle.is_bundle(args.model):
        raise NetDSLError(f"{args.model} is already a compiled bundle",
                          hint="compile the .net source (or zoo name) it came from")
    if args.emit == "dot":
        from .dot import render, to_dot
        m, title = _graph_for(args)
        text = to_dot(m.graph, title)
        if args.output:
            path, drawn = render(text, args.output)
            print(f"wrote {path}" + ("" if drawn or path == args.output else
                                     f" (Graphviz not found; render it with: dot -T{os.path.splitext(args.output)[1][1:]} "
                                     f"{path} -o {args.output})"))
        else:
            sys.stdout.write(text)
        return 0
    opt, report, _ = bundle.compile_model(args.model, None, args.opt, weights=args.weights)
    out = args.output or (opt.name + ".netc")
    if args.report:
        from .runtime.plan import lower, report_lines
        lines = list(report.render()) if report is not None else []
        print("\n".join(lines) if lines else f"-O{args.opt}: no rewrites")
        print("\n".join(report_lines(lower(opt.graph, 1, kernels=False), opt.graph)))
    h = bundle.save(opt, out, args.opt, report, opt.path)
    c = h["contract"]
    arena = ", ".join(f"batch {n}: {bundle.size_text(b)}" for n, b in c["arena_bytes"].items())
    print(f"wrote {out}: {c['layers']} layers at -O{args.opt}, {c['params']:,} params, "
          f"weights {bundle.size_text(c['weight_bytes'])}, arena {arena}")
    return 0


def cmd_graph(args):
    import os

    from .dot import render, to_dot
    m, title = _graph_for(args)
    text = to_dot(m.graph, title)
    out = args.output or (m.name + ".svg")
    path, drawn = render(text, out)
    if drawn or path == out:
        print(f"wrote {path}")
    else:
        print(f"wrote {path}: Graphviz (`dot`) is not installed, so the graph was written as DOT text\n"
              f"hint: install Graphviz (e.g. apt install graphviz) and run: "
              f"dot -T{os.path.splitext(out)[1][1:]} {path} -o {out}")
    return 0


def _show(v):
    from .ops.base import fmt
    return fmt(v) if v is not None else "none"


def build_parser():
    p = argparse.ArgumentParser(prog="netdsl", description="Check, explain, compile and run CNNs written "
                                "the way the lecture writes them (Conv-ReLU-Pool-FC-SM).")
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND")
    s = sub.add_parser("check", help="parse and shape-check a network; exit 0 when valid")
    s.add_argument("model", help=".net file, zoo name or .netc bundle")
    s.set_defaults(fn=cmd_check)
    s = sub.add_parser("summary", help="per-layer table: shapes, params, MACs, memory, receptive field")
    s.add_argument("model", help=".net file, zoo name or .netc bundle")
    s.add_argument("--json", action="store_true", help="print a JSON document instead")
    s.add_argument("--depth", type=int, default=None, help="collapse layers below this name depth")
    s.set_defaults(fn=cmd_summary)
    s = sub.add_parser("explain", help="the arithmetic per layer, as done by hand")
    s.add_argument("model")
    s.set_defaults(fn=cmd_explain)
    s = sub.add_parser("run", help="run a network on an input and print its outputs")
    s.add_argument("model", help=".net file, zoo name or compiled .netc bundle")
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
    s = sub.add_parser("info", help="version, kernel instruction set, threads, plugins; "
                       "with MODEL.netc: the bundle's memory contract")
    s.add_argument("model", nargs="?", help="a compiled .netc bundle to describe (nothing is run)")
    s.set_defaults(fn=cmd_info)
    s = sub.add_parser("compile", help="optimize a network and write it as one .netc bundle "
                       "(graph, memory contract, folded weights)")
    s.add_argument("model", help=".net file or zoo name")
    s.add_argument("--weights", help=".npz or .safetensors weights to fold in (default: deterministic init)")
    s.add_argument("-O", dest="opt", type=_opt_level, default=3, metavar="LEVEL",
                   help="optimization level -O0 .. -O3 (default -O3, every pass; what `netdsl run` uses)")
    s.add_argument("-o", "--output", help="output file (default MODEL.netc; with --emit dot: .dot/.svg/.png, "
                   "or stdout when omitted)")
    s.add_argument("--emit", choices=("bundle", "dot"), default="bundle",
                   help="bundle (default) or dot: the optimized graph as Graphviz DOT (-O0 for the original)")
    s.add_argument("--report", action="store_true", help="print each rewrite with its source line, and totals per pass")
    s.set_defaults(fn=cmd_compile)
    s = sub.add_parser("graph", help="draw the network (Graphviz): op, output shape and params per layer, "
                       "one box per block")
    s.add_argument("model", help=".net file, zoo name or .netc bundle")
    s.add_argument("-o", "--output", help="file.svg, .png, .pdf or .dot (default MODEL.svg; .dot without Graphviz)")
    s.add_argument("--optimized", action="store_true", help="draw the graph after optimization (see -O)")
    s.add_argument("-O", dest="opt", type=_opt_level, default=3, metavar="LEVEL",
                   help="optimization level for --optimized (default -O3)")
    s.add_argument("--weights", help=argparse.SUPPRESS)
    s.set_defaults(fn=cmd_graph)
    s = sub.add_parser("ops", help="list the ops and their arguments")
    s.add_argument("--markdown", action="store_true", help="print the op table of docs/LANGUAGE.md")
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
