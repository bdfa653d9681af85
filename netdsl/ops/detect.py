"""Detection decoding: Darknet's YOLO heads as ops, YoloDecode (v3/v4 [yolo]) and RegionDecode (v2 [region]).

Both read the raw head, (A·(5+K), H, W): per anchor a, the channels a·(5+K) + (tx, ty, tw, th,
to, t_1 .. t_K) as Darknet lays them out, and write one row per box, (A·H·W, 5+K), boxes in
the order (anchor, row, column), each row (x, y, w, h, objectness, class_1 .. class_K): centre
and size as fractions of the image (0..1), objectness and class probabilities. The formulas
are Darknet's (yolo_layer.c get_yolo_box, region_layer.c get_region_box), σ(t) = 1/(1+e^-t):

    YoloDecode    x = (col + s·σ(tx) - (s-1)/2) / W      w = e^tw · anchor_w / image_w
                  y = (row + s·σ(ty) - (s-1)/2) / H      h = e^th · anchor_h / image_h
                  objectness σ(to), classes σ(t_k)       (s = scale_x_y, 1 in YOLOv3; anchors in pixels)
    RegionDecode  x = (col + σ(tx)) / W                  w = e^tw · anchor_w / W
                  y = (row + σ(ty)) / H                  h = e^th · anchor_h / H
                  objectness σ(to), classes softmax(t) (anchors in cells; softmax=false leaves the
                  class values as they are, as AlexeyAB's region layer does: pjreddie's current one
                  applies σ there; every published YOLOv2 cfg has softmax=1)

A detection's score is objectness · class probability; non-maximum suppression is not an op
(it makes a variable number of boxes): netdsl/runtime/detect.py runs it on these rows.
What this does not do: scaled-YOLOv4's new_coords, YOLO9000's softmax tree, letterboxing (the
image is resized to the network's size, so boxes are fractions of the original image too).
"""
from __future__ import annotations

import numpy as np

from . import register
from .attrs import Attr, OpError, bool_, float_, float_tuple, pair, pos_int
from .geometry import need_rank, shape_str
from .spec import OpSpec

MAX_ANCHORS = 32        # the C params struct holds up to 32 (w, h) pairs


def _anchors(v, name):
    t = float_tuple(v, name)
    if len(t) % 2 or not t:
        raise OpError(f"'{name}' must be (w, h) pairs: an even count of numbers, got {len(t)}",
                      hint="write anchors=(10, 14, 23, 27, 37, 58): one (width, height) per anchor")
    if len(t) > 2 * MAX_ANCHORS:
        raise OpError(f"'{name}' holds {len(t) // 2} anchors; at most {MAX_ANCHORS} are supported")
    if any(not x > 0 for x in t):
        raise OpError(f"'{name}' must be positive sizes, got {t}")
    return t


def _sigmoid(t):
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-t))


class _Decode(OpSpec):
    arity = 1
    output_sign = "any"
    detection = True    # its rows feed non-maximum suppression (netdsl/runtime/detect.py; `netdsl run`)

    def example(self):
        return f"{self.name}(80, anchors=(10, 14, 23, 27))"

    def resolve(self, a, shapes):
        need_rank(shapes[0], (3,), self.name)
        c = shapes[0][0]
        na, k = len(a["anchors"]) // 2, a["classes"]
        if c != na * (5 + k):
            raise OpError(f"{self.name} with {na} anchors and {k} classes reads {na} x (5 + {k}) = "
                          f"{na * (5 + k)} channels, but its input has {c} ({shape_str(shapes[0])})",
                          attr="classes", hint=f"the conv before it should make {na * (5 + k)} channels")
        return a

    def infer(self, a, shapes):
        c, h, w = shapes[0]
        na = len(a["anchors"]) // 2
        return (na * h * w, 5 + a["classes"])

    def macs(self, a, shapes, out):
        return 0

    def window(self, a, shapes):
        return (shapes[0][1], shapes[0][2], shapes[0][1], shapes[0][2])   # rows, not a map: as Flatten

    def explain(self, a, shapes, out):
        c, h, w = shapes[0]
        na = len(a["anchors"]) // 2
        return [f"{na} anchors x {h}x{w} cells = {na * h * w:,} boxes of (x, y, w, h, objectness, "
                f"{a['classes']} classes)"]

    def _split(self, a, x):
        n, c, h, w = x.shape
        na, k = len(a["anchors"]) // 2, a["classes"]
        t = np.asarray(x, np.float64).reshape(n, na, 5 + k, h, w)
        col = np.arange(w, dtype=np.float64).reshape(1, 1, 1, w)
        row = np.arange(h, dtype=np.float64).reshape(1, 1, h, 1)
        anc = np.asarray(a["anchors"], np.float64).reshape(na, 2)
        aw, ah = anc[:, 0].reshape(1, na, 1, 1), anc[:, 1].reshape(1, na, 1, 1)
        return t, n, na, k, h, w, col, row, aw, ah

    @staticmethod
    def _rows(parts, n, na, h, w, k):
        y = np.stack(parts[:5], axis=-1)                             # (n, na, h, w, 5)
        cls = np.moveaxis(parts[5], 2, -1)                           # (n, na, h, w, k)
        return np.concatenate([y, cls], axis=-1).reshape(n, na * h * w, 5 + k)


