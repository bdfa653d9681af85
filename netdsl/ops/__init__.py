"""Op registry. Every module in this package is imported on first use; each
`@register`ed class adds itself under its name and aliases (case-sensitive
names, case-insensitive lookup for 'did you mean')."""
from __future__ import annotations

import importlib
import pkgutil

from .attrs import OpError  # noqa: F401  (re-exported: netdsl.ops.OpError)
from .spec import OpSpec

_SPECS: dict[str, OpSpec] = {}      # canonical name -> spec
_NAMES: dict[str, OpSpec] = {}      # every name and alias -> spec
_loaded = False
# the modules every spec is built from, not ops: attrs (attribute kinds), spec (OpSpec),
# geometry (window arithmetic), activations (the activation table)
_NOT_OPS = {"attrs", "spec", "geometry", "activations"}


def register(cls):
    spec = cls()
    for n in (spec.name, *spec.aliases):
        if n in _NAMES and _NAMES[n] is not spec:
            raise RuntimeError(f"op name {n!r} registered twice")
        _NAMES[n] = spec
    _SPECS[spec.name] = spec
    return cls


def _load():
    global _loaded
    if not _loaded:
        _loaded = True
        for m in pkgutil.iter_modules(__path__):
            if m.name not in _NOT_OPS:
                importlib.import_module(f"{__name__}.{m.name}")


def lookup(name: str) -> OpSpec | None:
    """The spec for an op name or alias, or None."""
    _load()
    return _NAMES.get(name)


def get(name: str) -> OpSpec:
    spec = lookup(name)
    if spec is None:
        raise KeyError(name)
    return spec


def all_specs() -> dict[str, OpSpec]:
    _load()
    return dict(_SPECS)


def all_names() -> list[str]:
    _load()
    return list(_NAMES)
