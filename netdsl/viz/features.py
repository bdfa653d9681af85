"""Feature maps and filters of a Model as pictures: what `netdsl features` and `netdsl filters` draw.

    img = feature_picture(m, x, layers=None)     # one sheet, a section per layer (grid.sheet)
    img, section = filters_picture(m, "conv1")  # a conv's filters (grid.filter_sheet)

The activations come from Model.features (one run of the C runtime, the layers kept as outputs
of the plan); the filters are the layer's weights as written (`state_dict()`: before any
BatchNorm folding). Layers that are not maps (vectors after Flatten, FC or global pooling) are
refused with the names of the ones that are.
"""
from __future__ import annotations

from ..errors import NetDSLError
from ..model import stage_layers
from .grid import CAP, FILTER_CAP, filter_sheet, sheet

FILTER_OPS = ("Conv",)          # ops whose 4-D `weight` is a bank of filters


def _is_map(shape) -> bool:
    return shape is not None and len(shape) == 3 and shape[1] * shape[2] > 1


def check_maps(m, names) -> None:
    """Refuse a layer that is not a feature map (before anything runs)."""
    for n in names:
        shape = m.graph[n].shape
        if not _is_map(shape):
            vector = len(shape) == 1 or (len(shape) == 3 and shape[1] * shape[2] == 1)
            why = ("one value per channel: a vector" if len(shape) == 3 else "a vector") if vector \
                else "not a C x H x W map"
            maps = stage_layers(m.graph)
            raise NetDSLError(f"layer {n!r} ({m.graph[n].op}) outputs {'x'.join(map(str, shape))}: {why}, "
                              "not a feature map to draw",
                              m.graph[n].span,
                              f"choose a layer with a spatial size; the stages of {m.name} end at "
                              f"{', '.join(maps[:6])}" if maps else "this network has no feature maps")


def feature_picture(m, x, layers=None, cap: int = CAP, title: str | None = None):
    """The sheet of `layers` (default: one per stage) for input x (one image, [1, C, H, W])."""
    names = m.feature_layers(layers)
    if not names:
        raise NetDSLError(f"{m.name} has no feature maps to draw", hint="pass --layers")
    check_maps(m, names)
    maps = m.features(x, names)
    return sheet({n: a[0] for n, a in maps.items()}, cap=cap, title=title), maps


def filter_layer(m, layer=None) -> str:
    """The layer `netdsl filters` draws: `layer` (checked), or the first convolution."""
    convs = [nd.name for nd in m.graph.nodes() if nd.op in FILTER_OPS and len(nd.params.get("weight", ())) == 4]
    if layer is None:
        if not convs:
            raise NetDSLError(f"{m.name} has no convolution: there are no filters to draw",
                              hint="`netdsl filters` draws the weights of a Conv layer; "
                                   "`netdsl features` shows what any layer computes")
        return convs[0]
    names = m.feature_layers([layer])
    if names[0] not in convs:
        nd = m.graph[layer]
        raise NetDSLError(f"layer {layer!r} ({nd.op}) is not a convolution: it has no filters", nd.span,
                          f"convolutions of {m.name}: {', '.join(convs[:8])}" + (" ..." if len(convs) > 8 else "")
                          if convs else f"{m.name} has no convolution")
    return layer


def filters_picture(m, layer=None, cap: int = FILTER_CAP, title: str | None = None):
    """(PIL image, grid.Section, layer name) of a convolution's filters."""
    name = filter_layer(m, layer)
    w = m.weights[f"{name}.weight"]
    img, section = filter_sheet(w, name=name, cap=cap, title=title)
    return img, section, name
