"""The op spec contract.

An op is one class in `netdsl/ops/<family>.py`, decorated with `@register`.
It declares its attributes (typed, with defaults and validation), its arity,
capability flags that passes and the planner read (never op names), and:

    resolve(a, shapes)  -> a        concrete attributes ('same' padding -> ints)
    infer(a, shapes)    -> shape    output shape, per sample (no batch dim)
    params(a, shapes)   -> {name: shape}   PyTorch layout and names
    macs(a, shapes, out)-> int
    window(a, shapes)   -> (kh, kw, sh, sw) for receptive-field arithmetic
    reference(a, xs, w) -> ndarray  the numpy oracle, batched NCHW float
    explain(a, shapes, out) -> [str]  the arithmetic a student does by hand
    samples = ((attrs, [input shapes]), ...)  small valid instances the generic tests run

Shapes never include the batch: (C, H, W) for feature maps, (F,) for
vectors. `a` is a plain dict of resolved attribute values.

Errors inside a spec are raised as `OpError(message, hint, attr=...)`; the
analysis attaches the node's source span (the attribute's own span when
`attr` is given), so specs never deal with locations.
"""
from __future__ import annotations

import math
from fractions import Fraction

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


# ---------------------------------------------------------------- the spec base

class OpSpec:
    """One op: attributes, shapes, costs, numpy reference, and what it IS (capabilities).

    Passes and the memory planner decide by the capabilities an op declares, never by its
    name; each rewrite asks the exact property it relies on (docs/PASSES.md, "Capabilities"):

    combine          a merge: how its inputs combine. "sum" (Add), "product" (Mul), "concat"
                     (Concat, along channels); "max", "min", "mean" are the names reserved for
                     such merges. None for an op that is not a merge. fuse_residual takes only
                     a "sum": conv(x)·r is not conv(x) + r.
    linear           without its fused epilogue (`act`), the output is an affine function of
                     each input: y = A·x + b, A and b fixed by attributes and weights (Conv, FC,
                     ConvTranspose, Local, BatchNorm, Add, Concat). A per-channel affine on the
                     input can then be folded into the weights (fold_batchnorm, input side).
                     False means "not claimed" (Mul, MaxPool, ReLU are not affine).
    preserves_nan    a NaN in an input makes every output value computed from it NaN, in the
                     reference and in every kernel (the contract: non-finite values propagate).
                     True by default; an op that does otherwise must declare False. Activations
                     take it from the activation table (activations.py).
    epilogues        the `act` values (names of the activation table) this op can apply to its
                     own output: the activations that may be fused into it. () for none.
    epilogue(a)      for a standalone activation: the `act` value it becomes when fused into
                     its producer, or None (LeakyReLU(0.1): the fused form has slope 0.01).
    channel_affine   the op is y = x·scale + shift per channel (affine_params): BatchNorm.
    absorbs_affine() + fold_affine(): where and how a channel affine folds into its weights.
    accepts_residual a second input r of the output's shape may be fused in: y = act(op(x) + r)
                     (Conv; the partner must be a two-input "sum").
    identity()       with these attributes and shapes the op returns input 0 unchanged.
    flag inplace_ok  the kernel may write its output over input 0 when that input has the
                     output's size (element i of the output reads only element i of input 0):
                     activations, BatchNorm, Add, Mul. The planner reads it.
    flags            the closed set below (has_weights, no_op: a view; elementwise, merge and
                     fusible_epilogue describe the op for drawings and tests; no pass reads
                     the pair "merge + elementwise").
    """
    name: str = ""
    aliases: tuple = ()
    attrs: tuple = ()
    arity: int | tuple | None = 1  # exact count, (min, max), or None: two or more (merges)
    flags: frozenset = frozenset()  # elementwise, inplace_ok, has_weights, fusible_epilogue, merge, no_op
    doc: str = ""
    # Small, cheap, valid instances: (keyword attrs, [input shapes without the batch]) or
    # (attrs, shapes, {"nonneg": True}) when the op is defined for non-negative inputs only.
    # One per distinct code path; tests/ops/test_op_kernels.py runs each on every ISA.
    samples: tuple = ()

    # -- attributes
    def bind(self, args, kwargs, defaults=None):
        """Positional + keyword args (+ file defaults) -> validated attribute dict.

        Raises OpError with attr= naming the offending argument.
        """
        names = [a.name for a in self.attrs]
        out = dict(defaults or {})
        if len(args) > len(self.attrs):
            if not self.attrs:
                raise OpError(f"{self.name} takes no arguments, got {len(args)}",
                              hint=f"write it bare: {self.name}")
            raise OpError(f"{self.name} takes at most {len(self.attrs)} positional arguments "
                          f"({', '.join(names)}), got {len(args)}",
                          hint=f"name the extra ones, e.g. {self.name}({names[-1]}=...)")
        for a, v in zip(self.attrs, args):
            out[a.name] = v
        for k, v in kwargs.items():
            if k not in names:
                raise OpError(f"{self.name} has no argument '{k}'", attr=k,
                              hint=did_you_mean(k, names) or f"its arguments are: {', '.join(names)}")
            out[k] = v
        result = {}
        for a in self.attrs:
            if a.name in out:
                try:
                    result[a.name] = a.kind(out[a.name], a.name)
                except OpError as e:
                    e.attr = e.attr or a.name
                    raise
            elif a.required:
                raise OpError(f"{self.name} needs '{a.name}' ({a.doc})",
                              hint=f"write it, e.g. {self.example()}, or set it once with "
                                   f"`default {self.name}({a.name}=...)`")
            else:
                result[a.name] = None if a.default is None else a.kind(a.default, a.name)
        self.check(result)
        return result

    def example(self):
        return self.name + "(...)"

    def check(self, a):
        """Cross-attribute validation; raise OpError."""

    # -- shapes and costs
    def resolve(self, a, shapes):
        return a

    def infer(self, a, shapes):
        return shapes[0]

    def params(self, a, shapes):
        """Learned parameters: name -> shape (counted in the parameter total)."""
        return {}

    def buffers(self, a, shapes):
        """Non-learned state saved with the weights (BatchNorm running stats): name -> shape."""
        return {}

    def macs(self, a, shapes, out):
        return 0

    def window(self, a, shapes):
        return (1, 1, 1, 1)

    def explain(self, a, shapes, out):
        return []

    def reference(self, a, xs, w):
        raise NotImplementedError(self.name)

    # -- what graph passes may do with the op (netdsl/passes reads these, never op names).
    # The six flags above are a closed set; these capabilities carry a value, so they are
    # attributes and methods. The defaults say "nothing" (but preserves_nan): an op opts in.
    combine: str | None = None      # merges: "sum", "product", "concat" (reserved: "max", "min", "mean")
    linear: bool = False            # affine in each input without its epilogue: y = A·x + b
    preserves_nan: bool = True      # NaN in, NaN out (False must be declared)
    epilogues: tuple = ()           # activation-table names this op can apply to its own output
    channel_affine: bool = False    # the op is y = x·scale + shift per channel (affine_params)
    accepts_residual: bool = False  # a second input r may be fused in: y = act(op(x) + r)
    output_sign: str = "any"        # "nonneg": every output is >= 0 (or NaN); "inputs": so when every input is

    def nonnegative_output(self, a, inputs_nonneg):
        """True when the output is known to be >= 0 (NaN aside), given which inputs are (list of bool).
        Check-time only (the StochasticPool warning): never used to change a result."""
        if a.get("act") in ("relu", "sigmoid") or self.output_sign == "nonneg":
            return True
        return self.output_sign == "inputs" and bool(inputs_nonneg) and all(inputs_nonneg)

    def epilogue(self, a):
        """The `act` value this op becomes when fused into its producer, or None."""
        return None

    def identity(self, a, shapes, out):
        """True when, with these attributes and shapes, the op returns input 0 unchanged."""
        return "no_op" in self.flags and len(shapes) == 1 and tuple(shapes[0]) == tuple(out)

    def affine_params(self, a, w):
        """(scale, shift) per channel as float64, for ops with channel_affine."""
        raise NotImplementedError(self.name)

    def absorbs_affine(self, a, shapes, side):
        """Whether a per-channel x·scale + shift can be folded into this op's weights: on its
        output before any activation (side 'out') or on its input 0 (side 'in')."""
        return False

    def fold_affine(self, a, shapes, w, scale, shift, side):
        """Weights with the affine folded in: {'weight', 'bias'} as float64 (a bias is created
        when the op had none). Called only where absorbs_affine said yes."""
        raise NotImplementedError(self.name)

    def init(self, a, shapes, rng):
        """Deterministic initial weights: He-normal for weights, zeros for biases."""
        out = {}
        for pname, shape in self.params(a, shapes).items():
            if pname == "weight" and len(shape) >= 2:
                fan_in = int(np.prod(shape[1:]))
                out[pname] = (rng.standard_normal(shape) * math.sqrt(2.0 / fan_in)).astype(np.float32)
            else:
                out[pname] = np.zeros(shape, np.float32)
        return out


