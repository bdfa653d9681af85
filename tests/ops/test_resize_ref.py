"""Upsample (PyTorch F.interpolate semantics), Pad and Crop by hand."""
from fractions import Fraction

import numpy as np
import pytest

from netdsl.ops import OpError

X2 = [[1, 2], [3, 4]]


def test_upsample_nearest_2x2(nd, as_nchw):
    nd.close(nd.run("Upsample", as_nchw(X2))[0, 0],
             [[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]])


def test_upsample_bilinear_2x2_half_pixel(nd, as_nchw):
    # src = (dst + 0.5)/2 − 0.5 → 0 (clamped), 0.25, 0.75, 1 (clamped)
    nd.close(nd.run("Upsampling", as_nchw(X2), 2, mode="bilinear")[0, 0],
             [[1.0, 1.25, 1.75, 2.0], [1.5, 1.75, 2.25, 2.5], [2.5, 2.75, 3.25, 3.5], [3.0, 3.25, 3.75, 4.0]])


def test_upsample_bilinear_align_corners(nd, as_nchw):
    nd.close(nd.run("Resize", as_nchw(X2), size=3, mode="bilinear", align_corners=True)[0, 0],
             [[1, 1.5, 2], [2, 2.5, 3], [3, 3.5, 4]])


def test_upsample_nearest_to_size(nd, as_nchw):
    # src = floor(dst·2/3): 0, 0, 1
    nd.close(nd.run("Upsample", as_nchw(X2), size=(3, 2))[0, 0], [[1, 2], [1, 2], [3, 4]])


def test_upsample_shapes_and_windows(nd):
    spec, a, out = nd.prepare("Upsample", [(256, 13, 13)])
    assert out == (256, 26, 26) and a["scale"] == (2, 2)
    assert spec.window(a, [(256, 13, 13)]) == (1, 1, Fraction(1, 2), Fraction(1, 2))
    spec, a, out = nd.prepare("Upsample", [(8, 7, 7)], (2, 3), mode="bilinear")
    assert out == (8, 14, 21)
    assert spec.window(a, [(8, 7, 7)]) == (2, 2, Fraction(1, 2), Fraction(1, 3))
    assert spec.explain(a, [(8, 7, 7)], out) == ["bilinear ×2x3: 7x7 → 14x21"]


def test_upsample_argument_conflicts(nd):
    with pytest.raises(OpError) as e:
        nd.prepare("Upsample", [(1, 2, 2)], 2, size=4)
    assert "not both" in e.value.message
    with pytest.raises(OpError) as e:
        nd.prepare("Upsample", [(1, 2, 2)], align_corners=True)
    assert e.value.attr == "align_corners"
    with pytest.raises(OpError) as e:
        nd.prepare("Upsample", [(1, 2, 2)], mode="bilinar")
    assert "did you mean 'bilinear'?" in e.value.hint


def test_upsample_matches_torch(nd):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = np.random.default_rng(0).standard_normal((2, 3, 5, 7))
    t = torch.from_numpy(x)
    nd.close(nd.run("Upsample", x, 3), F.interpolate(t, scale_factor=3, mode="nearest").numpy())
    nd.close(nd.run("Upsample", x, 2, mode="bilinear"),
             F.interpolate(t, scale_factor=2, mode="bilinear", align_corners=False).numpy(), atol=1e-12)
    nd.close(nd.run("Upsample", x, size=(9, 11), mode="bilinear", align_corners=True),
             F.interpolate(t, size=(9, 11), mode="bilinear", align_corners=True).numpy(), atol=1e-12)


@pytest.mark.parametrize("mode, expected", [
    pytest.param("constant", [[0, 0, 0, 0], [0, 1, 2, 0], [0, 3, 4, 0], [0, 0, 0, 0]], id="constant"),
    pytest.param("reflect", [[4, 3, 4, 3], [2, 1, 2, 1], [4, 3, 4, 3], [2, 1, 2, 1]], id="reflect"),
    pytest.param("replicate", [[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]], id="replicate"),
])
def test_pad_modes(nd, as_nchw, mode, expected):
    nd.close(nd.run("Pad", as_nchw(X2), 1, mode=mode)[0, 0], expected)


