"""Training data (netdsl/train/data.py, digits.py): the generated digits set is deterministic,
balanced and learnable; folders, .npz files and arrays are read as written; to_input and the
loader give what `netdsl run` would feed; every error names the problem. Small sizes only."""
from __future__ import annotations

import numpy as np
import pytest

from netdsl import NetDSLError
from netdsl.runtime import inputs
from netdsl.train import data
from netdsl.train.data import Dataset, Loader

Image = pytest.importorskip("PIL.Image")


@pytest.fixture(autouse=True)
def no_home_cache(monkeypatch, tmp_path):
    """Never write into the real ~/.cache, and generate afresh in each test."""
    monkeypatch.setenv("NETDSL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(data, "_MEMORY", {})


# ---- digits ------------------------------------------------------------------------------

def test_digits_same_seed_same_bytes_and_train_is_not_test(monkeypatch):
    a = data.digits("train", n=120, seed=7, cache=False)
    monkeypatch.setattr(data, "_MEMORY", {})
    b = data.digits("train", n=120, seed=7, cache=False)
    assert a.x is not b.x and a.x.tobytes() == b.x.tobytes() and np.array_equal(a.y, b.y)
    test = data.digits("test", n=120, seed=7, cache=False)
    other = data.digits("train", n=120, seed=8, cache=False)
    for c in (test, other):
        assert not np.array_equal(a.x, c.x)
        # no image of the train set reappears in the other one
        assert not set(map(bytes, a.x.reshape(120, -1))) & set(map(bytes, c.x.reshape(120, -1)))
    assert a.x.dtype == np.uint8 and a.x.shape == (120, 1, 32, 32) and a.classes == [str(k) for k in range(10)]


def test_digits_balanced_sizes_and_default_split_sizes():
    d = data.digits("test", n=205, size=28, cache=False)
    assert d.x.shape == (205, 1, 28, 28)
    assert list(d.counts()) == [21] * 5 + [20] * 5
    assert data.DIGITS_SIZES == {"train": 10_000, "test": 2_000}


def test_digits_are_a_learning_task():
    """Nearest class mean (from train) on test glyphs: far above chance (the classes differ),
    far below perfect (it is no lookup: a CNN has something to learn). And on average a
    glyph of every class is closer to its own class mean than to the other classes' means."""
    tr = data.digits("train", n=600, cache=False)
    te = data.digits("test", n=300, cache=False)
    xt, xe = tr.x.reshape(600, -1).astype(np.float64), te.x.reshape(300, -1).astype(np.float64)
    means = np.stack([xt[tr.y == k].mean(0) for k in range(10)])
    dist = ((xe[:, None, :] - means[None]) ** 2).sum(-1)            # [300, 10]
    acc = (dist.argmin(1) == te.y).mean()
    assert 0.3 < acc < 0.9, acc
    for k in range(10):
        own = dist[te.y == k, k].mean()
        others = [dist[te.y == k, j].mean() for j in range(10) if j != k]
        assert own < np.mean(others), (k, own, others)
    # and images are not near copies of each other within a class
    k0 = xt[tr.y == 0]
    assert np.abs(k0[:, None] - k0[None]).mean(-1)[np.triu_indices(len(k0), 1)].min() > 3


def test_digits_disk_cache_round_trip(tmp_path, monkeypatch):
    fresh = data.digits("train", n=50, seed=3, cache=False)
    monkeypatch.setattr(data, "_MEMORY", {})
    made = data.digits("train", n=50, seed=3)
    files = list((tmp_path / "cache").iterdir())
    assert len(files) == 1 and files[0].name.startswith("digits-v") and "-train-50-32-3" in files[0].name
    monkeypatch.setattr(data._digits, "render", lambda *a, **k: pytest.fail("rendered instead of cached"))
    monkeypatch.setattr(data, "_MEMORY", {})
    again = data.digits("train", n=50, seed=3)
    assert fresh.x.tobytes() == made.x.tobytes() == again.x.tobytes()
    assert not again.x.flags.writeable           # the cached arrays are shared: read-only


def test_digits_bad_arguments():
    with pytest.raises(NetDSLError, match="digits has the splits 'train' and 'test', not 'val'"):
        data.digits("val")
    with pytest.raises(NetDSLError, match="n >= 1 and size >= 8"):
        data.digits("train", n=0)


# ---- Dataset -----------------------------------------------------------------------------

def images(n=12, c=1, h=6, w=5, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, c, h, w), dtype=np.uint8)


