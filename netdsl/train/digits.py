"""The built-in `digits` data set: digit glyphs 0-9 drawn with Pillow, no download.

Each image is one digit, white ink on a dark background like MNIST, uint8 [N, 1, size, size].
A glyph is drawn on a canvas twice the output size in one of five styles, then moved by a
random affine map, shrunk to the output size, blurred and given noise:

    font       Pillow's built-in FreeType font (Pillow >= 10.1), random weight (stroke width)
    bitmap     Pillow's bitmap font, scaled up blocky or smooth
    segments   a seven-segment display digit, random thickness and gaps
    strokes    pen strokes (lines and arcs) with jittered control points, two shapes for 1, 4,
               7 and 9 (a "handwritten" style; the one that makes the set a learning task)
    strokes2   the same strokes drawn thin with a wobbling pen

Affine: rotation +-12 degrees, scale 0.85-1.15, shear +-0.25, shift +-7% of the size. Then a
Gaussian blur of radius 0-0.8 px, ink 150-255 on a background 0-40, Gaussian noise of std 0-16,
and on about one image in seven a faint distractor stroke. Labels are balanced (n // 10 each, the
remainder to the first classes) and shuffled.

Deterministic: every random number comes from one numpy Generator seeded from
(seed, split), so train and test differ and the same call gives the same bytes with the same
Pillow (font rasterization may change between Pillow versions; the disk cache key includes
it). Where Pillow has no FreeType, the `font` style falls back to the bitmap font.

Not here: loading, caching (netdsl/train/data.py does both), colour images.
"""
from __future__ import annotations

import math

import numpy as np

STYLES = ("font", "bitmap", "segments", "strokes", "strokes2")
VERSION = 1                 # bump when the drawing changes: it names the disk cache

# Seven segments (a top, b top right, c bottom right, d bottom, e bottom left, f top left,
# g middle) as line ends in the unit box, and which are lit for each digit.
_SEG = {"a": ((0, 0), (1, 0)), "b": ((1, 0), (1, .5)), "c": ((1, .5), (1, 1)), "d": ((0, 1), (1, 1)),
        "e": ((0, .5), (0, 1)), "f": ((0, 0), (0, .5)), "g": ((0, .5), (1, .5))}
_LIT = ("abcdef", "bc", "abged", "abgcd", "fgbc", "afgcd", "afgedc", "abc", "abcdefg", "abcdfg")


def _arc(cx, cy, rx, ry, a0, a1, steps=14):
    """Points of an elliptic arc in the unit box (y down, so 270 degrees is the top)."""
    t = np.radians(np.linspace(a0, a1, steps))
    return list(zip(cx + rx * np.cos(t), cy + ry * np.sin(t)))


def _stroke_shapes(d, variant, j):
    """Pen strokes of digit d (a list of polylines in the unit box, y down). `j` yields
    standard normal jitter: arcs move their centre and radii, lines their ends."""
    def p(x, y, s=0.035):
        return (x + s * next(j), y + s * next(j))

    def arc(cx, cy, rx, ry, a0, a1):
        k = 1 + 0.08 * next(j)
        return _arc(cx + 0.03 * next(j), cy + 0.02 * next(j), rx * k, ry * (1 + 0.08 * next(j)),
                    a0 + 8 * next(j), a1 + 8 * next(j))

    if d == 0:
        return [arc(.5, .5, .36, .48, -90, 275)]
    if d == 1:
        return [[p(.5, .02), p(.5, .98)]] if variant == 0 else \
               [[p(.25, .22), p(.55, .02), p(.55, .98)], [p(.3, .98), p(.8, .98)]]
    if d == 2:
        return [arc(.5, .3, .36, .28, 195, 385) + [p(.1, .98), p(.92, .98)]]
    if d == 3:
        return [arc(.5, .26, .32, .24, 200, 450) + arc(.5, .73, .37, .26, 270, 520)]
    if d == 4:
        return [[p(.7, .98), p(.7, .02), p(.08, .68), p(.94, .68)]] if variant == 0 else \
               [[p(.22, .02), p(.12, .6), p(.92, .6)], [p(.7, .22), p(.7, .98)]]
    if d == 5:
        return [[p(.85, .02), p(.25, .02), p(.2, .44)] + arc(.48, .68, .37, .3, 220, 505)]
    if d == 6:
        return [arc(.62, .56, .44, .54, 292, 172) + arc(.5, .72, .34, .26, 175, 535)]
    if d == 7:
        base = [[p(.08, .03), p(.92, .03), p(.38, .98)]]
        return base if variant == 0 else base + [[p(.35, .52), p(.8, .52)]]
    if d == 8:
        return [arc(.5, .26, .29, .24, 90, 450), arc(.5, .73, .37, .27, -90, 270)]
    top = arc(.48, .3, .34, .27, 0, 362)
    return [top, [p(.82, .3), p(.76, .98)]] if variant == 0 else \
           [top, [p(.82, .3)] + _arc(.5, .56, .32, .42, 0, 100, 6)]


def _fonts(px):
    """(FreeType font of about `px` pixels or None, bitmap font)."""
    from PIL import ImageFont
    bitmap = getattr(ImageFont, "load_default_imagefont", ImageFont.load_default)()
    try:
        ft = ImageFont.load_default(size=px)
        ft = ft if isinstance(ft, ImageFont.FreeTypeFont) else None
    except (TypeError, OSError, ImportError, AttributeError):    # Pillow < 10.1 or no FreeType
        ft = None
    return ft, bitmap


