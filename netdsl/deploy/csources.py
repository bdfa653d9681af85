"""Which csrc/ files a set of kernel symbols needs: the closure that `--emit c` copies.

    files = kernel_closure(["nd_conv_f32", "nd_maxpool_f32"])   # paths relative to csrc/

A .c file needs another when it names an external function or table the other defines;
headers and .inc files come with the files that #include them. The analysis is textual,
on the sources with comments and strings removed:
- definitions are read from file scope only (everything between braces is dropped first),
  `static` ones are left out (a static `rup` in two files links nothing), and the bodies
  that the ND_EACH_ISA pattern pastes together (`nd_act_apply_##suffix`) define one name per
  ISA suffix;
- uses are every identifier in the file, macros included.
It errs on the side of taking a file (a name in a disabled #if branch still counts), never
of leaving one out that the linker needs; the tests link what it picks. Not here: parsing
C properly, or dropping x86 files on other targets (they compile to nothing outside x86).
"""
from __future__ import annotations

import os
import re

from ..errors import NetDSLError

ISA_SUFFIXES = ("portable", "avx2", "avx512")
_IDENT = re.compile(r"[A-Za-z_]\w*")
_INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)
_PASTED = re.compile(r"\b([A-Za-z_]\w*?)##\s*suffix\b")
_FUNC_DEF = re.compile(r"\b([A-Za-z_]\w*)\s*\((?:[^;{}()]|\([^;{}()]*\))*\)\s*"
                       r"(?:__attribute__\s*\(\([^;{}]*\)\)\s*)*\{\}")
_DATA_DEF = re.compile(r"\b([A-Za-z_]\w*)\s*(?:\[[^\]]*\]\s*)*=")


def csrc_root() -> str:
    """The csrc/ folder the extension was built from (a source checkout or an install)."""
    here = os.path.dirname(os.path.abspath(__file__))
    for cand in (os.path.join(here, "..", "..", "csrc"), os.path.join(here, "..", "csrc")):
        if os.path.isfile(os.path.join(cand, "dispatch.c")):
            return os.path.abspath(cand)
    raise NetDSLError("the C kernel sources (csrc/) are not installed with this netdsl",
                      hint="emit C from a source checkout: pip install -e . in the netdsl repository")


