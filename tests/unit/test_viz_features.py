"""Feature maps and filters (issue 12, item 1): Model.features against the numpy reference
executor (the independent oracle), at -O0 and -O3 where the asked-for layers would otherwise be
fused or folded away; the pictures read back with Pillow and compared pixel by pixel with the
normalization computed here; the CLI commands and their errors (rendered text)."""
from __future__ import annotations

import os

import numpy as np
import pytest

import netdsl
from netdsl import NetDSLError
from netdsl.cli import main
from netdsl.runtime.reference import run_reference

Image = pytest.importorskip("PIL.Image")

from netdsl.viz.grid import NAN_RGB, filter_sheet, layout, sheet  # noqa: E402

ZOO = os.path.join(os.path.dirname(netdsl.__file__), "zoo")
RESIDUAL = """input x: 3x12x12
c1:Conv(8, 3, pad=1) - b1:BN - r1:ReLU
block: [ c2:Conv(8, 3, pad=1) - b2:BN - r2:ReLU - c3:Conv(8, 3, pad=1) - b3:BN | _ ] - add:Add - r3:ReLU
pool:MaxPool(2) - c4:Conv(4, 3, stride=2, pad=1) - r4:ReLU - GAP - fc:FC(5)
"""


def small_resnet18():
    """ResNet-18 from the zoo at a 32x32 input (same layers and weights shapes, quick to run)."""
    with open(os.path.join(ZOO, "resnet18.net")) as f:
        text = f.read().replace("3x224x224", "3x32x32")
    return netdsl.parse(text, "resnet18.net", os.path.join(ZOO, "resnet18.net"))


def random_bn(m, seed=1):
    """Non-trivial BatchNorm statistics, so folding them into the convs changes the weights."""
    rng = np.random.default_rng(seed)
    d = {}
    for k, v in m.state_dict().items():
        if k.endswith(("running_var", ".weight")) and v.ndim == 1:
            d[k] = rng.uniform(0.5, 1.5, v.shape).astype(np.float32)
        elif k.endswith(("running_mean", ".bias")) and v.ndim == 1:
            d[k] = rng.uniform(-0.5, 0.5, v.shape).astype(np.float32)
    m.load_state_dict(d, strict=False)
    return m


def oracle(m, x, names):
    """The reference executor's values of `names` (the source graph, float64)."""
    g = m.graph.copy()
    g.outputs = {n: n for n in names}
    return run_reference(g, m.weights, x)


def assert_close(got, want, names):
    for n in names:
        assert got[n].shape == want[n].shape, n
        err = np.abs(got[n] - want[n]).max() / max(1.0, np.abs(want[n]).max())
        assert err < 1e-5, f"{n}: max relative difference {err:.3g}"


@pytest.mark.parametrize("level", [0, 3], ids=["O0", "O3"])
def test_features_equal_the_reference_lenet5(level):
    m = netdsl.load("lenet5", opt=level)
    x = np.random.default_rng(0).standard_normal((2, 1, 32, 32), dtype=np.float32)
    names = [nd.name for nd in m.graph.nodes()]          # every layer, the input and the output too
    got = m.features(x, names)
    assert list(got) == names
    assert_close(got, oracle(m, x, names), names)


@pytest.mark.parametrize("level", [0, 3], ids=["O0", "O3"])
def test_features_survive_fusion(level):
    """At -O3 b1 folds into c1, r1 fuses into it, the Add and r3 fuse into block.c3 as its residual:
    asking for those layers must still give their own values (and in-place buffers must not
    overwrite a value asked for: at -O0 r1 would write over b1)."""
    m = random_bn(netdsl.parse(RESIDUAL, "res.net"))
    m.run_level = level
    x = np.random.default_rng(2).standard_normal((1, 3, 12, 12), dtype=np.float32)
    for names in (["c1", "b1", "r1", "block.b3", "add", "r3", "r4"], ["r1", "r3"], ["block.b3"], ["fc", "x"]):
        assert_close(m.features(x, names), oracle(m, x, names), names)