def _glyph(ch, font, stroke):
    """`ch` drawn white with `font`, cropped to its ink (a bitmap font's box has blank rows)."""
    from PIL import Image, ImageDraw
    x0, y0, x1, y1 = font.getbbox(ch, stroke_width=stroke) if stroke else font.getbbox(ch)
    g = Image.new("L", (x1 - x0 + 2, y1 - y0 + 2), 0)
    ImageDraw.Draw(g).text((1 - x0, 1 - y0), ch, fill=255, font=font, stroke_width=stroke,
                           stroke_fill=255)
    return g.crop(g.getbbox())


def render(labels, size=32, seed=0):
    """uint8 [N, 1, size, size] images of the digits in `labels`, drawn as the module says,
    every random number taken from np.random.default_rng(seed) (an int or a sequence)."""
    from PIL import Image, ImageDraw, ImageFilter
    labels = np.asarray(labels, np.int64)
    n = len(labels)
    rng = np.random.default_rng(seed)
    S = 2 * size                                  # the canvas: drawn large, shrunk at the end
    ft, bitmap = _fonts(int(S * 0.8))
    style = rng.integers(0, len(STYLES), n)
    variant = rng.integers(0, 2, n)
    jitter = rng.standard_normal((n, 128))          # control points, wobble: enough for any digit
    width = rng.uniform(0.07, 0.15, n)            # pen width, fraction of the canvas
    bold = rng.integers(0, 3, n)                  # FreeType stroke width in canvas px
    smooth = rng.integers(0, 2, n)                # bitmap font: blocky or smooth scaling
    ink = rng.uniform(150, 255, n)
    back = rng.uniform(0, 40, n)
    rot = rng.uniform(-12, 12, n)
    scale = rng.uniform(0.85, 1.15, n)
    aspect = rng.uniform(0.85, 1.15, n)
    shear = rng.uniform(-0.25, 0.25, n)
    shift = rng.uniform(-0.07, 0.07, (n, 2)) * size
    blur = rng.uniform(0, 0.8, n)
    noise = rng.uniform(0, 16, n)
    distract = rng.random(n) < 0.15
    dpts = rng.uniform(0, S, (n, 3, 2))
    gx, gy = S * 0.5, S * 0.5
    gh, gw = S * 0.62, S * 0.42                   # the glyph box on the canvas, centred
    box = (gx - gw / 2, gy - gh / 2, gx + gw / 2, gy + gh / 2)
    out = np.empty((n, size, size), np.float32)

    def unit(pt):
        return (box[0] + pt[0] * gw, box[1] + pt[1] * gh)

    for i in range(n):
        d, st = int(labels[i]), STYLES[style[i]]
        if st == "font" and ft is None:
            st = "bitmap"
        canvas = Image.new("L", (S, S), 0)
        draw = ImageDraw.Draw(canvas)
        if st in ("font", "bitmap"):
            g = _glyph(str(d), ft if st == "font" else bitmap, int(bold[i]) if st == "font" else 0)
            h = gh * (1 + 0.1 * jitter[i, 0])
            w = g.width * h / g.height * (1 + 0.1 * jitter[i, 1])
            resample = Image.NEAREST if st == "bitmap" and not smooth[i] else Image.BILINEAR
            g = g.resize((max(1, round(w)), max(1, round(h))), resample)
            canvas.paste(g, (round(gx - g.width / 2), round(gy - g.height / 2)))
        elif st == "segments":
            lw = max(2, round(width[i] * S * 0.9))
            gap = 0.04 + 0.04 * abs(jitter[i, 0])
            for s in _LIT[d]:
                (ax, ay), (bx, by) = _SEG[s]
                dx, dy = (bx - ax) * gap, (by - ay) * gap
                draw.line([unit((ax + dx, ay + dy)), unit((bx - dx, by - dy))], fill=255, width=lw)
        else:
            j = iter(jitter[i])
            thin = st == "strokes2"
            lw = max(2, round(width[i] * S * (0.55 if thin else 1.0)))
            for line in _stroke_shapes(d, variant[i], j):
                pts = [unit(q) for q in line]
                if thin:                          # a wobbling pen: every point moves a little
                    pts = [(x + 0.6 * next(j, 0.0), y + 0.6 * next(j, 0.0)) for x, y in pts]
                draw.line(pts, fill=255, width=lw, joint="curve")
                r = lw / 2                        # round caps
                for x, y in (pts[0], pts[-1]):
                    draw.ellipse((x - r, y - r, x + r, y + r), fill=255)
        if distract[i]:
            draw.line([tuple(q) for q in dpts[i]], fill=90, width=max(1, round(S * 0.03)))
        # The affine map, inverted for Image.transform (it maps output pixels to input ones).
        t, k = math.radians(rot[i]), scale[i]
        fwd = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]]) @ \
            np.array([[k * aspect[i], shear[i] * k], [0, k]])
        inv = np.linalg.inv(fwd)
        c = np.array([gx, gy])
        off = c - inv @ (c + 2 * shift[i])
        canvas = canvas.transform((S, S), Image.AFFINE, (inv[0, 0], inv[0, 1], off[0],
                                                         inv[1, 0], inv[1, 1], off[1]),
                                  resample=Image.BILINEAR)
        small = canvas.resize((size, size), Image.BOX)
        if blur[i] > 0.25:
            small = small.filter(ImageFilter.GaussianBlur(float(blur[i])))
        out[i] = np.asarray(small, np.float32)
    # Ink level, background, noise: whole-array numpy.
    out *= (ink - back)[:, None, None] / 255.0
    out += back[:, None, None]
    out += rng.standard_normal(out.shape, dtype=np.float32) * noise[:, None, None].astype(np.float32)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)[:, None]


def balanced_labels(n, rng):
    """n labels 0-9, n // 10 of each (the remainder to the first classes), shuffled."""
    return rng.permutation(np.arange(n, dtype=np.int64) % 10)
