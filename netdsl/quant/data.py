"""Calibration (and held-out) data for `netdsl quantize`: whatever the user names, as float32
network input [N, *input shape], normalized as the model's `input` line says.

    calibration_inputs("digits", graph, n=256)       # the built-in data set (netdsl/train/digits.py)
    calibration_inputs("calib.npz", graph)           # key x: float32 as is, uint8 images normalized
    calibration_inputs("images/", graph)             # a folder of images (netdsl/runtime/inputs.py)
    calibration_inputs(array, graph)

A shape that does not fit the model is a NetDSLError naming the shape it expected.
"""
from __future__ import annotations

import os

import numpy as np

from ..errors import NetDSLError
from ..runtime import inputs as _inputs


def _input_node(graph):
    if len(graph.inputs) != 1:
        raise NetDSLError(f"this network has {len(graph.inputs)} inputs ({', '.join(graph.inputs)}); "
                          "calibration takes networks with one input",
                          hint="quantize a network with a single input")
    return graph[graph.inputs[0]]


def _want(shape):
    return f"[N, {', '.join(map(str, shape))}]"


def _from_array(a, graph, what):
    node = _input_node(graph)
    shape = tuple(node.shape)
    a = np.asarray(a)
    if a.dtype.kind not in "fiu":
        raise NetDSLError(f"{what} holds {a.dtype} values; expected numbers shaped {_want(shape)}")
    if a.ndim == len(shape) and tuple(a.shape) == shape:
        a = a[None]
    if a.dtype == np.uint8:               # 8-bit images: the data loader adapts and normalizes them
        from ..train.data import Dataset
        if a.ndim == 3:
            a = a[:, None]
        try:
            ds = Dataset(a, np.zeros(len(a), np.int64)).to_input(node)
        except NetDSLError as e:
            raise NetDSLError(f"{what}: {e.diagnostics[0].message}",
                              hint=f"the network expects {_want(shape)}") from None
        return ds.normalize(ds.x)
    if a.ndim != len(shape) + 1 or tuple(a.shape[1:]) != shape:
        raise NetDSLError(f"{what} has shape {list(a.shape)}; the network expects {_want(shape)}",
                          hint="float arrays are used as they are (already normalized): reshape them, "
                               "or pass uint8 images, which are resized and normalized")
    if len(a) < 1:
        raise NetDSLError(f"{what} is empty: calibration needs at least one sample")
    a = np.ascontiguousarray(a, np.float32)
    if not np.isfinite(a).all():
        raise NetDSLError(f"{what} holds NaN or inf values", hint="calibration data must be finite")
    return a


def calibration_inputs(spec, graph, n: int | None = None, split: str = "train"):
    """float32 [N, *input] from a data spec (see the module docstring); at most n samples."""
    if isinstance(spec, np.ndarray):
        x = _from_array(spec, graph, "the calibration array")
    elif not isinstance(spec, str):
        raise NetDSLError(f"calibration data must be a path, 'digits' or an array, not {type(spec).__name__}")
    elif spec == "digits":
        from ..train.data import digits
        ds = digits(split, n=n or 512).to_input(_input_node(graph))
        x = ds.normalize(ds.x)
    elif os.path.isdir(spec):
        x = _folder(spec, graph, n)
    elif spec.lower().endswith(".npz"):
        x = _npz(spec, graph)
    elif spec.lower().endswith(".npy"):
        if not os.path.exists(spec):
            raise NetDSLError(f"no such file: {spec}")
        try:
            a = np.load(spec, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise NetDSLError(f"cannot read {spec}: {e}", hint="expected a .npy written by numpy.save") from None
        x = _from_array(a, graph, spec)
    else:
        raise NetDSLError(f"unknown calibration data {spec!r}",
                          hint="pass `digits`, a .npz with an array x, a .npy, or a folder of images")
    if n is not None:
        x = x[:n]
    return x


def _npz(path, graph):
    if not os.path.exists(path):
        raise NetDSLError(f"no such file: {path}")
    try:
        with np.load(path, allow_pickle=False) as z:
            keys = list(z.keys())
            if "x" not in keys:
                raise NetDSLError(f"{path} has no array named x (it has {', '.join(keys) or 'none'})",
                                  hint="save the calibration inputs as np.savez(path, x=inputs)")
            a = z["x"]
    except NetDSLError:
        raise
    except (OSError, ValueError, EOFError) as e:      # not a zip, truncated, pickled objects
        raise NetDSLError(f"cannot read {path}: {e}", hint="expected a .npz written by numpy.savez") from None
    return _from_array(a, graph, f"{path} (x)")


def _folder(path, graph, n):
    node = _input_node(graph)
    files = []
    for root, _, names in sorted(os.walk(path)):
        files += [os.path.join(root, f) for f in sorted(names) if f.lower().endswith(_inputs.IMAGE_EXT)]
    if not files:
        raise NetDSLError(f"{path} holds no images ({', '.join(_inputs.IMAGE_EXT[:4])}, ...)",
                          hint="point --calibrate at a folder of images, a .npz, or `digits`")
    if n is not None:
        files = files[:n]
    return np.concatenate([_inputs.load_image(f, node, 1) for f in files])
