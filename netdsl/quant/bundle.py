"""int8 bundles: a QuantizedModel to a .netc file and back (the format: netdsl/bundle.py,
docs/BUNDLE.md "int8 bundles").

The graph is stored optimized (as it runs), its int8 layers' weights as int8 with their
per-channel scales, the calibrated input scale / zero point of each in the header's `quant`
section. Writing reads the file back and checks that it runs to the same outputs as the
model in memory, bit for bit, before the file is put in place.
"""
from __future__ import annotations

import os

import numpy as np

from .. import bundle as _bundle
from ..errors import NetDSLError


def quant_section(qm) -> dict:
    return {"method": qm.method,
            "layers": {l: {"in_scale": float(q.in_scale), "in_zero": int(q.in_zero),
                           "lo": float(q.lo), "hi": float(q.hi)} for l, q in qm.qlayers.items()},
            "skipped": {k: str(v) for k, v in qm.skipped.items()}}


def quantized_bytes(qm) -> bytes:
    """The int8 bundle of `qm` as bytes (what write_quantized puts in a file)."""
    return _bundle.dumps(qm.graph, qm.weights, name=qm.name, opt_level=qm.opt_level,
                         source=qm.name, quant=quant_section(qm))


def write_quantized(qm, path: str, check: bool = True) -> None:
    data = quantized_bytes(qm)
    if check:
        back = from_bundle(_bundle.loads(data, path), path)
        shape = qm.graph[qm.graph.inputs[0]].shape
        x = np.random.default_rng(0).standard_normal((2, *shape), dtype=np.float32)
        a, b = qm(x), back(x)
        for k in (a if isinstance(a, dict) else {"y": a}):
            ya = a[k] if isinstance(a, dict) else a
            yb = b[k] if isinstance(b, dict) else b
            if not np.array_equal(ya, yb, equal_nan=True):
                raise NetDSLError(f"internal: the int8 bundle read back gives other outputs than the model "
                                  f"(max difference {np.nanmax(np.abs(ya - yb)):.3g})",
                                  hint="this is a bug in netdsl; please report it")
    d = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(d):
        raise NetDSLError(f"cannot write {path}: no folder {d}", hint="create the folder first")
    _bundle.write(path, data)


def load_quantized(path: str, weights=None, threads=None, **kw):
    """netdsl.load of an int8 bundle: read and check it, return the QuantizedModel."""
    if weights is not None:
        raise NetDSLError("an int8 bundle holds its own quantized weights; --weights cannot replace them",
                          hint="quantize the float32 model with the new weights instead")
    if kw:
        raise NetDSLError(f"an int8 bundle takes no {', '.join(sorted(kw))} option")
    return from_bundle(_bundle.read_file(path), path, threads)


def from_bundle(b, path, threads=None):
    """A read and checked Bundle whose header has `quant` -> QuantizedModel."""
    from .model import QLayer, QuantizedModel
    q = b.header["quant"]
    g, w = b.graph, b.weights
    qlayers = {}
    for l, L in q["layers"].items():
        qlayers[l] = QLayer(l, g[l].op, float(L["in_scale"]), int(L["in_zero"]), w[f"{l}.weight"],
                            w[f"{l}.weight_scale"], w.get(f"{l}.bias"), float(L["lo"]), float(L["hi"]))
    qm = QuantizedModel(g, w, qlayers, name=b.header["model"], path=path, threads=threads,
                        method=q["method"], skipped=q["skipped"])
    qm.opt_level = qm.run_level = b.header["opt_level"]
    qm.bundle = b.header
    return qm
