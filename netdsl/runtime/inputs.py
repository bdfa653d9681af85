"""Reading inputs for `netdsl run`: random data, .npy arrays, and images.

Images are resized to the declared input size and normalized as the file's
`input` line says (`scale`, then `mean`/`std` per channel). Pillow is an
optional extra (`pip install "netdsl[image]"`).
"""
from __future__ import annotations

import os

import numpy as np

from ..errors import NetDSLError

IMAGE_EXT = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


def random_input(shape, batch, seed=0):
    return np.random.default_rng(seed).standard_normal((batch, *shape)).astype(np.float32)


def load_npy(path, shape, batch):
    try:
        a = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise NetDSLError(f"cannot read {path}: {e}", hint="expected a .npy file written by numpy.save")
    if not isinstance(a, np.ndarray):
        raise NetDSLError(f"{path} holds several arrays; pass a single-array .npy file")
    if tuple(a.shape) == tuple(shape):
        a = np.repeat(a[None], batch, axis=0)
    return a


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
        with Image.open(path) as im:
            im = im.convert("RGB" if c == 3 else "L").resize((w, h), Image.BILINEAR)
            a = np.asarray(im, dtype=np.float32)
    except (OSError, ValueError) as e:
        raise NetDSLError(f"cannot read image {path}: {e}")
    a = a.reshape(h, w, c).transpose(2, 0, 1) * float(node.attrs.get("scale") or 1.0)
    mean, std = node.attrs.get("mean"), node.attrs.get("std")
    if mean is not None:
        a = a - np.asarray(mean, np.float32).reshape(-1, 1, 1)
    if std is not None:
        a = a / np.asarray(std, np.float32).reshape(-1, 1, 1)
    return np.repeat(a[None], batch, axis=0).astype(np.float32)


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
