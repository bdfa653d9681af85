"""netdsl: write a CNN the way the lecture does, check it, and run it.

    import netdsl
    m = netdsl.parse("input x: 3x32x32\\nConv(10, 5, pad=2)-ReLU-Pool-FC(10)-SM")
    m = netdsl.load("resnet18")          # a zoo name or a .net path
    m = netdsl.load("resnet18.netc")     # a compiled bundle (`netdsl compile`); no parser needed
    print(m.summary())
"""
from .errors import NetDSLError
from .model import Model, parse, zoo_names

from ._version import __version__


def load(path_or_name: str, **kwargs) -> Model:
    """Load a .net file, a zoo model by name, or a compiled .netc bundle; returns a checked Model."""
    from .bundle import is_bundle
    if is_bundle(path_or_name):
        from .model import load_bundle
        return load_bundle(path_or_name, **kwargs)
    from .model import load_source
    return load_source(path_or_name, **kwargs)


__all__ = ["NetDSLError", "Model", "parse", "load", "zoo_names", "__version__"]
