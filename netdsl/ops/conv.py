"""Conv and Local (locally connected): sliding-window linear layers.

Conv shares one (OC, C/g, KH, KW) filter bank over every output position;
Local has its own filter per output position, (OH*OW, OC, C*KH*KW) in a
layout like PyTorch's unfold-based LocallyConnected2d, so the lecture's
LCL-vs-CL parameter comparison comes out of the same arithmetic.
The numpy references are written for clarity, not speed: they are the oracle.
"""
from __future__ import annotations

import numpy as np

from . import register
from .activations import NAMES as ACT_NAMES, act_kind, apply as apply_act
from .attrs import Attr, OpError, bool_, padding, pair, pos_int
from .geometry import (dilated, need_rank, pad_nchw, resolve_pads, shape_str, spatial_out,
                       window_arith, window_fit_note, windows)
from .spec import OpSpec


class _Window(OpSpec):
    """Shared attribute handling for Conv and Local."""
    arity = 1

    def example(self):
        return f"{self.name}(64, 3)"

    def resolve(self, a, shapes):
        need_rank(shapes[0], (3,), self.name)
        a = dict(a)
        a["pad"] = resolve_pads(a["pad"], shapes[0][1:], dilated(a["kernel"], a["dilation"]), a["stride"])
        a["in_channels"] = shapes[0][0]
        return a

    def out_hw(self, a, shapes):
        return spatial_out(self.name, shapes[0], dilated(a["kernel"], a["dilation"]), a["stride"], a["pad"])

    def window(self, a, shapes):
        kh, kw = dilated(a["kernel"], a["dilation"])
        return (kh, kw, a["stride"][0], a["stride"][1])

    def explain(self, a, shapes, out):
        c, h, w = shapes[0]
        keh, kew = dilated(a["kernel"], a["dilation"])
        t, l, b, r = a["pad"]
        same = (h, keh, a["stride"][0], t, b) == (w, kew, a["stride"][1], l, r)
        lines = [f"H: {window_arith(h, keh, a['stride'][0], t, b, out[1])}"]
        if not same:
            lines.append(f"W: {window_arith(w, kew, a['stride'][1], l, r, out[2])}")
        notes = [window_fit_note(h, keh, a["stride"][0], t, b, axis=2 if same else 0)]
        if not same:
            notes.append(window_fit_note(w, kew, a["stride"][1], l, r, axis=1))
        return lines + [n for n in notes if n]


