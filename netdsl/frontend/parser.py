"""Source text -> AST, with located, friendly syntax errors.

Lark parses with LALR and a postlexer that makes newlines significant only
at depth 0 (not inside () or []) and not next to '-' or '|', so chains can go
on over several lines. After a syntax error we blank the offending line and
parse again, so one run reports every independent syntax error.
"""
from __future__ import annotations

import functools
import os
import re

from lark import Lark, Token, v_args
from lark.visitors import Transformer_NonRecursive
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError

from ..errors import Diagnostic, NetDSLError, Source, Span
from . import ast as A

MAX_SYNTAX_ERRORS = 20
LAYOUTS = ("hwc", "chw")     # how an input's shape may be written: `input x: 32x32x3 (hwc)`
MAX_LITERAL_DIGITS = 30     # longer integer literals are refused where they are written

_CONT_AFTER = {"MINUS", "VBAR", "COMMA", "EQUAL", "LBRACE", "LPAR", "LSQB"}
_CONT_BEFORE = {"MINUS", "VBAR", "RBRACE", "ELSE"}


class _Newlines:
    """Drops newlines inside brackets and around chain joints."""
    always_accept = ("_NL",)

    def process(self, stream):
        depth, prev, pending = 0, None, None
        for tok in stream:
            t = tok.type
            if t == "_NL":
                if depth == 0 and prev is not None and prev not in _CONT_AFTER:
                    pending = pending or tok
                continue
            if pending is not None:
                if t not in _CONT_BEFORE:
                    yield pending
                pending = None
            if t in ("LPAR", "LSQB"):
                depth += 1
            elif t in ("RPAR", "RSQB") and depth:
                depth -= 1
            prev = t
            yield tok
        if pending is not None:
            yield pending


def _grammar_text():
    try:
        from importlib.resources import files
        return files("netdsl.grammars").joinpath("netdsl.lark").read_text()
    except (ModuleNotFoundError, FileNotFoundError):
        here = os.path.dirname(os.path.abspath(__file__))
        with open(os.path.join(here, "..", "..", "grammars", "netdsl.lark")) as f:
            return f.read()


@functools.lru_cache(maxsize=None)
def _lark():
    return Lark(_grammar_text(), parser="lalr", lexer="basic", postlex=_Newlines(), propagate_positions=True,
                maybe_placeholders=False)


def _tokval(t):
    return str(t)


