"""Reading inputs for `netdsl run`: random data, .npy arrays, and images.

Images are resized to the declared input size and normalized as the file's
`input` line says (`scale`, then `mean`/`std` per channel). `scale` is for
8-bit pixels (0..255), so every image is first brought to that range by what
its mode really holds: 8-bit modes as they are, 16-bit (`I;16`, and `I` from
a PNG) times 255/65535, 32-bit float (`F`) taken as 0..1 times 255 (values
outside 0..1 are refused: their range is unknown). 32-bit integer images
from other formats are refused for the same reason. Pillow is an optional
extra (`pip install "netdsl[image]"`).

Limits: an image larger than Pillow's MAX_IMAGE_PIXELS (about 89 megapixels
by default) is refused from its header, before any pixel is decoded, and a
.npy input is opened memory-mapped so its shape is checked before it is read.
"""
from __future__ import annotations

import os
import threading

import numpy as np

from ..errors import NetDSLError

IMAGE_EXT = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
DEFAULT_MAX_PIXELS = 89_478_485      # Pillow's default MAX_IMAGE_PIXELS (1024 * 1024 * 1024 // 4 // 3)
_PIXEL_LIMIT_LOCK = threading.Lock()  # load_image lifts Image.MAX_IMAGE_PIXELS for a header read


def random_input(shape, batch, seed=0):
    """Standard normal float32 [batch, *shape], drawn in float32 (no float64 copy)."""
    return np.random.default_rng(seed).standard_normal((batch, *shape), dtype=np.float32)


def load_npy(path, shape, batch):
    """A .npy input: [N, *shape] as it is, or one [*shape] sample repeated `batch` times."""
    try:
        a = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise NetDSLError(f"cannot read {path}: {e}", hint="expected a .npy file written by numpy.save")
    if not isinstance(a, np.ndarray):
        raise NetDSLError(f"{path} holds several arrays; pass a single-array .npy file")
    want = f"[N, {', '.join(map(str, shape))}]"
    if a.dtype.kind not in "fiu":
        raise NetDSLError(f"{path} holds {a.dtype} values; the network expects numbers {want}",
                          hint="save a float32 array: np.save(path, x.astype(np.float32))")
    if tuple(a.shape) == tuple(shape):
        return np.repeat(np.asarray(a, np.float32)[None], batch, axis=0)
    if a.ndim != len(shape) + 1 or tuple(a.shape[1:]) != tuple(shape):
        raise NetDSLError(f"{path} holds an array of shape {list(a.shape)}; the network expects {want} "
                          f"or one sample [{', '.join(map(str, shape))}]",
                          hint="reshape it before saving, or check which model it was made for")
    if a.shape[0] < 1:
        raise NetDSLError(f"{path} holds an empty batch (shape {list(a.shape)})")
    if batch not in (1, a.shape[0]):
        raise NetDSLError(f"{path} holds a batch of {a.shape[0]}, but --batch {batch} was given",
                          hint=f"drop --batch (the file's batch is used) or pass --batch {a.shape[0]}")
    return np.ascontiguousarray(a, dtype=np.float32)


def _pixels(im, path):
    """A 16-bit, float or unusual-mode image as float [H, W, C] on the 8-bit scale (0..255)
    that `scale` expects."""
    mode = im.mode
    if mode.startswith("I;16") or (mode == "I" and im.format == "PNG"):
        return np.asarray(im, dtype=np.float64)[..., None] * (255.0 / 65535.0)
    if mode == "F":
        a = np.asarray(im, dtype=np.float32)
        fin = a[np.isfinite(a)]
        lo, hi = (float(fin.min()), float(fin.max())) if fin.size else (0.0, 0.0)
        if lo < 0 or hi > 1:
            raise NetDSLError(f"{path} is a 32-bit float image with values from {lo:g} to {hi:g}; "
                              "netdsl reads float images as 0..1",
                              hint="rescale it to 0..1, save it as an 8- or 16-bit image, "
                                   "or pass the array as .npy (used as it is)")
        return a[..., None].astype(np.float64) * 255.0
    if mode in ("I", "I;32", "I;32B", "I;32L"):
        raise NetDSLError(f"{path} is a 32-bit integer image (mode {mode}); its value range is not known",
                          hint="save it as an 8- or 16-bit image, or pass the array as .npy (used as it is)")
    return np.asarray(im.convert("RGB"), dtype=np.float64)      # any other mode Pillow can convert


