"""Contact sheets of feature maps and filters, drawn with Pillow (the `image` extra).

    from netdsl.viz import grid
    img = grid(a, name="conv1")          # a: (C, H, W) or (1, C, H, W) -> PIL.Image
    img = sheet({"conv1": a, "layer1.1.relu2": b}, cap=64)      # one section per layer
    img = filter_sheet(w, name="conv1")  # w: (OC, IC, KH, KW)

Layout (`layout`, which the drawing and the tests both read): a sheet is a column of sections,
one per layer; a section is a header of text lines (layer name, shape, value range, and how
many channels are shown) above a grid of tiles, `cols` per row, GAP pixels apart, MARGIN from
the edges. A tile is one channel upscaled by a whole factor with nearest neighbour, so every
array value is a square of `zoom` x `zoom` identical pixels: small maps stay visible and no
value is blurred into another. A map larger than TILE_LIMIT (U-Net's 572x572, VGG's 224x224)
is shown at 1/`shrink` of its size instead (each tile pixel the mean of a shrink x shrink block
of the normalized map), and the header says so; a sheet over MAX_PIXELS is refused.

Values: each tile is normalized on its own, min..max of its finite values -> 0..255 (grey);
a constant tile is mid-grey (128); +inf is drawn as 255 and -inf as 0, NaN in NAN_RGB (magenta),
so a NaN is never mistaken for a value. Filters with 3 input channels are RGB tiles, normalized
per filter jointly over its R, G and B.

Not done here: colour maps (grey shows the order of values without inventing one), matplotlib,
anything a batch of several images would mean (pass one image).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import NetDSLError

NAN_RGB = (255, 0, 255)         # NaN: a colour no grey tile can have
BACKGROUND = (255, 255, 255)
TILE_BACK = (200, 200, 200)     # the frame around tiles
TEXT = (20, 20, 20)
NOTE = (150, 40, 0)
GAP = 2                         # pixels between tiles
MARGIN = 6                      # pixels around the sheet and between sections
LINE = 14                       # height of a text line (Pillow's default font is about 11 px)
TILE_MIN = 40                   # maps smaller than this are zoomed up to at least this many pixels
TILE_MAX = 96                   # ... but a zoom never makes a tile larger than this (1 if the map is)
TILE_LIMIT = 112                # larger maps are shrunk by a whole factor to at most this
MAX_PIXELS = 40_000_000         # a sheet larger than this is refused (fewer layers, a smaller cap)
MAX_WIDTH = 1200                # a section wraps its tiles to stay under this width
CAP = 64                        # channels drawn per layer by default
FILTER_CAP = 256                # filter tiles drawn by default


def _pil():
    try:
        from PIL import Image, ImageDraw, ImageFont
    except ImportError:
        raise NetDSLError("drawing pictures needs Pillow", hint='pip install "netdsl[image]"') from None
    return Image, ImageDraw, ImageFont


def normalize(a, axes=None) -> np.ndarray:
    """float array -> uint8 RGB [..., 3]: min..max of the finite values over `axes` (all axes
    when None) -> 0..255; constant -> 128; +inf 255, -inf 0; NaN -> NAN_RGB."""
    a = np.asarray(a, np.float64)
    fin = np.isfinite(a)
    big = np.where(fin, a, np.nan)
    with np.errstate(all="ignore"):
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)      # all-NaN slices
            lo = np.nanmin(big, axis=axes, keepdims=True)
            hi = np.nanmax(big, axis=axes, keepdims=True)
        span = hi - lo
        g = np.where(span > 0, (a - lo) / np.where(span > 0, span, 1) * 255.0, 128.0)
    g = np.where(np.isposinf(a), 255.0, np.where(np.isneginf(a), 0.0, g))
    g = np.clip(np.rint(np.nan_to_num(g, nan=0.0)), 0, 255).astype(np.uint8)
    rgb = np.repeat(g[..., None], 3, axis=-1)
    rgb[np.isnan(a)] = NAN_RGB
    return rgb


def value_range(a) -> str:
    a = np.asarray(a)
    fin = a[np.isfinite(a)]
    text = f"range [{fin.min():.4g}, {fin.max():.4g}]" if fin.size else "no finite values"
    bad = []
    if np.isnan(a).any():
        bad.append(f"{int(np.isnan(a).sum())} NaN (magenta)")
    if np.isinf(a).any():
        bad.append(f"{int(np.isinf(a).sum())} inf")
    return text + (", " + ", ".join(bad) if bad else "")


def shrink_for(h, w) -> int:
    """The whole factor a map larger than TILE_LIMIT is shrunk by (1: drawn at its size)."""
    return max(1, -(-max(h, w) // TILE_LIMIT))


def zoom_for(h, w) -> int:
    """The whole upscale factor of an h x w tile: at least TILE_MIN pixels, at most TILE_MAX."""
    m = max(h, w)
    z = max(1, -(-TILE_MIN // m))
    while z > 1 and m * z > TILE_MAX:
        z -= 1
    return z


@dataclass
class Section:
    """One layer on a sheet: where its header and tiles go (pixels, the sheet's coordinates)."""
    name: str
    lines: list                 # header text lines
    top: int                    # y of the header
    tiles_top: int              # y of the first tile row
    tile_h: int
    tile_w: int
    zoom: int
    shrink: int
    cols: int
    n: int                      # tiles drawn
    width: int = 0
    height: int = 0
    boxes: list = field(default_factory=list)   # (x0, y0) of each tile, channel order

    def box(self, k):
        """(x0, y0, x1, y1) of tile k (x1, y1 exclusive)."""
        x, y = self.boxes[k]
        return x, y, x + self.tile_w, y + self.tile_h


def _section(name, lines, n, h, w, top, cols=None, shrink=1, max_width=MAX_WIDTH):
    h, w = -(-h // shrink), -(-w // shrink)
    z = zoom_for(h, w)
    th, tw = h * z, w * z
    fit = max(1, (max_width - 2 * MARGIN + GAP) // (tw + GAP))
    cols = max(1, min(n, cols or fit))
    rows = -(-n // cols)
    tiles_top = top + LINE * len(lines) + 2
    boxes = [(MARGIN + (k % cols) * (tw + GAP), tiles_top + (k // cols) * (th + GAP)) for k in range(n)]
    width = 2 * MARGIN + cols * tw + (cols - 1) * GAP
    height = tiles_top - top + rows * th + (rows - 1) * GAP
    return Section(name, lines, top, tiles_top, th, tw, z, shrink, cols, n, width, height, boxes)


def _as_map(a, name):
    a = np.asarray(a)
    if a.ndim == 4:
        if a.shape[0] != 1:
            raise NetDSLError(f"{name}: a batch of {a.shape[0]} maps; draw one image at a time",
                              hint="pass a[0] (the first image)")
        a = a[0]
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3:
        raise NetDSLError(f"{name} has shape {list(a.shape)}, not a feature map (C x H x W)",
                          hint="a vector (after Flatten/FC/global pooling) has no picture; choose a layer "
                               "before it")
    if a.shape[1] * a.shape[2] <= 1:
        raise NetDSLError(f"{name} is {'x'.join(map(str, a.shape))}: one value per channel, a vector "
                          "rather than a feature map", hint="choose a layer before the global pooling "
                                                             "(or the 1x1 output), where maps are larger than 1x1")
    return a


def shape_text(shape) -> str:
    return "x".join(map(str, shape))


def layout(maps: dict, cap: int = CAP, title: str | None = None, max_width: int = MAX_WIDTH) -> tuple:
    """(width, height, sections) of the sheet for {name: (C,H,W) array}; tiles wrap to keep each
    section under `max_width` pixels (one tile a row at least)."""
    if cap < 1:
        raise NetDSLError(f"the channel cap must be at least 1, got {cap}")
    sections, top = [], MARGIN + (LINE + 4 if title else 0)
    for name, a in maps.items():
        a = _as_map(a, name)
        c, h, w = a.shape
        n = min(c, cap)
        lines = [f"{name}   {shape_text(a.shape)}   {value_range(a)}"]
        f = shrink_for(h, w)
        with np.errstate(invalid="ignore"):
            flat = np.asarray(a[:n], np.float64).reshape(n, -1)
            const = int(np.sum(np.nanmax(flat, axis=1) == np.nanmin(flat, axis=1))) if flat.size else 0
        notes = ([f"{n} of {c} channels shown"] if n < c else []) + \
            ([f"shown at 1/{f} size ({-(-h // f)}x{-(-w // f)}, block means)"] if f > 1 else []) + \
            ([f"{const} constant channel{'s' if const != 1 else ''} (mid-grey)"] if const else [])
        if notes:
            lines.append("; ".join(notes))
        s = _section(name, lines, n, h, w, top, shrink=f, max_width=max_width)
        sections.append(s)
        top += s.height + MARGIN + 4
    width = max([s.width for s in sections] + [360])
    if width * top > MAX_PIXELS:
        raise NetDSLError(f"the sheet would be {width} x {top} pixels ({len(sections)} layers), more than "
                          f"the {MAX_PIXELS:,} pixels netdsl draws", hint="draw fewer layers (--layers) or "
                          "fewer channels a layer (--cap)")
    return width, top, sections


def _font(ImageFont):
    try:
        return ImageFont.load_default(size=11)
    except TypeError:           # Pillow < 10.1: the bitmap font, no size
        return ImageFont.load_default()


def _text_width(lines, font) -> int:
    try:
        return int(max(font.getlength(t) for t in lines)) + 2 * MARGIN
    except AttributeError:          # very old Pillow fonts
        return max(len(t) for t in lines) * 7 + 2 * MARGIN


def _shrink(rgb, f):
    """Block means of an (h, w, 3) uint8 tile over f x f blocks (edge blocks: what is there)."""
    if f == 1:
        return rgb
    h, w = rgb.shape[:2]
    hh, ww = -(-h // f) * f, -(-w // f) * f
    a = np.full((hh, ww, 3), np.nan)
    a[:h, :w] = rgb
    a = np.nanmean(a.reshape(hh // f, f, ww // f, f, 3), axis=(1, 3))
    return np.clip(np.rint(a), 0, 255).astype(np.uint8)


def _paste(img, tile_rgb, zoom, x, y, Image):
    t = np.repeat(np.repeat(tile_rgb, zoom, axis=0), zoom, axis=1)
    img.paste(Image.fromarray(np.ascontiguousarray(t), "RGB"), (x, y))


def sheet(maps: dict, cap: int = CAP, title: str | None = None, max_width: int = MAX_WIDTH):
    """One PIL image for several layers: a section per layer (header + its first `cap` channels,
    each normalized on its own). maps: {name: (C,H,W) or (1,C,H,W) array}."""
    Image, ImageDraw, ImageFont = _pil()
    if not maps:
        raise NetDSLError("nothing to draw: no layers given")
    maps = {k: _as_map(v, k) for k, v in maps.items()}
    width, height, sections = layout(maps, cap, title, max_width)
    font = _font(ImageFont)
    width = max(width, _text_width([title or ""] + [t for s in sections for t in s.lines], font))
    img = Image.new("RGB", (width, height), BACKGROUND)
    d = ImageDraw.Draw(img)
    if title:
        d.text((MARGIN, MARGIN), title, fill=TEXT, font=font)
    for s in sections:
        a = maps[s.name]
        for i, line in enumerate(s.lines):
            d.text((MARGIN, s.top + i * LINE), line, fill=TEXT if i == 0 else NOTE, font=font)
        rgb = normalize(a[:s.n], axes=(1, 2))
        for k in range(s.n):
            x, y = s.boxes[k]
            d.rectangle([x - 1, y - 1, x + s.tile_w, y + s.tile_h], outline=TILE_BACK)
            _paste(img, _shrink(rgb[k], s.shrink), s.zoom, x, y, Image)
    return img


def grid(array, name: str = "map", cap: int = CAP, title: str | None = None, max_width: int = MAX_WIDTH):
    """The channels of one feature map as a grid of tiles (a PIL image); see sheet."""
    return sheet({name: array}, cap=cap, title=title, max_width=max_width)


def filter_layout(w, cap: int = FILTER_CAP):
    """How filters (OC, IC, KH, KW) are drawn: (rgb, filters shown, input channels shown, cols)."""
    oc, ic = w.shape[:2]
    if ic == 3:
        n = min(oc, cap)
        return True, n, 3, None
    ics = min(ic, max(1, min(16, cap)))
    n = min(oc, max(1, cap // ics))
    return False, n, ics, (ics if ics > 1 else None)      # one input channel: wrap like a map


def filter_sheet(w, name: str = "conv", cap: int = FILTER_CAP, title: str | None = None):
    """A convolution's filters (OC, IC/groups, KH, KW) as tiles: one RGB tile per filter when it
    reads 3 input channels (normalized per filter over its R, G, B together), else one grey row
    per filter with a tile per input channel (each tile normalized on its own), up to `cap`
    tiles. Returns (PIL image, Section)."""
    Image, ImageDraw, ImageFont = _pil()
    w = np.asarray(w)
    if w.ndim != 4:
        raise NetDSLError(f"{name}: weights of shape {list(w.shape)} are not convolution filters "
                          "(OC x IC x KH x KW)")
    if cap < 1:
        raise NetDSLError(f"the tile cap must be at least 1, got {cap}")
    oc, ic, kh, kw = w.shape
    rgb, n, ics, cols = filter_layout(w, cap)
    lines = [f"{name}   filters {shape_text(w.shape)}   {value_range(w)}"]
    if rgb:
        lines.append("RGB tile per filter (R, G, B = input channels 0, 1, 2), normalized per filter"
                     + (f"; {n} of {oc} filters shown" if n < oc else ""))
        a = w[:n].astype(np.float64)
        g = normalize(a, axes=(1, 2, 3))[..., 0]                 # (n, 3, kh, kw) grey per value
        tiles = g.transpose(0, 2, 3, 1)                          # (n, kh, kw, 3): R, G, B
        nan = np.isnan(a).any(axis=1)
        tiles = np.ascontiguousarray(tiles)
        tiles[nan] = NAN_RGB
        count = n
    else:
        lines.append(f"one row per filter, one tile per input channel, each normalized on its own"
                     + (f"; {n} of {oc} filters" if n < oc else "")
                     + (f", {ics} of {ic} input channels" if ics < ic else "") + " shown")
        tiles = normalize(w[:n, :ics], axes=(2, 3)).reshape(n * ics, kh, kw, 3)
        count = n * ics
    top = MARGIN + (LINE + 4 if title else 0)
    s = _section(name, lines, count, kh, kw, top, cols)
    font = _font(ImageFont)
    width = max(s.width, 360, _text_width([title or ""] + lines, font))
    img = Image.new("RGB", (width, top + s.height + MARGIN), BACKGROUND)
    d = ImageDraw.Draw(img)
    if title:
        d.text((MARGIN, MARGIN), title, fill=TEXT, font=font)
    for i, line in enumerate(lines):
        d.text((MARGIN, s.top + i * LINE), line, fill=TEXT if i == 0 else NOTE, font=font)
    for k in range(count):
        x, y = s.boxes[k]
        d.rectangle([x - 1, y - 1, x + s.tile_w, y + s.tile_h], outline=TILE_BACK)
        _paste(img, tiles[k], s.zoom, x, y, Image)
    return img, s