def test_dataset_indexing_and_layouts():
    x = images(10)
    ds = Dataset(x, np.arange(10) % 3, name="toy")
    assert len(ds) == 10 and ds.num_classes == 3 and ds.classes == ["0", "1", "2"]
    xi, yi = ds[4]
    assert np.array_equal(xi, x[4]) and yi == 1
    sub = ds[2:5]
    assert isinstance(sub, Dataset) and np.array_equal(sub.x, x[2:5]) and list(sub.y) == [2, 0, 1]
    assert Dataset(x[:, 0], np.zeros(10, int)).x.shape == (10, 1, 6, 5)        # [N, H, W]
    assert Dataset(x, np.arange(10.0) % 3).y.dtype == np.int64                  # whole floats
    assert Dataset(x.astype(np.float64), np.zeros(10, int)).x.dtype == np.float32
    assert "toy" in repr(ds) and "10 x 1x6x5 uint8" in repr(ds)


@pytest.mark.parametrize("x, y, msg", [
    (images(5), np.zeros(4, int), r"x has 5 samples but y has 4 labels"),
    (images(3), np.array([0, 0.5, 1]), r"labels must be integers \(class numbers\); y holds float64 "
                                       r"values such as 0.5"),
    (images(2), np.array(["cat", "dog"]), r"labels must be integers .* y holds <U3 values"),
    (images(2), np.array([0, -1]), r"y holds the negative label -1"),
    (images(2).astype(np.int64), np.zeros(2, int), r"x holds int64 values; images are uint8"),
    (images(2), np.zeros((2, 3), int), r"y has shape \[2, 3\]; expected one class number"),
    (np.zeros((2, 3, 4, 5, 6), np.uint8), np.zeros(2, int), r"x has shape \[2, 3, 4, 5, 6\]"),
], ids=["length", "float-labels", "string-labels", "negative", "int64-images", "one-hot", "5d"])
def test_dataset_errors(x, y, msg):
    with pytest.raises(NetDSLError, match=msg) as e:
        Dataset(x, y)
    assert "hint:" in str(e.value) or "negative" in msg


def test_dataset_too_few_class_names():
    with pytest.raises(NetDSLError, match="holds the label 2 but only 2 class names were given"):
        Dataset(images(3), [0, 1, 2], classes=["a", "b"])


def test_split_is_stratified_deterministic_and_a_partition():
    y = np.repeat(np.arange(4), [10, 20, 30, 40])
    ds = Dataset(images(100), y)
    tr, va = ds.split(0.1, seed=5)
    assert list(va.counts()) == [1, 2, 3, 4] and list(tr.counts()) == [9, 18, 27, 36]
    key = lambda d: {bytes(r) for r in d.x.reshape(len(d), -1)}                 # noqa: E731
    assert key(tr) | key(va) == key(ds) and not key(tr) & key(va)
    tr2, va2 = ds.split(0.1, seed=5)
    assert np.array_equal(va.x, va2.x) and np.array_equal(tr.x, tr2.x)
    assert not np.array_equal(ds.split(0.1, seed=6)[1].x, va.x)
    _, flat = ds.split(0.25, seed=1, stratify=False)
    assert len(flat) == 25
    for bad in (0, 1, 1.5):
        with pytest.raises(NetDSLError, match=f"validation fraction must be between 0 and 1, not {bad}"):
            ds.split(bad)


# ---- to_input: what `netdsl run image.png` would feed ------------------------------------

class Node:
    def __init__(self, shape, **attrs):
        self.name, self.shape, self.attrs = "x", shape, {"scale": 1 / 255, **attrs}


@pytest.mark.parametrize("src_c, shape, norm", [
    (1, (1, 9, 7), {}),
    (1, (3, 6, 5), {"mean": (0.5, 0.4, 0.3), "std": (0.2, 0.25, 0.3)}),
    (3, (1, 6, 5), {"mean": (0.1307,), "std": (0.3081,)}),
    (3, (3, 11, 13), {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225), "scale": 1 / 200}),
], ids=["gray-upsize", "gray-to-rgb", "rgb-to-gray", "rgb-resize-scale"])
def test_to_input_matches_netdsl_run_on_the_same_png(tmp_path, src_c, shape, norm):
    """Oracle: each image saved as PNG and read by runtime.inputs.load_image (the `netdsl run`
    path) with the same input declaration."""
    x = images(4, src_c, 6, 5, seed=src_c)
    ds = Dataset(x, np.arange(4)).to_input(shape, norm.get("mean"), norm.get("std"), norm.get("scale"))
    got = ds.inputs()
    assert got.shape == (4, *shape) and got.dtype == np.float32
    node = Node(shape, **norm)
    assert np.array_equal(Dataset(x, np.arange(4)).to_input(node).inputs(), got)   # the node itself
    for i in range(4):
        p = tmp_path / f"{i}.png"
        Image.fromarray(x[i, 0] if src_c == 1 else x[i].transpose(1, 2, 0)).save(p)
        want = inputs.load_image(str(p), node, 1)[0]
        np.testing.assert_allclose(got[i], want, rtol=0, atol=1e-6)


