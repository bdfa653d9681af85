"""The pipeline runs one way: no module imports a later stage.

Every module of the package is parsed (ast, not imported) and every import in it —
module level and inside functions, absolute and relative — is resolved to the module it
names. A module may import its own layer or a lower one; importing a higher layer, or a
different layer of the same rank, fails with the file, the line and both layers.

The order, lowest first (docs/DESIGN: "each stage only knows the one before it"):

    base      errors.py, fileio.py, graph.py, _version.py, the zoo/ and stdlib/ data packages
    ops       op specs (everything reads them, so they sit right above the IR)
    frontend | analysis   peers: neither knows the other
    passes    graph rewrites
    runtime   planner, kernels (and the built _kernels extension), sessions, weights I/O,
              the numpy reference executor
    bundle | compiler | interop | deploy   the file format, the pipeline that writes it, other
              tools' formats (ONNX, Darknet) in and out, and the plan as standalone C
    model     the façade users hold (runs the pipeline for summary and calls)
    package | quant   netdsl/__init__.py (netdsl.load, which opens int8 bundles through quant);
              netdsl/quant (int8 post-training quantization: a Model subclass)
    cli | testing   cli.py, cli_format.py, dot.py (presentation); netdsl/testing (the
              generated-network check and soak, a user of the whole pipeline)
    main      __main__.py

`ops` is below `frontend` although the text comes first in the pipeline: expansion binds
each layer's arguments through its op spec, so the front end depends on the specs, and the
specs must not depend on the front end.
"""
from __future__ import annotations

import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PKG = os.path.join(ROOT, "netdsl")

LAYERS = [      # (layer, rank, module prefixes)
    ("base", 0, ["netdsl.errors", "netdsl.fileio", "netdsl.graph", "netdsl._version", "netdsl.zoo", "netdsl.stdlib"]),
    ("ops", 1, ["netdsl.ops"]),
    ("frontend", 2, ["netdsl.frontend"]),
    ("analysis", 2, ["netdsl.analysis"]),
    ("passes", 3, ["netdsl.passes"]),
    ("runtime", 4, ["netdsl.runtime", "netdsl._kernels"]),     # _kernels: the built C extension
    ("bundle", 5, ["netdsl.bundle"]),
    ("compiler", 5, ["netdsl.compiler"]),
    ("interop", 5, ["netdsl.interop"]),                          # ONNX / Darknet / .pth in and out
    ("train", 5, ["netdsl.train"]),                              # backward, losses, optimizers, data
    ("deploy", 5, ["netdsl.deploy"]),                            # the plan written for other toolchains (C)
    ("model", 6, ["netdsl.model"]),
    ("package", 7, ["netdsl"]),
    ("cli", 8, ["netdsl.cli", "netdsl.cli_format", "netdsl.cli_train", "netdsl.cli_batch", "netdsl.cli_emit",
                "netdsl.cli_quant", "netdsl.dot"]),
    ("testing", 8, ["netdsl.testing"]),                          # generated networks, soak
    ("viz", 8, ["netdsl.viz"]),                                  # pictures: feature maps, filters, SVG graphs
    ("batch", 8, ["netdsl.batch"]),                              # batch inference: shards, local and Ray engines
    ("main", 9, ["netdsl.__main__"]),
]
# Same-rank layers that may use each other (one way only; other peers stay independent).
ALLOWED_PEERS: set[tuple[str, str]] = {("compiler", "bundle"),      # the pipeline writes the format
                                       ("cli", "viz"),              # commands that draw
                                       ("cli", "batch"),            # `netdsl batch`
                                       ("package", "quant")}        # netdsl.load opens int8 bundles


def layer_of(module: str):
    """(layer, rank) of a netdsl module by its longest matching prefix; None outside netdsl."""
    best = None
    for layer, rank, prefixes in LAYERS:
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and (best is None or len(p) > best[2]):
                best = (layer, rank, len(p))
    return best[:2] if best else None


def modules():
    """(module name, path) for every .py file of the package."""
    out = []
    for d, _, files in os.walk(PKG):
        for f in sorted(files):
            if f.endswith(".py"):
                path = os.path.join(d, f)
                rel = os.path.relpath(path, ROOT)[:-3].split(os.sep)
                if rel[-1] == "__init__":
                    rel = rel[:-1]
                out.append((".".join(rel), path))
    return sorted(out)


def _is_module(name: str) -> bool:
    parts = name.split(".")
    base = os.path.join(ROOT, *parts)
    if os.path.isdir(base) or os.path.exists(base + ".py"):
        return True
    folder = os.path.dirname(base)
    return os.path.isdir(folder) and any(f.startswith(parts[-1] + ".") and f.endswith((".so", ".pyd"))
                                         for f in os.listdir(folder))


def imports(module: str, path: str, text: str | None = None):
    """(line, imported module) for every import in the file, function-level ones included."""
    if text is None:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    is_pkg = os.path.basename(path) == "__init__.py"
    package = module if is_pkg else module.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(text, path)):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - (node.level - 1)])
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module
            # `from pkg import sub` imports the submodule when there is one
            subs = [f"{target}.{a.name}" for a in node.names if _is_module(f"{target}.{a.name}")]
            out += [(node.lineno, s) for s in subs] or [(node.lineno, target)]
    return out


def violations(module, path, text=None):
    me = layer_of(module)
    assert me is not None, f"{module} is in no layer: add it to LAYERS in {__file__}"
    bad = []
    for line, target in imports(module, path, text):
        them = layer_of(target)
        if them is None or them[0] == me[0]:
            continue
        if them[1] > me[1] or (them[1] == me[1] and (me[0], them[0]) not in ALLOWED_PEERS):
            bad.append(f"{os.path.relpath(path, ROOT)}:{line}: {module} ({me[0]}, rank {me[1]}) imports "
                       f"{target} ({them[0]}, rank {them[1]})")
    return bad


def test_no_import_goes_up_the_pipeline():
    bad = [v for m, p in modules() for v in violations(m, p)]
    assert not bad, "imports against the pipeline order:\n" + "\n".join(bad)


def test_every_module_has_a_layer():
    assert [m for m, _ in modules() if layer_of(m) is None] == []


def test_the_checker_sees_back_edges():
    """The checker itself: a module-level and a function-level back edge are both caught,
    and a legal import is not."""
    path = os.path.join(PKG, "analysis", "report.py")
    text = ("from ..ops.geometry import shape_str\n"
            "def f():\n"
            "    from ..runtime.plan import lower\n"
            "    import netdsl.passes\n"
            "    from .. import bundle\n"
            "    from netdsl import model\n")
    found = violations("netdsl.analysis.report", path, text)
    assert [v.split(": ")[0].rsplit(":", 1)[1] for v in found] == ["3", "4", "5", "6"], found
    assert "netdsl.runtime.plan (runtime, rank 4)" in found[0]
    peer = violations("netdsl.frontend.expand", os.path.join(PKG, "frontend", "expand.py"),
                      "from ..analysis.infer import analyze\n")
    assert len(peer) == 1 and "analysis" in peer[0]