class _ToAST(Transformer_NonRecursive):   # deep nesting must not hit Python's recursion limit
    def __init__(self, source):
        super().__init__()
        self.src = source

    def sp(self, m):
        if getattr(m, "empty", True) and not hasattr(m, "line"):
            return Span(self.src, 1, 1)
        return Span(self.src, m.line, m.column, m.end_column if m.end_line == m.line else None)

    def tsp(self, t: Token):
        return Span(self.src, t.line, t.column, t.column + len(t))

    def int(self, text, tok):
        """An integer literal; one longer than any slot takes is a located error (Python's
        int() would refuse one of 4,300 digits with an exception, and no size is that big)."""
        text = str(text)
        if len(text) > MAX_LITERAL_DIGITS:
            raise NetDSLError(f"number too large: {text[:12]}… ({len(text):,} digits)", self.tsp(tok),
                              "no size or count in a network has more than a few digits; "
                              "netdsl's limits are in docs/LANGUAGE.md (Limits)")
        return int(text)

    # -- statements
    @v_args(meta=True)
    def start(self, meta, items):
        return list(items)

    @v_args(meta=True)
    def import_stmt(self, meta, items):
        t = items[0]
        if isinstance(t, Token) and t.type == "STRING":
            return A.Import(self.sp(meta), t[1:-1], True)
        return A.Import(self.sp(meta), t, False)

    def dotted(self, items):
        return ".".join(items)

    @v_args(meta=True)
    def const_stmt(self, meta, items):
        return A.Const(self.sp(meta), str(items[0]), items[1])

    @v_args(meta=True)
    def default_args(self, meta, items):
        return A.DefaultArgs(self.sp(meta), str(items[0]), items[1])

    @v_args(meta=True)
    def default_alias(self, meta, items):
        return A.DefaultAlias(self.sp(meta), str(items[0]), str(items[1]), items[2] if len(items) > 2 else None)

    @v_args(meta=True)
    def input_stmt(self, meta, items):
        (shape, shape_span), args = items[1], items[2] if len(items) > 2 else None
        layout = None
        if args is not None:      # `input x: 32x32x3 (hwc)`: the order the shape is written in
            words = [e for e in args.pos if isinstance(e, A.Name) and e.id.lower() in LAYOUTS]
            if words:
                layout = words[0].id.lower()
                args.pos = [e for e in args.pos if e is not words[0]]
        return A.InputStmt(self.sp(meta), str(items[0]), shape, args, layout, shape_span)

    def shape(self, items):
        return tuple(self.int(x, items[0]) for x in str(items[0]).split("x")), self.tsp(items[0])

    @v_args(meta=True)
    def output_stmt(self, meta, items):
        return A.OutputStmt(self.sp(meta), [(str(t), self.tsp(t)) for t in items])

    @v_args(meta=True)
    def block_def(self, meta, items):
        name = str(items[1])                # items[0] is the keyword (a named terminal: it is also a label)
        rest = items[2:]
        params = []
        if rest and isinstance(rest[0], tuple) and rest[0] and rest[0][0] == "params":
            params = rest[0][1]
            rest = rest[1:]
        return A.BlockDef(self.sp(meta), name, params, list(rest))

    def params(self, items):
        return ("params", list(items))

    def param(self, items):
        t = items[0]
        return (str(t), items[1] if len(items) > 1 else None, self.tsp(t))

    @v_args(meta=True)
    def assign(self, meta, items):
        return A.Assign(self.sp(meta), str(items[0]), items[1])

    # -- chains
    @v_args(meta=True)
    def chain(self, meta, items):
        return A.Chain(self.sp(meta), list(items))

    @v_args(meta=True)
    def labeled(self, meta, items):
        label, prim = items[0], items[1]
        rep = items[2] if len(items) > 2 else None
        return A.Element(self.sp(meta), prim, str(label), self.tsp(label), rep)

    @v_args(meta=True)
    def plain(self, meta, items):
        return A.Element(self.sp(meta), items[0], None, None, items[1] if len(items) > 1 else None)

    @v_args(meta=True)
    def repeat(self, meta, items):
        x = items[0]
        if isinstance(x, Token):
            sp = self.tsp(x)
            return A.Num(sp, self.int(x, x)) if x.type == "INT" else A.Name(sp, str(x))
        return x

    @v_args(meta=True)
    def call(self, meta, items):
        return A.Call(self.sp(meta), str(items[0]), items[1] if len(items) > 1 else None)

    @v_args(meta=True)
    def numbered(self, meta, items):
        return A.Numbered(self.sp(meta), str(items[0]), self.int(items[1], items[1]))

    @v_args(meta=True)
    def group(self, meta, items):
        return A.Group(self.sp(meta), items[0])

    @v_args(meta=True)
    def parallel(self, meta, items):
        return A.Parallel(self.sp(meta), list(items))

    @v_args(meta=True)
    def identity(self, meta, items):
        return A.Identity(self.sp(meta))

    @v_args(meta=True)
    def cond(self, meta, items):
        return A.Cond(self.sp(meta), items[0], items[1], items[2] if len(items) > 2 else None)

    @v_args(meta=True)
    def table_conv(self, meta, items):
        k = tuple(self.int(x, items[0]) for x in str(items[0]).split("x"))
        return A.TableConv(self.sp(meta), k, str(items[1]), list(items[2:]))

    @v_args(meta=True)
    def t_pos(self, meta, items):
        return (None, self.int(items[0], items[0]), self.sp(meta))

    @v_args(meta=True)
    def t_kw(self, meta, items):
        key, v = items
        if v.type == "INT":
            val = self.int(v, v)
        elif v.type == "DIMS":
            val = tuple(self.int(x, v) for x in str(v).split("x"))
        else:
            val = str(v)
        return (str(key), val, self.sp(meta))

    @v_args(meta=True)
    def t_stride(self, meta, items):
        return ("stride", self.int(items[0], items[0]), self.sp(meta))

    @v_args(meta=True)
    def table_fc(self, meta, items):
        return A.TableFC(self.sp(meta), str(items[0]), self.int(items[1], items[1]))

    # -- args and expressions
    def args(self, items):
        a = A.Args()
        for kind, val in items:
            if kind == "kw":
                a.kw.append(val)
            else:
                a.pos.append(val)
        return a

    def kwarg(self, items):
        return ("kw", (str(items[0]), items[1], self.tsp(items[0])))

    def posarg(self, items):
        return ("pos", items[0])

    @v_args(meta=True)
    def int_(self, meta, items):
        return A.Num(self.sp(meta), self.int(items[0], items[0]))

    @v_args(meta=True)
    def float_(self, meta, items):
        return A.Num(self.sp(meta), float(items[0]))

    @v_args(meta=True)
    def dims(self, meta, items):
        sp = self.sp(meta)
        return A.Tuple(sp, [A.Num(sp, self.int(x, items[0])) for x in str(items[0]).split("x")])

    @v_args(meta=True)
    def string(self, meta, items):
        return A.Str(self.sp(meta), str(items[0])[1:-1])

    @v_args(meta=True)
    def name(self, meta, items):
        return A.Name(self.sp(meta), str(items[0]))

    @v_args(meta=True)
    def tuple_(self, meta, items):
        return A.Tuple(self.sp(meta), list(items))

    def _bin(op):
        @v_args(meta=True)
        def f(self, meta, items):
            return A.BinOp(self.sp(meta), op, items[0], items[1])
        return f

    add, sub, mul, div, floordiv, mod = _bin("+"), _bin("-"), _bin("*"), _bin("/"), _bin("//"), _bin("%")

    @v_args(meta=True)
    def comparison(self, meta, items):
        return A.BinOp(self.sp(meta), str(items[1]), items[0], items[2])

    @v_args(meta=True)
    def neg(self, meta, items):
        return A.Unary(self.sp(meta), "-", items[0])

    @v_args(meta=True)
    def not_(self, meta, items):
        return A.Unary(self.sp(meta), "not", items[0])

    @v_args(meta=True)
    def and_expr(self, meta, items):
        return A.BoolOp(self.sp(meta), "and", list(items))

    @v_args(meta=True)
    def or_expr(self, meta, items):
        return A.BoolOp(self.sp(meta), "or", list(items))

    @v_args(meta=True)
    def ternary(self, meta, items):
        return A.Ternary(self.sp(meta), items[1], items[0], items[2])


