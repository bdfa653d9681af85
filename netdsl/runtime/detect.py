"""After a detection head: scores, thresholds and non-maximum suppression, then drawing.

A YoloDecode / RegionDecode output holds one row per box, (x, y, w, h, objectness, p_1 .. p_K),
centre and size as fractions of the image (netdsl/ops/detect.py). As Darknet's detector does
(get_yolo_detections, do_nms_sort): a box's score for class k is objectness · p_k; a box enters
when its objectness is above the threshold, a (box, class) pair when its score is; then, class
by class, boxes in descending score order suppress every later box of that class whose IoU with
them is above the NMS threshold (0.45). Rows of several heads are pooled first (YOLOv3's two or
three scales), so one object seen by two heads is kept once.

numpy only: NMS keeps a variable number of boxes, which is not an op; it runs once per image on
a few thousand rows. Drawing needs Pillow (the image extra).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import NetDSLError

THRESH = 0.25      # Darknet's `detector test` default
NMS_IOU = 0.45     # Darknet's nms in test_detector


@dataclass
class Box:
    cls: int
    score: float
    x: float        # centre, fraction of the image width
    y: float
    w: float
    h: float

    def corners(self):
        return (self.x - self.w / 2, self.y - self.h / 2, self.x + self.w / 2, self.y + self.h / 2)


def iou(a, b) -> float:
    """Intersection over union of two centre-format boxes (x, y, w, h), as Darknet's box_iou."""
    def overlap(c1, w1, c2, w2):
        return min(c1 + w1 / 2, c2 + w2 / 2) - max(c1 - w1 / 2, c2 - w2 / 2)
    ow, oh = overlap(a[0], a[2], b[0], b[2]), overlap(a[1], a[3], b[1], b[3])
    inter = ow * oh if ow > 0 and oh > 0 else 0.0
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def _iou_many(a, b):
    """IoU of one centre-format box a (4,) with boxes b (M, 4): box_iou, vectorized."""
    ow = np.minimum(a[0] + a[2] / 2, b[:, 0] + b[:, 2] / 2) - np.maximum(a[0] - a[2] / 2, b[:, 0] - b[:, 2] / 2)
    oh = np.minimum(a[1] + a[3] / 2, b[:, 1] + b[:, 3] / 2) - np.maximum(a[1] - a[3] / 2, b[:, 1] - b[:, 3] / 2)
    inter = np.where((ow > 0) & (oh > 0), ow * oh, 0.0)
    union = a[2] * a[3] + b[:, 2] * b[:, 3] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def _candidates(rows, thresh):
    """(class, score, box (4,)) arrays of every (box, class) above thresh, for one image."""
    rows = np.asarray(rows, np.float64)
    if rows.ndim != 2 or rows.shape[1] < 6:
        raise NetDSLError(f"detection rows must be (boxes, 5 + classes), got shape {rows.shape}",
                          hint="pass the output of a YoloDecode or RegionDecode layer")
    rows = rows[np.isfinite(rows).all(axis=1) & (rows[:, 4] > thresh)]
    scores = rows[:, 4:5] * rows[:, 5:]
    bi, ki = np.nonzero(scores > thresh)          # row-major: box order, then class order
    return ki, scores[bi, ki], rows[bi, :4]


def candidates(rows: np.ndarray, thresh: float = THRESH) -> list[Box]:
    """Every (box, class) whose score objectness·p_k is above `thresh` (objectness above it too).
    rows: (boxes, 5 + K) of one image. Non-finite rows are skipped."""
    ks, sc, bx = _candidates(rows, thresh)
    return [Box(int(k), float(s), *map(float, b)) for k, s, b in zip(ks, sc, bx)]


def nms(boxes: list[Box], iou_thresh: float = NMS_IOU) -> list[Box]:
    """Per class, greedy: the best box suppresses later ones of its class with IoU > iou_thresh.
    Returns the kept boxes by descending score (ties: input order)."""
    if not boxes:
        return []
    ks = np.array([b.cls for b in boxes])
    sc = np.array([b.score for b in boxes])
    bx = np.array([(b.x, b.y, b.w, b.h) for b in boxes], np.float64)
    keep = _nms_arrays(ks, sc, bx, iou_thresh)
    return [boxes[i] for i in keep]