@register
class YoloDecode(_Decode):
    name = "YoloDecode"
    aliases = ("Yolo",)
    doc = "Darknet [yolo] head: boxes (x, y, w, h, objectness, classes) from sigmoid/exp with pixel anchors."
    attrs = (
        Attr("classes", pos_int, 80, "number of classes K (the input has anchors x (5 + K) channels)"),
        Attr("anchors", _anchors, (10, 14, 23, 27, 37, 58), "the head's anchors in pixels: (w, h) pairs"),
        Attr("image", pair, (416, 416), "network input height x width (anchors are divided by it)"),
        Attr("scale_xy", float_, 1.0, "Darknet scale_x_y: x = (col + s·σ(tx) - (s-1)/2) / W"),
    )
    samples = ((dict(classes=2, anchors=(10, 14, 23, 27, 37, 58), image=(64, 96)), [(21, 5, 7)]),
               (dict(classes=3, anchors=(81, 82), scale_xy=1.05), [(8, 3, 5)]))

    def example(self):
        return "YoloDecode(80, anchors=(81, 82, 135, 169, 344, 319), image=416x416)"

    def reference(self, a, xs, w):
        t, n, na, k, h, wd, col, row, aw, ah = self._split(a, xs[0])
        s = a["scale_xy"]
        ih, iw = a["image"]
        with np.errstate(over="ignore", invalid="ignore"):
            bx = (col + _sigmoid(t[:, :, 0]) * s - 0.5 * (s - 1)) / wd
            by = (row + _sigmoid(t[:, :, 1]) * s - 0.5 * (s - 1)) / h
            bw = np.exp(t[:, :, 2]) * aw / iw
            bh = np.exp(t[:, :, 3]) * ah / ih
            parts = [bx, by, bw, bh, _sigmoid(t[:, :, 4]), _sigmoid(t[:, :, 5:])]
        return self._rows(parts, n, na, h, wd, k).astype(np.asarray(xs[0]).dtype, copy=False)


@register
class RegionDecode(_Decode):
    name = "RegionDecode"
    aliases = ("Region",)
    doc = "Darknet [region] head (YOLOv2): boxes from sigmoid/exp with anchors in cells, softmax classes."
    attrs = (
        Attr("classes", pos_int, 20, "number of classes K (the input has anchors x (5 + K) channels)"),
        Attr("anchors", _anchors, (1.08, 1.19, 3.42, 4.41, 6.63, 11.38, 9.42, 5.11, 16.62, 10.52),
             "anchors in grid cells: (w, h) pairs"),
        Attr("softmax", bool_, True, "classes by softmax (Darknet softmax=1); false: the raw values"),
    )
    samples = ((dict(classes=3, anchors=(1.08, 1.19, 3.42, 4.41)), [(16, 5, 7)]),
               (dict(classes=2, anchors=(1.5, 2.0), softmax=False), [(7, 3, 3)]))

    def example(self):
        return "RegionDecode(20, anchors=(1.08, 1.19, 3.42, 4.41))"

    def reference(self, a, xs, w):
        t, n, na, k, h, wd, col, row, aw, ah = self._split(a, xs[0])
        with np.errstate(over="ignore", invalid="ignore"):
            bx = (col + _sigmoid(t[:, :, 0])) / wd
            by = (row + _sigmoid(t[:, :, 1])) / h
            bw = np.exp(t[:, :, 2]) * aw / wd
            bh = np.exp(t[:, :, 3]) * ah / h
            cls = t[:, :, 5:]
            if a["softmax"]:
                # Darknet's softmax_cpu: subtract the largest, exp, divide by the sum. A NaN
                # makes the whole row NaN (the kernel skips it in the max, and exp(NaN) is NaN)
                m = np.max(np.where(np.isnan(cls), -np.inf, cls), axis=2, keepdims=True)
                e = np.exp(cls - m)
                cls = e / e.sum(axis=2, keepdims=True)
            parts = [bx, by, bw, bh, _sigmoid(t[:, :, 4]), cls]
        return self._rows(parts, n, na, h, wd, k).astype(np.asarray(xs[0]).dtype, copy=False)


__all__ = ["YoloDecode", "RegionDecode"]
