"""The losses of a training step: softmax cross-entropy, MSE, BCE with logits.

    loss = get_loss("cross_entropy", label_smoothing=0.1)     # or "ce", "xent", "mse", "bce"
    loss.check(out_shape)                          # the network's output, without the batch
    t = loss.prepare_targets(y, out_shape, n)      # float32 flat, validated (labels in range)
    call = loss.call(out_shape, n)                 # ins = (output, targets)

Each loss is one C kernel (csrc/kernels/train_loss.c) that writes one block of the arena:

    [ d_output : n * prod(out_shape) floats | loss : 1 | correct : 1 ]

d_output is the gradient of the MEAN loss (over the batch, and over the pixels for
per-pixel CE) w.r.t. the output; for CE and BCE the output is the logits (no Softmax /
Sigmoid layer before the loss: the kernel applies it, fused and numerically stable).
`correct` counts the samples (pixels) the network got right: argmax == label for CE,
(z > 0) == (t > 0.5) for BCE, 0 for MSE. Targets live in the arena as float32: class labels
are exact integers there (K < 2^24 is checked).

`reference(out64, target64)` is the float64 numpy oracle (loss, d_output, correct) the tests
hold the kernels to, and the kernels are held to torch.nn.functional. Deliberately not
here: class weights, ignore_index, reductions other than the mean, losses over outputs
with more than one spatial layout (CE takes (K,) or (K,H,W) only).
"""
from __future__ import annotations

import inspect
import math

import numpy as np

from ..errors import NetDSLError, did_you_mean
from ..runtime.executor import check_int64
from ..runtime.kparams import KernelCall

MAX_CLASSES = 1 << 24       # labels are float32 in the arena: exact integers below 2^24


def _shape_str(s) -> str:
    return "(" + ", ".join(str(int(d)) for d in s) + ("," if len(s) == 1 else "") + ")"


def _squeezed(shape) -> tuple:
    return tuple(int(d) for d in shape if d != 1)


def _check_target_shape(what, y, expected, hint):
    """y as an array of shape `expected`: the exact shape, or one that differs only by size-1
    axes ((n, 1) for (n,), (n, 1, H, W) for (n, H, W)); NetDSLError otherwise."""
    y = np.asarray(y)
    expected = tuple(int(d) for d in expected)
    if y.shape != expected and (y.size != math.prod(expected) or _squeezed(y.shape) != _squeezed(expected)):
        raise NetDSLError(f"{what} have shape {_shape_str(y.shape)}, the loss needs {_shape_str(expected)}",
                          hint=hint)
    return y.reshape(expected)


class Loss:
    """One loss: its shape rule, its targets' layout and validation, its kernel and its oracle."""
    name = ""
    aliases: tuple = ()
    logits = False              # True: the output it takes is logits (no Softmax/Sigmoid before it)

    def check(self, out_shape) -> None:
        """NetDSLError if this loss cannot take an output of this shape (without the batch)."""
        s = tuple(out_shape)
        if not s or any(int(d) <= 0 for d in s):
            raise NetDSLError(f"{self.name}: the network's output has shape {_shape_str(s)}; "
                              f"the loss needs a non-empty tensor")

    def out_floats(self, out_shape, n) -> int:
        """Floats of the kernel's out block: d_output, loss, correct."""
        return check_int64(f"{self.name} output", n, *out_shape) + 2

    def target_floats(self, out_shape, n) -> int:
        """Floats the targets of a batch of n take in the arena."""
        self.check(out_shape)
        return check_int64(f"{self.name} targets", n, *out_shape)

    def prepare_targets(self, y, out_shape, n) -> np.ndarray:
        """The targets of a batch as the arena holds them: float32, flat, validated."""
        raise NotImplementedError

    def call(self, out_shape, n) -> KernelCall:
        """The kernel: ins = (output, targets), out = [d_output | loss | correct]."""
        raise NotImplementedError

    def reference(self, out64, target64):
        """(mean loss, d_output shaped like out64, correct) in float64 numpy."""
        raise NotImplementedError

    def config(self) -> dict:
        """The name and options, JSON-able (get_loss(**config) rebuilds it)."""
        return {"name": self.name}

    def describe(self) -> str:
        opts = [f"{k}={v}" for k, v in self.config().items() if k != "name"]
        return f"{self.name}({', '.join(opts)})" if opts else self.name

    def __repr__(self):
        return f"Loss({self.describe()})"