def _nms_arrays(ks, sc, bx, iou_thresh):
    kept = []
    for k in np.unique(ks):
        idx = np.nonzero(ks == k)[0]
        idx = idx[np.argsort(-sc[idx], kind="stable")]
        alive = np.ones(idx.size, bool)
        for i in range(idx.size):
            if not alive[i]:
                continue
            kept.append(idx[i])
            rest = np.nonzero(alive[i + 1:])[0] + i + 1
            if rest.size:
                alive[rest[_iou_many(bx[idx[i]], bx[idx[rest]]) > iou_thresh]] = False
    kept = np.array(kept, dtype=np.int64)
    return kept[np.argsort(-sc[kept], kind="stable")] if kept.size else kept


def detect(heads, thresh: float = THRESH, iou_thresh: float = NMS_IOU) -> list[list[Box]]:
    """Boxes per image after NMS, from the decode outputs of one run: a list of (N, boxes, 5+K)
    arrays (one per head, same K)."""
    heads = [np.asarray(h) for h in heads]
    if not heads:
        return []
    rows = np.concatenate(heads, axis=1) if len(heads) > 1 else heads[0]
    out = []
    for b in range(rows.shape[0]):
        ks, sc, bx = _candidates(rows[b], thresh)
        keep = _nms_arrays(ks, sc, bx, iou_thresh)
        out.append([Box(int(ks[i]), float(sc[i]), *map(float, bx[i])) for i in keep])
    return out


def read_names(path: str) -> list[str]:
    """Class names, one a line (Darknet's coco.names / voc.names)."""
    try:
        with open(path, encoding="utf-8") as f:
            return [ln.strip() for ln in f if ln.strip()]
    except OSError as e:
        raise NetDSLError(f"cannot read class names from {path}: {e.strerror or e}",
                          hint="pass a text file with one class name a line, e.g. coco.names") from None


def class_name(k: int, names=None) -> str:
    return names[k] if names and 0 <= k < len(names) else str(k)


def pixel_box(b: Box, width: int, height: int):
    """(left, top, width, height) in pixels of a width x height image, clipped to the image
    (as Darknet's draw_detections does)."""
    x0, y0, x1, y1 = b.corners()
    x0, x1 = min(max(x0 * width, 0.0), width - 1.0), min(max(x1 * width, 0.0), width - 1.0)
    y0, y1 = min(max(y0 * height, 0.0), height - 1.0), min(max(y1 * height, 0.0), height - 1.0)
    return x0, y0, x1 - x0, y1 - y0


def draw(image_path: str, boxes: list[Box], out_path: str, names=None) -> None:
    """Draw the boxes (and class: score labels) onto the image, written to out_path (Pillow)."""
    try:
        from PIL import Image, ImageDraw
    except ImportError:
        raise NetDSLError("drawing boxes needs Pillow", hint='pip install "netdsl[image]"') from None
    try:
        im = Image.open(image_path).convert("RGB")
    except (OSError, ValueError) as e:
        raise NetDSLError(f"cannot read the image {image_path}: {e}") from None
    d = ImageDraw.Draw(im)
    w, h = im.size
    palette = [(255, 56, 56), (56, 168, 255), (72, 200, 72), (255, 178, 29), (180, 90, 255), (0, 200, 200)]
    for b in boxes:
        col = palette[b.cls % len(palette)]
        x, y, bw, bh = pixel_box(b, w, h)
        d.rectangle([x, y, x + bw, y + bh], outline=col, width=max(1, round(min(w, h) / 200)))
        label = f"{class_name(b.cls, names)} {b.score:.2f}"
        d.text((x + 2, max(0, y - 11)), label, fill=col)
    try:
        im.save(out_path)
    except (OSError, ValueError) as e:
        raise NetDSLError(f"cannot write {out_path}: {e}",
                          hint="check the folder and the suffix (.png, .jpg)") from None


__all__ = ["Box", "iou", "candidates", "nms", "detect", "draw", "read_names", "pixel_box", "THRESH", "NMS_IOU"]
