"""Pictures of what netdsl computes: feature maps, filters, the graph as SVG.

A presentation layer beside the CLI (it may use the whole pipeline; nothing below imports it).
Images go through Pillow (the `image` extra); SVG is written by hand, so no Graphviz is needed.
"""
from .grid import filter_sheet, grid, sheet  # noqa: F401  (Pillow is imported only when drawing)
