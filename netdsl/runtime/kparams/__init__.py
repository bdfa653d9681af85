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
