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
        from .bundle import read_header
        if "quant" in read_header(path_or_name):        # an int8 bundle (netdsl quantize)
            from .quant.bundle import load_quantized
            return load_quantized(path_or_name, **kwargs)
        from .model import load_bundle
        return load_bundle(path_or_name, **kwargs)
    from .model import load_source
    return load_source(path_or_name, **kwargs)


def _from_imported(imp) -> Model:
    """The checked Model of an interop import (text parsed under NAME.net, weights loaded)."""
    m = parse(imp.text, imp.name + ".net")
    if imp.state:                # a Darknet .cfg imported without its .weights has none
        m.load_state_dict(imp.state)
    m.imported = imp            # the text, the source file and the importer's notes
    return m


def import_onnx(path: str, name: str | None = None) -> Model:
    """Import an ONNX model file as a checked Model with its weights (needs the `onnx` package).
    `m.imported.text` is the .net source it was written as; `netdsl import` saves it."""
    from .interop.onnx_import import import_onnx as _import_onnx
    return _from_imported(_import_onnx(path, name=name))


def __getattr__(name):
    """netdsl.optim is imported on first use (training is not needed to run a network)."""
    if name == "optim":
        import importlib
        return importlib.import_module(".optim", __name__)
    raise AttributeError(f"module 'netdsl' has no attribute {name!r}")


__all__ = ["NetDSLError", "Model", "parse", "load", "import_onnx", "zoo_names", "optim", "__version__"]