def test_pad_value_and_asymmetric(nd, as_nchw):
    y = nd.run("Pad", as_nchw(X2), (0, 1, 1, 0), value=-1)     # top, left, bottom, right
    nd.close(y[0, 0], [[-1, 1, 2], [-1, 3, 4], [-1, -1, -1]])


def test_pad_errors(nd):
    with pytest.raises(OpError) as e:
        nd.prepare("Pad", [(1, 4, 4)], "same")
    assert "Conv/Pool" in e.value.hint
    with pytest.raises(OpError):
        nd.prepare("Pad", [(1, 2, 2)], 2, mode="reflect")
    with pytest.raises(OpError) as e:
        nd.prepare("Pad", [(1, 2, 2)])
    assert "needs 'pad'" in e.value.message


def test_crop_centre_to_size(nd):
    x = np.arange(16, dtype=np.float64).reshape(1, 1, 4, 4)
    spec, a, out = nd.prepare("Crop", [(1, 4, 4)], 2)
    assert a["offset"] == (1, 1) and out == (1, 2, 2)
    nd.close(nd.run("Crop", x, 2)[0, 0], [[5, 6], [9, 10]])
    nd.close(nd.run("Crop", x, (1, 3), offset=(3, 0))[0, 0], [[12, 13, 14]])


def test_crop_unet_skip_to_second_input(nd):
    spec, a, out = nd.prepare("Crop", [(512, 64, 64), (512, 56, 56)])
    assert out == (512, 56, 56) and a["offset"] == (4, 4)
    spec, a, out = nd.prepare("Crop", [(64, 568, 568), (128, 392, 392)])
    assert out == (64, 392, 392) and a["offset"] == (88, 88)
    x = np.arange(25, dtype=np.float64).reshape(1, 1, 5, 5)
    nd.close(nd.run("Crop", [x, np.zeros((1, 3, 2, 2))])[0, 0], [[6, 7], [11, 12]])   # odd: floor


@pytest.mark.parametrize("shapes, kw, text", [
    pytest.param([(1, 4, 4)], {"size": 5}, "larger than its input", id="crop-too-large"),
    pytest.param([(1, 4, 4), (1, 6, 2)], {}, "larger than its input", id="crop-to-larger-second-input"),
    pytest.param([(1, 4, 4)], {"size": 2, "offset": (3, 0)}, "runs past", id="offset-past-edge"),
    pytest.param([(1, 4, 4)], {}, "needs size", id="no-size"),
    pytest.param([(1, 4, 4), (1, 2, 2)], {"size": 3}, "second input", id="size-and-second-input"),
])
def test_crop_errors(nd, shapes, kw, text):
    with pytest.raises(OpError) as e:
        nd.prepare("Crop", shapes, **kw)
    assert text in e.value.message and e.value.hint


def test_upsample_to_any_size_matches_torch(nd):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(9)
    for _ in range(60):
        h, w, oh, ow = (int(v) for v in rng.integers(1, 13, 4))
        x = rng.standard_normal((1, 2, h, w))
        t = torch.from_numpy(x)
        case = f"{h}x{w}->{oh}x{ow}"
        assert np.allclose(nd.run("Upsample", x, size=(oh, ow)),
                           F.interpolate(t, size=(oh, ow), mode="nearest").numpy()), case
        for ac in (False, True):
            assert np.allclose(nd.run("Upsample", x, size=(oh, ow), mode="bilinear", align_corners=ac),
                               F.interpolate(t, size=(oh, ow), mode="bilinear", align_corners=ac).numpy()), case


def test_pad_matches_torch(nd):
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(10).standard_normal((1, 2, 5, 6))
    for mode in ("constant", "reflect", "replicate"):
        ref = torch.nn.functional.pad(torch.from_numpy(x), (2, 0, 1, 3), mode=mode)   # (l, r, t, b)
        nd.close(nd.run("Pad", x, (1, 2, 3, 0), mode=mode), ref.numpy())
