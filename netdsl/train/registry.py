"""How an op says how it is trained: its backward kernels, its training-mode forward, its oracle.

Three registries, filled by the modules `netdsl/train/bwd_<family>.py` and
`netdsl/train/ref_<family>.py` (imported on first use, like runtime/kparams):

    @backward("Conv")
    def conv(a, in_shapes, out_shape, n, need) -> list[Bwd]
        The kernel calls that compute the gradients in `need`, a set of names among
        "dx0", "dx1", ... (the gradient of input i) and "dparams" (the layer's trainable
        parameters). A rule emits exactly the ones asked for, each written whole (no
        accumulation: the planner sums the gradients of a tensor with several readers).

    @train_forward("BatchNorm")
    def bn(a, in_shapes, out_shape, n) -> TrainForward
        For ops whose forward differs while training (BatchNorm: batch statistics;
        Dropout: a seeded mask; StochasticPool: sampling), and for Conv, whose training
        forward packs its weights each step (they change every step; the inference
        kernel's packing is done once at load). Every other op trains with its inference
        kernel (runtime/kparams), unfused and unpacked.

    @grad_ref("Conv")
    def conv(a, xs, params, y, dy) -> (list of dx or None, {param name: dparam})
        The float64 numpy oracle of the backward pass (xs, params, y, dy are float64
        arrays; batched NCHW like the op's reference). Tested against finite
        differences of OpSpec.reference and against torch.autograd when installed.

Buffer tokens (the strings a Bwd / TrainForward uses to name what it reads and writes):

    "x0", "x1", ...  the layer's forward inputs         "y"      its forward output
    "dy"             the gradient of its output         "saved"  what its training forward
                                                                 stored after y (TrainForward)
    "dx0", ...       the gradient of input i            "dparams" the gradient block of the
                                                                 layer's trainable parameters
    "params"         the layer's trainable parameters:  OpSpec.params order, each in PyTorch
                     layout, packed one after another (no padding), as one block
    "buffers"        the layer's buffers (OpSpec.buffers order, packed: BatchNorm's
                     running_mean then running_var), updated in place by a TrainForward

"dparams" has exactly the layout of "params". In the arena all trainable parameters form
one contiguous region, mirrored by the gradient region and each optimizer-state region,
so the optimizer and gradient clipping run over whole regions.
"""
from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field

OUT_TOKENS = ("dparams",)           # plus "dx<i>"
IN_TOKENS = ("dy", "y", "saved", "params", "buffers")   # plus "x<i>"


@dataclass
class Bwd:
    """One backward kernel call: out = one gradient, ins = forward/backward tensors by token."""
    call: object                    # runtime.kparams.KernelCall; its `weights` field is ignored
    out: str                        # "dx<i>" or "dparams"
    ins: tuple                      # tokens, in the order the kernel's ins[] pointers take them
    w: str | None = None            # "params" (the kernel's w pointer) or None
    out_floats: int | None = None   # floats written at out (whole batch); None: the tensor's size


@dataclass
class TrainForward:
    """A training-mode forward: out points at y, and `saved_floats` more floats after y that
    the backward reads as "saved" (batch mean and 1/std, a dropout mask, sampled indices)."""
    call: object
    ins: tuple = ("x0",)            # tokens
    w: str | None = None            # "params" or None
    saved_floats: int = 0
    seeded: bool = False            # the params struct has a uint64 `seed` the session sets each step
    extra: dict = field(default_factory=dict)


_BACKWARD: dict = {}
_TRAIN_FORWARD: dict = {}
_GRAD_REF: dict = {}
_loaded = False


def _register(table, ops):
    def deco(fn):
        for op in ops:
            table[op] = fn
        return fn
    return deco


def backward(*ops):
    return _register(_BACKWARD, ops)


def train_forward(*ops):
    return _register(_TRAIN_FORWARD, ops)


def grad_ref(*ops):
    return _register(_GRAD_REF, ops)


def _load():
    global _loaded
    if _loaded:
        return
    _loaded = True
    from .. import train as pkg
    for m in pkgutil.iter_modules(pkg.__path__):
        if m.name.startswith(("bwd_", "ref_")):
            importlib.import_module(f"{pkg.__name__}.{m.name}")


def backward_rule(op):
    """The @backward function of an op, or None (the op cannot be trained through)."""
    _load()
    return _BACKWARD.get(op)


def train_forward_rule(op):
    _load()
    return _TRAIN_FORWARD.get(op)


def grad_reference(op):
    _load()
    return _GRAD_REF.get(op)


def trainable_ops() -> list:
    _load()
    return sorted(_BACKWARD)