# ---------------------------------------------------------------- syntax errors

_PRETTY = {
    "LPAR": "'('", "RPAR": "')'", "LSQB": "'['", "RSQB": "']'", "LBRACE": "'{'", "RBRACE": "'}'",
    "MINUS": "'-'", "VBAR": "'|'", "COMMA": "','", "EQUAL": "'='", "COLON": "':'", "STAR": "'*'",
    "NAME": "a name", "INT": "an integer", "FLOAT": "a number", "DIMS": "a size like 3x3",
    "STRING": "a string", "_NL": "end of line", "$END": "end of file", "SLASH": "'/'", "PLUS": "'+'",
}


def _pretty(t):
    return _PRETTY.get(t, f"'{t.lower()}'" if t.isupper() else t)


def _syntax_diag(e: UnexpectedInput, src: Source) -> Diagnostic:
    line, col = getattr(e, "line", 1) or 1, getattr(e, "column", 1) or 1
    hint = None
    if isinstance(e, UnexpectedCharacters):
        ch = src.text[e.pos_in_stream] if e.pos_in_stream < len(src.text) else "?"
        msg = f"unexpected character {ch!r}"
        hint = {"@": "labels are written name:Op(...), e.g. c1:Conv(64, 3)",
                ";": "put one statement per line", "$": "refer to a layer by its label, without a sigil"}.get(
            ch, "layers are joined with '-', branches written [a | b], comments start with '#'")
        width = 1
    elif isinstance(e, UnexpectedEOF) or (isinstance(e, UnexpectedToken) and e.token.type == "$END"):
        expected = sorted(getattr(e, "expected", []) or [])
        msg = "unexpected end of file"
        if "RPAR" in expected:
            hint = "a '(' is never closed: add ')'"
        elif "RSQB" in expected:
            hint = "a '[' is never closed: add ']'"
        elif "RBRACE" in expected:
            hint = "a block's '{' is never closed: add '}'"
        else:
            hint = "the last line is incomplete"
        lines = src.text.splitlines() or [""]
        line, col, width = len(lines), len(lines[-1]) + 1, 1
    else:
        tok = e.token
        expected = set(e.expected) - {"_NL"} if tok.type == "_NL" else set(e.expected)
        shown = "end of line" if tok.type == "_NL" else repr(str(tok))
        msg = f"unexpected {shown}"
        exp = sorted(_pretty(x) for x in expected)
        if exp and len(exp) <= 8:
            msg += f"; expected {', '.join(exp)}"
        width = len(str(tok)) if tok.type != "_NL" else 1
        if tok.type == "_NL":
            hint = ("the line ends in the middle of something: close every '(' and '[', "
                    "or continue the chain on the next line with '-'")
        elif tok.type in ("NAME", "LPAR", "DIMS", "LSQB") and "MINUS" in e.expected:
            hint = "join layers with '-', e.g. Conv(64, 3)-ReLU"
        elif tok.type == "RSQB" or ("VBAR" in e.expected and tok.type != "VBAR"):
            hint = "parallel branches are written [branch | branch] and need at least two"
        elif tok.type == "COLON":
            hint = "a label comes before its layer: name:Conv(64, 3)"
        elif "RPAR" in e.expected:
            hint = "arguments are separated by ',' and closed with ')'"
        else:
            hint = "see docs/LANGUAGE.md for the statement forms"
    return Diagnostic(msg, Span(src, line, col, col + width), hint)


