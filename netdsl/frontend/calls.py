"""Calls: an op call's arguments bound to its spec (with the file's defaults), arity and
merge width checked, the node added; `default` and alias statements; inputs and their
shape order (`(hwc)`, and the warning for a shape that looks like HxWxC)."""
from __future__ import annotations

from .. import ops
from ..errors import did_you_mean
from ..ops.attrs import OpError
from . import ast as A
from . import limits
from .scope import POISON, Consequence, Tensor, err


class CallsMixin:
    def set_default(self, st: A.DefaultArgs, fctx):
        spec = self.spec_or_error(st.op, st.span, fctx, allow_alias=False)
        vals = self.eval_args(st.args, fctx.consts)
        pos, kw = vals
        d = dict(fctx.defaults.get(spec.name, {}))
        if len(pos) > len(spec.attrs):
            raise err(f"{spec.name} takes at most {len(spec.attrs)} positional arguments", st.span, signature(spec))
        for a, (v, _) in zip(spec.attrs, pos):
            d[a.name] = v
        for k, (v, sp) in kw.items():
            if k not in {a.name for a in spec.attrs}:
                raise err(f"{spec.name} has no argument '{k}'", sp,
                          did_you_mean(k, [a.name for a in spec.attrs]))
            d[k] = v
        try:   # validate what can be validated without the required ones
            for a in spec.attrs:
                if a.name in d:
                    a.kind(d[a.name], a.name)
        except OpError as e:
            raise err(e.message, st.span, e.hint)
        fctx.defaults[spec.name] = d

    def set_alias(self, st: A.DefaultAlias, fctx):
        if ops.lookup(st.target) is None and st.target not in fctx.blocks:
            raise err(f"unknown op or block '{st.target}'", st.span,
                      did_you_mean(st.target, ops.all_names() + list(fctx.blocks))
                      or "an alias names an op or a block defined above it: default act = ReLU")
        fctx.aliases[st.name] = (st.target, st.args, fctx)

    def add_input(self, st: A.InputStmt, scope):
        if st.name in self.g:
            raise err(f"'{st.name}' is defined twice", st.span, "give each input its own name")
        pos, kw = self.eval_args(st.args, scope.env) if st.args else ([], {})
        spec = ops.get("Input")
        shape = tuple(st.shape)
        if st.layout == "hwc":
            if len(shape) != 3:
                raise err(f"(hwc) describes an image shape HxWxC, but {_dims(shape)} has {len(shape)} "
                          f"size{'s' if len(shape) != 1 else ''}", st.shape_span or st.span,
                          "write (hwc) only after a shape such as 32x32x3")
            shape = (shape[2], shape[0], shape[1])
        elif st.layout is None and _looks_hwc(shape):
            c, h, w = shape[2], shape[0], shape[1]
            self.sink.warn(f"input shape {_dims(shape)} reads as {shape[0]} channels of {shape[1]}x{shape[2]} "
                           f"pixels: did you mean {c}x{h}x{w}? netdsl shapes are CxHxW",
                           st.shape_span or st.span,
                           f"write `input {st.name}: {c}x{h}x{w}`, or `input {st.name}: {_dims(shape)} (hwc)` to "
                           f"keep the slide's order; `(chw)` keeps {shape[0]} channels and silences this warning")
        try:
            attrs = spec.bind([shape] + pos, {k: v for k, (v, _) in kw.items()})
        except OpError as e:
            raise err(e.message, st.span, e.hint or "an input is written `input x: 3x224x224`, optionally with "
                      "(mean=(...), std=(...))")
        self.g.add(st.name, "Input", attrs, st.span)
        scope.bindings[st.name] = st.name
        return st.name

    def call(self, name, args, span, val, scope, label, explicit=False):
        fctx = scope.fctx
        if name in fctx.aliases:
            if fctx.aliases[name] is POISON:      # the alias's own line failed, and said so
                raise Consequence()
            target, aargs, actx = fctx.aliases[name]
            merged = A.Args(list(aargs.pos) if aargs else [], list(aargs.kw) if aargs else [])
            if args:
                # positional args at the call replace the alias's positional ones
                merged.pos = list(args.pos) + merged.pos[len(args.pos):]
                kwnames = {k for k, _, _ in args.kw}
                merged.kw = [kv for kv in merged.kw if kv[0] not in kwnames] + list(args.kw)
            name, args = target, merged
        if name in fctx.blocks:
            return self.block(name, args, span, val, scope, label)
        spec = self.spec_or_error(name, span, fctx)
        pos, kw = self.eval_args(args, scope.env) if args else ([], {})
        return self.make_op(spec, pos, kw, span, val, scope, label, explicit, written=name)

    def make_op(self, spec, pos, kw, span, val, scope, label, explicit=False, written=None):
        fctx = scope.fctx
        defaults = dict(fctx.defaults.get(spec.name, {}))
        arg_spans = {}
        for v, sp in pos + list(kw.values()):
            if isinstance(v, Tensor):
                raise err(f"'{v.label}' is a layer, not a value for {spec.name}", sp,
                          "a layer passed to a block can start a chain or a branch there, e.g. [ _ | skip ]")
        for a, (v, sp) in zip(spec.attrs, pos):
            arg_spans[a.name] = sp
        for k, (v, sp) in kw.items():
            arg_spans[k] = sp
        try:
            attrs = spec.bind([v for v, _ in pos], {k: v for k, (v, _) in kw.items()}, defaults)
        except OpError as e:
            raise err(e.message, arg_spans.get(e.attr, span), e.hint or signature(spec))
        ins = list(val) if isinstance(val, tuple) else [val]
        arity = spec.arity
        if arity is None:
            if len(ins) < 2:
                raise err(f"{spec.name} merges two or more inputs but gets one", span,
                          f"branch first: [ _ | Conv(64, 3, pad=1) ] - {spec.name}")
            if len(ins) > limits.MAX_MERGE_INPUTS:     # the merge kernels' fixed bound (csrc/kernels/merge.h)
                raise err(f"{spec.name} gets {len(ins)} inputs; a merge takes at most {limits.MAX_MERGE_INPUTS}", span,
                          f"merge in steps: {spec.name} groups of at most {limits.MAX_MERGE_INPUTS} branches, "
                          f"then {spec.name} the groups")
        elif isinstance(arity, tuple):
            if not arity[0] <= len(ins) <= arity[1]:
                raise err(f"{spec.name} takes {arity[0]} to {arity[1]} inputs, gets {len(ins)}", span)
        elif len(ins) != arity:
            if len(ins) > 1:
                raise err(f"{spec.name} takes one input, but {len(ins)} parallel branches arrive here", span,
                          "merge the branches first: [ ... | ... ] - Concat (or Add)")
            raise err(f"{spec.name} takes {arity} inputs", span)
        if len(set(ins)) < len(ins):     # the graph has one edge per pair of nodes
            raise err(f"{spec.name} gets the same tensor on more than one input", span,
                      "put a layer on all but one of the branches; [ _ | Identity ] copies a tensor")
        name = self.node_name(written or spec.name, scope, label, explicit, span)
        if len(self.g) >= limits.MAX_LAYERS:
            raise err(f"the network has more than {limits.MAX_LAYERS:,} layers, netdsl's limit", span,
                      "check the repeat counts and recursive blocks; the limits are in docs/LANGUAGE.md (Limits)")
        self.g.add(name, spec.name, attrs, span, arg_spans, scope.prefix.rstrip("."))
        for slot, src in enumerate(ins):
            self.g.connect(src, name, slot)
        return name


def _dims(shape):
    return "x".join(str(s) for s in shape)


def _looks_hwc(shape):
    """32x32x3, 28x28x1, 64x64x4: the slide's HxWxC order, read by netdsl as CxHxW."""
    return len(shape) == 3 and shape[2] in (1, 3, 4) and shape[0] >= 4 * shape[2] and shape[1] >= 4 * shape[2] \
        and shape[0] >= 8


def signature(spec):
    """`Conv(out_channels, kernel, stride=1, ...)`: the hint for a bad argument without one of its own."""
    from ..ops.attrs import fmt
    shown = [a.name if a.required else f"{a.name}={fmt(a.default) if a.default is not None else 'none'}"
             for a in spec.attrs[:5]]
    more = ", ..." if len(spec.attrs) > 5 else ""
    return f"{spec.name} is written {spec.name}({', '.join(shown)}{more})"
