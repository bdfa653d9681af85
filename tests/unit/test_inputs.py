"""`netdsl run --input`: images read by their real range, limits checked from headers,
.npy inputs checked before they are read (issue 7). Images are small, generated here."""
from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest

from netdsl import NetDSLError
from netdsl.runtime import inputs

Image = pytest.importorskip("PIL.Image")


class Node:
    """The input node fields read_input/load_image use (no graph needed)."""
    def __init__(self, shape, **attrs):
        self.name, self.shape = "x", shape
        self.attrs = {"scale": 1 / 255, **attrs}


def expected(pixels01, c):
    """The oracle: 0..1 values, as [1, C, H, W] float32 (scale 1/255 undoes the 8-bit scale)."""
    a = np.asarray(pixels01, np.float64)
    a = a[..., None] if a.ndim == 2 else a
    if a.shape[2] == 1 and c == 3:
        a = np.repeat(a, 3, axis=2)
    return a.transpose(2, 0, 1)[None]


def save(tmp_path, name, im):
    p = tmp_path / name
    im.save(p)
    return str(p)


def test_16bit_png_is_read_by_its_range(tmp_path):
    v = np.array([[0, 1000, 32768], [40000, 65535, 12345]], np.uint16)
    p = save(tmp_path, "g16.png", Image.fromarray(v))
    assert Image.open(p).mode.startswith("I")            # Pillow keeps 16 bits (I;16 or I)
    for c in (1, 3):
        got = inputs.load_image(p, Node((c, 2, 3)), 1)
        np.testing.assert_allclose(got, expected(v / 65535, c), atol=1e-6)


def test_float_tiff_in_0_1_is_read_as_is(tmp_path):
    v = np.array([[0.0, 0.25, 0.5], [0.75, 1.0, 0.1]], np.float32)
    p = save(tmp_path, "f.tif", Image.fromarray(v, "F"))
    assert Image.open(p).mode == "F"
    got = inputs.load_image(p, Node((1, 2, 3)), 2)
    assert got.shape == (2, 1, 2, 3)
    np.testing.assert_allclose(got, np.repeat(expected(v, 1), 2, axis=0), atol=1e-6)


def test_float_tiff_outside_0_1_is_refused(tmp_path):
    v = np.array([[0.0, 1000.0], [-3.0, 5.0]], np.float32)
    p = save(tmp_path, "f.tif", Image.fromarray(v, "F"))
    with pytest.raises(NetDSLError, match="32-bit float image with values from -3 to 1000; netdsl reads "
                                          "float images as 0..1"):
        inputs.load_image(p, Node((1, 2, 2)), 1)


def test_32bit_integer_tiff_is_refused(tmp_path):
    p = save(tmp_path, "i.tif", Image.fromarray(np.array([[0, 70000]], np.int32), "I"))
    with pytest.raises(NetDSLError, match=r"32-bit integer image \(mode I\); its value range is not known"):
        inputs.load_image(p, Node((1, 1, 2)), 1)


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "P", "1", "LA", "CMYK"])
def test_8bit_modes_keep_their_values(tmp_path, mode):
    rgb = np.array([[[0, 0, 0], [255, 255, 255]], [[255, 255, 255], [0, 0, 0]]], np.uint8)
    im = Image.fromarray(rgb).convert(mode)
    p = save(tmp_path, f"m{mode}.{'tif' if mode == 'CMYK' else 'png'}", im)
    want = np.array([[0, 1], [1, 0]], np.float64)          # black and white survive every mode
    for c in (1, 3):
        got = inputs.load_image(p, Node((c, 2, 2)), 1)
        np.testing.assert_allclose(got, expected(want, c), atol=1 / 255)


def test_16bit_resize_keeps_precision(tmp_path):
    v = (np.arange(16, dtype=np.float64).reshape(4, 4) * 4000).astype(np.uint16)
    p = save(tmp_path, "g16.png", Image.fromarray(v))
    got = inputs.load_image(p, Node((1, 2, 2)), 1)
    ref = np.asarray(Image.fromarray((v / 65535).astype(np.float32), "F").resize((2, 2), Image.BILINEAR))
    np.testing.assert_allclose(got[0, 0], ref, atol=1e-6)
    assert len(np.unique(got)) == 4 and got.max() < 1     # not clipped to white


def _png_header_only(w, h):
    """A PNG whose IHDR claims w x h (8-bit gray) with a tiny, truncated IDAT: only the header is real."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)) +
            chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def test_200_megapixel_png_is_refused_from_its_header(tmp_path):
    p = tmp_path / "huge.png"
    p.write_bytes(_png_header_only(20000, 10000))
    limit = Image.MAX_IMAGE_PIXELS
    with pytest.raises(NetDSLError) as e:
        inputs.load_image(str(p), Node((3, 32, 32)), 1)
    text = str(e.value)
    assert f"is 20000 x 10000 = 200,000,000 pixels, more than the limit of {limit:,} pixels" in text
    assert Image.MAX_IMAGE_PIXELS == limit                  # restored


def test_truncated_image_is_a_clear_error(tmp_path):
    p = tmp_path / "t.png"
    p.write_bytes(_png_header_only(64, 64))
    with pytest.raises(NetDSLError, match="cannot read image"):
        inputs.load_image(str(p), Node((1, 8, 8)), 1)


def test_random_input_is_drawn_in_float32():
    """No float64 array on the way: the peak is the float32 result (4 MB), not 8 + 4 MB."""
    import tracemalloc
    tracemalloc.start()
    try:
        x = inputs.random_input((1000, 1000), 1)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert x.dtype == np.float32 and x.shape == (1, 1000, 1000)
    assert peak < 1.25 * x.nbytes
    assert abs(float(x.mean())) < 0.01 and abs(float(x.std()) - 1) < 0.01   # still standard normal


@pytest.mark.parametrize("arr, batch, msg", [
    (np.zeros((2, 3, 4, 4), np.float32), 1, r"shape \[2, 3, 4, 4\]; the network expects \[N, 1, 4, 4\]"),
    (np.zeros((4, 4), np.float32), 1, r"shape \[4, 4\]"),
    (np.zeros((3, 1, 4, 4), np.float32), 2, "holds a batch of 3, but --batch 2 was given"),
    (np.zeros((0, 1, 4, 4), np.float32), 1, "empty batch"),
    (np.array(["a"] * 16).reshape(1, 1, 4, 4), 1, "holds <U1 values"),
], ids=["wrong-c", "wrong-rank", "batch-mismatch", "empty", "strings"])
def test_npy_input_checked(tmp_path, arr, batch, msg):
    np.save(tmp_path / "x.npy", arr)
    with pytest.raises(NetDSLError, match=msg):
        inputs.load_npy(str(tmp_path / "x.npy"), (1, 4, 4), batch)


def test_npy_input_single_sample_repeated_and_float64_converted(tmp_path):
    x = np.arange(16, dtype=np.float64).reshape(1, 4, 4)
    np.save(tmp_path / "x.npy", x)
    got = inputs.load_npy(str(tmp_path / "x.npy"), (1, 4, 4), 3)
    assert got.dtype == np.float32 and got.flags.c_contiguous and got.shape == (3, 1, 4, 4)
    np.testing.assert_array_equal(got, np.repeat(x[None], 3, axis=0))


def test_truncated_npy_is_a_clear_error(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((1, 1, 4, 4), np.float32))
    data = (tmp_path / "x.npy").read_bytes()
    (tmp_path / "t.npy").write_bytes(data[:-10])
    with pytest.raises(NetDSLError, match="cannot read"):
        inputs.load_npy(str(tmp_path / "t.npy"), (1, 4, 4), 1)
