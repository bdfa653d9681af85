"""Files: a module's statements run in order with errors collected per statement (a failed
statement poisons its labels), imports of the standard library and of other files (with
cycle detection), and the outputs at the end."""
from __future__ import annotations

import os

from .. import ops
from ..errors import NetDSLError, Source, Span, did_you_mean
from . import ast as A
from .parser import parse_source
from .scope import POISON, FileCtx, Scope, err, labels_in, poison_labels

STDLIB = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "stdlib")


class ModulesMixin:
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

    def run_module(self, module: A.Module, fctx: FileCtx, library=False):
        bindings: dict = {}
        scope = Scope("", False, bindings, fctx.consts, fctx)
        current = None
        outputs = None
        for st in module.stmts:
            for lbl, line in labels_in(st):
                fctx.later_labels.setdefault(lbl, line)
        for st in module.stmts:
            if not library and isinstance(st, (A.Chain, A.Assign)):
                unknown = self.unknown_ops(st, scope)
                if unknown:            # every unknown op of the file is reported, not only the first
                    self.sink.diagnostics.extend(unknown)
                    current = POISON
                    poison_labels(st, bindings)
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
                if isinstance(st, A.Const):
                    fctx.consts.setdefault(st.name, POISON)
                elif isinstance(st, A.Import):
                    fctx.failed_imports.append(st.target)
                elif isinstance(st, A.DefaultAlias):
                    fctx.aliases.setdefault(st.name, POISON)
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
                    poison_labels(st, bindings)
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
