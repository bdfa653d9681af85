"""The AST: small dataclasses, each with the span it came from.

Expressions (`Expr`) are evaluated by the expander in an environment of
constants and block parameters; everything else describes layers.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import Span


@dataclass
class Expr:
    span: Span


@dataclass
class Num(Expr):
    value: int | float


@dataclass
class Name(Expr):
    id: str


@dataclass
class Str(Expr):
    value: str


@dataclass
class Tuple(Expr):
    items: list


@dataclass
class BinOp(Expr):
    op: str
    left: Expr
    right: Expr


@dataclass
class Unary(Expr):
    op: str            # "-" or "not"
    operand: Expr


@dataclass
class BoolOp(Expr):
    op: str            # "and" / "or"
    items: list


@dataclass
class Ternary(Expr):
    cond: Expr
    then: Expr
    other: Expr


@dataclass
class Args:
    pos: list = field(default_factory=list)          # [Expr]
    kw: list = field(default_factory=list)           # [(name, Expr, Span)]


# ---- layers
@dataclass
class Call:
    span: Span
    name: str
    args: Args | None


@dataclass
class Numbered:
    span: Span
    name: str
    number: int


@dataclass
class Group:
    span: Span
    chain: "Chain"


@dataclass
class Parallel:
    span: Span
    branches: list


@dataclass
class Identity:
    span: Span


@dataclass
class Cond:
    span: Span
    cond: Expr
    then: "Chain"
    other: "Chain | None"


@dataclass
class TableConv:
    span: Span
    kernel: tuple
    word: str
    items: list          # [(key or None, value, Span)]


@dataclass
class TableFC:
    span: Span
    word: str
    n: int


@dataclass
class Element:
    span: Span
    primary: object
    label: str | None = None
    label_span: Span | None = None
    repeat: Expr | None = None


@dataclass
class Chain:
    span: Span
    elements: list


# ---- statements
@dataclass
class Import:
    span: Span
    target: str
    is_path: bool


@dataclass
class Const:
    span: Span
    name: str
    value: Expr


@dataclass
class DefaultArgs:
    span: Span
    op: str
    args: Args


@dataclass
class DefaultAlias:
    span: Span
    name: str
    target: str
    args: Args | None


@dataclass
class InputStmt:
    span: Span
    name: str
    shape: tuple
    args: Args | None
    layout: str | None = None        # "hwc" or "chw" when the file says how the shape is written
    shape_span: Span | None = None


@dataclass
class OutputStmt:
    span: Span
    names: list          # [(name, Span)]


@dataclass
class BlockDef:
    span: Span
    name: str
    params: list         # [(name, Expr | None, Span)]
    body: list


@dataclass
class Assign:
    span: Span
    name: str
    chain: Chain


@dataclass
class Module:
    source: object
    stmts: list
