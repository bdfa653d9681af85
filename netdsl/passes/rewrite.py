"""The rewrite engine every pass is built on, and the report it keeps.

A pass is a list of rules `(pattern, rewrite)`. `pattern(ctx, node)` is a cheap
structural test (flags, capabilities, arity); `rewrite(ctx, node)` checks the
legality conditions, performs the rewrite on the pass's private working copy
and returns a `Fired` (what to report), or None when it must not fire. Rules
are applied over the nodes in topological order, sweep after sweep, until a
whole sweep changes nothing (a fixed point).

Purity: `Ctx` deep-copies the graph and takes a new dict of weights, so a pass
never mutates its arguments; arrays are replaced, never written in place.
Weights may be None (front-end use): rules then rewrite the graph and only the
metadata (shapes, params) follow, through `analyze` at the end of the pass.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .. import ops
from ..analysis.infer import analyze
from ..errors import Span
from ..graph import Graph, Node

MAX_SWEEPS = 10_000     # a rule set that never settles is a bug; fail loudly instead of hanging


@dataclass
class Fired:
    """What a rule did: a one-line message, the node it names, the node whose source line to cite."""
    message: str
    node: str
    origin: Node | None = None


@dataclass
class Record:
    pass_name: str
    message: str
    node: str
    span: Span | None = None

    @property
    def line(self) -> int | None:
        return self.span.line if self.span else None

    def where(self, main: str | None = None) -> str:
        """'line 12', or 'resnet.net line 14' for a line in another file than `main`."""
        if self.span is None:
            return ""
        src = self.span.source.name
        if main is not None and src != main:
            return f"{src.replace(chr(92), '/').rsplit('/', 1)[-1]} line {self.span.line}"
        return f"line {self.span.line}"

    def render(self, main=None) -> str:
        where = self.where(main)
        return f"{self.message} ({where})" if where else self.message


class Report:
    """Every rewrite the passes made, in order, with the pass that made it."""

    def __init__(self, main_source: str | None = None):
        self.records: list[Record] = []
        self.passes: list[str] = []         # the passes that ran, in order
        self.main_source = main_source      # the model's own file: its lines print as 'line N'

    def __iter__(self):
        return iter(self.records)

    def __len__(self):
        return len(self.records)

    def totals(self) -> dict:
        """Rewrites per pass, for every pass that ran (0 included), in pass order."""
        counts = Counter(r.pass_name for r in self.records)
        return {p: counts.get(p, 0) for p in self.passes}

    def render(self, totals=True) -> list[str]:
        """'BN folded into layer1.0.conv1 (line 12)' per rewrite, then one total line per pass."""
        lines = [r.render(self.main_source) for r in self.records]
        if totals:
            if not self.passes:
                lines.append("no passes ran (-O0)")
            for p, n in self.totals().items():
                lines.append(f"{p}: {n} rewrite{'s' if n != 1 else ''}")
        return lines

    def __str__(self):
        return "\n".join(self.render())


class Ctx:
    """A pass's working copy and the questions its rules ask about it."""

    def __init__(self, graph: Graph, weights: dict | None, pass_name: str):
        self.g = graph.copy()
        self.w = None if weights is None else dict(weights)
        self.pass_name = pass_name
        self.records: list[Record] = []
        self._topo = None

    # -- reading
    def spec(self, name):
        return ops.get(self.g[name].op)

    def consumers(self, name) -> list[str]:
        return self.g.succs(name)

    def is_output(self, name) -> bool:
        return name in self.g.outputs.values()

    def private(self, name) -> bool:
        """Only one node reads `name`'s value and it is not a graph output: fusing into it is safe."""
        return len(self.consumers(name)) == 1 and not self.is_output(name)

    def slot(self, src, dst) -> int:
        return self.g.g.edges[src, dst]["slot"]

    def position(self, name) -> int:
        """Index of `name` in the current deterministic topological (execution) order."""
        if self._topo is None:
            self._topo = {n: i for i, n in enumerate(self.g.topo())}
        return self._topo[name]

    def weights_of(self, name) -> dict | None:
        """{param: array} of a node, or None in weightless mode."""
        if self.w is None:
            return None
        node = self.g[name]
        return {p: self.w[f"{name}.{p}"] for p in list(node.params) + list(node.buffers)}

    # -- writing (each invalidates the cached order)
    def changed(self):
        self._topo = None

    def set_weights(self, name, new: dict | None):
        """Give a node new parameters (float64 from the specs, rounded once to float32 here;
        None in weightless mode) after its attributes changed, and refresh its metadata."""
        if self.w is not None:
            self._drop_weights(name)
            for p, arr in new.items():
                self.w[f"{name}.{p}"] = np.ascontiguousarray(arr, dtype=np.float32)
        node, spec = self.g[name], self.spec(name)
        shapes = [self.g[p].shape for p in self.g.preds(name)]
        node.params = dict(spec.params(node.attrs, shapes))
        node.buffers = dict(spec.buffers(node.attrs, shapes))
        if self.w is not None:
            assert {f"{name}.{p}" for p in list(node.params) + list(node.buffers)} <= self.w.keys(), name

    def _drop_weights(self, name):
        # by the node's own parameter names: a prefix test would also hit a node "conv1.x"
        if self.w is not None:
            node = self.g[name]
            for p in list(node.params) + list(node.buffers):
                self.w.pop(f"{name}.{p}", None)

    def remove(self, name):
        """Delete a node that nothing reads any more, with its weights."""
        assert not self.consumers(name) and not self.is_output(name), name
        self._drop_weights(name)
        self.g.remove(name)
        self.changed()

    def can_bypass(self, name, to) -> bool:
        """Can `name`'s readers read `to` instead? Not when one already reads `to`: the graph
        holds one edge per pair of nodes, so Add(x, Dropout(x)) cannot become Add(x, x)."""
        return not any(self.g.g.has_edge(to, c) for c in self.consumers(name))

    def bypass(self, name, to):
        """Make every reader of `name` (and every output naming it) use `to`, keeping input
        slots, then delete `name`. The caller has checked can_bypass."""
        for c in self.consumers(name):
            self.g.connect(to, c, self.slot(name, c))
        self.g.g.remove_edges_from([(name, c) for c in self.consumers(name)])
        for k, v in self.g.outputs.items():
            if v == name:
                self.g.outputs[k] = to
        self.remove(name)