def test_normalize_arithmetic_and_float_arrays_kept():
    x = images(3, 3, 2, 2)
    ds = Dataset(x, [0, 1, 2]).to_input((3, 2, 2), mean=(1, 2, 3), std=(2, 4, 8), scale=0.5)
    want = (x.astype(np.float64) * 0.5 - np.array([1, 2, 3])[:, None, None]) / np.array([2, 4, 8])[:, None, None]
    np.testing.assert_allclose(ds.inputs(), want, rtol=1e-6)
    f = np.random.default_rng(0).standard_normal((3, 3, 2, 2)).astype(np.float32)
    same = Dataset(f, [0, 1, 2]).to_input((3, 2, 2), mean=(1, 2, 3), std=(2, 4, 8))
    assert np.array_equal(same.inputs(), f)              # float arrays are used as they are


def test_to_input_float_arrays_change_layout_not_values():
    """Float arrays: constant colour images stay constant through the bilinear resize, gray
    is the 601-2 luma of the colour, and no scale/mean/std is applied."""
    rgb = np.array([[0.2, -1.0, 3.0], [1.0, 0.5, 0.0]], np.float32)
    x = np.broadcast_to(rgb[:, :, None, None], (2, 3, 4, 5)).copy()
    ds = Dataset(x, [0, 1]).to_input((1, 9, 7), mean=(0.5,), std=(2.0,))
    want = rgb @ np.array([0.299, 0.587, 0.114])
    got = ds.inputs()
    assert got.shape == (2, 1, 9, 7)
    np.testing.assert_allclose(got, np.broadcast_to(want[:, None, None, None], got.shape), rtol=1e-5, atol=1e-6)


def test_to_input_feature_vectors_and_errors():
    x = images(4, 1, 4, 4)
    flat = Dataset(x, np.arange(4)).to_input((16,))
    np.testing.assert_allclose(flat.inputs(), x.reshape(4, 16) / 255.0, rtol=1e-6)
    with pytest.raises(NetDSLError, match="the model takes 15 features but each sample has 1x4x4 = 16 values"):
        Dataset(x, np.arange(4)).to_input((15,))
    with pytest.raises(NetDSLError, match="have 2 channels and the model takes 3; netdsl converts only"):
        Dataset(images(2, 2), [0, 1]).to_input((3, 6, 5))
    with pytest.raises(NetDSLError, match="'mean' has 2 values but the images have 3 channels"):
        Dataset(images(2, 3), [0, 1]).to_input((3, 6, 5), mean=(0.1, 0.2))
    with pytest.raises(NetDSLError, match="the model takes images 1x4x4 but the data are feature vectors"):
        Dataset(np.zeros((2, 16), np.float32), [0, 1]).to_input((1, 4, 4))


# ---- files -------------------------------------------------------------------------------

def test_load_npz_layouts(tmp_path):
    x, y = images(6, 1, 5, 4), np.arange(6) % 2
    np.savez(tmp_path / "a.npz", x=x, y=y)
    tr, te = data.load_npz(str(tmp_path / "a.npz"))
    assert te is None and np.array_equal(tr.x, x) and np.array_equal(tr.y, y) and tr.name == "a"
    rgb = images(5, 3, 4, 6)
    np.savez(tmp_path / "b.npz", x_train=rgb.transpose(0, 2, 3, 1), y_train=np.arange(5) % 3,
             x_test=rgb[:2, 0], y_test=[1, 2], classes=np.array(["r", "g", "b"]))
    tr, te = data.load_npz(str(tmp_path / "b.npz"))
    assert np.array_equal(tr.x, rgb) and tr.classes == ["r", "g", "b"]          # NHWC -> NCHW
    assert te.x.shape == (2, 1, 4, 6) and te.classes == ["r", "g", "b"] and list(te.y) == [1, 2]


def test_load_npz_errors(tmp_path):
    np.savez(tmp_path / "c.npz", images=images(2), labels=[0, 1])
    with pytest.raises(NetDSLError, match=r"c.npz has no arrays x and y \(nor x_train and y_train\); "
                                          r"it holds images, labels"):
        data.load_npz(str(tmp_path / "c.npz"))
    (tmp_path / "d.npz").write_bytes(b"not a zip at all")
    with pytest.raises(NetDSLError, match="cannot read .*d.npz"):
        data.load_npz(str(tmp_path / "d.npz"))
    np.savez(tmp_path / "e.npz", x=images(3), y=[0, 1])
    with pytest.raises(NetDSLError, match=r"x \(e\) has 3 samples but y has 2 labels"):
        data.load_npz(str(tmp_path / "e.npz"))