def test_features_resnet18_one_run(monkeypatch):
    from netdsl.runtime.session import Session
    m = random_bn(small_resnet18())
    x = np.random.default_rng(3).standard_normal((1, 3, 32, 32), dtype=np.float32)
    calls = []
    real = Session.run
    monkeypatch.setattr(Session, "run", lambda self, inputs: calls.append(1) or real(self, inputs))
    names = ["relu", "layer1.0.bn2", "layer1.0.relu2", "layer2.0.downsample.1", "layer4.1.relu2"]
    got = m.features(x, names)
    assert len(calls) == 1                  # all layers from one run of one plan
    assert_close(got, oracle(m, x, names), names)
    default = m.features(x)
    assert list(default) == netdsl.model.stage_layers(m.graph)
    assert_close(default, oracle(m, x, list(default)), list(default))


def test_stage_layers_one_per_resolution():
    """In networks whose convs are padded (sizes change only at a pool or stride), there is one
    default layer per spatial size of the maps on the way to the first output, in order."""
    import networkx as nx
    for name in ("resnet18", "vgg16", "mobilenet_v3_small", "googlenet"):
        g = netdsl.load(name).graph
        main = next(iter(g.outputs.values()))
        path = nx.ancestors(g.g, main) | {main}
        sizes = [tuple(nd.shape[1:]) for nd in g.nodes() if nd.name in path and nd.op != "Input"
                 and nd.shape and len(nd.shape) == 3 and nd.shape[1] * nd.shape[2] > 1]
        stages = netdsl.model.stage_layers(g)
        assert [tuple(g[n].shape[1:]) for n in stages] == list(dict.fromkeys(sizes)), name


def test_unknown_layer_did_you_mean():
    m = netdsl.load("lenet5")
    with pytest.raises(NetDSLError) as e:
        m.features(np.zeros((1, 1, 32, 32), np.float32), ["C1", "tanhh1"])
    assert "lenet5 has no layer 'tanhh1'" in str(e.value)
    assert "did you mean 'tanh1'" in str(e.value)


def grey(a):
    """The expected tile: min..max of the finite values -> 0..255, constant -> 128 (computed here)."""
    a = np.asarray(a, np.float64)
    fin = a[np.isfinite(a)]
    lo, hi = fin.min(), fin.max()
    g = np.full(a.shape, 128.0) if hi == lo else (a - lo) / (hi - lo) * 255
    g = np.where(np.isposinf(a), 255, np.where(np.isneginf(a), 0, g))
    return np.rint(np.nan_to_num(g)).astype(np.uint8)


def tile(img, section, k):
    x0, y0, x1, y1 = section.box(k)
    return np.asarray(img)[y0:y1, x0:x1]


def roundtrip(img, tmp_path, name="s.png"):
    p = tmp_path / name
    img.save(p)
    with Image.open(p) as im:
        return im.convert("RGB").copy()


def test_grid_tiles_are_the_normalized_channels(tmp_path):
    rng = np.random.default_rng(4)
    a = rng.standard_normal((70, 7, 9)).astype(np.float32)
    a[3] = 2.5                                  # constant: mid-grey
    a[5, 1, 2] = np.nan                         # NaN: the marked colour, the rest normalized
    a[6, 0, 0] = np.inf
    img = roundtrip(sheet({"m": a}, cap=64), tmp_path)
    width, height, (s,) = layout({"m": a}, cap=64)
    assert img.size[1] == height and img.size[0] >= width
    assert s.n == 64 and len(s.boxes) == 64 and s.zoom >= 2
    assert s.lines[1] == "64 of 70 channels shown; 1 constant channel (mid-grey)"
    assert s.tile_h == 7 * s.zoom and s.tile_w == 9 * s.zoom
    for k in (0, 3, 5, 6, 63):
        t = tile(img, s, k)
        want = np.repeat(np.repeat(grey(a[k]), s.zoom, 0), s.zoom, 1)
        nan = np.repeat(np.repeat(np.isnan(a[k]), s.zoom, 0), s.zoom, 1)
        assert (t[~nan] == want[~nan][:, None]).all(), k
        assert (t[nan] == NAN_RGB).all()
    assert (tile(img, s, 3) == 128).all()
    # no 65th tile: where it would go (next after tile 63) the sheet is background
    x0, y0, x1, y1 = s.box(63)
    right = np.asarray(img)[y0:y1, x1 + 2:x1 + 2 + s.tile_w]
    assert right.size == 0 or (right == 255).all()


