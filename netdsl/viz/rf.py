"""The exact receptive field of one output position, and its picture (`netdsl rf`).

    counts = support(m, "layer3.1.conv2", at=(7, 7))   # (H, W) of the input: path counts, 0 = not reached
    img, info = rf_picture(m, "layer3.1.conv2", at=None, image=None)

The analysis (analysis/infer.py) gives each layer's theoretical receptive field (node.rf) and
effective stride (node.jump): the size of the window one output position could see on an
unbounded input. `support` computes what it really sees: a count map is propagated backwards
from the one output position through every layer of the graph, branches included. Every spatial
op is separable, so each is an (out x in) tap-count matrix per axis and one step back is
M_in = A_y^T · M_out · A_x: Conv / Local / pools (stride, padding, dilation; groups do not
change the spatial support), ConvTranspose, Upsample (nearest and bilinear: the taps with a
non-zero weight), Pad (constant pads reach nothing; reflect/replicate fold back), Crop offsets,
Concat along H or W. Element-wise and per-position ops (activations, BatchNorm, LRN, channel
Softmax, Dropout, channel Slice) pass the map through; merges add their inputs' counts (a union
of the supports); global pooling, FC, Flatten and any op that mixes every position reach every
pixel. Taps that fall in the padding are dropped, so the support is clipped at the border.
A count is the number of window-tap paths from that input pixel to the output position (one
per spatial tap; channels are not counted): the centre-weighted "effective" receptive field.
"""
from __future__ import annotations

from fractions import Fraction

import numpy as np

from ..errors import NetDSLError, did_you_mean
from ..ops.geometry import dilated

WINDOW_OPS = ("Conv", "Local", "MaxPool", "MinPool", "AvgPool", "StochasticPool")
GLOBAL_OPS = ("GlobalAvgPool", "GlobalMaxPool", "FC", "Flatten", "Reshape")
POINTWISE_OPS = ("Identity", "Dropout", "ReLU", "LeakyReLU", "Sigmoid", "Tanh", "HardSigmoid",
                 "HardSwish", "SiLU", "GELU", "Mish", "Clip", "ReLU6", "Hardtanh", "PReLU",
                 "BatchNorm", "LRN", "Slice", "Add", "Mul", "Input")
CANVAS = (235, 235, 235)
FIELD = (220, 30, 30)
WINDOW = (20, 90, 220)
CENTRE = (0, 160, 0)
MIN_SIDE = 384                  # small inputs are zoomed up to at least this many pixels


def _hw(shape):
    return (shape[1], shape[2]) if shape is not None and len(shape) == 3 else (1, 1)


def _graph_of(model_or_graph):
    return getattr(model_or_graph, "graph", model_or_graph)


def _window_axis(n_out, n_in, k, s, d, p0):
    """Tap counts (n_out, n_in) of a sliding window along one axis; taps in the padding dropped."""
    a = np.zeros((n_out, n_in))
    for o in range(n_out):
        for t in range(k):
            i = o * s - p0 + t * d
            if 0 <= i < n_in:
                a[o, i] += 1
    return a


def _transpose_axis(n_out, n_in, k, s, d, p0):
    """ConvTranspose: input i, tap t lands on output i·s + t·d - p0."""
    a = np.zeros((n_out, n_in))
    for i in range(n_in):
        for t in range(k):
            o = i * s + t * d - p0
            if 0 <= o < n_out:
                a[o, i] += 1
    return a


def _index_axis(n_out, n_in, idx):
    """Each output index reads input idx[o] (-1: nothing)."""
    a = np.zeros((n_out, n_in))
    for o, i in enumerate(idx):
        if 0 <= i < n_in:
            a[o, i] += 1
    return a


