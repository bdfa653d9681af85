"""Augmentation (netdsl/train/augment.py): each step checked against what it promises — a crop
is a window of the padded image, flips undo themselves, jitter factors stay in their range with
the right spread, lighting shifts along the PCA axes by alpha * sqrt(lambda) — and a seeded
Generator gives the same bytes."""
from __future__ import annotations

import numpy as np
import pytest

from netdsl import NetDSLError
from netdsl.train import augment as A
from netdsl.train.augment import Augment


def batch(n=8, c=3, h=9, w=7, seed=0):
    return np.random.default_rng(seed).integers(1, 256, (n, c, h, w), dtype=np.uint8)


def rng(seed=0):
    return np.random.default_rng(seed)


@pytest.mark.parametrize("c, h, w, pad", [(1, 9, 7, 2), (3, 13, 17, 4), (3, 5, 5, 1)],
                         ids=["c1-h9-w7-p2", "c3-h13-w17-p4", "c3-h5-w5-p1"])
def test_crop_is_a_window_of_the_padded_image(c, h, w, pad):
    """Oracle: search every offset 0..2*pad of np.pad(x) for the output."""
    x = batch(60, c, h, w)
    out = A.random_crop(x, pad, rng(1))
    assert out.shape == x.shape and out.dtype == x.dtype
    padded = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    offsets = set()
    for i in range(len(x)):
        hits = [(dy, dx) for dy in range(2 * pad + 1) for dx in range(2 * pad + 1)
                if np.array_equal(out[i], padded[i, :, dy:dy + h, dx:dx + w])]
        assert hits, f"image {i} is no window of its padded image"
        offsets.add(hits[0])
    assert len(offsets) >= min(60, (2 * pad + 1) ** 2) // 3      # the offsets really vary


def test_flip_twice_is_identity_and_flips_about_half():
    x = batch(400, 3, 4, 5)
    once = A.random_flip(x, 1.0, rng())
    assert np.array_equal(once, x[..., ::-1]) and np.array_equal(A.random_flip(once, 1.0, rng()), x)
    assert np.array_equal(A.random_flip(x, 0.0, rng()), x)
    half = A.random_flip(x, 0.5, rng(2))
    kept = np.all(half == x, axis=(1, 2, 3))
    mirrored = np.all(half == x[..., ::-1], axis=(1, 2, 3))
    assert np.all(kept | mirrored)
    assert 150 < mirrored.sum() < 250                          # Binomial(400, 0.5): +-5 sigma
    # the same generator state flips the same images: twice with one seed undoes it
    assert np.array_equal(A.random_flip(A.random_flip(x, 0.5, rng(3)), 0.5, rng(3)), x)


def test_brightness_factors_uniform_in_range():
    x = np.random.default_rng(0).uniform(10, 100, (3000, 1, 3, 3)).astype(np.float32)
    out = A.color_jitter(x, 0.4, 0, 0, rng(), clip=False)
    f = (out / x).reshape(3000, -1)
    assert np.allclose(f, f[:, :1], rtol=1e-5)                  # one factor per image
    f = f[:, 0]
    assert f.min() >= 0.6 and f.max() <= 1.4
    assert abs(f.mean() - 1) < 0.02 and abs(f.std() - 0.8 / np.sqrt(12)) < 0.01   # U(0.6, 1.4)


def test_contrast_keeps_the_mean_gray_and_scales_deviations():
    x = batch(500, 3, 6, 6).astype(np.float32)
    out = A.color_jitter(x, 0, 0.5, 0, rng(1), clip=False)
    g = lambda a: np.einsum("nchw,c->n", a, A.LUMA) / 36            # noqa: E731  mean gray
    np.testing.assert_allclose(g(out), g(x), rtol=1e-4)
    dev_in = x - g(x)[:, None, None, None]
    dev_out = out - g(out)[:, None, None, None]
    k = (dev_out.reshape(500, -1) / dev_in.reshape(500, -1))
    k = np.nanmedian(k, axis=1)
    assert k.min() >= 0.5 - 1e-4 and k.max() <= 1.5 + 1e-4 and abs(k.mean() - 1) < 0.04


def test_saturation_keeps_each_pixels_gray_and_gray_images_unchanged():
    x = batch(50, 3, 5, 5).astype(np.float32)
    out = A.color_jitter(x, 0, 0, 0.8, rng(2), clip=False)
    np.testing.assert_allclose(A._gray(out), A._gray(x), rtol=1e-4, atol=1e-3)
    assert not np.allclose(out, x)
    g = batch(5, 1, 5, 5).astype(np.float32)
    assert np.array_equal(A.color_jitter(g, 0, 0, 0.8, rng(2), clip=False), g)


def test_jitter_on_uint8_is_clipped_float32():
    x = batch(100, 3, 4, 4)
    out = A.color_jitter(x, 0.9, 0.9, 0.9, rng())
    assert out.dtype == np.float32 and out.min() >= 0 and out.max() <= 255 and out.max() == 255