@register
class Conv(_Window):
    name = "Conv"
    aliases = ("Conv2d", "Convolution", "CONV", "conv")
    doc = "2-D convolution (cross-correlation, as in every framework)."
    arity = (1, 2)      # the second input is the fused residual (residual=true)
    flags = frozenset({"has_weights", "fusible_epilogue"})
    epilogues = ACT_NAMES
    accepts_residual = True
    linear = True
    attrs = (
        Attr("out_channels", pos_int, doc="number of filters"),
        Attr("kernel", pair, 3, "kernel size: 3 or 3x5"),
        Attr("stride", pair, 1, "step between windows"),
        Attr("pad", padding, 0, "same, valid, p, (ph, pw) or (top, left, bottom, right)"),
        Attr("dilation", pair, 1, "spacing between kernel taps"),
        Attr("groups", pos_int, 1, "channel groups; groups = in channels is depthwise"),
        Attr("bias", bool_, True, "add a learned bias"),
        Attr("act", act_kind(), "none", "fused activation after the convolution"),
        Attr("residual", bool_, False,
             "a second input r of the output's shape is added before act: act(conv(x) + r)"),
    )

    def overwrites(self, a, shapes):
        # y = act(conv(x) + r) reads r[i] only for y[i], so y may take r's buffer (no copy of r
        # into y first); not depthwise, whose kernels add r in a second pass over y
        depthwise = (a.get("groups") or 1) > 1 and a.get("groups") == shapes[0][0]
        return 1 if a.get("residual") and len(shapes) == 2 and not depthwise else None

    def resolve(self, a, shapes):
        want = 2 if a.get("residual") else 1
        if len(shapes) != want:
            if want == 2:
                raise OpError("Conv with residual=true adds a second input, but gets one",
                              attr="residual", hint="write [ ... | shortcut ] - Conv(..., residual=true)")
            raise OpError(f"Conv takes one input, but {len(shapes)} parallel branches arrive here",
                          hint="merge the branches first: [ ... | ... ] - Concat (or Add); a second "
                               "input is only for residual=true")
        a = super().resolve(a, shapes)
        c, g = shapes[0][0], a["groups"]
        if c % g or a["out_channels"] % g:
            raise OpError(f"Conv groups={g} must divide both the input channels ({c}) and "
                          f"out_channels ({a['out_channels']})", attr="groups",
                          hint="depthwise convolution is groups equal to the input channels")
        return a

    def infer(self, a, shapes):
        out = (a["out_channels"], *self.out_hw(a, shapes))
        if a.get("residual") and len(shapes) > 1 and tuple(shapes[1]) != out:
            raise OpError(f"Conv's residual input is {shape_str(shapes[1])} but its output is "
                          f"{shape_str(out)}", attr="residual",
                          hint="the residual is added value by value: both must have the same shape")
        return out

    def params(self, a, shapes):
        kh, kw = a["kernel"]
        p = {"weight": (a["out_channels"], shapes[0][0] // a["groups"], kh, kw)}
        if a["bias"]:
            p["bias"] = (a["out_channels"],)
        return p

    def macs(self, a, shapes, out):
        kh, kw = a["kernel"]
        return out[0] * out[1] * out[2] * (shapes[0][0] // a["groups"]) * kh * kw

    def explain(self, a, shapes, out):
        kh, kw = a["kernel"]
        cin = shapes[0][0] // a["groups"]
        per = f"{kh}·{kw}·{cin}" + (" + 1" if a["bias"] else "")
        n = kh * kw * cin + (1 if a["bias"] else 0)
        return super().explain(a, shapes, out) + [
            f"params: ({per})·{a['out_channels']} = {n * a['out_channels']:,}"
            + (f"  ({n} per filter)" if a["bias"] else "")] + (
            ["+ the residual input, value by value, before the activation"] if a.get("residual") else [])

    def absorbs_affine(self, a, shapes, side):
        if side == "out":       # act(conv + r)·s + t would scale r too
            return not a.get("residual")
        return not any(a["pad"])   # padded zeros would have to become −shift/scale

    def fold_affine(self, a, shapes, w, scale, shift, side):
        weight = w["weight"].astype(np.float64)
        oc, cg = weight.shape[:2]
        bias = w["bias"].astype(np.float64) if a["bias"] else np.zeros(oc)
        if side == "out":
            return {"weight": weight * scale[:, None, None, None], "bias": bias * scale + shift}
        # weight[o, j] reads input channel (o // (oc/g))·cg + j
        chan = (np.arange(oc) // (oc // a["groups"]))[:, None] * cg + np.arange(cg)
        s, t = scale[chan][:, :, None, None], shift[chan][:, :, None, None]
        return {"weight": weight * s, "bias": bias + (weight * t).sum(axis=(1, 2, 3))}

    def reference(self, a, xs, w):
        x = pad_nchw(xs[0], a["pad"])
        g, oc = a["groups"], a["out_channels"]
        weight = w["weight"]
        cg, og = x.shape[1] // g, oc // g
        outs = []
        for gi in range(g):
            win = windows(x[:, gi * cg:(gi + 1) * cg], a["kernel"], a["stride"], a["dilation"])
            outs.append(np.einsum("nchwij,ocij->nohw", win, weight[gi * og:(gi + 1) * og], optimize=True))
        y = np.concatenate(outs, axis=1)
        if a["bias"]:
            y = y + w["bias"].reshape(1, -1, 1, 1)
        if a.get("residual"):
            y = y + xs[1]
        return apply_act(y, a["act"])

    samples = (
        (dict(out_channels=4, kernel=3), [(3, 7, 9)]),
        (dict(out_channels=5, kernel=3, stride=2, pad=1, act="relu"), [(3, 9, 7)]),
        (dict(out_channels=4, kernel=(3, 5), pad=(1, 2, 0, 1), dilation=2, bias=False, act="leakyrelu"),
         [(3, 11, 13)]),
        (dict(out_channels=6, kernel=3, pad=1, groups=2, act="sigmoid"), [(4, 7, 7)]),
        (dict(out_channels=6, kernel=3, stride=2, pad=1, groups=6, act="tanh"), [(6, 9, 9)]),   # depthwise
        (dict(out_channels=7, kernel=1), [(5, 5, 7)]),                                           # 1x1 GEMM
        (dict(out_channels=5, kernel=5), [(3, 5, 5)]),                    # one output pixel: dot products
        (dict(out_channels=4, kernel=3, pad=1, residual=True, act="relu"), [(3, 7, 7), (4, 7, 7)]),
    )


@register
class Local(_Window):
    name = "Local"
    aliases = ("LocallyConnected", "LCL", "LC")
    doc = "Locally connected layer: a convolution whose weights are not shared across positions."
    flags = frozenset({"has_weights"})
    linear = True
    attrs = (
        Attr("out_channels", pos_int, doc="number of filters per position"),
        Attr("kernel", pair, 3, "kernel size"),
        Attr("stride", pair, 1, "step between windows"),
        Attr("pad", padding, 0, "same, valid, p, (ph, pw) or (top, left, bottom, right)"),
        Attr("dilation", pair, 1, "spacing between kernel taps"),
        Attr("bias", bool_, True, "a learned bias per output position and channel"),
    )

    def infer(self, a, shapes):
        return (a["out_channels"], *self.out_hw(a, shapes))

    def params(self, a, shapes):
        oc, oh, ow = self.infer(a, shapes)
        kh, kw = a["kernel"]
        p = {"weight": (oh * ow, oc, shapes[0][0] * kh * kw)}
        if a["bias"]:
            p["bias"] = (oc, oh, ow)
        return p

    def init(self, a, shapes, rng):
        p = self.params(a, shapes)
        fan_in = p["weight"][2]
        out = {"weight": (rng.standard_normal(p["weight"]) * np.sqrt(2.0 / fan_in)).astype(np.float32)}
        if "bias" in p:
            out["bias"] = np.zeros(p["bias"], np.float32)
        return out

    def macs(self, a, shapes, out):
        kh, kw = a["kernel"]
        return out[0] * out[1] * out[2] * shapes[0][0] * kh * kw

    def explain(self, a, shapes, out):
        kh, kw = a["kernel"]
        c = shapes[0][0]
        n = kh * kw * c + (1 if a["bias"] else 0)
        per = f"{kh}·{kw}·{c}" + (" + 1" if a["bias"] else "")
        return super().explain(a, shapes, out) + [
            f"params: ({per})·{a['out_channels']}·{out[1]}·{out[2]} positions = "
            f"{n * a['out_channels'] * out[1] * out[2]:,}  (unshared; a Conv would have "
            f"{n * a['out_channels']:,})"]

    def reference(self, a, xs, w):
        x = pad_nchw(xs[0], a["pad"])
        win = windows(x, a["kernel"], a["stride"], a["dilation"])      # n c oh ow kh kw
        n, c, oh, ow, kh, kw = win.shape
        cols = win.transpose(0, 2, 3, 1, 4, 5).reshape(n, oh * ow, c * kh * kw)
        y = np.einsum("npk,pok->nop", cols, w["weight"], optimize=True).reshape(n, -1, oh, ow)
        if a["bias"]:
            y = y + w["bias"][None]
        return y

    samples = (
        (dict(out_channels=3, kernel=3), [(2, 5, 7)]),
        (dict(out_channels=4, kernel=(3, 2), stride=2, pad=1, dilation=(1, 2), bias=False), [(3, 7, 9)]),
    )
