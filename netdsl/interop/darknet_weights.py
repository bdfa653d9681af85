"""Darknet's binary `.weights` format: read it into netdsl names, and write one from a state dict.

Layout (little-endian, as darknet's save_weights writes it on x86):

    int32 major, int32 minor, int32 revision
    seen: int64 when major*10 + minor >= 2 (and major, minor < 1000), else int32
    then, for each layer with weights, in cfg order, float32 arrays:
      [convolutional]  biases (n); with batch_normalize=1: scales (n), rolling means (n),
                       rolling variances (n); then weights (n x c/groups x size x size)
      [connected]      biases (n), weights (n x inputs; stored transposed when major or minor
                       > 1000); with batch_normalize=1 then scales, rolling means, variances

With batch_normalize the conv has no bias of its own: Darknet's `biases` are the BN shift, so they
go to `bnN.bias`, the scales to `bnN.weight`. The layout of each layer comes from the cfg
(darknet.WeightBlock); this module only reads and writes the numbers.

What this does not do: read a file shorter than the cfg on purpose (Darknet's partial
"darknet53.conv.74" backbones); it says the file is too short and which layer ran out.
"""
from __future__ import annotations

import os
import struct
from dataclasses import dataclass

import numpy as np

from .common import InteropError


@dataclass
class Header:
    major: int = 0
    minor: int = 2
    revision: int = 0
    seen: int = 0

    @property
    def seen_is_64(self) -> bool:
        return (self.major * 10 + self.minor) >= 2 and self.major < 1000 and self.minor < 1000

    @property
    def size(self) -> int:
        return 12 + (8 if self.seen_is_64 else 4)

    @property
    def transpose(self) -> bool:
        return self.major > 1000 or self.minor > 1000


def _n(shape):
    n = 1
    for d in shape:
        n *= int(d)
    return n


def expected_floats(blocks) -> int:
    return sum(_n(f.shape) for b in blocks for f in b.fields)


_PARTS = {"bias": "biases", "weight": "weights", "running_mean": "rolling means",
          "running_var": "rolling variances"}


def _what(f, block):
    if f.param == "weight" and f.layer.startswith("bn"):
        return "BN scales"
    if f.param == "bias" and f.layer.startswith("bn"):
        return "biases (the BN shift)"
    return _PARTS.get(f.param, f.param)


def read_weights(path: str, blocks):
    """(Header, {(layer name, param): float32 array}) from a .weights file, checked against the
    cfg's layout: a file too short or too long is an InteropError with both sizes."""
    base = os.path.basename(path)
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as e:
        raise InteropError(f"cannot read {path}: {e.strerror or e}",
                           hint="check the path of the .weights file") from None
    if len(data) < 12:
        raise InteropError(f"{base}: {len(data)} bytes is too short for a Darknet weights file "
                           f"(its header alone is 16 or 20 bytes)",
                           hint="is this a .weights file? it may be truncated")
    major, minor, revision = struct.unpack_from("<3i", data, 0)
    head = Header(major, minor, revision)
    if len(data) < head.size:
        raise InteropError(f"{base}: the file ends inside its header ({len(data)} of {head.size} bytes)",
                           hint="the file is truncated")
    head.seen = struct.unpack_from("<q" if head.seen_is_64 else "<i", data, 12)[0]
    need = head.size + 4 * expected_floats(blocks)
    body = len(data) - head.size
    if body % 4:
        raise InteropError(f"{base}: {len(data):,} bytes: after the {head.size}-byte header, "
                           f"{body:,} bytes is not a whole number of float32 values",
                           hint=f"the cfg needs exactly {need:,} bytes; the file is truncated or not a .weights file")
    floats = np.frombuffer(data, dtype="<f4", offset=head.size)
    out, pos = {}, 0
    for b in blocks:
        for f in b.fields:
            n = _n(f.shape)
            if pos + n > floats.size:
                got = floats.size - pos
                raise InteropError(
                    f"{base} is too short for the cfg: it ends in layer {b.index} ({b.what}), inside its "
                    f"{_what(f, b)} ({got:,} of {n:,} values there); the cfg needs {need:,} bytes, "
                    f"the file has {len(data):,}",
                    hint="the weights belong to another cfg (check classes= and filters= before each "
                         "[yolo]/[region]), or the file is truncated")
            a = floats[pos:pos + n]
            if b.transpose_fc and f.param == "weight" and head.transpose:
                a = a.reshape(f.shape[::-1]).T
            out[(f.layer, f.param)] = np.ascontiguousarray(a.reshape(f.shape), dtype=np.float32)
            pos += n
    if pos != floats.size:
        extra = floats.size - pos
        raise InteropError(f"{base} is too long for the cfg: the cfg needs {need:,} bytes, the file has "
                           f"{len(data):,} ({extra:,} float32 values left after the last layer, "
                           f"{blocks[-1].what if blocks else 'the header'})",
                           hint="the weights belong to another cfg (a bigger network, or more classes)")
    return head, out


def write_weights(path: str, blocks, state, names, header: Header | None = None) -> int:
    """Write `state` (netdsl names; `names` maps the cfg's layer names to them) as a .weights
    file in the cfg's layout. Returns the byte count. A missing or misshapen array is an error."""
    head = header or Header()
    parts = [struct.pack("<3i", head.major, head.minor, head.revision),
             struct.pack("<q" if head.seen_is_64 else "<i", head.seen)]
    for b in blocks:
        for f in b.fields:
            key = f"{names[f.layer]}.{f.param}"
            if key not in state:
                raise InteropError(f"cannot write layer {b.index} ({b.what}): the state dict has no '{key}'",
                                   hint="pass the state dict of the model imported from this cfg")
            a = np.asarray(state[key], dtype=np.float32)
            if a.shape != tuple(f.shape):
                raise InteropError(f"cannot write layer {b.index} ({b.what}): '{key}' has shape "
                                   f"{a.shape}, the cfg needs {tuple(f.shape)}")
            if b.transpose_fc and f.param == "weight" and head.transpose:
                a = a.T
            parts.append(np.ascontiguousarray(a).astype("<f4").tobytes())
    blob = b"".join(parts)
    try:
        with open(path, "wb") as fh:
            fh.write(blob)
    except OSError as e:
        raise InteropError(f"cannot write {path}: {e.strerror or e}",
                           hint="check that the folder exists and is writable") from None
    return len(blob)


__all__ = ["Header", "read_weights", "write_weights", "expected_floats"]
