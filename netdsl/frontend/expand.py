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
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

from .. import ops
from ..errors import Diagnostic, ErrorSink, NetDSLError, Source, Span, did_you_mean
from ..graph import Graph
from ..ops.base import OpError
from . import ast as A
from .parser import parse_source

STDLIB = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "stdlib")
MAX_LAYERS = 100_000        # layers in one expanded network (docs/LANGUAGE.md, Limits)
MAX_MERGE_INPUTS = 128      # inputs of one Concat / Add / Mul
MAX_UNROLL = 1_000_000      # repeat iterations in all, also of repeats that build nothing (`_*n`)


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


class Expander:
    def __init__(self):
        self.g = Graph()
        self.sink = ErrorSink()
        self.loading: list[str] = []
        self.loaded: dict[str, FileCtx] = {}
        self.last_span = None             # the last chain, where an unmerged ending is reported
        self.unrolled = 0                 # repeat iterations so far: nested repeats of `_` build no nodes
        self.block_calls = 0              # block instances so far, also of blocks that build nothing

    # ------------------------------------------------------------------ files
    def load_file(self, path, span=None) -> FileCtx:
        path = os.path.abspath(path)
        if path in self.loaded:
            return self.loaded[path]
        if path in self.loading:
            raise err(f"import cycle: {' -> '.join(os.path.basename(p) for p in self.loading + [path])}",
                      span, "remove one of the imports; blocks may be defined in a third file")
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except OSError as e:
            raise err(f"cannot read {path}: {e.strerror}", span, "check the path (relative to the importing file)")
        except UnicodeDecodeError as e:
            raise err(f"cannot read {path}: it is not UTF-8 text (byte {e.start})", span,
                      "import only .net text files")
        self.loading.append(path)
        try:
            module = parse_source(Source(path, text))
            fctx = FileCtx(module.source, path)
            self.run_module(module, fctx, library=True)
        finally:
            self.loading.pop()
        self.loaded[path] = fctx
        return fctx

    def do_import(self, st: A.Import, fctx: FileCtx):
        if st.is_path:
            base = os.path.dirname(fctx.path) if fctx.path else os.getcwd()
            path = os.path.join(base, st.target)
        else:
            path = os.path.join(STDLIB, *st.target.split(".")) + ".net"
            if not os.path.exists(path):
                names = sorted(f[:-4] for f in os.listdir(STDLIB) if f.endswith(".net"))
                raise err(f"no standard library module '{st.target}'", st.span,
                          did_you_mean(st.target, names) or f"available: {', '.join(names)}; "
                          f"import a file of your own with import \"path/to/file.net\"")
        if not os.path.exists(path):
            raise err(f"cannot import {st.target}: no such file ({path})", st.span,
                      "paths are relative to the importing file")
        other = self.load_file(path, st.span)
        fctx.consts.update(other.consts)
        fctx.blocks.update(other.blocks)
        fctx.aliases.update(other.aliases)

    # ------------------------------------------------------------------ module
    def run_module(self, module: A.Module, fctx: FileCtx, library=False):
        bindings: dict = {}
        scope = Scope("", False, bindings, fctx.consts, fctx)
        current = None
        outputs = None
        for st in module.stmts:
            for lbl, line in _labels_in(st):
                fctx.later_labels.setdefault(lbl, line)
        for st in module.stmts:
            if not library and isinstance(st, (A.Chain, A.Assign)):
                unknown = self.unknown_ops(st, scope)
                if unknown:            # every unknown op of the file is reported, not only the first
                    self.sink.diagnostics.extend(unknown)
                    current = POISON
                    _poison_labels(st, bindings)
                    self.last_span = st.span
                    continue
            failed = False
            try:
                if isinstance(st, A.Import):
                    self.do_import(st, fctx)
                elif isinstance(st, A.Const):
                    if st.name in fctx.consts and not library:
                        raise err(f"constant '{st.name}' is defined twice", st.span, "rename one of them")
                    fctx.consts[st.name] = self.eval(st.value, fctx.consts)
                elif isinstance(st, A.DefaultArgs):
                    self.set_default(st, fctx)
                elif isinstance(st, A.DefaultAlias):
                    self.set_alias(st, fctx)
                elif isinstance(st, A.BlockDef):
                    seen_params = set()
                    for pname, _, psp in st.params:
                        if pname in seen_params:
                            self.sink.add(f"block '{st.name}' declares parameter '{pname}' twice", psp,
                                          "give each parameter its own name")
                        seen_params.add(pname)
                    if st.name in fctx.blocks and fctx.blocks[st.name][0] is not st:
                        self.sink.add(f"block '{st.name}' is defined twice", st.span,
                                      "rename one of them")
                    if ops.lookup(st.name):
                        raise err(f"block '{st.name}' has the name of a built-in op", st.span,
                                  f"rename the block, e.g. {st.name}Block")
                    fctx.blocks[st.name] = (st, fctx)
                elif library:
                    raise err("an imported file may only define blocks, constants and defaults", st.span,
                              "move layers into the file that imports this one")
                elif isinstance(st, A.InputStmt):
                    current = self.add_input(st, scope)
                elif isinstance(st, A.OutputStmt):
                    outputs = st
                elif isinstance(st, A.Assign):
                    self.check_label(st.name, st.span, scope)
                    bindings[st.name] = POISON
                    val = self.chain(st.chain, current, scope)
                    bindings[st.name] = val
                    current = val
                elif isinstance(st, A.Chain):
                    current = self.chain(st, current, scope)
            except NetDSLError as e:
                self.sink.extend(e)
                failed = True
                if isinstance(st, (A.Chain, A.Assign, A.InputStmt)):
                    current = POISON
                if isinstance(st, A.InputStmt):
                    bindings.setdefault(st.name, POISON)
            except RecursionError:
                self.sink.add("this statement nests too deeply to expand", st.span,
                              "split it up: name parts of it (a = ...) or use a block with a repeat count")
                failed = True
                if isinstance(st, (A.Chain, A.Assign, A.InputStmt)):
                    current = POISON
            if isinstance(st, (A.Chain, A.Assign)):
                self.last_span = st.span
                if failed or current is POISON:   # its labels are poisoned: later uses stay silent
                    _poison_labels(st, bindings)
        if library:
            return
        self.finish_outputs(outputs, current, bindings, fctx)

    def finish_outputs(self, st, current, bindings, fctx):
        if st is None:
            if isinstance(current, str):
                self.g.outputs["output"] = current
            elif current is None and not self.sink:
                self.sink.add("the file defines no layers", Span(fctx.source, 1, 1),
                              "write e.g.\n    input x: 3x32x32\n    Conv(16, 3)-ReLU-Pool-FC(10)-SM")
            elif isinstance(current, tuple):
                self.sink.add("the network ends in parallel branches that are never merged",
                              self.last_span or Span(fctx.source, 1, 1),
                              "end with - Concat or - Add, or name outputs")
            return
        for name, span in st.names:
            val = bindings.get(name)
            if val is None and name in self.g.inputs:
                val = name
            if val is None:
                self.sink.add(f"output '{name}' is not a label or input", span,
                              did_you_mean(name, list(bindings)) or "label a layer (name:Op) or assign a chain (name = ...)")
            elif isinstance(val, str):
                if name in self.g.outputs:
                    self.sink.add(f"output '{name}' is listed twice", span, "list each output once")
                self.g.outputs[name] = val
            elif isinstance(val, tuple):
                self.sink.add(f"output '{name}' is a set of unmerged branches", span,
                              "merge them with Concat or Add first")

    # ------------------------------------------------------------------ statements
    def set_default(self, st: A.DefaultArgs, fctx):
        spec = self.spec_or_error(st.op, st.span, fctx, allow_alias=False)
        vals = self.eval_args(st.args, fctx.consts)
        pos, kw = vals
        d = dict(fctx.defaults.get(spec.name, {}))
        if len(pos) > len(spec.attrs):
            raise err(f"{spec.name} takes at most {len(spec.attrs)} positional arguments", st.span, _signature(spec))
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

    def check_label(self, label, span, scope):
        if label in scope.bindings and scope.bindings[label] is not POISON:
            raise err(f"'{label}' is defined twice", span, "labels must be unique; rename one of them")
        # lowercase labels may reuse a lowercase op word (torchvision's `conv`, `bn`)
        if (ops.lookup(label) and not label.islower()) or label in scope.fctx.blocks:
            raise err(f"label '{label}' hides the op or block of the same name", span,
                      f"use a lowercase label such as {label.lower()}1")

    # ------------------------------------------------------------------ chains
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
            if isinstance(n, bool) or not isinstance(n, int) or n < 0 or n > 100_000:
                raise err(f"a repeat count must be a whole number from 0 to 100000, got {n!r}",
                          el.repeat.span, "write e.g. (Conv(64, 3, pad=1)-ReLU)*2")
            self.unrolled += n
            if self.unrolled > MAX_UNROLL:
                raise err(f"the repeats unroll more than {MAX_UNROLL:,} times", el.repeat.span,
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
        when they would take the network past MAX_LAYERS (nested repeats multiply)."""
        total = len(self.g) + (n - 1) * per_copy
        if total > MAX_LAYERS:
            raise err(f"this repeat makes {n:,} copies of {per_copy:,} layer{'s' if per_copy != 1 else ''}: the "
                      f"network would have {total:,} layers, more than netdsl's limit of {MAX_LAYERS:,}",
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
                    and _case_insensitive(word) is not None:     # the table notation ignores case
                word = _case_insensitive(word).name
            return self.call(word, args, p.span, val, scope, label)
        if isinstance(p, A.Call):
            if p.name in scope.bindings and p.args is None:
                raise err(f"'{p.name}' is a label; a reference can only start a chain or a branch", p.span,
                          f"to merge it with this path write [ _ | {p.name} ] - Concat (or Add)")
            self.check_undefined(p, scope)
            return self.call(p.name, p.args, p.span, val, scope, label)
        raise err("unsupported element", getattr(p, "span", None))

    def check_undefined(self, p: A.Call, scope):
        """A bare word that is no op, block or alias: a label defined later, or not at all."""
        fctx = scope.fctx
        if p.args is not None or p.name in fctx.blocks or p.name in fctx.aliases or ops.lookup(p.name):
            return
        if fctx.later_labels.get(p.name, 0) >= p.span.line:
            raise err(f"'{p.name}' is defined later (line {fctx.later_labels[p.name]}); "
                      f"a reference can only point back to an earlier label", p.span,
                      f"move the line that defines '{p.name}' above this one")
        if _case_insensitive(p.name) is not None:      # `relu`: an op in the wrong case
            raise _unknown_op(p.name, p.span, fctx)
        if p.name[:1].islower():
            labels = [b for b, v in scope.bindings.items() if v is not POISON]
            raise err(f"undefined name '{p.name}': no label, input or op has that name", p.span,
                      did_you_mean(p.name, labels + ops.all_names() + list(fctx.blocks))
                      or "label a layer first (name:Conv(64, 3) or name = ...), then refer to it")

    def unknown_ops(self, st, scope):
        """A diagnostic for every op name in a top-level statement that names nothing: no op,
        block, alias or label (run before expanding, so one typo does not hide the next)."""
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
                if table and _case_insensitive(name) is not None:
                    continue
                bare = isinstance(x, A.Call) and x.args is None
                if bare and (name in scope.bindings or name in fctx.later_labels or
                             (name[:1].islower() and _case_insensitive(name) is None)):
                    continue                   # a label, or an undefined word: reported when expanded
                out.extend(_unknown_op(name, x.span, fctx).diagnostics)
        return out

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

    # ------------------------------------------------------------------ calls
    def spec_or_error(self, name, span, fctx, allow_alias=True, table=False):
        """The op spec `name` names. Op names are case-sensitive (docs/LANGUAGE.md), except
        in the table notation (`3x3 conv, 64`, `fc 4096`), which the slides write in any case."""
        spec = ops.lookup(name)
        if spec is None and table:
            spec = _case_insensitive(name)
        if spec is None:
            raise _unknown_op(name, span, fctx)
        return spec

    def call(self, name, args, span, val, scope, label, explicit=False):
        fctx = scope.fctx
        if name in fctx.aliases:
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
            raise err(e.message, arg_spans.get(e.attr, span), e.hint or _signature(spec))
        ins = list(val) if isinstance(val, tuple) else [val]
        arity = spec.arity
        if arity is None:
            if len(ins) < 2:
                raise err(f"{spec.name} merges two or more inputs but gets one", span,
                          f"branch first: [ _ | Conv(64, 3, pad=1) ] - {spec.name}")
            if len(ins) > MAX_MERGE_INPUTS:     # the merge kernels' fixed bound (csrc/kernels/merge.h)
                raise err(f"{spec.name} gets {len(ins)} inputs; a merge takes at most {MAX_MERGE_INPUTS}", span,
                          f"merge in steps: {spec.name} groups of at most {MAX_MERGE_INPUTS} branches, "
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
        if len(self.g) >= MAX_LAYERS:
            raise err(f"the network has more than {MAX_LAYERS:,} layers, netdsl's limit", span,
                      "check the repeat counts and recursive blocks; the limits are in docs/LANGUAGE.md (Limits)")
        self.g.add(name, spec.name, attrs, span, arg_spans, scope.prefix.rstrip("."))
        for slot, src in enumerate(ins):
            self.g.connect(src, name, slot)
        return name

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

    # ------------------------------------------------------------------ blocks
    def block(self, name, args, span, val, scope, label):
        bdef, bctx = scope.fctx.blocks[name]
        self.block_calls += 1
        if self.block_calls > MAX_LAYERS:     # blocks that build nothing can still call each other 2^n times
            raise err(f"blocks are used more than {MAX_LAYERS:,} times while expanding this network", span,
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

    # ------------------------------------------------------------------ expressions
    def eval_args(self, args: A.Args, env, tensors=None):
        """Evaluate call arguments. With `tensors` (the caller's labels), a bare label
        becomes a Tensor argument (only blocks take those)."""
        def value(e):
            if tensors and isinstance(e, A.Name) and e.id in tensors and e.id not in env:
                node = tensors[e.id]
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


def _dims(shape):
    return "x".join(str(s) for s in shape)


def _looks_hwc(shape):
    """32x32x3, 28x28x1, 64x64x4: the slide's HxWxC order, read by netdsl as CxHxW."""
    return len(shape) == 3 and shape[2] in (1, 3, 4) and shape[0] >= 4 * shape[2] and shape[1] >= 4 * shape[2] \
        and shape[0] >= 8


def _poison_labels(st, bindings):
    """Bind every label a failed statement would have defined to POISON, so each later use of
    it is silent: the one mistake is reported once, where it is."""
    for lbl, _ in _labels_in(st):
        bindings.setdefault(lbl, POISON)


def _case_insensitive(name):
    """The op whose name or alias is `name` in another case (`relu` -> ReLU), or None."""
    low = name.lower()
    return next((ops.lookup(n) for n in ops.all_names() if n.lower() == low), None)


def _unknown_op(name, span, fctx):
    cands = ops.all_names() + list(fctx.blocks) + list(fctx.aliases)
    spec = _case_insensitive(name)
    if spec is not None:
        return err(f"unknown op '{name}'", span,
                   f"did you mean '{spec.name}'? op names are case-sensitive; only the table notation "
                   f"(`3x3 conv, 64`, `fc 4096`) ignores case")
    return err(f"unknown op '{name}'", span,
               did_you_mean(name, cands) or "see `netdsl ops` for the list of ops, or define a block")


def _signature(spec):
    """`Conv(out_channels, kernel, stride=1, ...)`: the hint for a bad argument without one of its own."""
    from ..ops.base import fmt
    shown = [a.name if a.required else f"{a.name}={fmt(a.default) if a.default is not None else 'none'}"
             for a in spec.attrs[:5]]
    more = ", ..." if len(spec.attrs) > 5 else ""
    return f"{spec.name} is written {spec.name}({', '.join(shown)}{more})"


def _labels_in(st):
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


def expand_module(module: A.Module, path=None, partial=False):
    """Expand a module into a Graph. With partial=True, return (graph, diagnostics)
    instead of raising, so shape checking can still report on what did expand."""
    ex = Expander()
    fctx = FileCtx(module.source, os.path.abspath(path) if path else None)
    ex.run_module(module, fctx)
    ex.g.warnings = ex.sink.warnings      # analysis adds its own; the CLI prints them
    if partial:
        return ex.g, ex.sink.diagnostics
    ex.sink.raise_if_any()
    return ex.g
