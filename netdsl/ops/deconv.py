"""ConvTranspose ("deconvolution"): the learned upsampling of FCN and U-Net.

Semantics and weight layout are PyTorch's ConvTranspose2d: weight is
(C_in, OC/groups, KH, KW), each input pixel scatters a weighted copy of the
kernel into the output at stride s, and `pad` then crops that many pixels
from each border (it is not input padding, so 'same' is not offered):

    OH = (H − 1)·s − pt − pb + d·(k − 1) + output_padding + 1

It is exactly the adjoint (transpose) of Conv with the same weight array,
stride, pad, dilation and groups; the tests use that as the oracle.
The numpy reference scatters one kernel tap at a time: clear, not fast.
"""
from __future__ import annotations

import math

import numpy as np

from . import register
from .activations import NAMES as ACT_NAMES, act_kind, apply as apply_act
from .attrs import Attr, OpError, bool_, padding, pair, pos_int
from fractions import Fraction
from .geometry import dilated, need_rank
from .spec import OpSpec


def int_pads(v, name):
    """p, (ph, pw) or (top, left, bottom, right): integers only (they crop the output)."""
    if isinstance(v, str):
        raise OpError(f"'{name}' of ConvTranspose must be integers, got {v}",
                      hint="ConvTranspose's pad crops its output; for an exact 2x upsampling "
                           "write kernel=4, stride=2, pad=1 (or kernel=2, stride=2, pad=0)")
    return padding(v, name)


def nonneg_pair(v, name):
    """Like pair, but 0 is allowed."""
    return pair(v, name, minimum=0)


def _out_len(size, k_eff, s, p0, p1, op):
    return (size - 1) * s - p0 - p1 + k_eff + op


def _arith(size, k, d, s, p0, p1, op, out):
    pads = f" − 2·{p0}" if p0 == p1 else f" − {p0} − {p1}"
    kern = f"{d}·({k} − 1)"
    return f"({size} − 1)·{s}{pads} + {kern} + {op} + 1 = {out}"


