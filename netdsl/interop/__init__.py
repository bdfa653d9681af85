"""Interop: networks and weights from other tools in, and out to them.

A stage beside the compiler, never inside the parser or the runtime:

    model.onnx ─┐                                   ┌─▶ model.net  (a file a person reads)
    x.cfg(+.weights) ─┼─▶ importer ─▶ netwriter.Net ─┤
                │                                   └─▶ state dict (netdsl names, PyTorch layouts)
    Graph + state dict ─▶ onnx_export ─▶ model.onnx

An importer turns a foreign file into a `netwriter.Net` (layers with netdsl op names and
arguments, in topological order) plus the weights of each layer; `netwriter.write` makes the
`.net` text and says which netdsl name each layer got, so the weights are renamed to match.
The caller (`netdsl.import_file`, `netdsl import`) parses the text back through the normal
pipeline: an import is checked exactly like a hand-written file.

`import_file(path)` picks the importer by the file's suffix. The optional packages an importer
needs (`onnx`) are imported inside it; without them it says how to install them.

Layering: this package sits with the compiler (it reads graphs, writes text and weights); it
never imports `netdsl.model` — the façade and the CLI call it.
"""
from __future__ import annotations

import os

from .common import Imported, InteropError

IMPORTERS = {                     # file suffix -> "module:function"
    ".onnx": "onnx_import:import_onnx",
    ".cfg": "darknet:import_darknet",
}


def import_file(path: str, weights: str | None = None, name: str | None = None) -> Imported:
    """Import a foreign model file (by suffix: .onnx, Darknet .cfg) as .net text + state dict."""
    import importlib
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in IMPORTERS:
        known = ", ".join(sorted(IMPORTERS))
        raise InteropError(f"{path}: cannot import a '{suffix or 'suffixless'}' file",
                           hint=f"netdsl imports {known} files")
    mod, fn = IMPORTERS[suffix].split(":")
    f = getattr(importlib.import_module(f"{__name__}.{mod}"), fn)
    return f(path, weights=weights, name=name) if weights is not None else f(path, name=name)


__all__ = ["Imported", "InteropError", "import_file", "IMPORTERS"]