# Characters that slides and word processors put where netdsl has ASCII, read as that ASCII
# character (a × between sizes is the x of 3x3; any other × repeats, as *). Each maps one
# character to one, so every column stays where the file has it.
_PASTED = str.maketrans({"×": "*", "–": "-", "—": "-", "−": "-", "\u00a0": " ", "\u2009": " ",
                         "\u202f": " ", "“": '"', "”": '"'})
# `3 x 32 x 32`, `3X32X32`, `3×32×32`: a size with spaces or another times sign. The spaces
# move behind it (`3x32x32    `), so the columns of everything after it stay as written.
_LOOSE_DIMS = re.compile(r"(?<![\w.])\d+(?:[ \t]*[xX×][ \t]*\d+)+(?![\w.])")


def _slide_text(text: str) -> str:
    """The text with slide characters read as ASCII, outside comments and strings."""
    out = []
    for line in text.split("\n"):
        code, rest, quoted = [], "", None          # quoted: the quote that opened a string
        for i, ch in enumerate(line):
            if quoted is None and ch in '"“':
                quoted = ch
            elif quoted == '"' and ch == '"' or quoted == "“" and ch in '”"':
                quoted = None                       # a straight quote closes only at a straight one
            elif ch == "#" and quoted is None:
                rest = line[i:]
                line = line[:i]
                break
        pieces = re.split(r'("[^"]*"|“[^”"]*[”"])', line)
        for k, piece in enumerate(pieces):
            if k % 2:                   # a string: kept as written, but with straight quotes
                code.append(piece[0].translate(_PASTED) + piece[1:-1] + piece[-1].translate(_PASTED))
                continue
            piece = _LOOSE_DIMS.sub(lambda m: (re.sub(r"[ \t]*[xX×][ \t]*", "x", m.group(0))).ljust(
                len(m.group(0))), piece)
            code.append(piece.translate(_PASTED))     # a × left over repeats: (Conv-ReLU)×2
        out.append("".join(code) + rest)
    return "\n".join(out)


def parse_source(src: Source) -> A.Module:
    """Parse a Source into a Module, or raise NetDSLError with every syntax error."""
    text = _slide_text(src.text)
    text = text if text.endswith("\n") else text + "\n"
    if text.startswith("\ufeff"):       # a UTF-8 byte-order mark; a space keeps the columns
        text = " " + text[1:]
    diags: list[Diagnostic] = []
    seen = set()
    while True:
        try:
            tree = _lark().parse(text)
            break
        except UnexpectedInput as e:
            d = _syntax_diag(e, src)
            key = (d.span.line, d.message)
            if key in seen:
                break
            seen.add(key)
            diags.append(d)
            lines = text.split("\n")
            ln = d.span.line - 1
            if isinstance(e, UnexpectedEOF) or (isinstance(e, UnexpectedToken) and e.token.type == "$END") \
                    or len(diags) >= MAX_SYNTAX_ERRORS or not (0 <= ln < len(lines)):
                break
            lines[ln] = " " * len(lines[ln])     # blank the line and look for more errors
            text = "\n".join(lines)
        except Exception as e:   # a lark internal error must still be located
            diags.append(Diagnostic(f"could not parse: {e}", Span(src, 1, 1), None))
            break
    if diags:
        raise NetDSLError(diags)
    try:
        return A.Module(src, _ToAST(src).transform(tree))
    except VisitError as e:        # a located error raised while building the AST
        if isinstance(e.orig_exc, NetDSLError):
            raise e.orig_exc from None
        raise


def parse_text(text: str, name: str = "<string>") -> A.Module:
    return parse_source(Source(name, text))
