"""What every importer returns, and the error every interop problem raises."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import Diagnostic, NetDSLError


@dataclass
class Imported:
    """One imported model: the `.net` text, its weights under the netdsl names that text gives
    (PyTorch layouts: conv weight OC x C/g x KH x KW, FC weight out x in, BN running stats), the
    file it came from, and notes for the user (what was folded, what was assumed)."""
    text: str
    state: dict[str, np.ndarray]
    source: str
    name: str = "model"
    notes: list[str] = field(default_factory=list)
    folded: int | None = None       # exporter nodes folded away (ONNX), for the summary line


class InteropError(NetDSLError):
    """A file netdsl cannot import or export. `problems` may list several located diagnostics
    (every unsupported ONNX node at once, every bad cfg line at once)."""


def optional(module: str, extra: str):
    """Import an optional dependency, or raise an InteropError that says how to install it."""
    import importlib
    try:
        return importlib.import_module(module)
    except ImportError:
        raise InteropError(f"this needs the '{module}' package, which is not installed",
                           hint=f'pip install "netdsl[{extra}]"   (or: pip install {module})') from None


__all__ = ["Imported", "InteropError", "Diagnostic", "optional"]
