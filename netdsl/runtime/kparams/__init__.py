"""Plan-time parameter builders: one function per op that turns a node's
resolved attributes and shapes into the fields of its C params struct.

    @kparams("MaxPool")
    def maxpool(a, in_shapes, out_shape, n):
        return KernelCall("nd_maxpool_f32", "nd_maxpool_params", {...fields...}, ws_floats=0)

Shapes exclude the batch; `n` is the batch size. Each module in this package
is imported on first use (one per csrc/kernels/<family>.c), so adding an op
adds a file here and never edits a table.
"""
from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field

_BUILDERS = {}
_loaded = False


@dataclass
class KernelCall:
    symbol: str                 # C function, e.g. "nd_conv_f32"
    struct: str                 # params struct type, e.g. "nd_conv_params"
    fields: dict                # struct field -> int/float value
    ws_floats: int = 0          # workspace the kernel needs, in floats
    weights: tuple = ("weight", "bias")   # which node parameters go to w and bias (None to skip)
    extra: dict = field(default_factory=dict)


# The window kernels' index arithmetic stays below this (csrc/dispatch.h: ND_INDEX_MAX / 4).
INDEX_LIMIT = 2**58


def check_window(op, axis, size, out, k, s, d, p0, p1):
    """PlanError unless every index a window kernel forms along one axis fits its limit.

    Along an axis the kernels form o*s - p0 + i*d (o < out, i < k) and clipping sums around
    it; all are bounded by out*s + p0 + p1 + k*d + size + s, which must stay <= INDEX_LIMIT
    so that no signed overflow can happen in C whatever the compiler flags. For a transposed
    conv pass the input size as `out` and the output size as `size` (its windows run over
    the input)."""
    bound = out * s + p0 + p1 + k * d + size + s
    if bound > INDEX_LIMIT:
        from ..executor import PlanError
        raise PlanError(f"{op}: along {axis} the kernel's indices reach {out}·{s} + {p0} + {p1} + {k}·{d} + "
                        f"{size} + {s} = {bound:,}, past the kernels' limit 2^58 = {INDEX_LIMIT:,} "
                        f"(stride, dilation or padding this large cannot be run)")


def kparams(*ops):
    def deco(fn):
        for op in ops:
            _BUILDERS[op] = fn
        return fn
    return deco


def builder(op):
    global _loaded
    if not _loaded:
        _loaded = True
        for m in pkgutil.iter_modules(__path__):
            importlib.import_module(f"{__name__}.{m.name}")
    return _BUILDERS.get(op)