@register
class ConvTranspose(OpSpec):
    name = "ConvTranspose"
    aliases = ("Deconv", "ConvTranspose2d", "UpConv")
    doc = "Transposed convolution (fractionally strided): learned upsampling."
    arity = 1
    flags = frozenset({"has_weights", "fusible_epilogue"})
    epilogues = ACT_NAMES
    linear = True
    attrs = (
        Attr("out_channels", pos_int, doc="number of output channels"),
        Attr("kernel", pair, 3, "kernel size: 4 or 4x4"),
        Attr("stride", pair, 1, "upsampling factor"),
        Attr("pad", int_pads, 0, "pixels cropped from each output border: p, (ph, pw) or 4 ints"),
        Attr("output_padding", nonneg_pair, 0,
             "extra rows/columns added at the bottom/right (picks among the sizes a stride allows)"),
        Attr("dilation", pair, 1, "spacing between kernel taps"),
        Attr("groups", pos_int, 1, "channel groups"),
        Attr("bias", bool_, True, "add a learned bias"),
        Attr("act", act_kind(), "none", "fused activation after the layer"),
    )

    def example(self):
        return "ConvTranspose(64, 4, stride=2, pad=1)"

    def check(self, a):
        for op, s, d in zip(a["output_padding"], a["stride"], a["dilation"]):
            if op >= max(s, d):
                raise OpError(f"ConvTranspose output_padding {op} must be smaller than the stride "
                              f"({s}) or the dilation ({d})", attr="output_padding",
                              hint="output_padding only picks among the output sizes one stride allows; "
                                   "use 0 or up to stride − 1")

    def resolve(self, a, shapes):
        need_rank(shapes[0], (3,), self.name)
        c, g = shapes[0][0], a["groups"]
        if c % g or a["out_channels"] % g:
            raise OpError(f"ConvTranspose groups={g} must divide both the input channels ({c}) and "
                          f"out_channels ({a['out_channels']})", attr="groups")
        a = dict(a)
        a["in_channels"] = c
        return a

    def infer(self, a, shapes):
        need_rank(shapes[0], (3,), self.name)
        c, h, w = shapes[0]
        keh, kew = dilated(a["kernel"], a["dilation"])
        t, l, b, r = a["pad"]
        (sh, sw), (oph, opw) = a["stride"], a["output_padding"]
        out = []
        for axis, (size, k, ke, d, s, p0, p1, op) in enumerate((
                (h, a["kernel"][0], keh, a["dilation"][0], sh, t, b, oph),
                (w, a["kernel"][1], kew, a["dilation"][1], sw, l, r, opw))):
            o = _out_len(size, ke, s, p0, p1, op)
            if o <= 0:
                raise OpError(f"ConvTranspose: the output {'height' if axis == 0 else 'width'} is not "
                              f"positive: {_arith(size, k, d, s, p0, p1, op, o)}", attr="pad",
                              hint="pad crops the output; use less of it")
            out.append(o)
        return (a["out_channels"], *out)

    def params(self, a, shapes):
        kh, kw = a["kernel"]
        p = {"weight": (shapes[0][0], a["out_channels"] // a["groups"], kh, kw)}
        if a["bias"]:
            p["bias"] = (a["out_channels"],)
        return p

    def macs(self, a, shapes, out):
        c, h, w = shapes[0]
        kh, kw = a["kernel"]
        return c * h * w * (a["out_channels"] // a["groups"]) * kh * kw

    def window(self, a, shapes):
        keh, kew = dilated(a["kernel"], a["dilation"])
        sh, sw = a["stride"]
        return (math.ceil(keh / sh), math.ceil(kew / sw), Fraction(1, sh), Fraction(1, sw))

    def explain(self, a, shapes, out):
        c, h, w = shapes[0]
        (kh, kw), (dh, dw), (sh, sw) = a["kernel"], a["dilation"], a["stride"]
        t, l, b, r = a["pad"]
        oph, opw = a["output_padding"]
        lines = [f"H: {_arith(h, kh, dh, sh, t, b, oph, out[1])}"]
        if (h, kh, dh, sh, t, b, oph) != (w, kw, dw, sw, l, r, opw):
            lines.append(f"W: {_arith(w, kw, dw, sw, l, r, opw, out[2])}")
        og = a["out_channels"] // a["groups"]
        n = c * og * kh * kw
        bias = f" + {a['out_channels']}" if a["bias"] else ""
        total = n + (a["out_channels"] if a["bias"] else 0)
        lines.append(f"params: {c}·{og}·{kh}·{kw}{bias} = {total:,}")
        return lines

    def absorbs_affine(self, a, shapes, side):
        return side == "out"    # on the input side, border outputs get fewer taps of the shift

    def fold_affine(self, a, shapes, w, scale, shift, side):
        weight = w["weight"].astype(np.float64)               # (C, OC/g, KH, KW)
        c, og = weight.shape[:2]
        bias = w["bias"].astype(np.float64) if a["bias"] else np.zeros(a["out_channels"])
        # weight[i, j] writes output channel (i // (C/g))·og + j
        chan = (np.arange(c) // (c // a["groups"]))[:, None] * og + np.arange(og)
        return {"weight": weight * scale[chan][:, :, None, None], "bias": bias * scale + shift}

    def reference(self, a, xs, w):
        x = xs[0]
        n, c, h, wd = x.shape
        weight = w["weight"]                                  # (C, OC/g, KH, KW)
        g, oc = a["groups"], a["out_channels"]
        cg, og = c // g, oc // g
        (kh, kw), (sh, sw), (dh, dw) = a["kernel"], a["stride"], a["dilation"]
        oph, opw = a["output_padding"]
        keh, kew = dilated(a["kernel"], a["dilation"])
        full_h, full_w = (h - 1) * sh + keh + oph, (wd - 1) * sw + kew + opw
        dtype = np.result_type(x, weight)
        full = np.zeros((n, oc, full_h, full_w), dtype)
        for gi in range(g):
            xg = x[:, gi * cg:(gi + 1) * cg]
            wg = weight[gi * cg:(gi + 1) * cg]                 # (cg, og, KH, KW)
            for i in range(kh):
                for j in range(kw):
                    # tap (i, j) of input pixel (y, x) lands on output (y·s + i·d, x·s + j·d)
                    contrib = np.einsum("nchw,co->nohw", xg, wg[:, :, i, j])
                    full[:, gi * og:(gi + 1) * og,
                         i * dh:i * dh + (h - 1) * sh + 1:sh,
                         j * dw:j * dw + (wd - 1) * sw + 1:sw] += contrib
        t, l, b, r = a["pad"]
        y = full[:, :, t:full_h - b, l:full_w - r]
        if a["bias"]:
            y = y + w["bias"].reshape(1, -1, 1, 1)
        return apply_act(y, a["act"])

    samples = (
        (dict(out_channels=3, kernel=4, stride=2, pad=1), [(2, 5, 5)]),
        (dict(out_channels=4, kernel=3, stride=3, output_padding=2, act="sigmoid"), [(3, 5, 3)]),
        (dict(out_channels=3, kernel=(3, 5), stride=(2, 1), pad=(1, 0, 0, 2), dilation=2, bias=False),
         [(2, 5, 7)]),
        (dict(out_channels=4, kernel=2, stride=2, groups=2, act="relu"), [(4, 3, 5)]),
    )