def test_pca_finds_the_axes_of_a_known_covariance():
    """Pixels drawn with stds (30, 10, 3) along a random rotation: pca returns those stds and
    axes (up to sign)."""
    r = np.random.default_rng(4)
    q, _ = np.linalg.qr(r.standard_normal((3, 3)))
    pix = (r.standard_normal((200_000, 3)) * [30, 10, 3]) @ q.T + 128
    x = pix.reshape(2000, 10, 10, 3).transpose(0, 3, 1, 2)
    val, vec = A.pca(x)
    np.testing.assert_allclose(val, [30, 10, 3], rtol=0.02)
    np.testing.assert_allclose(np.abs(np.sum(vec * q, axis=0)), 1, atol=1e-3)


def test_lighting_shift_is_constant_per_image_along_the_pca_axes():
    val = np.array([20.0, 5.0, 1.0], np.float32)
    vec, _ = np.linalg.qr(np.random.default_rng(5).standard_normal((3, 3)))
    x = np.full((4000, 3, 2, 2), 100.0, np.float32)
    out = A.lighting(x, 0.1, val, vec, rng(6), clip=False)
    shift = (out - x)
    assert np.allclose(shift, shift[:, :, :1, :1], atol=1e-4)           # the same at every pixel
    coef = shift[:, :, 0, 0] @ vec.astype(np.float32)                    # coordinates on the axes
    np.testing.assert_allclose(coef.std(0) / val, 0.1, rtol=0.06)        # alpha ~ N(0, 0.1)
    assert np.all(np.abs(coef.mean(0) / val) < 0.01)


def test_lighting_needs_fit_and_loader_style_fit_works():
    x = batch(20)
    aug = Augment.from_spec("lighting")
    with pytest.raises(NetDSLError, match="lighting augmentation needs the PCA of the training pixels"):
        aug(x, rng())
    aug.fit(x)
    assert aug.eigval.shape == (3,) and aug.eigvec.shape == (3, 3)
    out = aug(x, rng())
    assert out.dtype == np.float32 and out.shape == x.shape and 0 <= out.min() and out.max() <= 255
    given = Augment(lighting=0.1, eigval=A.IMAGENET_EIGVAL * 255, eigvec=A.IMAGENET_EIGVEC)
    assert given.fit(x).eigval is not None and np.allclose(given.eigval, A.IMAGENET_EIGVAL * 255)


def test_seeded_and_reproducible():
    x = batch(16, 3, 10, 10)
    aug = Augment.from_spec("crop,flip,jitter,lighting").fit(x)
    a, b = aug(x, rng(9)), aug(x, rng(9))
    assert a.tobytes() == b.tobytes()
    assert not np.array_equal(a, aug(x, rng(10)))
    assert np.array_equal(x, batch(16, 3, 10, 10))                      # the input is not changed
    with pytest.raises(NetDSLError, match="the lighting PCA has 3 channels but the batch has 1"):
        aug(x[:, :1], rng(9))


def test_crop_and_flip_keep_uint8_and_order_is_crop_then_flip():
    x = batch(10, 1, 6, 6)
    aug = Augment.from_spec("crop=1,flip=1")
    out = aug(x, rng(3))
    assert out.dtype == np.uint8
    want = A.random_flip(A.random_crop(x, 1, rng(3)), 1.0, rng(3))
    assert np.array_equal(out, want)


def test_from_spec():
    a = Augment.from_spec("crop=4,flip")
    assert (a.crop, a.flip, a.jitter, a.lighting) == (4, 0.5, None, None) and str(a) == "crop=4,flip=0.5"
    b = Augment.from_spec("crop, flip=0.25, jitter=0.2, lighting=0.05")
    assert (b.crop, b.flip, b.jitter, b.lighting) == (4, 0.25, 0.2, 0.05)
    assert not Augment.from_spec("none") and not Augment.from_spec("") and Augment.from_spec("flip")
    x = batch(3)
    assert np.array_equal(Augment.from_spec("none")(x, rng()), x)


@pytest.mark.parametrize("spec, msg", [
    ("crop,flp", r"unknown augmentation 'flp' in --augment crop,flp[\s\S]*did you mean 'flip'"),
    ("rotate", r"unknown augmentation 'rotate'[\s\S]*known: crop, flip, jitter, lighting"),
    ("crop=2.5", r"--augment crop=2.5: the padding in pixels must be a whole number"),
    ("flip=1.5", r"--augment flip=1.5: the probability must be between 0 and 1"),
    ("jitter=1", r"--augment jitter=1: the strength must be at least 0 and below 1"),
    ("lighting=x", r"--augment lighting=x: the alpha std must be a number"),
], ids=["typo", "unknown", "crop-float", "flip-range", "jitter-range", "lighting-nan"])
def test_from_spec_errors(spec, msg):
    with pytest.raises(NetDSLError, match=msg):
        Augment.from_spec(spec)