def test_grid_refuses_a_vector():
    with pytest.raises(NetDSLError, match="not a feature map"):
        sheet({"fc": np.zeros(10)})
    with pytest.raises(NetDSLError, match="a vector"):
        sheet({"gap": np.zeros((8, 1, 1))})


def test_a_sheet_too_large_is_refused(monkeypatch):
    from netdsl.viz import grid as _  # noqa: F401
    import sys
    monkeypatch.setattr(sys.modules["netdsl.viz.grid"], "MAX_PIXELS", 100_000)
    with pytest.raises(NetDSLError) as e:
        layout({f"l{k}": np.zeros((64, 20, 20)) for k in range(3)})
    assert "more than the 100,000 pixels netdsl draws" in str(e.value)
    assert "hint: draw fewer layers (--layers) or fewer channels a layer (--cap)" in str(e.value)


def test_filters_rgb_tiles_resnet18(tmp_path):
    m = small_resnet18()
    w = m.weights["conv1.weight"]                              # 64x3x7x7
    img, s = filter_sheet(w, "conv1")
    img = roundtrip(img, tmp_path)
    assert s.n == 64 and s.tile_h == 7 * s.zoom
    for k in (0, 17, 63):
        f = w[k].astype(np.float64)
        g = np.rint((f - f.min()) / (f.max() - f.min()) * 255).astype(np.uint8)   # jointly over R, G, B
        want = np.repeat(np.repeat(g.transpose(1, 2, 0), s.zoom, 0), s.zoom, 1)
        assert (tile(img, s, k) == want).all(), k


def test_filters_per_input_channel(tmp_path):
    w = np.random.default_rng(5).standard_normal((64, 32, 3, 3)).astype(np.float32)
    img, s = filter_sheet(w, "conv", cap=256)
    img = roundtrip(img, tmp_path)
    assert s.cols == 16 and s.n == 256                        # 16 filters x 16 input channels
    assert "16 of 64 filters, 16 of 32 input channels shown" in s.lines[1]
    k = 2 * 16 + 5                                            # filter 2, input channel 5
    want = np.repeat(np.repeat(grey(w[2, 5]), s.zoom, 0), s.zoom, 1)
    assert (tile(img, s, k) == want[..., None]).all()


def digit(tmp_path, size=(32, 32), mode="L"):
    from PIL import ImageDraw
    im = Image.new(mode, size, 0)
    ImageDraw.Draw(im).line([(10, 6), (20, 6), (20, 16), (10, 26), (22, 26)], fill=255, width=3)
    p = tmp_path / "two.png"
    im.save(p)
    return str(p)


