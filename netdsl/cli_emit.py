"""`netdsl compile MODEL --emit c`: the plan as a standalone C library (netdsl/deploy/emit_c.py).

    netdsl compile lenet5 --emit c -o lenet5_c/ [--weights W] [--batch 1] [--threads 4] [--embed-weights]
    make -C lenet5_c && lenet5_c/lenet5_demo -w lenet5_c/model.weights

docs/EMBED.md is the guide: the files, the API, the memory contract, building on a board.
"""
from __future__ import annotations

import sys

from .errors import NetDSLError


_C_DEFAULTS = {"batch": 1, "threads": 4, "embed_weights": False, "name": None, "force": False}


def add_arguments(s):
    """The options `compile` takes for --emit c (its MODEL, --weights, -O and -o are shared)."""
    g = s.add_argument_group("--emit c (standalone C library; docs/EMBED.md)")
    g.add_argument("--batch", type=int, default=_C_DEFAULTS["batch"], help="batch size the C plan runs (default 1)")
    g.add_argument("--threads", type=int, default=_C_DEFAULTS["threads"],
                   help="most OpenMP threads the target will use; the workspace is sized for it (default 4)")
    g.add_argument("--embed-weights", action="store_true",
                   help="write the weights as a const array (model_weights.c) instead of model.weights")
    g.add_argument("--name", default=None, help="C prefix of the API (default: the model's name, e.g. lenet5_run)")
    g.add_argument("--force", action="store_true", help="overwrite a model.c in -o that netdsl did not write")


def refuse_c_options(args):
    """A NetDSLError when an --emit c option is given to another --emit (it would do nothing)."""
    for k, default in _C_DEFAULTS.items():
        if getattr(args, k, default) != default:
            opt = "--" + k.replace("_", "-")
            raise NetDSLError(f"{opt} goes with --emit c; `compile --emit {args.emit}` does not use it",
                              hint=f"add --emit c to write a C library, or leave {opt} out")


def cmd_emit_c(args):
    """Write the C library into args.output (default ./<model>_c/) and say what it holds."""
    from .cli import _load
    from .deploy.emit_c import emit_c
    if args.report:
        raise NetDSLError("--report goes with the bundle, not with --emit c",
                          hint="run `netdsl compile MODEL --report` for the rewrites")
    m = _load(args.model, weights=args.weights)
    from .quant import QuantizedModel
    if isinstance(m, QuantizedModel):       # the emitted plan would be its float32 one: say so, write nothing
        raise NetDSLError(f"{args.model} is an int8 bundle; --emit c writes float32 kernels only",
                          hint="emit the float32 model it was quantized from (MODEL --weights W --emit c)")
    if args.opt < m.opt_level:
        raise NetDSLError(f"{args.model} was compiled at -O{m.opt_level}; it cannot be emitted at -O{args.opt}",
                          hint="emit from the .net source, or leave -O out")
    m.run_level = args.opt
    out = args.output or f"{m.name}_c"
    e = emit_c(m, out, batch=args.batch, threads=args.threads, embed_weights=args.embed_weights,
               prefix=args.name, force=args.force, warn=lambda w: print(f"warning: {w}", file=sys.stderr))
    if args.weights is None and not m.weights_loaded:
        print(f"note: {m.name} is emitted with its deterministic initial weights (seed 0), not trained ones\n"
              "hint: pass --weights W (.npz, .safetensors or .pth) for real ones", file=sys.stderr)
    report(e)
    return 0


def report(e, out=None):
    """The lines `netdsl compile --emit c` prints about what it wrote (an Emitted)."""
    from .cli_format import size_text
    out = out or sys.stdout
    threads = f"{e.threads} thread{'s' if e.threads != 1 else ''}"
    print(f"wrote {e.out_dir}/: {e.prefix} at batch {e.batch}, {e.steps} kernel calls, "
          f"{len([k for k in e.kernels if k.endswith('.c')])} kernel sources; arena {size_text(e.arena_bytes)} "
          f"(for {threads}), weights {size_text(e.weight_bytes)}, packed weights up to "
          f"{size_text(e.packed_bytes_max)}", file=out)
    print(f"build it: make -C {e.out_dir} && (cd {e.out_dir} && ./{e.prefix}_demo)", file=out)
