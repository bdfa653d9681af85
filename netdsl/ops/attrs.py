"""Attribute kinds: how an op's arguments from the language are checked and coerced.

Each kind is a function (value, name) -> coerced value that raises OpError on bad input.
Values arrive from the language as int, float, bool, str (bare words such as `same`,
`none`) or tuples (`3x5` and `(1, 2)` both arrive as tuples). `Attr` pairs a name with its
kind, default and one-line doc; `OpSpec.bind` (spec.py) applies them. Errors carry no
location: the analysis attaches the node's (or the attribute's) source span.
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import did_you_mean

REQUIRED = object()


class OpError(Exception):
    """A problem with one op's attributes or input shapes (located later)."""

    def __init__(self, message, hint=None, attr=None, notes=()):
        super().__init__(message)
        self.message, self.hint, self.attr, self.notes = message, hint, attr, list(notes)


# ---------------------------------------------------------------- attribute kinds
# Each kind is a function value -> coerced value, raising OpError on bad input.
# Values arrive from the language as int, float, bool, str (bare words such as
# `same`) or tuples (`3x5` and `(1, 2)` both arrive as tuples).

def _is_int(v):
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


MAX_INT = 2**31 - 1   # the largest integer any attribute takes (docs/LANGUAGE.md, Limits)


def int_(v, name, minimum=None):
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    if not _is_int(v):
        raise OpError(f"'{name}' must be an integer, got {fmt(v)}")
    if minimum is not None and v < minimum:
        raise OpError(f"'{name}' must be at least {minimum}, got {fmt(v)}")
    if abs(v) > MAX_INT:
        raise OpError(f"'{name}' is too large: {fmt(v)}; the most any size or count may be is {MAX_INT:,}",
                      hint="no network needs sizes this big; check the number and the arithmetic that made it")
    return int(v)


def pos_int(v, name):
    return int_(v, name, minimum=1)


def nonneg_int(v, name):
    return int_(v, name, minimum=0)


def float_(v, name):
    if _is_int(v) or isinstance(v, float):
        if _is_int(v) and abs(v) > 10**300 or isinstance(v, float) and not math.isfinite(v):
            raise OpError(f"'{name}' must be a finite number, got {fmt(v)}",
                          hint="a literal such as 1e999 is larger than any float32 or float64")
        return float(v)
    raise OpError(f"'{name}' must be a number, got {fmt(v)}")


def bool_(v, name):
    """true or false (docs/LANGUAGE.md, Arguments) — not 0/1 or yes/no, which read as other things."""
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    raise OpError(f"'{name}' must be true or false, got {fmt(v)}", hint=f"write {name}=true or {name}=false")


def pair(v, name, minimum=1):
    """An int or two ints (`3`, `3x5`, `(3, 5)`) -> (h, w)."""
    if isinstance(v, float) and v.is_integer():      # as int_ takes 3.0: `c / 2` that divides
        v = int(v)
    if _is_int(v):
        v = (v, v)
    if not (isinstance(v, tuple) and len(v) == 2):
        raise OpError(f"'{name}' must be an integer or two (e.g. 3 or 3x5), got {fmt(v)}")
    return tuple(int_(x, name, minimum) for x in v)


def padding(v, name):
    """`same`, `valid`, p, (ph, pw) or (top, left, bottom, right)."""
    if isinstance(v, float) and v.is_integer():      # as int_ and pair take 2.0
        v = int(v)
    if isinstance(v, str):
        if v.lower() in ("same", "valid"):
            return v.lower()
        raise OpError(f"'{name}' must be same, valid or integers, got {v}",
                      hint=did_you_mean(v, ["same", "valid"]))
    if _is_int(v):
        v = (v, v)
    if isinstance(v, tuple) and len(v) == 2:
        v = (v[0], v[1], v[0], v[1])
    if isinstance(v, tuple) and len(v) == 4:
        return tuple(nonneg_int(x, name) for x in v)
    raise OpError(f"'{name}' must be same, valid, p, (ph, pw) or (top, left, bottom, right); got {fmt(v)}")


def choice(*options):
    def kind(v, name):
        if v is None and "none" in options:     # Python callers may write act=None
            return "none"
        if isinstance(v, str) and v.lower() in options:
            return v.lower()
        hint = did_you_mean(v, options) if isinstance(v, str) else None
        raise OpError(f"'{name}' must be one of {', '.join(options)}; got {fmt(v)}",
                      hint=hint or f"write {name}={options[0]}")
    kind.options = options
    return kind


def int_tuple(v, name):
    if _is_int(v):
        v = (v,)
    if not isinstance(v, tuple) or not v:
        raise OpError(f"'{name}' must be integers such as 64x7x7, got {fmt(v)}")
    return tuple(int_(x, name) for x in v)


def float_tuple(v, name):
    if _is_int(v) or isinstance(v, float):
        v = (v,)
    if not isinstance(v, tuple):
        raise OpError(f"'{name}' must be numbers such as (0.5, 0.5, 0.5), got {fmt(v)}")
    return tuple(float_(x, name) for x in v)


def optional(kind):
    def k(v, name):
        return None if v is None or (isinstance(v, str) and v.lower() == "none") else kind(v, name)
    k.__name__ = getattr(kind, "__name__", "optional")
    return k


def fmt(v):
    if isinstance(v, tuple):
        return "(" + ", ".join(fmt(x) for x in v) + ")"
    if isinstance(v, bool):
        return "true" if v else "false"
    if _is_int(v) and abs(v) >= 10**20:        # a 100-digit number is shown by its length
        digits = str(abs(int(v)))
        return f"{'-' if v < 0 else ''}{digits[:10]}… ({len(digits)} digits)"
    return str(v)


class Attr:
    """One attribute: name, kind, default (REQUIRED if none), one-line doc."""

    def __init__(self, name, kind, default=REQUIRED, doc=""):
        self.name, self.kind, self.default, self.doc = name, kind, default, doc

    @property
    def required(self):
        return self.default is REQUIRED