def _axes(node, pred_shape, slot, g):
    """(A_y, A_x) for node <- its input in `slot`, or "all" (every position mixes), or None (identity)."""
    op, a = node.op, node.attrs
    (h, w), (oh, ow) = _hw(pred_shape), _hw(node.shape)
    if op == "Conv" and slot > 0:
        return None                 # the fused residual (residual=true) is added position by position
    if op in WINDOW_OPS:
        kh, kw = a["kernel"]
        (sh, sw), (dh, dw) = a["stride"], a.get("dilation") or (1, 1)
        t, l, _, _ = a["pad"]
        return _window_axis(oh, h, kh, sh, dh, t), _window_axis(ow, w, kw, sw, dw, l)
    if op == "ConvTranspose":
        (kh, kw), (sh, sw), (dh, dw) = a["kernel"], a["stride"], a["dilation"]
        t, l, _, _ = a["pad"]
        return _transpose_axis(oh, h, kh, sh, dh, t), _transpose_axis(ow, w, kw, sw, dw, l)
    if op == "Upsample":
        from ..ops.resize import _source_index
        out = []
        for n_out, n_in in ((oh, h), (ow, w)):
            i0, i1, f = _source_index(n_out, n_in, a["mode"], a["align_corners"])
            m = np.zeros((n_out, n_in))
            for o in range(n_out):
                if f[o] != 1:
                    m[o, i0[o]] += 1
                if f[o] != 0:
                    m[o, i1[o]] += 1
            out.append(m)
        return tuple(out)
    if op == "Pad":
        t, l, b, r = a["pad"]
        mode = {"constant": "constant", "reflect": "reflect"}.get(a["mode"], "edge")
        kw_ = {"constant_values": -1} if mode == "constant" else {}
        iy = np.pad(np.arange(h), (t, b), mode=mode, **kw_)
        ix = np.pad(np.arange(w), (l, r), mode=mode, **kw_)
        return _index_axis(oh, h, iy), _index_axis(ow, w, ix)
    if op == "Crop":
        if slot > 0:
            return "none"           # the second input only gives the size (U-Net's copy and crop)
        y0, x0 = a["offset"]
        return _index_axis(oh, h, np.arange(oh) + y0), _index_axis(ow, w, np.arange(ow) + x0)
    if op == "Concat":
        axis = a.get("axis", 1)
        if axis in (2, 3) and len(node.shape) == 3:
            preds = g.preds(node.name)
            off = sum(_hw(g[p].shape)[axis - 2] for p in preds[:slot])
            if axis == 2:
                return _index_axis(oh, h, np.arange(oh) - off), np.eye(ow, w)
            return np.eye(oh, h), _index_axis(ow, w, np.arange(ow) - off)
        return None if (h, w) == (oh, ow) else "all"
    if op in GLOBAL_OPS:
        return "all"
    if op in ("Softmax", "LogSoftmax"):
        return None if a.get("axis", 1) in (1, -3) or len(node.shape) != 3 else "all"
    if (h, w) == (oh, ow) and (op in POINTWISE_OPS or op == "Conv"):
        return None
    if (h, w) == (oh, ow) and len(node.shape) == 3 and len(pred_shape) == 3:
        return None             # an op that keeps the map: per position (YoloDecode, ...)
    if (h, w) == (1, 1):        # a broadcast (SE's channel weights), or a vector
        return "all"
    return "all"


def _step(node, pred_shape, slot, m, g):
    ax = _axes(node, pred_shape, slot, g)
    hw = _hw(pred_shape)
    if ax is None:
        if m.shape == hw:
            return m
        return np.full(hw, m.sum())
    if ax == "none":
        return np.zeros(hw)
    if isinstance(ax, str):
        return np.full(hw, m.sum())
    ay, axx = ax
    return ay.T @ m @ axx


def check_layer(g, layer, name="the network") -> str:
    if layer not in g:
        known = [nd.name for nd in g.nodes()]
        raise NetDSLError(f"{name} has no layer {layer!r}",
                          hint=did_you_mean(layer, known) or "`netdsl summary MODEL` lists the layers")
    return layer


