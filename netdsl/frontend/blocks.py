"""Blocks: a call binds arguments to parameters (a label passed in becomes a Tensor), opens
the instance's naming scope and inlines the body; errors inside say where it was used."""
from __future__ import annotations

from ..errors import NetDSLError, did_you_mean
from . import ast as A
from . import limits
from .scope import POISON, Scope, Tensor, err, labels_in


class BlocksMixin:
    def block(self, name, args, span, val, scope, label):
        bdef, bctx = scope.fctx.blocks[name]
        self.block_calls += 1
        if self.block_calls > limits.MAX_LAYERS:     # blocks that build nothing can still call each other 2^n times
            raise err(f"blocks are used more than {limits.MAX_LAYERS:,} times while expanding this network", span,
                      "does a block call itself (or another) more than once per level? "
                      "the limits are in docs/LANGUAGE.md (Limits)")
        if len(self.loading) + scope.prefix.count(".") > 64:
            raise err(f"block '{name}' nests more than 64 deep: does it call itself?", span,
                      "a block may call itself only under an `if` that stops the recursion")
        pos, kw = self.eval_args(args, scope.env, scope.bindings) if args else ([], {})
        params = [p for p, _, _ in bdef.params]
        if len(pos) > len(params):
            raise err(f"block {name} takes {len(params)} arguments ({', '.join(params)}), got {len(pos)}", span,
                      f"write {name}({', '.join(params)})")
        env = dict(bctx.consts)
        given = {p: v for p, (v, _) in zip(params, pos)}
        for k, (v, sp) in kw.items():
            if k not in params:
                raise err(f"block {name} has no parameter '{k}'", sp,
                          did_you_mean(k, params) or f"its parameters are: {', '.join(params) or 'none'}")
            if k in given:
                raise err(f"'{k}' is given twice", sp, "give it either by position or by name")
            given[k] = v
        for p, default, psp in bdef.params:
            if p in given:
                env[p] = given[p]
            elif default is not None:
                env[p] = self.eval(default, env)
            else:
                raise err(f"block {name} needs '{p}'", span,
                          f"write {name}({', '.join(params)}) with values, or give {p} a default in the block")
        if label is None:
            label = str(scope.index)
            scope.index += 1
            while scope.prefix + label in self.g:
                label = str(scope.index)
                scope.index += 1
        tensors = {p: v.node for p, v in env.items() if isinstance(v, Tensor)}
        inner = Scope(scope.prefix + label + ".", False, dict(tensors), env, bctx)
        self.g.blocks[scope.prefix + label] = name
        self.g.block_spans[scope.prefix + label] = span
        try:
            local = {lbl for st in bdef.body for lbl, _ in labels_in(st)} | set(env)
            unknown = [d for st in bdef.body if isinstance(st, (A.Chain, A.Assign))
                       for d in self.unknown_ops(st, inner, local)]
            if unknown:                     # every unknown op of the body, not only the first
                raise NetDSLError(unknown)
            return self.block_body(bdef, bctx, env, inner, val)
        except NetDSLError as e:     # say where the block was used: the mistake may be in its arguments
            for d in e.diagnostics:
                used = [i for i, n in enumerate(d.notes) if n.startswith("in block ")]
                if len(used) >= 3:
                    del d.notes[used[-1]]     # keep the innermost uses and the outermost one
                d.notes.append(f"in block {name}, used at {span}")
            raise

    def block_body(self, bdef, bctx, env, inner, val):
        current = val
        for st in bdef.body:
            if current is POISON:
                return POISON
            if isinstance(st, A.Const):
                env[st.name] = self.eval(st.value, env)
            elif isinstance(st, A.DefaultArgs):
                self.set_default(st, bctx)
            elif isinstance(st, A.DefaultAlias):
                self.set_alias(st, bctx)
            elif isinstance(st, A.Assign):
                self.check_label(st.name, st.span, inner)
                current = self.chain(st.chain, current, inner)
                inner.bindings[st.name] = current
            elif isinstance(st, A.Chain):
                current = self.chain(st, current, inner)
        return current
