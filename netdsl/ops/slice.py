"""Slice: a contiguous range of channels, [start, stop), of a feature map or a vector.

Darknet's `[route] layers=-1 groups=2 group_id=1` (YOLOv4-tiny's CSP split) is exactly this:
the second half of the channels. ONNX's Slice/Split on axis 1 are the same operation. Python's
half-open convention: Slice(16, 32) keeps channels 16..31, so Slice(0, c/2) and Slice(c/2, c)
split a map in two. MACs 0; the output is a copy (no view: the planner's buffers are whole
tensors), one memcpy per (sample, channel range).
What this does not do: steps, negative indices, or slicing height or width.
"""
from __future__ import annotations

from . import register
from .attrs import Attr, OpError, nonneg_int, pos_int
from .geometry import need_rank, shape_str
from .spec import OpSpec


@register
class Slice(OpSpec):
    name = "Slice"
    aliases = ("ChannelSlice",)
    doc = "Channels start..stop-1 of the input (Darknet's route groups, ONNX Slice on axis 1)."
    arity = 1
    output_sign = "inputs"
    linear = True
    attrs = (Attr("start", nonneg_int, doc="first channel kept"),
             Attr("stop", pos_int, doc="one past the last channel kept"))
    samples = ((dict(start=2, stop=5), [(7, 5, 3)]), (dict(start=0, stop=4), [(9,)]),
               (dict(start=3, stop=6), [(6, 3, 5)]))

    def example(self):
        return "Slice(16, 32)"

    def check(self, a):
        if a["stop"] <= a["start"]:
            raise OpError(f"Slice({a['start']}, {a['stop']}) keeps no channel: stop must be greater than start",
                          attr="stop", hint=f"write e.g. Slice({a['start']}, {a['start'] + 1})")

    def resolve(self, a, shapes):
        need_rank(shapes[0], (1, 3), self.name)
        c = shapes[0][0]
        if a["stop"] > c:
            raise OpError(f"Slice({a['start']}, {a['stop']}) needs {a['stop']} channels, but the input "
                          f"{shape_str(shapes[0])} has {c}", attr="stop",
                          hint=f"stop may be at most {c}")
        return a

    def infer(self, a, shapes):
        return (a["stop"] - a["start"],) + tuple(shapes[0][1:])

    def explain(self, a, shapes, out):
        return [f"channels {a['start']}..{a['stop'] - 1} of {shapes[0][0]}: {shape_str(out)}"]

    def reference(self, a, xs, w):
        return xs[0][:, a["start"]:a["stop"]].copy()


__all__ = ["Slice"]