def make_folder(root, spec, rgb=()):
    """root/<class>/<i>.png for spec {class: count}; gray unless the class is in rgb.
    Returns {class: [arrays as written]}."""
    rng = np.random.default_rng(1)
    out = {}
    for c, n in spec.items():
        (root / c).mkdir(parents=True)
        out[c] = []
        for i in range(n):
            a = rng.integers(0, 256, (7, 6, 3) if c in rgb else (7, 6), dtype=np.uint8)
            Image.fromarray(a).save(root / c / f"{i}.png")
            out[c].append(a)
    return out


def test_load_folder_reads_classes_sorted_and_pixels_exact(tmp_path):
    written = make_folder(tmp_path / "pets", {"dog": 2, "cat": 3, "emu": 1})
    ds = data.load_folder(str(tmp_path / "pets"))
    assert ds.classes == ["cat", "dog", "emu"] and list(ds.y) == [0, 0, 0, 1, 1, 2] and ds.name == "pets"
    want = np.stack(written["cat"] + written["dog"] + written["emu"])[:, None]
    assert ds.x.dtype == np.uint8 and np.array_equal(ds.x, want)


def test_load_folder_mixed_modes_and_sizes(tmp_path):
    written = make_folder(tmp_path / "m", {"a": 2, "b": 2}, rgb=("b",))
    Image.fromarray(np.full((14, 12), 200, np.uint8)).save(tmp_path / "m" / "a" / "big.png")
    ds = data.load_folder(str(tmp_path / "m"))
    assert ds.x.shape == (5, 3, 7, 6)                 # RGB (one class is), the common size
    a0 = written["a"][0]
    assert np.array_equal(ds.x[0], np.repeat(a0[None], 3, 0))
    assert np.array_equal(ds.x[3], written["b"][0].transpose(2, 0, 1))
    assert np.all(ds.x[2] == 200)                     # the 14x12 image, resized
    assert data.load_folder(str(tmp_path / "m"), size=(4, 4)).x.shape == (5, 3, 4, 4)


