"""YoloDecode / RegionDecode against Darknet's formulas written as Darknet writes them (scalar
loops over entry_index, get_yolo_box / get_region_box, softmax_cpu), and NMS on hand-made boxes.

The oracle here is a second, independent transcription of the C sources' arithmetic (one box at a
time, Darknet's channel indexing), not the vectorized reference in netdsl/ops/detect.py; the
kernel itself is held to that reference on every ISA by tests/ops/test_op_kernels.py.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from netdsl.runtime import detect


def _sig(t):
    return 1.0 / (1.0 + math.exp(-t))


def _entry(A, K, H, W, a, e, loc):
    """Darknet's entry_index for one image: n*w*h*(4+1+classes) + entry*w*h + loc."""
    return a * W * H * (5 + K) + e * W * H + loc


def darknet_yolo(x, anchors, K, net_w, net_h, sxy=1.0):
    """forward_yolo_layer (logistic on x, y, objectness, classes) + get_yolo_box, box by box."""
    A = len(anchors) // 2
    _, C, H, W = x.shape
    flat = x[0].reshape(-1)
    rows = []
    for a in range(A):
        for loc in range(H * W):
            i, j = loc % W, loc // W
            t = [flat[_entry(A, K, H, W, a, e, loc)] for e in range(5 + K)]
            bx = (i + _sig(t[0]) * sxy - 0.5 * (sxy - 1)) / W
            by = (j + _sig(t[1]) * sxy - 0.5 * (sxy - 1)) / H
            bw = math.exp(t[2]) * anchors[2 * a] / net_w
            bh = math.exp(t[3]) * anchors[2 * a + 1] / net_h
            rows.append([bx, by, bw, bh, _sig(t[4])] + [_sig(v) for v in t[5:]])
    return np.array(rows)[None]


def darknet_region(x, anchors, K, softmax=True):
    """forward_region_layer (logistic x, y, objectness; softmax_cpu over classes) + get_region_box."""
    A = len(anchors) // 2
    _, C, H, W = x.shape
    flat = x[0].reshape(-1)
    rows = []
    for a in range(A):
        for loc in range(H * W):
            i, j = loc % W, loc // W
            t = [flat[_entry(A, K, H, W, a, e, loc)] for e in range(5 + K)]
            cls = t[5:]
            if softmax:
                largest = max(cls)
                e = [math.exp(v - largest) for v in cls]
                cls = [v / sum(e) for v in e]
            rows.append([(i + _sig(t[0])) / W, (j + _sig(t[1])) / H,
                         math.exp(t[2]) * anchors[2 * a] / W, math.exp(t[3]) * anchors[2 * a + 1] / H,
                         _sig(t[4])] + list(cls))
    return np.array(rows)[None]


@pytest.mark.parametrize("sxy", [1.0, 1.1])
def test_yolo_decode_is_darknets_formula(nd, sxy):
    rng = np.random.default_rng(1)
    anchors = (10, 14, 23, 27, 37, 58)
    x = rng.standard_normal((1, 3 * (5 + 4), 5, 7))
    got = nd.run("YoloDecode", x, 4, anchors=anchors, image=(96, 160), scale_xy=sxy)
    nd.close(got, darknet_yolo(x, anchors, 4, net_w=160, net_h=96, sxy=sxy), rtol=1e-12)


@pytest.mark.parametrize("softmax", [True, False])
def test_region_decode_is_darknets_formula(nd, softmax):
    rng = np.random.default_rng(2)
    anchors = (0.57, 0.68, 1.87, 2.06)
    x = rng.standard_normal((1, 2 * (5 + 3), 4, 6)) * 3
    got = nd.run("RegionDecode", x, 3, anchors=anchors, softmax=softmax)
    nd.close(got, darknet_region(x, anchors, 3, softmax), rtol=1e-12)


def test_decode_box_by_hand(nd):
    """One anchor, one cell of a 2x2 grid, all logits 0: x = (col + 0.5)/W, w = anchor/image."""
    x = np.zeros((1, 6, 2, 2))
    got = nd.run("YoloDecode", x, 1, anchors=(32, 64), image=(128, 256))
    # rows in (anchor, row, col) order: row 3 is cell (row 1, col 1)
    nd.close(got[0, 3], [0.75, 0.75, 32 / 256, 64 / 128, 0.5, 0.5])


def test_decode_refuses_wrong_channels():
    from netdsl.ops.attrs import OpError
    with pytest.raises(OpError, match=r"2 anchors and 80 classes reads 2 x \(5 \+ 80\) = 170 channels"):
        from conftest import prepare
        prepare("YoloDecode", [(255, 13, 13)], 80, anchors=(10, 14, 23, 27))


# ---------------------------------------------------------------- NMS

def test_iou_by_hand():
    # two 2x2 boxes overlapping in a 1x2 strip: 2 / (4 + 4 - 2) = 1/3
    assert detect.iou((1, 1, 2, 2), (2, 1, 2, 2)) == pytest.approx(1 / 3)
    assert detect.iou((0, 0, 1, 1), (5, 5, 1, 1)) == 0.0


def _rows(boxes, K=3):
    """Decode rows (x, y, w, h, obj, p...) with a one-hot class probability."""
    out = []
    for (x, y, w, h, obj, k) in boxes:
        p = [0.0] * K
        p[k] = 1.0
        out.append([x, y, w, h, obj] + p)
    return np.array(out)[None]


def test_nms_per_class():
    rows = _rows([
        (0.50, 0.50, 0.20, 0.20, 0.90, 0),   # kept: best of class 0
        (0.52, 0.50, 0.20, 0.20, 0.80, 0),   # IoU 0.82 with the first: suppressed
        (0.52, 0.50, 0.20, 0.20, 0.70, 1),   # same place, another class: kept
        (0.60, 0.50, 0.20, 0.20, 0.60, 0),   # IoU 1/3 with the first (< 0.45): kept
        (0.10, 0.10, 0.05, 0.05, 0.20, 2),   # below the 0.25 threshold: dropped
    ])
    (boxes,) = detect.detect([rows])
    assert [(b.cls, round(b.score, 2)) for b in boxes] == [(0, 0.9), (1, 0.7), (0, 0.6)]
    (loose,) = detect.detect([rows], iou_thresh=0.9)     # 0.82 no longer suppresses
    assert len(loose) == 4
    (low,) = detect.detect([rows], thresh=0.1)
    assert len(low) == 4 and low[-1].cls == 2


def test_nms_pools_heads_and_skips_nan():
    a = _rows([(0.5, 0.5, 0.2, 0.2, 0.9, 0)])
    b = _rows([(0.5, 0.5, 0.21, 0.2, 0.8, 0), (np.nan, 0.5, 0.2, 0.2, 0.9, 1)])
    (boxes,) = detect.detect([a, b])
    assert len(boxes) == 1 and boxes[0].score == pytest.approx(0.9)


def test_score_is_objectness_times_class():
    rows = np.array([[[0.5, 0.5, 0.1, 0.1, 0.5, 0.6, 0.4]]])
    (boxes,) = detect.detect([rows], thresh=0.25)
    assert [(b.cls, round(b.score, 6)) for b in boxes] == [(0, 0.3)]        # 0.5·0.4 = 0.2 < 0.25


def test_pixel_box_clips_to_the_image():
    b = detect.Box(0, 0.9, 0.05, 0.5, 0.2, 0.5)       # left edge at -0.05
    x, y, w, h = detect.pixel_box(b, 200, 100)
    assert (x, y, w, h) == pytest.approx((0.0, 25.0, 30.0, 50.0))