def _resize(a, w, h):
    """Bilinear resize of float [H0, W0, C] to [h, w, C], channel by channel (Pillow mode F)."""
    from PIL import Image
    if a.shape[:2] == (h, w):
        return a
    chans = [np.asarray(Image.fromarray(np.ascontiguousarray(a[..., k], np.float32), "F")
                        .resize((w, h), Image.BILINEAR)) for k in range(a.shape[2])]
    return np.stack(chans, axis=2)


def load_image(path, node, batch):
    try:
        from PIL import Image
    except ImportError:
        raise NetDSLError("reading images needs Pillow", hint='pip install "netdsl[image]"  (or pass --input x.npy)')
    shape = node.shape
    if len(shape) != 3 or shape[0] not in (1, 3):
        raise NetDSLError(f"the input {node.name} is {'x'.join(map(str, shape))}; images need 1x or 3xHxW",
                          hint="pass a .npy array instead")
    c, h, w = shape
    try:
        with _PIXEL_LIMIT_LOCK:     # decode threads (netdsl batch) must not interleave the save/restore
            saved = Image.MAX_IMAGE_PIXELS
            limit = saved if saved is not None else DEFAULT_MAX_PIXELS
            Image.MAX_IMAGE_PIXELS = None          # open reads the header only; the size is checked below
            try:
                im = Image.open(path)
            finally:
                Image.MAX_IMAGE_PIXELS = saved
        with im:
            iw, ih = im.size
            if iw * ih > limit:
                raise NetDSLError(f"{path} is {iw} x {ih} = {iw * ih:,} pixels, more than the limit of "
                                  f"{limit:,} pixels", hint="resize the image first (the network takes "
                                  f"{w}x{h}); the limit is Pillow's Image.MAX_IMAGE_PIXELS")
            if im.mode in ("L", "1", "RGB", "RGBA", "P", "PA", "LA", "CMYK", "YCbCr", "RGBX", "LAB", "HSV"):
                im = im.convert("RGB" if c == 3 else "L").resize((w, h), Image.BILINEAR)
                a = np.asarray(im, dtype=np.float32).reshape(h, w, c)
            else:                               # 16-bit and float: keep the precision through the resize
                a = _pixels(im, path)
                a = _resize(a, w, h)
                if a.shape[2] == 1 and c == 3:
                    a = np.repeat(a, 3, axis=2)
                elif a.shape[2] == 3 and c == 1:    # ITU-R 601-2 luma, as Pillow's convert("L")
                    a = a @ np.array([0.299, 0.587, 0.114])[:, None]
    except NetDSLError:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise NetDSLError(f"cannot read image {path}: {e}", hint="is it a complete image file?")
    a = normalize(np.asarray(a, np.float32).transpose(2, 0, 1), node.attrs.get("scale"),
                  node.attrs.get("mean"), node.attrs.get("std"))
    return np.repeat(a[None], batch, axis=0).astype(np.float32)


def normalize(a, scale=None, mean=None, std=None):
    """Pixels on the 8-bit scale, [C, H, W] or [N, C, H, W] (uint8 or float), as the network
    input the `input` line declares: times `scale`, minus `mean`, over `std` (per channel, or
    one value for all), in float32. Shared by `netdsl run` images and the training loader."""
    a = np.asarray(a, np.float32) * float(scale or 1.0)
    if mean is not None:
        a = a - np.asarray(mean, np.float32).reshape(-1, 1, 1)
    if std is not None:
        a = a / np.asarray(std, np.float32).reshape(-1, 1, 1)
    return a


def read_input(spec: str, graph, batch: int):
    """--input value -> {input name: array}."""
    if len(graph.inputs) != 1:
        raise NetDSLError(f"this network has inputs {', '.join(graph.inputs)}; `netdsl run` feeds one "
                          "input — use the Python API for several")
    node = graph[graph.inputs[0]]
    if spec in (None, "random"):
        x = random_input(node.shape, batch)
    elif not os.path.exists(spec):
        raise NetDSLError(f"no such input file: {spec}", hint="pass a .npy array, an image, or `random`")
    elif spec.lower().endswith(".npy"):
        x = load_npy(spec, node.shape, batch)
    elif spec.lower().endswith(IMAGE_EXT):
        x = load_image(spec, node, batch)
    else:
        raise NetDSLError(f"unknown input format: {spec}", hint="use .npy, an image (.png/.jpg), or `random`")
    return {node.name: x}