def strip_c(text: str) -> str:
    """The text with comments, string and character literals replaced by spaces (lines kept)."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif c in "\"'":
            j = i + 1
            while j < n and text[j] != c and text[j] != "\n":
                j += 2 if text[j] == "\\" else 1
            out.append(" " * (min(j + 1, n) - i))
            i = j + 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _file_scope(code: str) -> str:
    """Preprocessor lines removed, then every brace body emptied: `int f(void) { ... }` -> `{}`."""
    code = re.sub(r"^[ \t]*#(?:[^\n]*\\\n)*[^\n]*", "", code, flags=re.M)
    out, depth = [], 0
    for ch in code:
        if ch == "{":
            if depth == 0:
                out.append("{")
            depth += 1
        elif ch == "}":
            depth = max(depth - 1, 0)
            if depth == 0:
                out.append("}")
        elif depth == 0:
            out.append(ch)
    return "".join(out)


def _is_static(scope: str, pos: int, static_macros=frozenset()) -> bool:
    """Whether the declaration that names something at `pos` says `static`, itself or through a
    macro (`INLINE`, `ND_MATH_INLINE`); it starts after the previous `;` or `}`."""
    start = max(scope.rfind(";", 0, pos), scope.rfind("}", 0, pos)) + 1
    words = set(_IDENT.findall(scope[start:pos]))
    return "static" in words or bool(words & static_macros)


def static_macros(code: str) -> set:
    """Names of the object-like macros whose expansion says `static` (`#define INLINE static inline`)."""
    return set(re.findall(r"^[ \t]*#\s*define\s+([A-Za-z_]\w*)[ \t]+[^\n]*\bstatic\b", code, flags=re.M))


def definitions(code: str, macros=frozenset()) -> set:
    """External names a comment-stripped .c file defines (functions, tables, variables);
    `macros`: names that expand to `static ...` (defined in the file or its headers)."""
    scope = _file_scope(code)
    macros = frozenset(macros) | static_macros(code)
    names = set()
    for rx in (_FUNC_DEF, _DATA_DEF):
        for m in rx.finditer(scope):
            if not _is_static(scope, m.start(1), macros) and not m.group(1).startswith("__"):
                names.add(m.group(1))
    for line in re.findall(r"^[ \t]*#\s*define[^\n]*(?:\\\n[^\n]*)*", code, flags=re.M):
        for m in _PASTED.finditer(line):
            head = line[:m.start()]
            tail = head[max(head.rfind(")"), head.rfind(";"), head.rfind("}")) + 1:]
            if "static" not in tail:
                names.update(m.group(1) + s for s in ISA_SUFFIXES)
    return names


class Sources:
    """The csrc/ tree read once: per file its includes, the names it uses and defines."""

    def __init__(self, root: str | None = None):
        self.root = root or csrc_root()
        self.text, self.uses, self.defs, self.includes = {}, {}, {}, {}
        for dirpath, dirs, files in os.walk(self.root):
            dirs[:] = sorted(d for d in dirs if d != "cuda")
            for f in sorted(files):
                if not f.endswith((".c", ".h", ".inc")):
                    continue
                rel = os.path.relpath(os.path.join(dirpath, f), self.root).replace(os.sep, "/")
                with open(os.path.join(dirpath, f), encoding="utf-8") as fh:
                    self.text[rel] = fh.read()
        code = {rel: strip_c(text) for rel, text in self.text.items()}
        macros = set().union(*(static_macros(c) for rel, c in code.items() if not rel.endswith(".c")))
        for rel, text in self.text.items():
            self.includes[rel] = [self._resolve(rel, inc) for inc in _INCLUDE.findall(text)]
            if rel.endswith(".c"):
                self.uses[rel] = set(_IDENT.findall(code[rel]))
                self.defs[rel] = definitions(code[rel], macros)
        # a .c file uses what the .inc files it includes use (conv_winograd_body.inc)
        for rel in list(self.uses):
            for inc in self._include_closure([rel]):
                if inc.endswith(".inc"):
                    self.uses[rel] |= set(_IDENT.findall(strip_c(self.text[inc])))
        self.definer = {}
        for rel, names in self.defs.items():
            for name in names:
                self.definer.setdefault(name, rel)

    def _resolve(self, rel: str, inc: str) -> str:
        for cand in (os.path.normpath(os.path.join(os.path.dirname(rel), inc)), os.path.normpath(inc)):
            cand = cand.replace(os.sep, "/")
            if cand in self.text:
                return cand
        raise NetDSLError(f"csrc/{rel} includes \"{inc}\", which is not in csrc/",
                          hint="this is a bug in netdsl's kernel sources; please report it")

    def _include_closure(self, files) -> list:
        seen, todo = [], list(files)
        while todo:
            f = todo.pop()
            if f in seen:
                continue
            seen.append(f)
            todo += self.includes.get(f, [])
        return seen

    def closure(self, symbols) -> list:
        """Sorted csrc-relative paths of every file the symbols need (sources and headers)."""
        todo = []
        for s in symbols:
            if s not in self.definer:
                raise NetDSLError(f"no C source in csrc/ defines {s!r}",
                                  hint="is the kernel's .c file in csrc/kernels/?")
            todo.append(self.definer[s])
        need = set()
        while todo:
            f = todo.pop()
            if f in need:
                continue
            need.add(f)
            for name in self.uses[f]:
                g = self.definer.get(name)
                if g is not None and g not in need and name not in self.defs[f]:
                    todo.append(g)
        return sorted(self._include_closure(sorted(need)))


def kernel_closure(symbols, root: str | None = None) -> list:
    """csrc-relative paths of the files that define `symbols` and everything they need."""
    return Sources(root).closure(symbols)
