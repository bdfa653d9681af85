"""Data augmentation as the AlexNet slide does it, whole-batch numpy.

A batch is [N, C, H, W], uint8 (8-bit images, before normalization: the loader normalizes
after) or float32 (arrays used as they are). The steps, in this order:

    crop=P       pad every side with P zeros, cut a random H x W window back out (P = 4);
                 one gather over the batch, no per-image copy
    flip=p       mirror left-right with probability p (0.5)
    jitter=s     colour jitter, each factor drawn from U(1 - s, 1 + s) (s = 0.4), in this
                 fixed order: brightness (x * b), contrast (towards the image's mean gray),
                 saturation (towards each pixel's gray; RGB only)
    lighting=a   AlexNet's PCA lighting: every pixel of image i gets sum_k alpha_ik
                 sqrt(lambda_k) v_k, alpha ~ N(0, a) (a = 0.1), (lambda, v) the eigenvalues and
                 eigenvectors of the channel covariance of the training pixels (Augment.fit)
                 or given

Crop and flip move pixels and keep the dtype. Jitter and lighting return float32; for uint8
input the result is clipped to 0..255 (float input is not clipped: its range is unknown).
Lighting scales eigenvectors by sqrt(lambda), the standard deviation along each principal
axis, so alpha is in units of it (the paper writes lambda; with 0..255 pixels that would add
hundreds) — fb.resnet.torch's ImageNet constants are the same kind of numbers.

Reproducible: every random number comes from the Generator passed with the batch.
Not here: random resized crops, rotations, per-sample Python transforms.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import NetDSLError, did_you_mean

STEPS = {"crop": ("padding in pixels", 4, int), "flip": ("probability", 0.5, float),
         "jitter": ("strength", 0.4, float), "lighting": ("alpha std", 0.1, float)}
LUMA = np.array([0.299, 0.587, 0.114], np.float32)
# ImageNet's RGB PCA on 0..1 pixels (AlexNet; the values fb.resnet.torch uses): sqrt-eigenvalues
# and eigenvectors (columns). Times 255 for 8-bit pixels.
IMAGENET_EIGVAL = np.array([0.2175, 0.0188, 0.0045], np.float32)
IMAGENET_EIGVEC = np.array([[-0.5675, 0.7192, 0.4009],
                            [-0.5808, -0.0045, -0.8140],
                            [-0.5836, -0.6948, 0.4203]], np.float32)


@dataclass
class Augment:
    """The steps to apply (None = off). `eigval` / `eigvec`: the lighting PCA (sqrt
    eigenvalues [C], eigenvectors as columns [C, C]); None = computed by fit()."""
    crop: int | None = None
    flip: float | None = None
    jitter: float | None = None
    lighting: float | None = None
    eigval: np.ndarray | None = None
    eigvec: np.ndarray | None = None

    @classmethod
    def from_spec(cls, spec):
        """"crop,flip" or "crop=4,flip=0.5,jitter=0.4,lighting=0.1" (the CLI's --augment);
        "" or "none" is no augmentation."""
        kw = {}
        for item in (spec or "").split(","):
            item = item.strip()
            if not item or item == "none":
                continue
            name, _, value = item.partition("=")
            name = name.strip()
            if name not in STEPS:
                raise NetDSLError(f"unknown augmentation {name!r} in --augment {spec}",
                                  hint=did_you_mean(name, STEPS) or f"known: {', '.join(STEPS)} "
                                                                    "(e.g. crop=4,flip)")
            what, default, kind = STEPS[name]
            try:
                v = kind(value) if value else default
            except ValueError:
                raise NetDSLError(f"--augment {name}={value}: the {what} must be a "
                                  f"{'whole number' if kind is int else 'number'}",
                                  hint=f"e.g. {name}={default}")
            bad = v < 0 or (name == "flip" and v > 1) or (name == "jitter" and v >= 1)
            if bad:
                limit = {"flip": "between 0 and 1", "jitter": "at least 0 and below 1"}.get(name, "at least 0")
                raise NetDSLError(f"--augment {name}={value}: the {what} must be {limit}",
                                  hint=f"e.g. {name}={default}")
            kw[name] = v
        return cls(**kw)

    def __bool__(self):
        return any(v is not None for v in (self.crop, self.flip, self.jitter, self.lighting))

    def __str__(self):
        return ",".join(f"{k}={getattr(self, k)}" for k in STEPS if getattr(self, k) is not None) or "none"

    def fit(self, x, max_pixels=1_000_000, seed=0):
        """Fill the lighting PCA from images x [N, C, H, W] (up to `max_pixels` pixels drawn
        with a fixed seed) when lighting is on and none was given. Returns self."""
        if self.lighting is None or self.eigval is not None:
            return self
        self.eigval, self.eigvec = pca(x, max_pixels, seed)
        return self

    def __call__(self, x, rng):
        """The augmented copy of batch x [N, C, H, W]; random numbers from `rng`."""
        if self.crop:
            x = random_crop(x, self.crop, rng)
        if self.flip:
            x = random_flip(x, self.flip, rng)
        clip = x.dtype == np.uint8
        if self.jitter:
            x = color_jitter(x, self.jitter, self.jitter, self.jitter, rng, clip)
        if self.lighting:
            if self.eigval is None:
                raise NetDSLError("lighting augmentation needs the PCA of the training pixels",
                                  hint="call Augment.fit(x) first (the Loader does), or give "
                                       "eigval/eigvec (IMAGENET_EIGVAL * 255 for ImageNet-like data)")
            x = lighting(x, self.lighting, self.eigval, self.eigvec, rng, clip)
        return x


def random_crop(x, pad, rng):
    """Pad [N, C, H, W] by `pad` zeros on every side, then take a random H x W window per
    image (offsets 0..2*pad in each direction): one fancy-index gather for the batch."""
    n, c, h, w = x.shape
    p = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    dy = rng.integers(0, 2 * pad + 1, n)
    dx = rng.integers(0, 2 * pad + 1, n)
    rows = (dy[:, None] + np.arange(h))[:, None, :, None]           # [N, 1, H, 1]
    cols = (dx[:, None] + np.arange(w))[:, None, None, :]           # [N, 1, 1, W]
    return p[np.arange(n)[:, None, None, None], np.arange(c)[None, :, None, None], rows, cols]


def random_flip(x, p, rng):
    """Mirror each image left-right with probability p."""
    m = rng.random(len(x)) < p
    out = x.copy()
    out[m] = x[m, :, :, ::-1]
    return out


def _gray(x):
    """Per-pixel gray [N, 1, H, W] (ITU-R 601-2 luma for RGB, the channel itself for gray)."""
    return np.einsum("nchw,c->nhw", x, LUMA)[:, None] if x.shape[1] == 3 else x.mean(1, keepdims=True)


def color_jitter(x, brightness, contrast, saturation, rng, clip=True):
    """Brightness, contrast, then saturation (RGB only), each factor from U(1 - s, 1 + s)
    per image; float32, clipped to 0..255 when `clip`."""
    n = len(x)
    x = np.asarray(x, np.float32)

    def factor(s):
        return rng.uniform(1 - s, 1 + s, n).astype(np.float32)[:, None, None, None]

    if brightness:
        x = x * factor(brightness)
        x = np.clip(x, 0, 255) if clip else x
    if contrast:
        m = _gray(x).mean(axis=(1, 2, 3), keepdims=True)
        x = (x - m) * factor(contrast) + m
        x = np.clip(x, 0, 255) if clip else x
    if saturation and x.shape[1] == 3:
        g = _gray(x)
        x = (x - g) * factor(saturation) + g
        x = np.clip(x, 0, 255) if clip else x
    return x


def pca(x, max_pixels=1_000_000, seed=0):
    """(sqrt eigenvalues [C] descending, eigenvectors [C, C] as columns) of the channel
    covariance of images x [N, C, H, W], on at most max_pixels pixels drawn with `seed`."""
    n, c = x.shape[:2]
    pix = np.moveaxis(x, 1, -1).reshape(-1, c)
    if len(pix) > max_pixels:
        pix = pix[np.random.default_rng(seed).choice(len(pix), max_pixels, replace=False)]
    cov = np.atleast_2d(np.cov(pix.astype(np.float64), rowvar=False))
    val, vec = np.linalg.eigh(cov)
    order = np.argsort(val)[::-1]
    return np.sqrt(np.maximum(val[order], 0)).astype(np.float32), vec[:, order].astype(np.float32)


def lighting(x, alpha_std, eigval, eigvec, rng, clip=True):
    """AlexNet's PCA lighting: image i gets the colour shift eigvec @ (alpha_i * eigval),
    alpha_i ~ N(0, alpha_std) per component, the same at every pixel."""
    n, c = x.shape[:2]
    eigval, eigvec = np.asarray(eigval, np.float32).ravel(), np.asarray(eigvec, np.float32)
    if eigval.shape != (c,) or eigvec.shape != (c, c):
        raise NetDSLError(f"the lighting PCA has {len(eigval)} channels but the batch has {c}",
                          hint="fit it on the images it is applied to (Augment.fit)")
    alpha = rng.normal(0, alpha_std, (n, c)).astype(np.float32)
    shift = (alpha * eigval) @ eigvec.T                              # [N, C]
    x = np.asarray(x, np.float32) + shift[:, :, None, None]
    return np.clip(x, 0, 255) if clip else x
