"""Expressions: arguments, constants, repeat counts and conditions evaluated in an
environment of constants and block parameters; a bare word is itself (`same`, `none`)."""
from __future__ import annotations

from . import ast as A
from .scope import POISON, Consequence, Tensor, err


class ExprsMixin:
    def eval_args(self, args: A.Args, env, tensors=None):
        """Evaluate call arguments. With `tensors` (the caller's labels), a bare label
        becomes a Tensor argument (only blocks take those)."""
        def value(e):
            if tensors and isinstance(e, A.Name) and e.id in tensors and e.id not in env:
                node = tensors[e.id]
                if node is POISON:
                    raise Consequence()
                if not isinstance(node, str):
                    raise err(f"'{e.id}' is not a single layer", e.span, "merge its branches first")
                return Tensor(node, e.id)
            return self.eval(e, env)
        pos = [(value(e), e.span) for e in args.pos]
        kw = {}
        for k, e, sp in args.kw:
            if k in kw:
                raise err(f"argument '{k}' is given twice", sp, "remove one of them")
            kw[k] = (value(e), sp)
        return pos, kw

    def eval(self, e, env):
        if isinstance(e, A.Num):
            return e.value
        if isinstance(e, A.Str):
            return e.value
        if isinstance(e, A.Name):
            if e.id in env:
                if env[e.id] is POISON:       # its definition failed, and said so
                    raise Consequence()
                return env[e.id]
            if e.id in ("true", "True"):
                return True
            if e.id in ("false", "False"):
                return False
            if e.id in ("none", "None"):
                return "none"               # a word like `same`: `act=none` and `stride=none` read it
            return e.id                     # a bare word such as `same` or `max`
        if isinstance(e, A.Tuple):
            return tuple(self.eval(x, env) for x in e.items)
        if isinstance(e, A.Unary):
            v = self.eval(e.operand, env)
            if e.op == "not":
                return not v
            self.need_number(v, e.operand)
            return -v
        if isinstance(e, A.BoolOp):
            vals = [self.eval(x, env) for x in e.items]
            return all(vals) if e.op == "and" else any(vals)
        if isinstance(e, A.Ternary):
            return self.eval(e.then, env) if self.eval(e.cond, env) else self.eval(e.other, env)
        if isinstance(e, A.BinOp):
            a, b = self.eval(e.left, env), self.eval(e.right, env)
            if e.op in ("==", "!="):
                return (a == b) if e.op == "==" else (a != b)
            self.need_number(a, e.left)
            self.need_number(b, e.right)
            try:
                if e.op == "+":
                    return a + b
                if e.op == "-":
                    return a - b
                if e.op == "*":
                    return a * b
                if e.op == "/":
                    r = a / b
                    return int(r) if isinstance(r, float) and r.is_integer() and isinstance(a, int) \
                        and isinstance(b, int) else r
                if e.op == "//":
                    return a // b
                if e.op == "%":
                    return a % b
                return {"<": a < b, ">": a > b, "<=": a <= b, ">=": a >= b}[e.op]
            except ZeroDivisionError:
                raise err("division by zero", e.span, "the divisor is 0 here; check the constants or "
                          "block arguments it uses")
            except OverflowError:
                raise err("number too large", e.span)
        raise err("cannot evaluate this expression", getattr(e, "span", None))

    def need_number(self, v, e):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            if isinstance(v, Tensor):
                raise err(f"'{v.label}' is a layer, not a number", e.span,
                          "a layer passed to a block can start a chain or a branch there, e.g. [ _ | skip ]")
            if isinstance(e, A.Str):
                raise err(f"expected a number, got the string \"{v}\"", e.span, "remove the quotes")
            if isinstance(v, str):
                raise err(f"undefined name '{v}'", e.span,
                          "define it with `const NAME = value` or as a block parameter")
            raise err(f"expected a number, got {v!r}", e.span)
        if isinstance(v, int) and abs(v) > 10**15:
            raise err("number too large", e.span)