def default_at(g, layer):
    oh, ow = _hw(g[layer].shape)
    return (oh // 2, ow // 2)


def check_at(g, layer, at):
    oh, ow = _hw(g[layer].shape)
    y, x = at
    if not (0 <= y < oh and 0 <= x < ow):
        raise NetDSLError(f"position {y},{x} is outside {layer}'s output map ({oh}x{ow})",
                          hint=f"--at y,x with 0 <= y < {oh} and 0 <= x < {ow} "
                               f"(default: the centre, {oh // 2},{ow // 2})")
    return int(y), int(x)


def _source_input(g, layer):
    anc = _ancestors(g, layer)
    ins = [n for n in g.inputs if n in anc and len(g[n].shape) == 3]
    if not ins:
        raise NetDSLError(f"layer {layer!r} does not depend on an image input",
                          hint="choose a layer computed from the network's C x H x W input")
    return ins[0]


def _ancestors(g, layer):
    import networkx as nx
    return nx.ancestors(g.g, layer) | {layer}


def support(model_or_graph, layer, at=None, input_name=None) -> np.ndarray:
    """Path counts (H, W) over the input image for output position `at` (y, x) of `layer`
    (default: the centre of its map); 0 = that pixel cannot change the value."""
    g = _graph_of(model_or_graph)
    check_layer(g, layer, getattr(model_or_graph, "name", "the network"))
    at = check_at(g, layer, default_at(g, layer) if at is None else at)
    src = input_name or _source_input(g, layer)
    anc = _ancestors(g, layer)
    maps = {layer: np.zeros(_hw(g[layer].shape))}
    maps[layer][at] = 1.0
    for name in reversed(g.topo()):
        if name not in maps or name not in anc:
            continue
        node, m = g[name], maps[name]
        if not m.any():
            continue
        for slot, p in enumerate(g.preds(name)):
            back = _step(node, g[p].shape, slot, m, g)
            maps[p] = maps[p] + back if p in maps else back
    if src not in maps:
        return np.zeros(_hw(g[src].shape))
    return maps[src]


def theoretical_window(g, layer, at):
    """((y0, x0, y1, x1) in input pixels, inclusive float bounds, (rf_h, rf_w)): the analysis'
    receptive field (node.rf) centred where the position's window is centred."""
    starts, jumps = {}, {}
    for name in g.topo():
        node = g[name]
        preds = g.preds(name)
        if not preds:
            starts[name], jumps[name] = (Fraction(0), Fraction(0)), (Fraction(1), Fraction(1))
            continue
        if node.op in ("Conv", "Crop"):
            preds = preds[:1]           # a fused residual / a size reference: not windowed
        best = max(preds, key=lambda p: (tuple(g[p].rf or (1, 1)), p))
        s0, j0 = starts[best], jumps[best]
        (h, w), (oh, ow) = _hw(g[best].shape), _hw(node.shape)
        a = node.attrs
        if node.op in WINDOW_OPS:
            ke = dilated(a["kernel"], a.get("dilation") or (1, 1))
            pad = (a["pad"][0], a["pad"][1])
            st = a["stride"]
            starts[name] = tuple(s0[i] + (Fraction(ke[i] - 1, 2) - pad[i]) * j0[i] for i in range(2))
            jumps[name] = tuple(j0[i] * st[i] for i in range(2))
        elif node.op == "Crop":
            starts[name] = tuple(s0[i] + a["offset"][i] * j0[i] for i in range(2))
            jumps[name] = j0
        elif node.op == "Pad":
            starts[name] = (s0[0] - a["pad"][0] * j0[0], s0[1] - a["pad"][1] * j0[1])
            jumps[name] = j0
        elif (h, w) != (oh, ow) and len(node.shape) == 3:
            r = (Fraction(h, oh), Fraction(w, ow))
            starts[name] = tuple(s0[i] + (r[i] - 1) / 2 * j0[i] for i in range(2))
            jumps[name] = tuple(j0[i] * r[i] for i in range(2))
        else:
            starts[name], jumps[name] = s0, j0
    rf = g[layer].rf or (1, 1)
    c = [float(starts[layer][i] + at[i] * jumps[layer][i]) for i in range(2)]
    half = [(float(rf[i]) - 1) / 2 for i in range(2)]
    return (c[0] - half[0], c[1] - half[1], c[0] + half[0], c[1] + half[1]), rf, tuple(c)


def describe(g, layer, at, counts) -> dict:
    ys, xs = np.nonzero(counts)
    box, rf, centre = theoretical_window(g, layer, at)
    ext = (int(ys.max() - ys.min() + 1), int(xs.max() - xs.min() + 1)) if len(ys) else (0, 0)
    return dict(layer=layer, at=at, rf=tuple(rf), window=box, centre=centre, support=ext,
                reached=int(len(ys)), input_hw=counts.shape,
                bbox=(int(ys.min()), int(xs.min()), int(ys.max()), int(xs.max())) if len(ys) else None)


def _fmt(v):
    return "x".join(str(int(x)) if float(x).is_integer() else f"{float(x):.1f}" for x in v)


def rf_picture(model_or_graph, layer, at=None, image=None, title=None, min_side=MIN_SIDE, header=True):
    """(PIL image, info dict): the support of `layer`'s output position `at` drawn over `image`
    (uint8 H x W x 3 of the input's size; None: a grey canvas), shaded by path count, with the
    theoretical window outlined and (header=True) the header text; inputs smaller than `min_side`
    pixels are enlarged by a whole factor."""
    from .grid import _font, _pil, _text_width
    Image, ImageDraw, ImageFont = _pil()
    g = _graph_of(model_or_graph)
    check_layer(g, layer, getattr(model_or_graph, "name", "the network"))
    at = check_at(g, layer, default_at(g, layer) if at is None else at)
    counts = support(g, layer, at)
    info = describe(g, layer, at, counts)
    h, w = counts.shape
    base = np.empty((h, w, 3), np.float64)
    if image is None:
        base[:] = CANVAS
    else:
        img = np.asarray(image, np.float64)
        base[:] = img[..., None] if img.ndim == 2 else img[..., :3]
        base = 0.55 * base + 0.45 * 255           # faded, so the field stands out
    top = counts.max()
    if top > 0:
        alpha = np.where(counts > 0, 0.25 + 0.7 * counts / top, 0.0)[..., None]
        base = base * (1 - alpha) + np.array(FIELD, np.float64) * alpha
    zoom = max(1, -(-min_side // max(h, w)))
    pic = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8)).resize((w * zoom, h * zoom), Image.NEAREST)
    font = _font(ImageFont)
    lines = [title or f"receptive field of {layer} at output position (y={at[0]}, x={at[1]})",
             f"theoretical RF {_fmt(info['rf'])} (blue)   exact support {_fmt(info['support'])} "
             f"(clipped to the {h}x{w} input)   {info['reached']:,} input pixels reached",
             f"red: pixels that can change this value; darker = more window-tap paths (max {top:,.0f})"]
    head = 14 * len(lines) + 8 if header else 0
    if header:
        out = Image.new("RGB", (max(pic.size[0], _text_width(lines, font)) + 12, pic.size[1] + head + 6),
                        (255, 255, 255))
        ox, oy = 6, head
    else:
        out, ox, oy = Image.new("RGB", pic.size, (255, 255, 255)), 0, 0
    out.paste(pic, (ox, oy))
    d = ImageDraw.Draw(out)
    for i, s in enumerate(lines if header else ()):
        d.text((6, 4 + 14 * i), s, fill=(20, 20, 20), font=font)
    y0, x0, y1, x1 = info["window"]
    clip = lambda v, n: min(max(v, -0.5), n - 0.5)          # noqa: E731
    bx = [ox + (clip(x0 - 0.5, w) + 0.5) * zoom, oy + (clip(y0 - 0.5, h) + 0.5) * zoom,
          ox + (clip(x1 + 0.5, w) + 0.5) * zoom - 1, oy + (clip(y1 + 0.5, h) + 0.5) * zoom - 1]
    d.rectangle(bx, outline=WINDOW, width=2)
    cy, cx = info["centre"]
    if 0 <= cy < h and 0 <= cx < w:
        px, py = ox + (cx + 0.5) * zoom, oy + (cy + 0.5) * zoom
        d.line([px - 5, py, px + 5, py], fill=CENTRE, width=2)
        d.line([px, py - 5, px, py + 5], fill=CENTRE, width=2)
    return out, info