class CrossEntropy(Loss):
    """Softmax cross-entropy on logits (K,) (one label per sample) or (K,H,W) (one label per
    pixel), torch.nn.functional.cross_entropy with its label_smoothing."""
    name = "cross_entropy"
    aliases = ("ce", "xent", "crossentropy", "softmax_cross_entropy")
    logits = True

    def __init__(self, label_smoothing: float = 0.0):
        eps = float(label_smoothing)
        if not 0.0 <= eps <= 1.0:
            raise NetDSLError(f"cross_entropy: label_smoothing={label_smoothing!r} is outside [0, 1]",
                              hint="0 is no smoothing; 0.1 is the usual value")
        self.label_smoothing = eps

    def check(self, out_shape) -> None:
        super().check(out_shape)
        s = tuple(int(d) for d in out_shape)
        if len(s) not in (1, 3):
            raise NetDSLError(f"cross_entropy: the network's output has shape {_shape_str(s)}; it needs "
                              f"class scores (K,) or per-pixel scores (K, H, W)",
                              hint="end the network with FC(K) (or a K-channel conv for segmentation)")
        if s[0] < 2:
            raise NetDSLError(f"cross_entropy: the network's output has {s[0]} class; it needs K >= 2",
                              hint="for one output unit use bce_with_logits")
        if s[0] >= MAX_CLASSES:
            raise NetDSLError(f"cross_entropy: {s[0]} classes; the labels are exact only below 2^24")

    @staticmethod
    def _split(out_shape):
        s = tuple(int(d) for d in out_shape)
        return s[0], s[1:], math.prod(s[1:])          # K, spatial shape, positions per sample

    def target_floats(self, out_shape, n) -> int:
        self.check(out_shape)
        _, _, inner = self._split(out_shape)
        return check_int64("cross_entropy labels", n, inner)

    def prepare_targets(self, y, out_shape, n) -> np.ndarray:
        """Class labels, integers in [0, K): shape (n,) for (K,) outputs, (n, H, W) for (K, H, W)."""
        self.check(out_shape)
        k, spatial, _ = self._split(out_shape)
        y = np.asarray(y)
        where = "one class index per sample" if not spatial else "one class index per pixel"
        if y.dtype.kind not in "iuf" and y.dtype != np.bool_:
            raise NetDSLError(f"cross_entropy: labels of dtype {y.dtype}; they must be integers", hint=where)
        y = _check_target_shape("cross_entropy: the labels", y, (int(n), *spatial), where)
        yf = y.astype(np.float64, copy=False)
        bad = ~((yf >= 0) & (yf < k) & (yf == np.floor(yf)))     # NaN is bad too
        if bad.any():
            i = int(np.flatnonzero(bad.ravel())[0])
            at = np.unravel_index(i, y.shape)
            at = str(int(at[0])) if len(at) == 1 else "(" + ", ".join(str(int(a)) for a in at) + ")"
            v = float(yf.ravel()[i])
            text = str(int(v)) if math.isfinite(v) and v == math.floor(v) else repr(v)
            what = "is not an integer" if math.isfinite(v) and 0 <= v < k else f"is outside [0, {k})"
            raise NetDSLError(f"cross_entropy: label {text} at index {at} {what}: the output has K = {k} classes",
                              hint=f"labels are class indices 0 .. {k - 1}" +
                                   (" (1-based labels? subtract 1)" if yf.min() >= 1 and yf.max() == k else ""))
        return np.ascontiguousarray(y, dtype=np.float32).ravel()

    def call(self, out_shape, n) -> KernelCall:
        self.check(out_shape)
        k, _, inner = self._split(out_shape)
        check_int64("cross_entropy output", n, k, inner, 2)
        return KernelCall("nd_loss_ce_f32", "nd_loss_ce_params",
                          dict(n=int(n), k=k, inner=inner, label_smoothing=self.label_smoothing),
                          weights=(None, None))

    def reference(self, out64, target64):
        """(mean loss, d_output like out64, correct) in float64, torch's formula term for term."""
        x = np.asarray(out64, np.float64)
        n, k = x.shape[0], x.shape[1]
        xr = x.reshape(n, k, -1)
        lab = np.asarray(target64, np.float64).reshape(n, -1).astype(np.int64)
        m = xr.max(axis=1, keepdims=True)
        e = np.exp(xr - m)
        s = e.sum(axis=1, keepdims=True)
        logp = xr - m - np.log(s)
        onehot = np.zeros_like(xr)
        np.put_along_axis(onehot, lab[:, None, :], 1.0, axis=1)
        eps = self.label_smoothing
        nll = -np.take_along_axis(logp, lab[:, None, :], axis=1)[:, 0, :]
        loss = (1.0 - eps) * nll.mean()
        if eps > 0:
            loss += eps * (-logp.mean(axis=1)).mean()
        q = (1.0 - eps) * onehot + eps / k
        d = (e / s - q) / lab.size
        correct = int((xr.argmax(axis=1) == lab).sum())
        return float(loss), d.reshape(x.shape), correct

    def config(self) -> dict:
        return {"name": self.name, "label_smoothing": self.label_smoothing} if self.label_smoothing \
            else {"name": self.name}