def test_load_folder_errors(tmp_path):
    (tmp_path / "flat").mkdir()
    Image.fromarray(np.zeros((3, 3), np.uint8)).save(tmp_path / "flat" / "1.png")
    with pytest.raises(NetDSLError, match=r"flat has no class subfolders \(1 images lie in it directly\)") as e:
        data.load_folder(str(tmp_path / "flat"))
    assert "one subfolder per class" in str(e.value) and ".png, .jpg" in str(e.value)
    (tmp_path / "none" / "a").mkdir(parents=True)
    (tmp_path / "none" / "a" / "notes.txt").write_text("x")
    with pytest.raises(NetDSLError, match=r"none has no images in its subfolders \(a\)") as e:
        data.load_folder(str(tmp_path / "none"))
    assert "files read: .png, .jpg, .jpeg" in str(e.value)
    make_folder(tmp_path / "gap", {"a": 1, "b": 0})
    with pytest.raises(NetDSLError, match=r"the class folder .*gap/b has no images") as e:
        data.load_folder(str(tmp_path / "gap"))
    assert "every subfolder is a class" in str(e.value)
    make_folder(tmp_path / "bad", {"a": 1})
    (tmp_path / "bad" / "a" / "broken.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(NetDSLError, match=r"cannot read image .*bad/a/broken.png"):
        data.load_folder(str(tmp_path / "bad"))
    with pytest.raises(NetDSLError, match="no such folder"):
        data.load_folder(str(tmp_path / "missing"))


def test_get_dataset(tmp_path, monkeypatch):
    make_folder(tmp_path / "split" / "train", {"x": 2, "y": 2})
    make_folder(tmp_path / "split" / "test", {"x": 1, "y": 1})
    tr, te = data.get_dataset(str(tmp_path / "split"))
    assert (len(tr), len(te), tr.classes, te.classes) == (4, 2, ["x", "y"], ["x", "y"])
    assert tr.name == "split-train" and te.name == "split-test"
    tr, te = data.get_dataset(str(tmp_path / "split" / "train"))
    assert te is None and len(tr) == 4
    np.savez(tmp_path / "z.npz", x=images(3), y=[0, 1, 2])
    assert len(data.get_dataset(str(tmp_path / "z.npz"))[0]) == 3
    monkeypatch.setattr(data, "DIGITS_SIZES", {"train": 30, "test": 20})
    tr, te = data.get_dataset("digits")
    assert (len(tr), len(te)) == (30, 20)
    with pytest.raises(NetDSLError, match="unknown data set 'digit'") as e:
        data.get_dataset("digit")
    assert "did you mean 'digits'" in str(e.value)
    with pytest.raises(NetDSLError, match="no such file"):
        data.get_dataset(str(tmp_path / "nope.npz"))


def test_sklearn_digits(monkeypatch):
    try:
        import sklearn  # noqa: F401
    except ImportError:
        with pytest.raises(NetDSLError, match="sklearn-digits needs scikit-learn") as e:
            data.get_dataset("sklearn-digits")
        assert "netdsl[sklearn]" in e.value.render()
        return
    tr, te = data.sklearn_digits()
    assert len(tr) + len(te) == 1797 and tr.x.shape[1:] == (1, 8, 8) and tr.x.max() == 255


def test_sklearn_missing_is_named(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "sklearn.datasets", None)
    with pytest.raises(NetDSLError, match="the data set sklearn-digits needs scikit-learn, which is not installed"):
        data.sklearn_digits()


# ---- Loader ------------------------------------------------------------------------------

def test_loader_epochs_cover_every_sample_once_and_are_seeded():
    x = images(50, 1, 4, 4)
    ds = Dataset(x, np.arange(50) % 5).to_input((1, 4, 4), mean=(0.5,), std=(0.25,))
    L = Loader(ds, 16, seed=3)
    assert len(L) == 4 and len(Loader(ds, 16, drop_last=True)) == 3
    e0 = list(L)
    e1 = list(L)                                          # the next epoch
    assert [len(b[1]) for b in e0] == [16, 16, 16, 2]
    for ep in (e0, e1):
        xs = np.concatenate([b[0] for b in ep])
        assert xs.dtype == np.float32 and xs.shape == (50, 1, 4, 4)
        order = np.concatenate([b[1] for b in ep])
        assert sorted(map(bytes, xs.reshape(50, -1))) == sorted(map(bytes, ds.inputs().reshape(50, -1)))
        assert np.bincount(order).tolist() == [10] * 5
    first = lambda ep: np.concatenate([b[0] for b in ep])     # noqa: E731
    assert not np.array_equal(first(e0), first(e1))
    again = list(Loader(ds, 16, seed=3).epoch(1))
    assert np.array_equal(first(e1), first(again))
    plain = np.concatenate([b[0] for b in Loader(ds, 16, shuffle=False).epoch(0)])
    assert np.array_equal(plain, ds.inputs())


def test_loader_resumes_mid_epoch_with_the_same_augmented_batches():
    ds = Dataset(images(40, 3, 8, 8), np.arange(40) % 4)
    full = list(Loader(ds, 8, seed=11, augment="crop=2,flip,jitter,lighting").epoch(2))
    tail = list(Loader(ds, 8, seed=11, augment="crop=2,flip,jitter,lighting").epoch(2, start=3))
    assert len(tail) == 2
    for (a, ya), (b, yb) in zip(full[3:], tail):
        assert np.array_equal(a, b) and np.array_equal(ya, yb)
    plain = list(Loader(ds, 8, seed=11).epoch(2))
    assert not np.array_equal(full[0][0], plain[0][0])     # the augmentation did something
    assert np.array_equal(full[0][1], plain[0][1])         # on the same samples


def test_loader_errors():
    ds = Dataset(images(5), np.zeros(5, int), name="tiny")
    with pytest.raises(NetDSLError, match="the batch size must be at least 1, not 0"):
        Loader(ds, 0)
    with pytest.raises(NetDSLError, match="drop_last with a batch of 8 leaves no batch of the 5 samples of 'tiny'"):
        Loader(ds, 8, drop_last=True)


def test_digits_feed_lenet5():
    """The built-in set through the zoo model's own input node, run by the C kernels."""
    import netdsl
    model = netdsl.load("lenet5")
    node = model.graph[model.graph.inputs[0]]
    ds = data.digits("test", n=20, cache=False).to_input(node)
    assert ds.input_shape == (1, 32, 32)
    x, y = next(iter(Loader(ds, 8, augment="crop=2")))
    np.testing.assert_allclose(ds.inputs()[:1], ds.x[:1] / 255.0, rtol=1e-6)   # lenet5: scale only
    out = model(x)
    assert out.shape == (8, 10) and np.all(np.isfinite(out)) and y.shape == (8,)
