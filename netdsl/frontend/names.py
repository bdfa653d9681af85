"""Names: which op, block, alias or label a word names (op names are case-sensitive except
in the table notation), every unknown op of a statement found before expanding it, labels
checked, and the stable node names of docs/LANGUAGE.md (Naming rules)."""
from __future__ import annotations

from .. import ops
from ..errors import did_you_mean
from . import ast as A
from .scope import POISON, Consequence, err


class NamesMixin:
    def check_label(self, label, span, scope):
        if label in scope.bindings and scope.bindings[label] is not POISON:
            raise err(f"'{label}' is defined twice", span, "labels must be unique; rename one of them")
        # lowercase labels may reuse a lowercase op word (torchvision's `conv`, `bn`)
        if (ops.lookup(label) and not label.islower()) or label in scope.fctx.blocks:
            raise err(f"label '{label}' hides the op or block of the same name", span,
                      f"use a lowercase label such as {label.lower()}1")

    def check_undefined(self, p: A.Call, scope):
        """A bare word that is no op, block or alias: a label defined later, or not at all."""
        fctx = scope.fctx
        if p.args is not None or p.name in fctx.blocks or p.name in fctx.aliases or ops.lookup(p.name):
            return
        if fctx.later_labels.get(p.name, 0) >= p.span.line:
            raise err(f"'{p.name}' is defined later (line {fctx.later_labels[p.name]}); "
                      f"a reference can only point back to an earlier label", p.span,
                      f"move the line that defines '{p.name}' above this one")
        if case_insensitive(p.name) is not None:      # `relu`: an op in the wrong case
            raise unknown_op(p.name, p.span, fctx)
        if p.name[:1].islower():
            labels = [b for b, v in scope.bindings.items() if v is not POISON]
            raise err(f"undefined name '{p.name}': no label, input or op has that name", p.span,
                      did_you_mean(p.name, labels + ops.all_names() + list(fctx.blocks))
                      or "label a layer first (name:Conv(64, 3) or name = ...), then refer to it")

    def unknown_ops(self, st, scope, local=()):
        """A diagnostic for every op name in a statement that names nothing: no op, block,
        alias or label (`local`: the labels of the block body it is in). Run before expanding,
        so one typo does not hide the next."""
        fctx, out = scope.fctx, []
        todo = [st]
        while todo:
            x = todo.pop()
            if isinstance(x, A.Assign):
                todo.append(x.chain)
            elif isinstance(x, A.Chain):
                todo.extend(reversed(x.elements))
            elif isinstance(x, A.Element):
                todo.append(x.primary)
            elif isinstance(x, A.Group):
                todo.append(x.chain)
            elif isinstance(x, A.Parallel):
                todo.extend(reversed(x.branches))
            elif isinstance(x, A.Cond):
                todo.extend(c for c in (x.other, x.then) if c is not None)
            elif isinstance(x, (A.Call, A.Numbered, A.TableFC, A.TableConv)):
                name = x.word if isinstance(x, (A.TableFC, A.TableConv)) else x.name
                table = isinstance(x, (A.TableFC, A.TableConv))
                if name in fctx.blocks or name in fctx.aliases or ops.lookup(name):
                    continue
                if table and case_insensitive(name) is not None:
                    continue
                bare = isinstance(x, A.Call) and x.args is None
                if bare and (name in scope.bindings or name in fctx.later_labels or name in local or
                             (name[:1].islower() and case_insensitive(name) is None)):
                    continue                   # a label, or an undefined word: reported when expanded
                out.extend(unknown_op(name, x.span, fctx).diagnostics)
        return out

    def spec_or_error(self, name, span, fctx, allow_alias=True, table=False):
        """The op spec `name` names. Op names are case-sensitive (docs/LANGUAGE.md), except
        in the table notation (`3x3 conv, 64`, `fc 4096`), which the slides write in any case."""
        spec = ops.lookup(name)
        if spec is None and table:
            spec = case_insensitive(name)
        if spec is None:
            raise unknown_op(name, span, fctx)
        return spec

    def node_name(self, op, scope, label, explicit, span):
        if label is not None:
            name = label if explicit and not scope.prefix else scope.prefix + label
            if name in self.g:
                raise err(f"'{label}' is defined twice", span, "labels must be unique; rename one of them")
            return name
        if scope.seq:
            while True:
                name = f"{scope.prefix}{scope.index}"
                scope.index += 1
                if name not in self.g:
                    return name
        base = op.lower()
        while True:
            k = scope.counters.get(base, 0) + 1
            scope.counters[base] = k
            name = f"{scope.prefix}{base}{k}"
            if name not in self.g:
                return name


def case_insensitive(name):
    """The op whose name or alias is `name` in another case (`relu` -> ReLU), or None."""
    low = name.lower()
    return next((ops.lookup(n) for n in ops.all_names() if n.lower() == low), None)


def unknown_op(name, span, fctx):
    cands = ops.all_names() + list(fctx.blocks) + list(fctx.aliases)
    spec = case_insensitive(name)
    if spec is None and fctx.failed_imports:     # it may be a block of the file that did not import
        return Consequence()
    if spec is not None:
        return err(f"unknown op '{name}'", span,
                   f"did you mean '{spec.name}'? op names are case-sensitive; only the table notation "
                   f"(`3x3 conv, 64`, `fc 4096`) ignores case")
    return err(f"unknown op '{name}'", span,
               did_you_mean(name, cands) or "see `netdsl ops` for the list of ops, or define a block")
