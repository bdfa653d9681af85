"""Chains: layers joined with '-', groups, repetition (refused before it would unroll past
the layer limit), parallel branches, `if`, references that start a chain, and table lines."""
from __future__ import annotations

from .. import ops
from . import ast as A
from . import limits
from .names import case_insensitive
from .scope import POISON, err


class ChainsMixin:
    def chain(self, chain: A.Chain, inp, scope):
        val = inp
        for i, el in enumerate(chain.elements):
            ref = self.as_reference(el, scope)
            if ref is None and val is POISON:     # (a chain that starts from a label is independent)
                return POISON
            if ref is not None:
                if i != 0:
                    raise err(f"'{el.primary.name}' is a label; a reference can only start a chain or a "
                              f"branch", el.span,
                              f"to merge it with this path write [ _ | {el.primary.name} ] - Concat (or Add)")
                val = ref
                continue
            if val is None:
                raise err("this chain has no input", el.span,
                          "declare one first (input x: 3x224x224) or start the chain with a label")
            val = self.element(el, val, scope)
        return val

    def as_reference(self, el: A.Element, scope):
        p = el.primary
        if isinstance(p, A.Call) and p.args is None and el.label is None and el.repeat is None:
            if p.name in scope.bindings:
                return scope.bindings[p.name]
        return None

    def element(self, el: A.Element, val, scope):
        n = 1
        if el.repeat is not None:
            n = self.eval(el.repeat, scope.env)
            if isinstance(n, float) and n.is_integer():      # LANGUAGE.md: `2.0` counts as `2`
                n = int(n)
            if isinstance(n, bool) or not isinstance(n, int) or n < 0 or n > limits.MAX_REPEAT:
                raise err(f"a repeat count must be a whole number from 0 to {limits.MAX_REPEAT}, got {n!r}",
                          el.repeat.span, "write e.g. (Conv(64, 3, pad=1)-ReLU)*2")
            self.unrolled += n
            if self.unrolled > limits.MAX_UNROLL:
                raise err(f"the repeats unroll more than {limits.MAX_UNROLL:,} times", el.repeat.span,
                          "check the repeat counts, and repeats nested inside repeats")
        if el.label is None:
            p = el.primary
            for i in range(n):
                if isinstance(p, A.Numbered) and i:   # Conv:1*3 -> conv1, conv2, conv3
                    p = A.Numbered(p.span, p.name, p.number + 1)
                before = len(self.g)
                val = self.primary(p, val, scope, None)
                if i == 0 and n > 1:
                    self.check_unroll(el, n, len(self.g) - before)
            return val
        label = el.label
        self.check_label(label, el.label_span, scope)
        if label.isdigit():                   # `2:...`: unlabelled members after it go on from 3
            scope.index = max(scope.index, int(label) + 1)
        p = el.primary
        single = el.repeat is None and isinstance(p, (A.Call, A.TableConv, A.TableFC))
        if single:
            val = self.primary(p, val, scope, label)
        else:
            sub = scope.child_seq(label)
            for i in range(n):
                before = len(self.g)
                val = self.primary(p, val, sub, None)
                if i == 0 and n > 1:
                    self.check_unroll(el, n, len(self.g) - before)
        scope.bindings[label] = val
        return val

    def check_unroll(self, el, n, per_copy):
        """After the first copy of a repeat: refuse it, before building the other n − 1 copies,
        when they would take the network past limits.MAX_LAYERS (nested repeats multiply)."""
        total = len(self.g) + (n - 1) * per_copy
        if total > limits.MAX_LAYERS:
            raise err(f"this repeat makes {n:,} copies of {per_copy:,} layer{'s' if per_copy != 1 else ''}: the "
                      f"network would have {total:,} layers, more than netdsl's limit of {limits.MAX_LAYERS:,}",
                      el.repeat.span, "check the repeat counts (repeats nested in repeats multiply); "
                      "the limits are in docs/LANGUAGE.md (Limits)")

    def primary(self, p, val, scope, label):
        if isinstance(p, A.Identity):
            return val
        if isinstance(p, A.Group):
            return self.chain(p.chain, val, scope)
        if isinstance(p, A.Parallel):
            if isinstance(val, tuple):
                raise err("parallel branches must be merged before branching again", p.span,
                          "put - Concat or - Add between the two groups")
            outs = []
            for br in p.branches:
                o = self.chain(br, val, scope)
                if o is POISON:
                    return POISON
                if isinstance(o, tuple):
                    raise err("a branch ends in unmerged branches", br.span, "merge them inside the branch")
                outs.append(o)
            return tuple(outs)
        if isinstance(p, A.Cond):
            c = self.eval(p.cond, scope.env)
            if not isinstance(c, (bool, int)):
                raise err(f"an if condition must be true or false, got {c!r}", p.cond.span,
                          "write a comparison of constants or block parameters, e.g. if s > 1 { ... }")
            br = p.then if c else p.other
            return val if br is None else self.chain(br, val, scope)
        if isinstance(p, A.Numbered):
            return self.call(p.name, None, p.span, val, scope, label or f"{p.name.lower()}{p.number}",
                             explicit=True)
        if isinstance(p, A.TableConv):
            return self.table_conv(p, val, scope, label)
        if isinstance(p, A.TableFC):
            args = A.Args([A.Num(p.span, p.n)], [])
            word, fctx = p.word, scope.fctx
            if word not in fctx.aliases and word not in fctx.blocks and ops.lookup(word) is None \
                    and case_insensitive(word) is not None:     # the table notation ignores case
                word = case_insensitive(word).name
            return self.call(word, args, p.span, val, scope, label)
        if isinstance(p, A.Call):
            if p.name in scope.bindings and p.args is None:
                raise err(f"'{p.name}' is a label; a reference can only start a chain or a branch", p.span,
                          f"to merge it with this path write [ _ | {p.name} ] - Concat (or Add)")
            self.check_undefined(p, scope)
            return self.call(p.name, p.args, p.span, val, scope, label)
        raise err("unsupported element", getattr(p, "span", None))

    def table_conv(self, p: A.TableConv, val, scope, label):
        word = p.word.lower()
        spec = self.spec_or_error(p.word, p.span, scope.fctx, table=True)
        names = [a.name for a in spec.attrs if a.name != "kernel"]
        pos, kw = [], {"kernel": (p.kernel, p.span)}
        for key, v, sp in p.items:
            if key is None:
                pos.append((v, sp))
            else:
                kw[key] = (v, sp)
        if len(pos) > len(names):
            raise err(f"too many numbers for {word}", p.span, f"the table form is e.g. 3x3 {word}, 64")
        for (v, sp), nm in zip(pos, names):
            kw[nm] = (v, sp)
        return self.make_op(spec, [], kw, p.span, val, scope, label, written=word)
