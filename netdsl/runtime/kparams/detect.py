"""Params for csrc/kernels/detect.c: YoloDecode and RegionDecode (netdsl/ops/detect.py)."""
from __future__ import annotations

from . import KernelCall, kparams


def _fields(a, in_shapes, n, region):
    c, h, w = in_shapes[0]
    anchors = [float(v) for v in a["anchors"]]
    ih, iw = a.get("image", (h, w))
    return dict(n=n, anchors=len(anchors) // 2, classes=a["classes"], h=h, w=w, region=int(region),
                softmax=int(bool(a.get("softmax", False))), scale_xy=float(a.get("scale_xy", 1.0)),
                image_h=float(ih), image_w=float(iw), anchor=anchors)


@kparams("YoloDecode")
def yolo_decode(a, in_shapes, out_shape, n):
    return KernelCall("nd_detect_f32", "nd_detect_params", _fields(a, in_shapes, n, False), weights=(None, None))


@kparams("RegionDecode")
def region_decode(a, in_shapes, out_shape, n):
    return KernelCall("nd_detect_f32", "nd_detect_params", _fields(a, in_shapes, n, True), weights=(None, None))
