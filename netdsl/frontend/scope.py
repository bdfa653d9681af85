"""What the expander knows while it walks a file: the values a statement can have
(a node name, a tuple of branch ends, POISON after an error, a Tensor passed to a block),
what one file defines (FileCtx) and a naming scope (Scope); the labels a statement defines."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import Diagnostic, NetDSLError, Source
from . import ast as A


class _Poison:
    """The value of a statement that already failed: later uses stay silent."""


@dataclass(frozen=True)
class Tensor:
    """A layer passed to a block by label (`Up(256, skip=enc3)`): inside the
    block the parameter names that layer, as a label would."""
    node: str
    label: str


POISON = _Poison()


def err(msg, span, hint=None, notes=()):
    return NetDSLError([Diagnostic(msg, span, hint, list(notes))])


class Consequence(NetDSLError):
    """A failure that follows from an error already reported (a constant whose definition
    failed, a block from a file that did not import): it stops the statement and says nothing."""

    def __init__(self):
        super().__init__([])


@dataclass
class FileCtx:
    """What one .net file defines: constants, defaults, aliases, blocks."""
    source: Source
    path: str | None
    consts: dict = field(default_factory=dict)       # name -> value
    defaults: dict = field(default_factory=dict)     # op name -> {attr: value}
    aliases: dict = field(default_factory=dict)      # name -> (target, Args|None, FileCtx, env)
    blocks: dict = field(default_factory=dict)       # name -> (BlockDef, FileCtx)
    later_labels: dict = field(default_factory=dict)  # label -> line, for "defined later" hints
    failed_imports: list = field(default_factory=list)  # targets that did not import: names may be theirs


class Scope:
    """A naming scope: a prefix, and counters for unnamed members."""

    def __init__(self, prefix, seq, bindings, env, fctx):
        self.prefix, self.seq = prefix, seq
        self.bindings = bindings          # label -> node name (shared within a body)
        self.env = env                    # constants + block parameters
        self.fctx = fctx
        self.counters: dict[str, int] = {}
        self.index = 0

    def child_seq(self, label):
        return Scope(self.prefix + label + ".", True, self.bindings, self.env, self.fctx)


def poison_labels(st, bindings):
    """Bind every label a failed statement would have defined to POISON, so each later use of
    it is silent: the one mistake is reported once, where it is."""
    for lbl, _ in labels_in(st):
        bindings.setdefault(lbl, POISON)


def labels_in(st):
    """Every label a top-level statement defines (for 'defined later' messages); no recursion."""
    todo = [st]
    while todo:
        x = todo.pop()
        if isinstance(x, A.Assign):
            yield x.name, x.span.line
            todo.append(x.chain)
        elif isinstance(x, A.Chain):
            todo.extend(x.elements)
        elif isinstance(x, A.Element):
            if x.label is not None:
                yield x.label, x.label_span.line
            todo.append(x.primary)
        elif isinstance(x, A.Group):
            todo.append(x.chain)
        elif isinstance(x, A.Parallel):
            todo.extend(x.branches)
        elif isinstance(x, A.Cond):
            todo.extend(c for c in (x.then, x.other) if c is not None)
