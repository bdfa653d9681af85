"""Shared shape arithmetic of window ops (Conv, pools, Local, ConvTranspose) and the numpy
helpers their references use: output sizes, 'same' padding, the lecture's formula written
with its numbers (floors, negative results and the stride-does-not-fit note included), and
strided window views over padded NCHW arrays.
"""
from __future__ import annotations

import numpy as np

from .attrs import OpError

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
