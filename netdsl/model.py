"""Model: a parsed, expanded and shape-checked network, the object users hold.

    m = netdsl.load("resnet18")       # zoo name, .net path
    m.graph, m.output_shapes, m.summary()

The C runtime attaches to this object (calling `m(x)`); this module only
knows the front end.
"""
from __future__ import annotations

import gc
import os

from .analysis.infer import analyze, totals
from .errors import NetDSLError, Source
from .frontend.expand import expand_module
from .frontend.parser import parse_source
from .graph import Graph

ZOO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "zoo")


class Model:
    def __init__(self, graph: Graph, name: str = "model", path: str | None = None):
        self.graph = graph
        self.name = name
        self.path = path

    @property
    def input_shapes(self) -> dict:
        return {n: self.graph[n].shape for n in self.graph.inputs}

    @property
    def output_shapes(self) -> dict:
        return {k: self.graph[v].shape for k, v in self.graph.outputs.items()}

    @property
    def output_shape(self):
        shapes = list(self.output_shapes.values())
        return shapes[0] if len(shapes) == 1 else self.output_shapes

    def totals(self) -> dict:
        return totals(self.graph)

    @property
    def total_params(self) -> int:
        return self.totals()["total_params"]

    def summary(self, depth=None):
        from .analysis.report import summary_text
        return summary_text(self, depth)

    def summary_dict(self, depth=None):
        from .analysis.report import summary_dict
        return summary_dict(self, depth)

    def explain(self):
        from .analysis.report import explain_text
        return explain_text(self)

    def __repr__(self):
        t = self.totals()
        return f"<netdsl.Model {self.name}: {len(self.graph)} layers, {t['total_params']:,} params>"


def zoo_names() -> list[str]:
    return sorted(f[:-4] for f in os.listdir(ZOO) if f.endswith(".net"))


def parse(text: str, name: str = "<string>", path: str | None = None) -> Model:
    """Parse .net source text into a checked Model (raises NetDSLError)."""
    # The front end allocates many small objects and frees none until it is done;
    # the cyclic GC would rescan them again and again (quadratic on long chains).
    enabled = gc.isenabled()
    gc.disable()
    try:
        module = parse_source(Source(name, text))
        graph, diags = expand_module(module, path, partial=True)
        analyze(graph, diags)
    finally:
        if enabled:
            gc.enable()
    base = os.path.splitext(os.path.basename(name))[0] if name != "<string>" else "model"
    return Model(graph, base, path)


def resolve_path(path_or_name: str) -> str:
    if os.path.exists(path_or_name):
        return path_or_name
    zoo = os.path.join(ZOO, path_or_name.lower() + ".net")
    if os.sep not in path_or_name and not path_or_name.endswith(".net") and os.path.exists(zoo):
        return zoo
    from .errors import did_you_mean
    hint = did_you_mean(path_or_name, zoo_names())
    raise NetDSLError(f"no such file or zoo model: {path_or_name}",
                      hint=hint or f"zoo models: {', '.join(zoo_names())}")


def load_source(path_or_name: str) -> Model:
    path = resolve_path(path_or_name)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise NetDSLError(f"cannot read {path}: {e}", hint="is it a .net text file?")
    shown = path if not path.startswith(ZOO) else os.path.join("zoo", os.path.basename(path))
    return parse(text, shown, path)