# ---------------------------------------------------------------- shared arithmetic

def need_rank(shape, ranks, op, what="input"):
    if len(shape) not in ranks:
        want = " or ".join({1: "a vector (F)", 3: "a feature map (C,H,W)"}.get(r, f"rank {r}") for r in ranks)
        raise OpError(f"{op} expects {want} as {what}, got shape {shape_str(shape)}",
                      hint="insert Flatten before it" if 1 in ranks and len(shape) == 3
                      else "declare the input as CxHxW, e.g. `input x: 3x32x32`")


def shape_str(shape):
    return "x".join(str(s) for s in shape) if shape else "scalar"


def same_pads(size, k_eff, stride):
    """TensorFlow-style 'same': output ceil(size/stride), extra pad at the end."""
    out = -(-size // stride)
    total = max((out - 1) * stride + k_eff - size, 0)
    return total // 2, total - total // 2


def resolve_pads(pad, hw, k_eff, stride):
    """pad attribute -> (top, left, bottom, right) for an input of size hw."""
    if pad == "valid":
        return (0, 0, 0, 0)
    if pad == "same":
        t, b = same_pads(hw[0], k_eff[0], stride[0])
        l, r = same_pads(hw[1], k_eff[1], stride[1])
        return (t, l, b, r)
    return tuple(pad)


def window_out(size, k_eff, stride, p0, p1, ceil_mode=False):
    """Output length of a sliding window: floor((size + p0 + p1 - k_eff) / stride) + 1."""
    span = size + p0 + p1 - k_eff
    if span < 0:
        return 0
    if ceil_mode:
        out = -(-span // stride) + 1
        if (out - 1) * stride >= size + p0:   # PyTorch: the last window must start inside
            out -= 1
        return out
    return span // stride + 1


def window_arith(size, k_eff, stride, p0, p1, out=None, ceil_mode=False):
    """'(32 + 2·2 − 5)/1 + 1 = 32' — the lecture formula with these numbers, and always true:
    a division that is not exact is written with its rounding, ⌊(7 − 3)/3⌋ + 1 = 2 (⌈…⌉ with
    ceil_mode; "− 1" where PyTorch drops a last window that would start in the padding), and a
    window larger than the padded input gives the negative number the formula gives,
    (32 − 40)/1 + 1 = -7. The result is computed here, not taken from `out` (kept for callers)."""
    pad = f" + 2·{p0}" if p0 == p1 and p0 else (f" + {p0} + {p1}" if (p0 or p1) else "")
    span = size + p0 + p1 - k_eff
    inner = f"({size}{pad} − {k_eff})/{stride}"
    if span % stride == 0:
        text, value = f"{inner} + 1", span // stride + 1
    elif ceil_mode and span >= 0:
        text, value = f"⌈{inner}⌉ + 1", -(-span // stride) + 1
    else:
        text, value = f"⌊{inner}⌋ + 1", span // stride + 1
    if ceil_mode and span >= 0 and (value - 1) * stride >= size + p0:   # the last window must start inside
        text, value = text + " − 1", value - 1
    return f"{text} = {value}"


def window_fit_note(size, k_eff, stride, p0, p1, ceil_mode=False, axis=0):
    """The lecture's "doesn't fit" remark when (size + pads − k) is not a multiple of the
    stride: how many rows (axis 0), columns (1) or both (2) at the end no window covers, and how
    many of those are padding. None when the stride fits."""
    span = size + p0 + p1 - k_eff
    if span < 0 or span % stride == 0:
        return None
    left = span % stride
    word = ("row", "column", "row and column")[axis]
    words = ("rows", "columns", "rows and columns")[axis]

    def n_units(n):
        return f"the last {word}" if n == 1 else f"the last {n} {words}"
    head = f"stride {stride} does not fit the input evenly: "
    if ceil_mode and window_out(size, k_eff, stride, p0, p1, True) > span // stride + 1:
        tail = f"ceil_mode adds a last, partial window over {n_units(left)}"
    else:
        real = max(0, left - p1)          # rows of the input itself among the uncovered ones
        verb = "is" if left == 1 and axis != 2 else "are"
        if real == left:
            tail = f"{n_units(left)} of the input {verb} never covered"
        elif real == 0:
            tail = f"{n_units(left)} of the padded input {verb} never covered (padding only)"
        else:
            tail = f"{n_units(left)} of the padded input {verb} never covered ({real} of them input, " \
                   f"{left - real} padding)"
    if stride > k_eff:
        gap = stride - k_eff
        tail += f"; and the window ({k_eff}) is smaller than the stride, so {gap} {word if gap == 1 else words} " \
                f"between windows {'are' if gap != 1 else 'is'} skipped each time"
    return head + tail


def spatial_out(op, shape, k_eff, stride, pads, ceil_mode=False):
    """Output (H, W) of a window op; a size that shrinks to zero is an error with the arithmetic."""
    t, l, b, r = pads
    outs = []
    for axis, (size, k, s, p0, p1) in enumerate(((shape[1], k_eff[0], stride[0], t, b),
                                                 (shape[2], k_eff[1], stride[1], l, r))):
        o = window_out(size, k, s, p0, p1, ceil_mode)
        if o <= 0:
            where = "height" if axis == 0 else "width"
            padded = f"the padded input ({size + p0 + p1})" if p0 or p1 else f"the input ({size})"
            raise OpError(f"{op}: the output {where} shrinks to zero: the window ({k}) is larger than "
                          f"{padded}: {window_arith(size, k, s, p0, p1, o, ceil_mode)}",
                          hint=f"the input is only {size} pixel{'s' if size != 1 else ''} there; use a smaller kernel, "
                               f"more padding (pad=same) or remove a downsampling layer earlier")
        outs.append(o)
    return tuple(outs)


def dilated(k, d):
    return (k[0] - 1) * d[0] + 1, (k[1] - 1) * d[1] + 1


def pad_nchw(x, pads, value=0.0):
    t, l, b, r = pads
    return np.pad(x, ((0, 0), (0, 0), (t, b), (l, r)), constant_values=value)


def windows(x, k, stride, dilation=(1, 1)):
    """A strided view (N, C, OH, OW, KH, KW) over an already padded NCHW array."""
    n, c, h, w = x.shape
    kh, kw = k
    keh, kew = dilated(k, dilation)
    oh = (h - keh) // stride[0] + 1
    ow = (w - kew) // stride[1] + 1
    sn, sc, sh, sw = x.strides
    return np.lib.stride_tricks.as_strided(
        x, (n, c, oh, ow, kh, kw),
        (sn, sc, sh * stride[0], sw * stride[1], sh * dilation[0], sw * dilation[1]),
        writeable=False)


__all__ = ["Attr", "OpSpec", "OpError", "REQUIRED", "Fraction"]
