"""The compile pipeline, in one place: optimize -> plan -> write -> load back and check.

    from netdsl.compiler import compile_model
    c = compile_model(netdsl.load("resnet50"), "r50.netc", level=3)
    c.header["contract"], c.report

`netdsl compile` and Python users both come here, and so does the façade's
`Model.summary()` for its memory figures (`memory`): the stages below
(analysis, passes, runtime, the bundle format) never call each other
backwards.

A bundle is reported written only after it has been read back from disk
through the full reader and checked against what was compiled: the same
graph (names, ops, attributes, inputs, shapes), the same weights bit for
bit, and the same outputs on a random input at batch 1. Until then it lives
under a temporary name; when a check fails the temporary file is deleted,
any earlier file at the destination is left alone, and the caller gets a
NetDSLError saying what differed.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from . import bundle
from .errors import NetDSLError
from .passes import DEFAULT_LEVEL

CHECK_RTOL = 1e-5   # relative to the largest output value; the two runs share graph and weights


@dataclass
class Compiled:
    """What compile_model produced: the optimized graph and weights, the optimizer's report,
    and the bundle's checked header and path (None when nothing was written)."""
    graph: object
    weights: dict
    report: object
    header: dict | None = None
    path: str | None = None


def optimize(graph, weights, level: int = DEFAULT_LEVEL, outputs=None):
    """Run the passes of -O`level` on an analyzed graph: (graph, weights, report); the inputs
    are left untouched."""
    if isinstance(level, bool) or not isinstance(level, int) or not 0 <= level <= 3:
        raise NetDSLError(f"optimization level must be 0, 1, 2 or 3, got {level!r}", hint="use -O0 .. -O3")
    from .passes import optimize as run_passes
    return run_passes(graph, weights, level=level, outputs=outputs)


def memory(graph, run_level: int = 0, compiled_level: int = 0, n: int = 1) -> dict:
    """The arena plan at batch n for the graph as the runtime runs it (optimized at run_level
    when that is above the level it was compiled at): peak arena bytes, the naive sum, the
    lower bound, weight bytes, and the level it describes."""
    from .analysis.infer import totals
    from .runtime.plan import lower
    if run_level > compiled_level:
        graph, _, _ = optimize(graph, None, run_level)
    mem = lower(graph, n, kernels=False).memory()
    mem["weight_bytes"] = totals(graph)["weight_bytes"]
    mem["opt_level"] = max(run_level, compiled_level)
    return mem


def compile_model(model, out: str | None = None, level: int = DEFAULT_LEVEL, check: bool = True) -> Compiled:
    """Optimize `model` (a Model: .graph, .weights, .name, .path) at `level` and, with `out`,
    write it as a bundle that has been loaded back and checked (see the module docstring).
    Returns a Compiled; raises NetDSLError when the bundle cannot be written or fails its check."""
    graph, weights, report = optimize(model.graph, model.weights, level)
    result = Compiled(graph, weights, report)
    if out is None:
        return result
    data = bundle.dumps(graph, weights, name=model.name, opt_level=level, report=report,
                        source=model.path or model.name,
                        initial_weights=not getattr(model, "weights_loaded", True))
    tmp = f"{out}.tmp{os.getpid()}"
    bundle.write(tmp, data, atomic=False)      # renamed over `out` only once it checks
    del data                                   # the read-back holds its own copy
    try:
        back = bundle.read_file(tmp)
        if check:
            verify(graph, weights, back)
    except NetDSLError as e:
        _unlink(tmp)
        raise NetDSLError(f"{out}: the bundle did not survive being read back, so it was not written: "
                          f"{e.diagnostics[0].message.replace(tmp, out)}",
                          hint="this is a bug in netdsl; please report it with the .net file") from None
    try:
        os.replace(tmp, out)
    except OSError as e:
        _unlink(tmp)
        raise NetDSLError(f"cannot write {out}: {e.strerror or e}",
                          hint="give -o a file in a directory you can write to") from None
    result.header, result.path = back.header, out
    return result


def _unlink(path):
    try:
        os.unlink(path)
    except OSError:
        pass


def verify(graph, weights, back, seed: int = 0):
    """Raise NetDSLError unless the read-back bundle `back` holds `graph` and `weights` and
    computes the same outputs on a random batch-1 input."""
    if list(back.graph.inputs) != list(graph.inputs) or dict(back.graph.outputs) != dict(graph.outputs):
        raise NetDSLError("the inputs or outputs changed")
    a_nodes, b_nodes = graph.nodes(), back.graph.nodes()
    if [n.name for n in a_nodes] != [n.name for n in b_nodes]:
        raise NetDSLError("the layers changed")
    for a, b in zip(a_nodes, b_nodes):
        for what, x, y in (("op", a.op, b.op), ("attributes", a.attrs, b.attrs), ("shape", a.shape, b.shape),
                           ("inputs", graph.preds(a.name), back.graph.preds(b.name)),
                           ("parameters", a.params, b.params), ("buffers", a.buffers, b.buffers)):
            if x != y:
                raise NetDSLError(f"layer {a.name}: its {what} changed from {x!r} to {y!r}")
    if set(weights) != set(back.weights):
        raise NetDSLError("the set of weights changed")
    for k, w in weights.items():
        if not np.array_equal(np.asarray(w, np.float32), back.weights[k]):
            raise NetDSLError(f"weight {k} changed")
    rng = np.random.default_rng(seed)
    x = {n: rng.standard_normal((1, *graph[n].shape)).astype(np.float32) for n in graph.inputs}
    ya, yb = _run(graph, weights, x), _run(back.graph, back.weights, x)
    for k in ya:
        a, b = ya[k], yb[k]
        if a.shape != b.shape:
            raise NetDSLError(f"output {k}: shape {list(a.shape)} became {list(b.shape)}")
        ok = np.isfinite(a)
        if not (np.array_equal(ok, np.isfinite(b)) and np.array_equal(a[~ok], b[~ok], equal_nan=True)):
            raise NetDSLError(f"output {k}: NaN or inf in different places")
        scale = float(np.abs(a[ok]).max(initial=0.0))
        diff = float(np.abs(a[ok] - b[ok]).max(initial=0.0)) if ok.any() else 0.0
        if not diff <= CHECK_RTOL * max(scale, 1e-30):
            raise NetDSLError(f"output {k}: differs by {diff:.3g} (outputs up to {scale:.3g})")


def _run(graph, weights, x) -> dict:
    """The outputs on the C runtime when it can run the graph at batch 1, else on the numpy
    reference (a runtime limit is not a property of the file)."""
    from .runtime import lib
    from .runtime.executor import PlanError
    from .runtime.plan import lower
    if lib.available():
        try:
            lower(graph, 1)
        except (PlanError, NetDSLError):
            pass
        else:
            from .runtime.session import Session
            return {k: np.asarray(v, np.float64) for k, v in Session(graph, weights, None).run(x).items()}
    from .runtime.reference import run_reference
    return run_reference(graph, weights, x, dtype=np.float32)
