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