Rule = tuple[Callable[[Ctx, Node], bool], Callable[[Ctx, Node], "Fired | None"]]


def run_rules(graph: Graph, weights, rules: list[Rule], pass_name: str):
    """Apply `rules` to a fixed point on a copy; return (graph, weights, records).

    The result is re-analyzed, so shapes, params and n_params describe the new graph."""
    ctx = Ctx(graph, weights, pass_name)
    for _ in range(MAX_SWEEPS):
        fired = False
        for name in ctx.g.topo():
            for pattern, rewrite in rules:
                if name not in ctx.g:
                    break
                node = ctx.g[name]
                if not pattern(ctx, node):
                    continue
                f = rewrite(ctx, node)
                if f is not None:
                    ctx.changed()
                    fired = True
                    origin = f.origin if f.origin is not None else node
                    ctx.records.append(Record(pass_name, f.message, f.node, origin.span))
        if not fired:
            break
    else:
        raise RuntimeError(f"pass {pass_name} did not reach a fixed point")
    if ctx.records:
        analyze(ctx.g)
    return ctx.g, ctx.w, ctx.records


# ---------------------------------------------------------------- pattern helpers

def flagged(*flags):
    """Pattern: the node's op carries every one of `flags`."""
    want = frozenset(flags)
    return lambda ctx, node: want <= ops.get(node.op).flags


def capable(attr):
    """Pattern: the node's op spec has a true capability attribute (channel_affine, ...)."""
    return lambda ctx, node: bool(getattr(ops.get(node.op), attr))


def any_node(ctx, node):
    return True


def display(op: str) -> str:
    """The name the lectures use in messages: an upper-case abbreviation when the op has one
    (BN for BatchNorm, GAP, FC), else its own name."""
    spec = ops.get(op)
    short = [a for a in spec.aliases if a.isupper() and len(a) < len(spec.name)]
    return min(short, key=len) if short else spec.name
