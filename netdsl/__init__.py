"""netdsl: write a CNN the way the lecture does, check it, and run it.

    import netdsl
    m = netdsl.parse("input x: 3x32x32\\nConv(10, 5, pad=2)-ReLU-Pool-FC(10)-SM")
    m = netdsl.load("resnet18")          # a zoo name or a .net path
    print(m.summary())
"""
from .errors import NetDSLError
from .model import Model, parse, zoo_names

__version__ = "0.1.0"


def load(path_or_name: str, **kwargs) -> Model:
    """Load a .net file or zoo model by name; returns a checked Model."""
    from .model import load_source
    return load_source(path_or_name, **kwargs)


__all__ = ["NetDSLError", "Model", "parse", "load", "zoo_names", "__version__"]
