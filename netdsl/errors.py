"""Errors with source locations.

Every problem netdsl reports is a `Diagnostic`: a message, the span of source
it is about, and a hint saying what to do. One `NetDSLError` carries all the
diagnostics found in a file (we report every independent error, not only the
first) and renders them the way compilers do:

    model.net:7:12: error: unknown op 'Conv2'
        c1 = Conv2(64, 3)
             ^~~~~
    hint: did you mean 'Conv'?
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field


MAX_SHOWN = 160   # longest source line shown whole under a message


@dataclass(eq=False)
class Source:
    """One source text and the name it is reported under."""
    name: str
    text: str

    def __repr__(self):
        return f"Source({self.name!r})"

    def line(self, lineno: int) -> str:
        lines = self.text.splitlines()
        return lines[lineno - 1] if 0 < lineno <= len(lines) else ""


@dataclass(frozen=True)
class Span:
    """A place in a source: 1-based line and column, and an end column."""
    source: Source
    line: int
    col: int
    end_col: int | None = None

    def __str__(self) -> str:
        return f"{self.source.name}:{self.line}:{self.col}"

    __repr__ = __str__


@dataclass
class Diagnostic:
    message: str
    span: Span | None = None
    hint: str | None = None
    notes: list[str] = field(default_factory=list)
    kind: str = "error"             # the severity: "error" (fatal) or "warning" (reported, not fatal)

    @property
    def severity(self) -> str:
        return self.kind

    def render(self) -> str:
        where = f"{self.span}: " if self.span else ""
        out = [f"{where}{self.kind}: {self.message}"]
        if self.span:
            text = self.span.source.line(self.span.line)
            if text:
                width = 1
                if self.span.end_col and self.span.end_col > self.span.col:
                    width = self.span.end_col - self.span.col
                width = max(1, min(width, len(text) - self.span.col + 1))
                col, text = self.span.col, text.replace("\t", " ")
                if len(text) > MAX_SHOWN:       # show a window of a very long line around the caret
                    start = max(0, min(col - 1 - MAX_SHOWN // 2, len(text) - MAX_SHOWN))
                    text = ("…" if start else "") + text[start:start + MAX_SHOWN] + \
                        ("…" if start + MAX_SHOWN < len(text) else "")
                    col = col - start + (1 if start else 0)
                    width = max(1, min(width, len(text) - col + 1))
                out.append("    " + text)
                out.append("    " + " " * (col - 1) + "^" + "~" * (width - 1))
        out.extend(f"note: {n}" for n in self.notes)
        if self.hint:
            out.append(f"hint: {self.hint}")
        return "\n".join(out)


class NetDSLError(Exception):
    """The one error type of netdsl; holds one or more located diagnostics."""

    def __init__(self, diagnostics, span: Span | None = None, hint: str | None = None, warnings=()):
        if isinstance(diagnostics, str):
            diagnostics = [Diagnostic(diagnostics, span, hint)]
        elif isinstance(diagnostics, Diagnostic):
            diagnostics = [diagnostics]
        self.diagnostics: list[Diagnostic] = list(diagnostics)
        self.warnings: list[Diagnostic] = list(warnings)   # shown with the errors: they may explain them
        super().__init__(self.render())

    @property
    def message(self) -> str:
        return self.diagnostics[0].message if self.diagnostics else ""

    @property
    def span(self) -> Span | None:
        return self.diagnostics[0].span if self.diagnostics else None

    @property
    def hint(self) -> str | None:
        return self.diagnostics[0].hint if self.diagnostics else None

    def render(self) -> str:
        shown = sorted(self.diagnostics + self.warnings, key=_where) if self.warnings else self.diagnostics
        text = "\n\n".join(d.render() for d in shown)
        n, w = len(self.diagnostics), len(self.warnings)
        if w:
            text += f"\n\n{n} error{'s' if n != 1 else ''}, {w} warning{'s' if w != 1 else ''}"
        elif n > 1:
            text += f"\n\n{n} errors"
        return text

    def __str__(self) -> str:
        return self.render()


def _where(d: Diagnostic):
    """Source order: by file position, unlocated ones last."""
    return (d.span is None, d.span.line if d.span else 0, d.span.col if d.span else 0)


def render_warnings(warnings) -> str:
    """The text a command prints on stderr for the warnings of a model that checked."""
    ws = sorted(warnings, key=_where)
    text = "\n\n".join(d.render() for d in ws)
    return text + (f"\n\n{len(ws)} warnings" if len(ws) > 1 else "")


class ErrorSink:
    """Collects diagnostics while a stage keeps going, then raises them together.
    Warnings are kept apart: they travel with the errors, and on the graph when there are none."""

    def __init__(self):
        self.diagnostics: list[Diagnostic] = []
        self.warnings: list[Diagnostic] = []

    def add(self, message, span=None, hint=None, notes=None):
        self.diagnostics.append(Diagnostic(message, span, hint, list(notes or [])))

    def warn(self, message, span=None, hint=None, notes=None):
        self.warnings.append(Diagnostic(message, span, hint, list(notes or []), kind="warning"))

    def extend(self, err: NetDSLError):
        """Add an error's diagnostics, each once: a block used twice with the same mistake
        inside is reported at its first use."""
        seen = {(d.span, d.message) for d in self.diagnostics}
        for d in err.diagnostics:
            if (d.span, d.message) not in seen:
                seen.add((d.span, d.message))
                self.diagnostics.append(d)
        self.warnings.extend(getattr(err, "warnings", ()))

    def raise_if_any(self):
        if self.diagnostics:
            raise NetDSLError(self.diagnostics, warnings=self.warnings)

    def __bool__(self):
        return bool(self.diagnostics)


def did_you_mean(word: str, choices) -> str | None:
    """A 'did you mean' hint, case-insensitive, or None."""
    choices = list(choices)
    lowered = {}
    for c in choices:               # the first spelling wins: 'Conv' rather than its alias 'conv'
        lowered.setdefault(c.lower(), c)
    if word.lower() in lowered and lowered[word.lower()] != word:
        return f"did you mean '{lowered[word.lower()]}'?"
    close = difflib.get_close_matches(word.lower(), list(lowered), n=3, cutoff=0.6)
    if close:
        return "did you mean " + " or ".join(f"'{lowered[c]}'" for c in close) + "?"
    return None
