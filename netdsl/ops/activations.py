"""The activation set, declared once: what each activation computes (numpy), whether it maps
NaN to NaN, whether its output is never negative, and the name of its C enum value (`nd_act`
in csrc/nd_common.h).

Everything that knows about activations reads this table: the standalone ops (ReLU,
LeakyReLU, Sigmoid, Tanh in activation.py; ReLU6 in clip.py; HardSigmoid, HardSwish, SiLU,
GELU, Mish in activation_more.py) compute their reference with it; a layer's fused
epilogue (`act=` of Conv, FC, ConvTranspose, Add, BatchNorm) is one of its names, the
attribute's choices come from it (`act_kind`), and the layer's reference applies it (`apply`);
the kernel params map a name to its C enum through cffi:

    getattr(lib, activations.c_enum(a.get("act", "none")))      # ND_ACT_NONE .. ND_ACT_MISH

What a fused epilogue has built in is part of the entry (`fixed`): LeakyReLU's fused form has
slope 0.01, so only a LeakyReLU with exactly that slope may be fused (`fused_name`);
HardSigmoid's has PyTorch's alpha = 1/6, beta = 1/2 and GELU's the exact (erf) form. Clip and
Hardtanh fuse as relu6 when their bounds are exactly 0 and 6 (their spec's `epilogue`).

The x-times activations (hardswish, silu, gelu, mish) give NaN at x = -inf (-inf · 0), as
PyTorch does; every kernel agrees.

Not here: Softmax and LogSoftmax (they normalize over channels; no layer fuses them).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import math

import numpy as np

from .attrs import choice
from .spec import OpSpec

NONE = "none"                   # the `act` value of a layer without an epilogue
NONE_C_ENUM = "ND_ACT_NONE"


def relu(x):
    # np.maximum keeps NaN (a compare-and-select `x > 0 ? x : 0` would turn it into 0)
    return np.maximum(x, 0)


def leaky_relu(x, slope):
    # x ≥ 0 is false for NaN, and NaN·slope is NaN: NaN stays
    return np.where(x >= 0, x, x * slope).astype(x.dtype, copy=False)


def sigmoid(x):
    # 1/(1+e^-x) written as (1 + tanh(x/2))/2: the same function, and no overflow for x << 0
    return (0.5 * (1 + np.tanh(0.5 * x))).astype(x.dtype, copy=False)


def tanh(x):
    return np.tanh(x)


def relu6(x):
    # np.minimum/np.maximum keep NaN
    return np.minimum(np.maximum(x, 0), 6).astype(x.dtype, copy=False)


def clip(x, lo=None, hi=None):
    """min(max(x, lo), hi) as torch.clamp (lo > hi gives hi); None: no bound. NaN stays."""
    y = x if lo is None else np.maximum(x, np.asarray(lo, x.dtype))
    y = y if hi is None else np.minimum(y, np.asarray(hi, x.dtype))
    return np.asarray(y).astype(x.dtype, copy=False)


def is_sixth(alpha) -> bool:
    """alpha is 1/6 to float32 precision (what PyTorch's hardsigmoid exports to ONNX)."""
    return np.float32(alpha) == np.float32(1 / 6)


def hard_sigmoid(x, alpha=1 / 6, beta=0.5):
    """min(max(alpha·x + beta, 0), 1); PyTorch's defaults written as PyTorch does: relu6(x + 3) / 6
    (alpha 1/6 also as a float32 reads it: an ONNX export's 0.16666667)."""
    if is_sixth(alpha) and beta == 0.5:
        return (relu6(x + 3) / 6).astype(x.dtype, copy=False)
    return np.minimum(np.maximum(x * alpha + beta, 0), 1).astype(x.dtype, copy=False)


def hard_swish(x):
    # x · (relu6(x + 3) / 6), not (x · relu6(x + 3)) / 6: no overflow for |x| > 5e37 in float32
    with np.errstate(invalid="ignore"):
        return (x * (relu6(x + 3) / 6)).astype(x.dtype, copy=False)


def _sigmoid_stable(x):
    # e = e^-|x| never overflows; NaN: x >= 0 is false and e/(1 + e) is NaN
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def silu(x):
    # x·sigmoid(x): sigmoid(-inf) = 0 exactly, so silu(-inf) = NaN as in PyTorch
    with np.errstate(invalid="ignore"):
        return (x * _sigmoid_stable(x)).astype(x.dtype, copy=False)


_erfc = np.vectorize(math.erfc, otypes=[np.float64])


def gelu(x, approximate="none"):
    """x·Φ(x) (erfc: no cancellation for x << 0), or PyTorch's tanh approximation."""
    with np.errstate(invalid="ignore", over="ignore"):
        if approximate == "tanh":
            x64 = np.asarray(x, np.float64)
            u = math.sqrt(2 / math.pi) * (x64 + 0.044715 * x64 ** 3)
            y = 0.5 * x64 * (1 + np.tanh(u))
        else:
            x64 = np.asarray(x, np.float64)
            y = 0.5 * x64 * (_erfc(-x64 / math.sqrt(2)) if x64.size else x64)
    return y.astype(x.dtype, copy=False)


def mish(x):
    # softplus as logaddexp(0, x): no overflow; mish(-inf) = -inf·0 = NaN as in PyTorch
    with np.errstate(invalid="ignore"):
        return (x * np.tanh(np.logaddexp(0, x))).astype(x.dtype, copy=False)


@dataclass(frozen=True)
class Activation:
    """One element-wise activation a layer may apply to its own output."""
    name: str                   # the `act` value, and the standalone op's name in lower case
    op: str                     # the standalone op
    fn: Callable                # numpy: fn(x, **params) with the dtype of x
    keeps_nan: bool             # fn(NaN) is NaN; every kernel (standalone and fused) must agree
    c_enum: str                 # its value in csrc/nd_common.h `enum nd_act`
    formula: str
    fixed: tuple = ()           # ((param, value), ...) the fused epilogue has built in
    nonneg: bool = False        # every output is >= 0 (or NaN), whatever the input

    def __call__(self, x, **params):
        """The activation with the fused epilogue's built-in parameters unless given."""
        return self.fn(x, **{**dict(self.fixed), **params})


TABLE: dict[str, Activation] = {a.name: a for a in (
    Activation("relu", "ReLU", relu, True, "ND_ACT_RELU", "max(0, x)", nonneg=True),
    Activation("leakyrelu", "LeakyReLU", leaky_relu, True, "ND_ACT_LEAKYRELU", "x if x ≥ 0 else slope·x",
               fixed=(("slope", 0.01),)),
    Activation("sigmoid", "Sigmoid", sigmoid, True, "ND_ACT_SIGMOID", "1 / (1 + e^−x)", nonneg=True),
    Activation("tanh", "Tanh", tanh, True, "ND_ACT_TANH", "tanh(x)"),
    Activation("relu6", "ReLU6", relu6, True, "ND_ACT_RELU6", "min(max(x, 0), 6)", nonneg=True),
    Activation("hardsigmoid", "HardSigmoid", hard_sigmoid, True, "ND_ACT_HARDSIGMOID", "relu6(x + 3) / 6",
               fixed=(("alpha", 1 / 6), ("beta", 0.5)), nonneg=True),
    Activation("hardswish", "HardSwish", hard_swish, True, "ND_ACT_HARDSWISH", "x · relu6(x + 3) / 6"),
    Activation("silu", "SiLU", silu, True, "ND_ACT_SILU", "x · sigmoid(x)"),
    Activation("gelu", "GELU", gelu, True, "ND_ACT_GELU", "x · (1 + erf(x / √2)) / 2",
               fixed=(("approximate", "none"),)),
    Activation("mish", "Mish", mish, True, "ND_ACT_MISH", "x · tanh(log(1 + e^x))"),
)}
NAMES = tuple(TABLE)            # every activation a layer can fuse, in C enum order


def get(name: str) -> Activation:
    return TABLE[name]


def act_kind(*names):
    """Attribute kind of a layer's `act`: none or one of `names` (default: all). The word
    `none` arrives from the language as None and means none."""
    names = names or NAMES
    unknown = [n for n in names if n not in TABLE]
    if unknown:
        raise ValueError(f"not in the activation table: {unknown}")
    base = choice(NONE, *names)

    def kind(v, name):
        return NONE if v is None else base(v, name)
    kind.options = base.options
    return kind


def apply(y, act):
    """A layer's fused epilogue on its output y (act `none` or None: y unchanged)."""
    if act is None or act == NONE:
        return y
    return TABLE[act](y)


def fused_name(op: str, a: dict):
    """The `act` value that the standalone op `op` with attributes `a` becomes when fused into
    the layer before it: its table name, when its parameters are the ones the fused epilogue has
    built in (LeakyReLU(0.1) is not leakyrelu); else None."""
    for entry in TABLE.values():
        if entry.op == op:
            return entry.name if all(a.get(k) == v for k, v in entry.fixed) else None
    return None


class Pointwise(OpSpec):
    """The spec base of the table's standalone ops (activation.py, clip.py, activation_more.py): entry `act` gives the NaN
    behaviour and the `act` value the op becomes when fused; its reference calls the entry's
    function."""
    flags = frozenset({"elementwise", "inplace_ok"})
    act = ""

    @property
    def preserves_nan(self):
        return TABLE[self.act].keeps_nan

    def epilogue(self, a):
        return fused_name(self.name, a)


def c_enum(act) -> str:
    """The C enum name for an `act` value: "ND_ACT_NONE" for none/None. A name that is not in
    the table raises ValueError (the kernel params turn it into their PlanError)."""
    if act is None or act == NONE:
        return NONE_C_ENUM
    if act not in TABLE:
        raise ValueError(f"no fused epilogue for activation {act!r} (the table has {', '.join(NAMES)})")
    return TABLE[act].c_enum


__all__ = ["Activation", "Pointwise", "TABLE", "NAMES", "NONE", "NONE_C_ENUM", "get", "act_kind", "apply",
           "fused_name", "c_enum"]
