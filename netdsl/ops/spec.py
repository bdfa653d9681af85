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

import numpy as np

from ..errors import did_you_mean
from .attrs import OpError


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
                     activations, BatchNorm, Add, Mul. The planner reads it (overwrites()).
    overwrites(a, shapes)  the input the kernel may write its output over, or None: input 0
                     for inplace_ok ops; a residual Conv's r (input 1) except depthwise.
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

    def overwrites(self, a, shapes):
        """Index of the input this op's kernel may overwrite with its output (the planner puts
        the output in that input's buffer when the input dies here and has the output's size)."""
        return 0 if "inplace_ok" in self.flags else None

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
        from .activations import NONE, TABLE      # (activations imports this module)
        act = a.get("act", NONE)
        if (act in TABLE and TABLE[act].nonneg) or self.output_sign == "nonneg":
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
