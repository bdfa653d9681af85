"""Graph -> Graph optimization passes (docs/PASSES.md).

    g2, w2, report = netdsl.passes.optimize(model.graph, weights)      # level=DEFAULT_LEVEL
    print("\\n".join(report.render()))

Each pass is a pure function `(graph, weights=None) -> (graph, weights, records)` built from
(pattern, rewrite) rules applied to a fixed point (rewrite.py); it reads op capabilities
from the specs, never op names. Levels are cumulative:

    -O0  nothing
    -O1  remove_noops, fold_constants
    -O2  + fold_batchnorm, fuse_activations
    -O3  + fuse_residual  (Conv gets the shortcut as a second input)

What the passes do not do: plan-level rewrites (concat elision, in-place buffers) belong to
the planner; no pass changes what the outputs compute beyond float32 rounding.
"""
from __future__ import annotations

from ..errors import NetDSLError
from .fold import fold_batchnorm, fold_constants
from .fuse import fuse_activations, fuse_residual
from .noops import remove_noops, select_outputs
from .rewrite import Fired, Record, Report

LEVELS = {
    0: (),
    1: (remove_noops, fold_constants),
    2: (remove_noops, fold_constants, fold_batchnorm, fuse_activations),
    3: (remove_noops, fold_constants, fold_batchnorm, fuse_activations, fuse_residual),
}
# The one default optimization level: Model.run_level and netdsl.load (model.py), `netdsl
# compile` and `netdsl graph -O` (cli.py), compiler.optimize/compile_model read it from here. It
# lives next to LEVELS, which it indexes; importing it costs only the small pass modules, since
# every reader has already imported netdsl (whose __init__ loads the model, analysis and ops).
DEFAULT_LEVEL = 3


def optimize(graph, weights=None, level=DEFAULT_LEVEL, outputs=None):
    """Run the passes of -O`level` on an analyzed graph; returns (graph, weights, report).

    Pure: `graph` and `weights` are never modified; the returned graph is a new analyzed graph
    and the returned weights a new dict (None when `weights` is None: only the graph is
    rewritten). `outputs`, a list of output names, drops the other outputs and the layers
    only they need, at every level."""
    if level not in LEVELS:
        raise NetDSLError(f"no optimization level {level!r}", hint="use -O0, -O1, -O2 or -O3")
    main = None
    if graph.inputs and graph[graph.inputs[0]].span is not None:
        main = graph[graph.inputs[0]].span.source.name
    report = Report(main)
    g, w = graph, weights
    if outputs is not None:
        g, w, records = select_outputs(g, w, outputs)
        report.passes.append("select_outputs")
        report.records += records
    for p in LEVELS[level]:
        g, w, records = p(g, w)
        report.passes.append(p.__name__)
        report.records += records
    if g is graph:                  # nothing ran: still hand back copies, never the arguments
        g = graph.copy()
        w = None if weights is None else dict(weights)
    return g, w, report


__all__ = ["optimize", "LEVELS", "DEFAULT_LEVEL", "Report", "Record", "Fired", "remove_noops",
           "select_outputs", "fold_constants", "fold_batchnorm", "fuse_activations", "fuse_residual"]
