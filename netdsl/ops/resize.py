"""Spatial resizing without weights: Upsample, Pad, Crop.

Upsample follows PyTorch's F.interpolate: 'nearest' takes source pixel
floor(dst·in/out); 'bilinear' with align_corners=False uses half-pixel
centres, src = (dst + 0.5)·in/out − 0.5 clamped at 0, and with
align_corners=True src = dst·(in − 1)/(out − 1). Scale factors are integers
(the FCN / U-Net / YOLO use); any other ratio is written with size=.

Pad adds borders (constant, reflect or replicate, as F.pad). Crop cuts a
window out of the first input: a centre crop to `size`, a crop at `offset`,
or — with a second input — a centre crop to the second input's height and
width, which is U-Net's skip-connection crop. MACs are 0.
"""
from __future__ import annotations

import numpy as np

from . import register
from .attrs import Attr, OpError, bool_, choice, float_, fmt, optional, padding, pair
from fractions import Fraction
from .geometry import need_rank, shape_str
from .spec import OpSpec


# ---------------------------------------------------------------- Upsample

def _source_index(n_out, n_in, mode, align_corners):
    """Per output index along one axis: (i0, i1, weight of i1)."""
    dst = np.arange(n_out, dtype=np.float64)
    if mode == "nearest":
        i0 = np.minimum(np.arange(n_out) * n_in // n_out, n_in - 1)
        return i0, i0, np.zeros(n_out)
    if align_corners:
        src = dst * ((n_in - 1) / (n_out - 1)) if n_out > 1 else np.zeros(n_out)
    else:
        src = np.maximum((dst + 0.5) * (n_in / n_out) - 0.5, 0.0)
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    return i0, i1, src - i0


@register
class Upsample(OpSpec):
    name = "Upsample"
    output_sign = "inputs"
    aliases = ("Upsampling", "Resize")
    doc = "Nearest or bilinear upsampling by an integer scale or to a size."
    linear = True
    arity = 1
    attrs = (
        Attr("scale", optional(pair), None, "integer factor, 2 or 2x3 (2 if neither scale nor size)"),
        Attr("size", optional(pair), None, "output height and width instead of a scale"),
        Attr("mode", choice("nearest", "bilinear"), "nearest", "interpolation"),
        Attr("align_corners", bool_, False, "bilinear only: map corner pixel centres onto each other"),
    )

    def example(self):
        return "Upsample(2, mode=bilinear)"

    def check(self, a):
        if a["scale"] is not None and a["size"] is not None:
            raise OpError("Upsample takes scale or size, not both", attr="size",
                          hint="drop one of them")
        if a["align_corners"] and a["mode"] != "bilinear":
            raise OpError("align_corners only applies to mode=bilinear", attr="align_corners",
                          hint="drop align_corners, or write mode=bilinear")

    def resolve(self, a, shapes):
        need_rank(shapes[0], (3,), self.name)
        a = dict(a)
        if a["size"] is None:
            a["scale"] = a["scale"] or (2, 2)
            a["size"] = (shapes[0][1] * a["scale"][0], shapes[0][2] * a["scale"][1])
        return a

    def infer(self, a, shapes):
        need_rank(shapes[0], (3,), self.name)
        return (shapes[0][0], *a["size"])

    def window(self, a, shapes):
        k = 1 if a["mode"] == "nearest" else 2
        c, h, w = shapes[0]
        oh, ow = a["size"]
        return (k, k, Fraction(h, oh), Fraction(w, ow))

    def explain(self, a, shapes, out):
        c, h, w = shapes[0]
        if a["scale"]:
            sh, sw = a["scale"]
            how = f"×{sh}" if sh == sw else f"×{sh}x{sw}"
        else:
            how = "to size"
        return [f"{a['mode']} {how}: {h}x{w} → {out[1]}x{out[2]}"]

    def reference(self, a, xs, w):
        x = xs[0]
        h, wd = x.shape[2:]
        oh, ow = a["size"]
        r0, r1, fr = _source_index(oh, h, a["mode"], a["align_corners"])
        c0, c1, fc = _source_index(ow, wd, a["mode"], a["align_corners"])
        if a["mode"] == "nearest":          # a copy: weights of 0 would turn inf into NaN (inf·0)
            return x[:, :, r0][:, :, :, c0]
        fr, fc = fr[:, None], fc[None, :]
        top = x[:, :, r0][:, :, :, c0] * (1 - fc) + x[:, :, r0][:, :, :, c1] * fc
        bottom = x[:, :, r1][:, :, :, c0] * (1 - fc) + x[:, :, r1][:, :, :, c1] * fc
        return (top * (1 - fr) + bottom * fr).astype(x.dtype, copy=False)

    samples = (
        (dict(scale=2), [(2, 3, 5)]),
        (dict(scale=(2, 3), mode="bilinear"), [(2, 3, 5)]),
        (dict(size=(7, 11), mode="bilinear", align_corners=True), [(2, 3, 5)]),
        (dict(size=(3, 4)), [(2, 5, 7)]),                     # shrinking
    )


# ---------------------------------------------------------------- Pad

def int_padding(v, name):
    if isinstance(v, str):
        raise OpError(f"Pad needs pixel counts for '{name}', got {v}",
                      hint="write p, (ph, pw) or (top, left, bottom, right); 'same' belongs on Conv/Pool")
    return padding(v, name)


@register
class Pad(OpSpec):
    name = "Pad"
    doc = "Add borders: constant value, reflection or edge replication."
    linear = True
    arity = 1
    attrs = (
        Attr("pad", int_padding, doc="p, (ph, pw) or (top, left, bottom, right)"),
        Attr("mode", choice("constant", "reflect", "replicate"), "constant", "what fills the border"),
        Attr("value", float_, 0.0, "fill value for mode=constant"),
    )

    def example(self):
        return "Pad(1)"

    def infer(self, a, shapes):
        need_rank(shapes[0], (3,), self.name)
        c, h, w = shapes[0]
        t, l, b, r = a["pad"]
        if a["mode"] == "reflect" and (max(t, b) >= h or max(l, r) >= w):
            raise OpError(f"Pad mode=reflect needs pads smaller than the input: {h}x{w} padded by "
                          f"{fmt(a['pad'])}", attr="pad", hint="use mode=replicate or a smaller pad")
        return (c, h + t + b, w + l + r)

    def identity(self, a, shapes, out):
        return not any(a["pad"])

    def nonnegative_output(self, a, inputs_nonneg):
        return all(inputs_nonneg) and (a["mode"] != "constant" or a["value"] >= 0)

    def explain(self, a, shapes, out):
        c, h, w = shapes[0]
        t, l, b, r = a["pad"]
        return [f"H: {h} + {t} + {b} = {out[1]}", f"W: {w} + {l} + {r} = {out[2]}"]

    def reference(self, a, xs, w):
        t, l, b, r = a["pad"]
        widths = ((0, 0), (0, 0), (t, b), (l, r))
        x = xs[0]
        if a["mode"] == "constant":
            return np.pad(x, widths, constant_values=a["value"])
        return np.pad(x, widths, mode="reflect" if a["mode"] == "reflect" else "edge")

    samples = (
        (dict(pad=1), [(2, 3, 5)]),
        (dict(pad=(0, 1, 2, 3), mode="reflect"), [(2, 5, 7)]),
        (dict(pad=2, mode="replicate"), [(2, 3, 5)]),
        (dict(pad=(1, 2), value=-1.5), [(1, 3, 3)]),
    )


# ---------------------------------------------------------------- Crop

def _nonneg_pair(v, name):
    return pair(v, name, minimum=0)


@register
class Crop(OpSpec):
    name = "Crop"
    output_sign = "inputs"
    doc = "Cut an HxW window: centre crop to size, at offset, or to a second input's size (U-Net)."
    linear = True
    arity = (1, 2)
    attrs = (
        Attr("size", optional(pair), None, "output height and width (one input)"),
        Attr("offset", optional(_nonneg_pair), None,
             "top-left corner of the window; centred if not given"),
    )

    def example(self):
        return "Crop(28x28)"

    def resolve(self, a, shapes):
        need_rank(shapes[0], (3,), self.name)
        a = dict(a)
        c, h, w = shapes[0]
        if len(shapes) == 2:
            need_rank(shapes[1], (3,), self.name, "second input")
            if a["size"] is not None and tuple(a["size"]) != tuple(shapes[1][1:]):
                raise OpError(f"Crop got size={fmt(a['size'])} and a second input of size "
                              f"{shape_str(shapes[1][1:])}", attr="size",
                              hint="with two inputs the second one gives the size; drop size=")
            a["size"] = tuple(shapes[1][1:])
        elif a["size"] is None:
            raise OpError("Crop needs size= (or a second input to crop to)",
                          hint="write Crop(28x28), or Crop(x, ref) to crop x to ref's size")
        oh, ow = a["size"]
        if oh > h or ow > w:
            raise OpError(f"Crop to {oh}x{ow} is larger than its input {h}x{w}",
                          attr="size" if len(shapes) == 1 else None,
                          hint="Crop only shrinks; to grow a map use Pad or Upsample")
        if a["offset"] is None:
            a["offset"] = ((h - oh) // 2, (w - ow) // 2)
        y0, x0 = a["offset"]
        if y0 + oh > h or x0 + ow > w:
            raise OpError(f"Crop window {oh}x{ow} at offset ({y0}, {x0}) runs past the {h}x{w} input",
                          attr="offset", hint=f"offsets may be at most ({h - oh}, {w - ow})")
        return a

    def infer(self, a, shapes):
        need_rank(shapes[0], (3,), self.name)
        return (shapes[0][0], *a["size"])

    def identity(self, a, shapes, out):
        return tuple(a["size"]) == tuple(shapes[0][1:])      # the window is the whole input

    def explain(self, a, shapes, out):
        c, h, w = shapes[0]
        y0, x0 = a["offset"]
        return [f"{h}x{w} → rows {y0}…{y0 + out[1] - 1}, columns {x0}…{x0 + out[2] - 1} "
                f"({out[1]}x{out[2]})"]

    def reference(self, a, xs, w):
        (y0, x0), (oh, ow) = a["offset"], a["size"]
        return xs[0][:, :, y0:y0 + oh, x0:x0 + ow]

    samples = (
        (dict(size=(3, 5)), [(2, 7, 9)]),
        (dict(size=3, offset=(1, 2)), [(2, 5, 7)]),
        ({}, [(2, 7, 9), (1, 3, 5)]),                         # to a second input's size (U-Net)
    )
