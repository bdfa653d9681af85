"""AST -> Graph: blocks inlined, repetition unrolled, names resolved.

Naming (stable, readable, PyTorch-compatible where the file labels layers):
- `conv1:Conv(...)` names a layer; inside a block instance names are prefixed
  with the instance's name (`layer2.0.conv1`).
- unlabeled ops are numbered per op in their scope: conv1, conv2, relu1;
  `Conv:3` (lecture numbering) names it conv3.
- a label on a group, a repetition or an `if` opens a sequence scope whose
  unlabeled members are numbered 0, 1, 2 (like nn.Sequential: `downsample.0`);
  unlabeled block instances are numbered 0, 1, 2 in any scope.

A chain starts from the current tensor (the previous statement's result,
initially the last declared input) or from a label/input named first.
Errors are collected per statement, so one run reports all of them.

One job per module: modules.py (files, imports, statements), chains.py, calls.py (op
calls, defaults, inputs), blocks.py, exprs.py (expressions), names.py (what a word
names, node names), scope.py (values and scopes), limits.py. This module joins them.
"""
from __future__ import annotations

import os

from ..errors import ErrorSink
from ..graph import Graph
from . import ast as A
from .blocks import BlocksMixin
from .calls import CallsMixin
from .chains import ChainsMixin
from .exprs import ExprsMixin
from .limits import MAX_LAYERS, MAX_MERGE_INPUTS, MAX_UNROLL  # noqa: F401  (re-exported)
from .modules import STDLIB, ModulesMixin  # noqa: F401
from .names import NamesMixin
from .scope import POISON, FileCtx, Tensor  # noqa: F401


class Expander(ModulesMixin, ChainsMixin, CallsMixin, BlocksMixin, ExprsMixin, NamesMixin):
    """AST -> Graph for one top-level file (and the files it imports)."""

    def __init__(self):
        self.g = Graph()
        self.sink = ErrorSink()
        self.loading: list[str] = []
        self.loaded: dict[str, FileCtx] = {}
        self.last_span = None             # the last chain, where an unmerged ending is reported
        self.unrolled = 0                 # repeat iterations so far: nested repeats of `_` build no nodes
        self.block_calls = 0              # block instances so far, also of blocks that build nothing


def expand_module(module: A.Module, path=None, partial=False):
    """Expand a module into a Graph. With partial=True, return (graph, diagnostics)
    instead of raising, so shape checking can still report on what did expand."""
    ex = Expander()
    fctx = FileCtx(module.source, os.path.abspath(path) if path else None)
    ex.run_module(module, fctx)
    ex.g.source_warnings = list(ex.sink.warnings)   # the file's own; analysis adds its own to
    ex.g.warnings = ex.sink.warnings                 # g.warnings, which the CLI prints
    if partial:
        return ex.g, ex.sink.diagnostics
    ex.sink.raise_if_any()
    return ex.g