class _Elementwise(Loss):
    """A loss with one float target per output value (MSE, BCE)."""
    hint = ""

    def prepare_targets(self, y, out_shape, n) -> np.ndarray:
        """Float targets of the output's shape, (n, *out_shape)."""
        self.check(out_shape)
        y = np.asarray(y)
        if y.dtype.kind not in "iufb":
            raise NetDSLError(f"{self.name}: targets of dtype {y.dtype}; they must be numbers", hint=self.hint)
        y = _check_target_shape(f"{self.name}: the targets", y, (int(n), *out_shape), self.hint)
        return np.ascontiguousarray(y, dtype=np.float32).ravel()

    def call(self, out_shape, n) -> KernelCall:
        self.check(out_shape)
        size = check_int64(f"{self.name} output", *out_shape)
        check_int64(f"{self.name} output", n, size, 2)
        return KernelCall(self.symbol, self.struct, dict(n=int(n), size=size), weights=(None, None))


class MSE(_Elementwise):
    """Mean squared error, torch.nn.functional.mse_loss (reduction='mean'); correct is 0."""
    name = "mse"
    aliases = ("mse_loss", "l2")
    symbol, struct = "nd_loss_mse_f32", "nd_loss_mse_params"
    hint = "one float target per output value"

    def reference(self, out64, target64):
        z = np.asarray(out64, np.float64)
        r = z - np.asarray(target64, np.float64).reshape(z.shape)
        return float((r * r).mean()), 2.0 * r / r.size, 0


class BCEWithLogits(_Elementwise):
    """Binary cross-entropy on logits, torch.nn.functional.binary_cross_entropy_with_logits."""
    name = "bce_with_logits"
    aliases = ("bce", "binary_cross_entropy_with_logits", "bce_logits")
    logits = True
    symbol, struct = "nd_loss_bce_f32", "nd_loss_bce_params"
    hint = "one target in [0, 1] per output value (the probability that it is 1)"

    def reference(self, out64, target64):
        z = np.asarray(out64, np.float64)
        t = np.asarray(target64, np.float64).reshape(z.shape)
        loss = np.maximum(z, 0) - z * t + np.log1p(np.exp(-np.abs(z)))
        sig = np.where(z >= 0, 1.0 / (1.0 + np.exp(-np.abs(z))), np.exp(-np.abs(z)) / (1.0 + np.exp(-np.abs(z))))
        return float(loss.mean()), (sig - t) / z.size, int(((z > 0) == (t > 0.5)).sum())


LOSSES = (CrossEntropy, MSE, BCEWithLogits)
_BY_NAME = {alias: cls for cls in LOSSES for alias in (cls.name, *cls.aliases)}


def loss_names() -> list:
    """The canonical loss names (get_loss also takes each loss's aliases)."""
    return [cls.name for cls in LOSSES]


def get_loss(name, **kw) -> Loss:
    """The loss called `name` ("cross_entropy" / "ce" / "xent", "mse", "bce_with_logits" /
    "bce"), built with its options (cross_entropy: label_smoothing). A Loss passes through."""
    if isinstance(name, Loss):
        if kw:
            raise NetDSLError(f"get_loss: options {', '.join(kw)} given with a ready Loss {name.describe()}")
        return name
    key = str(name).strip().lower().replace("-", "_")
    cls = _BY_NAME.get(key)
    if cls is None:
        hint = did_you_mean(key, list(_BY_NAME)) or \
            "the losses: " + ", ".join(f"{c.name} ({', '.join(c.aliases[:2])})" for c in LOSSES)
        raise NetDSLError(f"unknown loss {name!r}", hint=hint)
    allowed = [] if cls.__init__ is object.__init__ else \
        [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    extra = [k for k in kw if k not in allowed]
    if extra:
        takes = f"takes {', '.join(allowed)}" if allowed else "takes no options"
        raise NetDSLError(f"loss {cls.name} {takes}; got {', '.join(extra)}",
                          hint=did_you_mean(extra[0], allowed) if allowed else None)
    return cls(**kw)