def test_cli_features_writes_the_sheet(tmp_path, capsys):
    from netdsl.runtime.inputs import read_input
    img_path, out = digit(tmp_path), str(tmp_path / "maps.png")
    assert main(["features", "lenet5", "--input", img_path, "--layers", "C1,tanh2", "-o", out]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    m = netdsl.load("lenet5")
    x = read_input(img_path, m.graph, 1)["x"]
    maps = m.features(x, ["C1", "tanh2"])
    with Image.open(out) as im:
        img = im.convert("RGB")
    _, height, sections = layout({k: v[0] for k, v in maps.items()}, title="t")
    assert img.size[1] == height and [s.n for s in sections] == [6, 16]
    s = sections[1]
    want = np.repeat(np.repeat(grey(maps["tanh2"][0, 7]), s.zoom, 0), s.zoom, 1)
    assert (tile(img, s, 7) == want[..., None]).all()


def test_cli_features_default_stages_and_resize_note(tmp_path, capsys):
    out = str(tmp_path / "maps.png")
    assert main(["features", "lenet5", "--input", digit(tmp_path, (64, 48)), "-o", out]) == 0
    cap = capsys.readouterr()
    assert "is 64x48; resized to the input's 32x32" in cap.err
    assert ": " + ", ".join(netdsl.model.stage_layers(netdsl.load("lenet5").graph)) in cap.out
    assert os.path.getsize(out) > 0


def test_cli_filters_writes_the_file(tmp_path, capsys):
    out = str(tmp_path / "f.png")
    assert main(["filters", "lenet5", "-o", out]) == 0
    assert "C1, 6 tiles" in capsys.readouterr().out
    with Image.open(out) as im:
        assert im.size[0] >= 6


def err(capsys, argv):
    assert main(argv) == 1
    text = capsys.readouterr().err
    assert "Traceback" not in text
    return text


def test_cli_errors(tmp_path, capsys):
    img = digit(tmp_path)
    out = str(tmp_path / "o.png")
    t = err(capsys, ["features", "lenet5", "--input", img, "--layers", "C1,tanhh1", "-o", out])
    assert "error: lenet5 has no layer 'tanhh1'" in t and "hint: did you mean 'tanh1'" in t
    t = err(capsys, ["features", "lenet5", "--input", img, "--layers", "F6", "-o", out])
    assert "layer 'F6' (FC) outputs 84: a vector, not a feature map to draw" in t
    assert "hint: choose a layer with a spatial size; the stages of lenet5 end at tanh1, tanh2, S4" in t
    assert "lenet5.net:" in t                                  # located at the layer's line
    t = err(capsys, ["features", "lenet5", "--input", img, "--layers", "tanh3", "-o", out])
    assert "layer 'tanh3' (Tanh) outputs 120x1x1: one value per channel: a vector" in t
    # an image mode the loader refuses: its own error
    f = tmp_path / "float.tif"
    Image.fromarray(np.full((32, 32), 3.0, np.float32), "F").save(f)
    t = err(capsys, ["features", "lenet5", "--input", str(f), "-o", out])
    assert "is a 32-bit float image with values from 3 to 3" in t
    np.save(tmp_path / "x.npy", np.zeros((3, 28, 28), np.float32))
    t = err(capsys, ["features", "lenet5", "--input", str(tmp_path / "x.npy"), "-o", out])
    assert "holds an array of shape [3, 28, 28]; the network expects [N, 1, 32, 32]" in t
    # filters: a layer that is not a conv, and a model with no conv
    t = err(capsys, ["filters", "lenet5", "--layer", "S2", "-o", out])
    assert "layer 'S2' (AvgPool) is not a convolution: it has no filters" in t and "C1, C3, C5" in t
    fc = tmp_path / "mlp.net"
    fc.write_text("input x: 1x8x8\nFlatten - FC(16) - ReLU - FC(10)\n")
    t = err(capsys, ["filters", str(fc), "-o", out])
    assert "mlp has no convolution: there are no filters to draw" in t
    t = err(capsys, ["features", str(fc), "--input", "random", "-o", out])
    assert "mlp has no feature maps to draw" in t


def test_cli_without_pillow(tmp_path, capsys, monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "PIL", None)
    t = err(capsys, ["filters", "lenet5", "-o", str(tmp_path / "f.png")])
    assert "drawing pictures needs Pillow" in t and 'pip install "netdsl[image]"' in t
    t = err(capsys, ["features", "lenet5", "--input", "random", "-o", str(tmp_path / "f.png")])
    assert 'pip install "netdsl[image]"' in t


def test_large_maps_are_shrunk_by_block_means(tmp_path):
    a = np.random.default_rng(6).standard_normal((2, 300, 290)).astype(np.float32)
    a[1] = 0.0
    img = roundtrip(sheet({"big": a}), tmp_path)
    _, _, (s,) = layout({"big": a})
    assert s.shrink == 3 and (s.tile_h, s.tile_w) == (100, 97)
    assert s.lines[1] == "shown at 1/3 size (100x97, block means); 1 constant channel (mid-grey)"
    g = np.zeros((300, 291))
    g[:, :290] = grey(a[0])
    blocks = g.reshape(100, 3, 97, 3).mean(axis=(1, 3))
    blocks[:, -1] = g[:, 288:290].reshape(100, 3, 2).mean(axis=(1, 2))    # the edge block is 3x2
    t = tile(img, s, 0)[..., 0].astype(int)
    assert np.abs(t - np.rint(blocks)).max() <= 1                          # rounding of the mean
    assert (tile(img, s, 1) == 128).all()
