"""Data for training: datasets in memory, the readers that make them, and the batch loader.

A `Dataset` holds x and y in memory:

    x  uint8 [N, C, H, W]  8-bit images; the loader normalizes them as the model's `input`
                           line says (`scale`, then `mean`/`std` per channel, the arithmetic
                           of `netdsl run`: netdsl/runtime/inputs.normalize)
       float32 [N, ...]    arrays used as they are (like a .npy input to `netdsl run`):
                           already normalized, never rescaled
    y  int64 [N]           class numbers 0 .. len(classes) - 1

`Dataset.to_input(shape, mean, std, scale)` adapts the images to a model's declared input
once, before training: channels (gray -> RGB by repetition, RGB -> gray by ITU-R 601-2
luma as Pillow's convert("L")), size (Pillow bilinear, as `netdsl run` resizes an image),
and remembers the normalization. `Loader` then draws batches: indices (shuffled with a
seeded generator per epoch), the raw images, the augmentation (netdsl/train/augment.py, on
8-bit-scale pixels), the normalization, float32 out.

Readers: `digits()` (built in, generated: netdsl/train/digits.py), `sklearn_digits()`,
`load_npz(path)`, `load_folder(path)`, and `get_dataset(spec)` that picks one for the CLI.
Every problem is a NetDSLError naming the file or folder and saying what to do.

Not here: streaming data sets larger than memory, worker processes, per-sample transforms
in Python (augmentation is whole-batch numpy), labels other than one class per sample.
"""
from __future__ import annotations

import os
import zipfile

import numpy as np

from ..errors import NetDSLError, did_you_mean
from ..runtime import inputs
from . import digits as _digits

BUILTIN = ("digits", "sklearn-digits")
DIGITS_SIZES = {"train": 10_000, "test": 2_000}
_MEMORY: dict = {}          # digits(): (split, n, size, seed) -> (x, y), read-only arrays


class Dataset:
    """Images (or feature arrays) and integer labels in memory. See the module docstring
    for the layouts; `name` is what messages and progress lines call it."""

    def __init__(self, x, y, classes=None, name="", targets=False):
        """targets=True: y holds a target per sample of any shape (floats for mse/bce, or class
        maps [N, H, W] for per-pixel cross-entropy), kept as given; the loss checks it."""
        x, y = np.asarray(x), np.asarray(y)
        self.targets = bool(targets)
        what = f" ({name})" if name else ""
        if x.ndim == 3:                                   # [N, H, W]: one channel
            x = x[:, None]
        if x.ndim not in (2, 4):
            raise NetDSLError(f"x{what} has shape {list(x.shape)}; expected images [N, C, H, W] "
                              "(or [N, H, W]) or feature vectors [N, F]",
                              hint="reshape it; channels come first (N, C, H, W), as netdsl's inputs")
        if x.dtype != np.uint8:
            if x.dtype.kind != "f":
                raise NetDSLError(f"x{what} holds {x.dtype} values; images are uint8 (0..255) and "
                                  "other arrays float32 (used as they are)",
                                  hint="x.astype(np.uint8) for 8-bit pixels, x.astype(np.float32) "
                                       "for values already normalized")
            x = x.astype(np.float32, copy=False)
        if self.targets:
            if len(x) != len(y):
                raise NetDSLError(f"x{what} has {len(x)} samples but y has {len(y)} targets",
                                  hint="x and y pair up one to one")
            self.x, self.y, self.classes, self.name = x, y, list(classes or []), name
            self.input_shape = tuple(x.shape[1:])
            self._norm = (1.0 / 255.0, None, None)
            return
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.ndim != 1:
            raise NetDSLError(f"y{what} has shape {list(y.shape)}; expected one class number per "
                              "sample, [N]", hint="one-hot labels: pass y.argmax(1)")
        if len(x) != len(y):
            raise NetDSLError(f"x{what} has {len(x)} samples but y has {len(y)} labels",
                              hint="x and y pair up one to one: check they come from the same file "
                                   "or split")
        y = _integer_labels(y, what)
        if len(y) and y.min() < 0:
            raise NetDSLError(f"y{what} holds the negative label {int(y.min())}; labels are class "
                              "numbers 0, 1, 2, ...")
        n_cls = int(y.max()) + 1 if len(y) else 0
        if classes is None:
            classes = [str(k) for k in range(n_cls)]
        classes = [str(c) for c in classes]
        if n_cls > len(classes):
            raise NetDSLError(f"y{what} holds the label {n_cls - 1} but only {len(classes)} class "
                              f"names were given", hint="pass one name per class, in label order")
        self.x, self.y, self.classes, self.name = x, y, classes, name
        self.input_shape = tuple(x.shape[1:])      # what normalize() returns per sample
        self._norm = (1.0 / 255.0, None, None)      # the Input op's default scale, no mean/std

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        """ds[i] -> (x[i], y[i]); ds[slice or index array] -> a Dataset of those samples."""
        if isinstance(i, (int, np.integer)):
            return self.x[i], (self.y[i] if self.targets else int(self.y[i]))
        return self._like(self.x[i], self.y[i])

    def __repr__(self):
        shape = "x".join(map(str, self.x.shape[1:]))
        return (f"Dataset({self.name!r}, {len(self)} x {shape} {self.x.dtype}, "
                f"{len(self.classes)} classes)")

    def _like(self, x, y, name=None):
        ds = Dataset(x, y, self.classes, self.name if name is None else name, targets=self.targets)
        ds.input_shape, ds._norm = self.input_shape, self._norm
        return ds

    @property
    def num_classes(self):
        return len(self.classes)

    def counts(self):
        """Samples per class, [num_classes] int64."""
        return np.bincount(self.y, minlength=self.num_classes)

    def split(self, fraction, seed=0, stratify=True):
        """(train, val): `fraction` of the samples go to val, the same share of every class
        (stratify=True) or a seeded shuffle of all (stratify=False). Deterministic in seed;
        both keep the original sample order."""
        if not 0 < fraction < 1:
            raise NetDSLError(f"a validation fraction must be between 0 and 1, not {fraction}",
                              hint="e.g. 0.1 keeps a tenth of the training data for validation")
        rng = np.random.default_rng(seed)
        groups = [np.flatnonzero(self.y == k) for k in range(self.num_classes)] if stratify and not self.targets \
            else [np.arange(len(self))]
        val = [rng.permutation(g)[:int(round(fraction * len(g)))] for g in groups]
        val = np.sort(np.concatenate(val)) if val else np.zeros(0, np.int64)
        train = np.setdiff1d(np.arange(len(self)), val)
        if len(val) == 0 or len(train) == 0:
            raise NetDSLError(f"splitting {len(self)} samples{_of(self.name)} at {fraction} leaves "
                              f"{len(train)} for training and {len(val)} for validation",
                              hint="use a fraction that leaves samples on both sides")
        return (self._like(self.x[train], self.y[train], f"{self.name}-train" if self.name else ""),
                self._like(self.x[val], self.y[val], f"{self.name}-val" if self.name else ""))

    def to_input(self, input_shape, mean=None, std=None, scale=None):
        """This data set adapted to a model input of `input_shape` (CxHxW or F, no batch):
        channels and size changed once here (see the module docstring), and the `input`
        line's normalization (scale, default 1/255, then mean/std) kept for the loader.
        Float32 arrays keep their values: only their layout is adapted. `input_shape` may also
        be the model's input node (model.graph[model.graph.inputs[0]]): its shape and
        attributes are used."""
        if hasattr(input_shape, "attrs") and hasattr(input_shape, "shape"):
            node = input_shape
            input_shape = node.shape
            mean, std = node.attrs.get("mean", mean), node.attrs.get("std", std)
            scale = node.attrs.get("scale", scale)
        shape = tuple(int(s) for s in input_shape)
        x = self.x
        if len(shape) == 3:
            if x.ndim != 4:
                raise NetDSLError(f"the model takes images {'x'.join(map(str, shape))} but the data"
                                  f"{_of(self.name)} are feature vectors {list(x.shape[1:])}",
                                  hint="use image data, or a model whose input is a feature count")
            x = _channels(x, shape[0], self.name)
            x = _resize(x, shape[1], shape[2])
        elif len(shape) == 1:
            if int(np.prod(x.shape[1:])) != shape[0]:
                raise NetDSLError(f"the model takes {shape[0]} features but each sample{_of(self.name)} "
                                  f"has {'x'.join(map(str, x.shape[1:]))} = {int(np.prod(x.shape[1:]))} "
                                  "values", hint="check the data matches the model's input line")
        else:
            raise NetDSLError(f"a model input is CxHxW or F; got {'x'.join(map(str, shape))}")
        c = x.shape[1] if x.ndim == 4 else 1
        for key, v in (("mean", mean), ("std", std)):
            if v is not None and len(np.atleast_1d(v)) not in (1, c):
                raise NetDSLError(f"'{key}' has {len(np.atleast_1d(v))} values but the images have "
                                  f"{c} channels", hint="give one value per channel, or one for all")
        ds = self._like(x, self.y)
        ds.input_shape = shape
        ds._norm = (1.0 / 255.0 if scale is None else float(scale), mean, std)
        return ds

    def normalize(self, x):
        """A batch of this data set's samples (as stored, or augmented on the same scale) ->
        float32 network input [n, *input_shape]."""
        if self.x.dtype == np.uint8:             # feature vectors [n, F]: one "channel" each
            x = inputs.normalize(x if x.ndim == 4 else x.reshape(len(x), -1, 1, 1), *self._norm)
        return np.ascontiguousarray(x, np.float32).reshape(len(x), *self.input_shape)

    def inputs(self):
        """The whole data set as float32 network input (for evaluation)."""
        return self.normalize(self.x)


def _of(name):
    return f" of {name}" if name else ""


def _integer_labels(y, what):
    if y.dtype.kind in "iu":
        return y.astype(np.int64, copy=False)
    if y.dtype.kind == "f" and np.all(np.isfinite(y)) and np.all(y == np.round(y)):
        return y.astype(np.int64)
    bad = y[~(np.isfinite(y) & (y == np.round(y)))][:1] if y.dtype.kind == "f" else y[:1]
    example = f" such as {bad[0].item()!r}" if len(bad) else ""
    raise NetDSLError(f"labels must be integers (class numbers); y{what} holds {y.dtype} values"
                      f"{example}", hint="y.astype(np.int64) if they are class numbers; map names to "
                                         "numbers first (np.unique(y, return_inverse=True))")


def _channels(x, c, name):
    """[N, C0, H, W] -> [N, c, H, W]: 1 -> 3 repeats, 3 (or 4: alpha dropped) -> 1 is luma."""
    c0 = x.shape[1]
    if c0 == 4 and c in (1, 3):
        x, c0 = x[:, :3], 3
    if c0 == c:
        return x
    if c0 == 1 and c == 3:
        return np.repeat(x, 3, axis=1)
    if c0 == 3 and c == 1:
        if x.dtype == np.uint8:     # Pillow's integer form of L = R*299/1000 + G*587/1000 + B*114/1000
            r, g, b = (x[:, k].astype(np.uint32) for k in range(3))
            return ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16).astype(np.uint8)[:, None]
        return np.einsum("nchw,c->nhw", x, np.array([0.299, 0.587, 0.114], np.float32))[:, None]
    raise NetDSLError(f"the data{_of(name)} have {c0} channels and the model takes {c}; netdsl "
                      "converts only between 1 (gray) and 3 (RGB)",
                      hint="convert the data first, or change the model's input line")


def _resize(x, h, w):
    """Bilinear resize of every image to h x w with Pillow: uint8 channels in mode L (as
    `netdsl run` resizes 8-bit images), float ones through runtime/inputs._resize."""
    if x.shape[2:] == (h, w):
        return x
    from PIL import Image
    n, c = x.shape[:2]
    out = np.empty((n, c, h, w), x.dtype)
    for i in range(n):
        if x.dtype == np.uint8:
            for k in range(c):
                out[i, k] = np.asarray(Image.fromarray(x[i, k]).resize((w, h), Image.BILINEAR))
        else:
            out[i] = inputs._resize(x[i].transpose(1, 2, 0), w, h).transpose(2, 0, 1)
    return out


# ---- readers -----------------------------------------------------------------------------

def _cache_dir():
    d = os.environ.get("NETDSL_CACHE_DIR")
    if d:
        return d
    return os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"),
                                                                           ".cache"), "netdsl")


def digits(split="train", n=None, size=32, seed=0, cache=True):
    """The built-in digits data set (netdsl/train/digits.py): uint8 [n, 1, size, size]
    glyphs 0-9, balanced. n defaults to 10,000 (train) / 2,000 (test); train and test are
    drawn from different streams of `seed`. Kept in memory per process and, with
    cache=True, on disk under $NETDSL_CACHE_DIR (else ~/.cache/netdsl); NETDSL_CACHE_DIR=off
    turns the disk cache off. The arrays are shared between calls and read-only: copy them
    to change them."""
    if split not in DIGITS_SIZES:
        raise NetDSLError(f"digits has the splits 'train' and 'test', not {split!r}")
    n = DIGITS_SIZES[split] if n is None else int(n)
    if n < 1 or size < 8:
        raise NetDSLError(f"digits needs n >= 1 and size >= 8 (got n={n}, size={size})")
    key = (split, n, int(size), int(seed))
    if key not in _MEMORY:
        _MEMORY[key] = _digits_disk(key) if cache and _cache_dir() != "off" else _digits_make(key)
    x, y = _MEMORY[key]
    return Dataset(x, y, name=f"digits-{split}")


def _digits_make(key):
    split, n, size, seed = key
    stream = (seed, 0 if split == "train" else 1)
    y = _digits.balanced_labels(n, np.random.default_rng(stream + (0,)))
    x = _digits.render(y, size, stream + (1,))
    x.flags.writeable = y.flags.writeable = False
    return x, y


def _digits_disk(key):
    """The generated set from the disk cache, made and saved when missing. The file name
    holds what decides the bytes: the generator version, Pillow's and numpy's versions."""
    import PIL
    split, n, size, seed = key
    path = os.path.join(_cache_dir(), f"digits-v{_digits.VERSION}-pil{PIL.__version__}-np{np.__version__}"
                                      f"-{split}-{n}-{size}-{seed}.npz")
    try:
        with np.load(path, allow_pickle=False) as f:
            x, y = f["x"], f["y"]
        if x.shape == (n, 1, size, size) and y.shape == (n,):
            x.flags.writeable = y.flags.writeable = False
            return x, y
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile):
        pass                                    # missing or damaged: make it again
    x, y = _digits_make(key)
    try:                                        # the cache is only a speed-up: a read-only
        os.makedirs(os.path.dirname(path), exist_ok=True)     # home is no error
        tmp = f"{path}.{os.getpid()}.tmp.npz"
        np.savez_compressed(tmp, x=x, y=y)
        os.replace(tmp, path)
    except OSError:
        pass
    return x, y


def sklearn_digits(seed=0, test_fraction=0.2):
    """scikit-learn's 8x8 digits (1,797 samples, 0..16 pixels scaled to uint8), split into
    (train, test) by a stratified seeded split. Needs scikit-learn (the `sklearn` extra)."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise NetDSLError("the data set sklearn-digits needs scikit-learn, which is not installed",
                          hint='pip install "netdsl[sklearn]" (scikit-learn), or use the built-in --data digits')
    d = load_digits()
    x = np.rint(np.asarray(d.images, np.float64) * (255.0 / 16.0)).astype(np.uint8)[:, None]
    ds = Dataset(x, d.target, [str(t) for t in d.target_names], "sklearn-digits")
    train, test = ds.split(test_fraction, seed)
    train.name, test.name = "sklearn-digits-train", "sklearn-digits-test"
    return train, test


def _nchw(x):
    """An array from a file as [N, C, H, W]: 1 or 3 in place of C is taken as channels
    first, else 1, 3 or 4 last as channels last ([N, H, W, C], transposed)."""
    if x.ndim == 4 and x.shape[1] not in (1, 3) and x.shape[3] in (1, 3, 4):
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    return x


def load_npz(path):
    """(train, test or None) from a .npz file with arrays `x`, `y` (or `x_train`, `y_train`)
    and optionally `x_test`, `y_test`; an optional `classes` array of
    names. x is [N, C, H, W], [N, H, W] or [N, H, W, C] (uint8 images or float arrays)."""
    try:
        f = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise NetDSLError(f"cannot read {path}: {e}", hint="expected a .npz file written by numpy.savez")
    if not isinstance(f, np.lib.npyio.NpzFile):
        raise NetDSLError(f"{path} holds one array, not a .npz archive",
                          hint="save x and y together: np.savez(path, x=x, y=y)")
    base = os.path.splitext(os.path.basename(path))[0]
    with f:
        names = list(f.files)
        try:
            classes = [str(c) for c in f["classes"]] if "classes" in names else None
            for xk, yk in (("x", "y"), ("x_train", "y_train")):
                if xk not in names or yk not in names:
                    continue
                train = Dataset(_nchw(f[xk]), f[yk], classes, base if xk == "x" else f"{base}-train")
                test = None
                if "x_test" in names and "y_test" in names:
                    test = Dataset(_nchw(f["x_test"]), f["y_test"], classes or
                                   train.classes, f"{base}-test")
                return train, test
        except ValueError as e:                 # an object array: allow_pickle=False refuses it
            raise NetDSLError(f"cannot read {path}: {e}", hint="save plain numeric arrays")
    raise NetDSLError(f"{path} has no arrays x and y (nor x_train and y_train); it holds "
                      f"{', '.join(names) or 'nothing'}",
                      hint="np.savez(path, x=images, y=labels), or x_train/y_train/x_test/y_test")


def load_folder(path, size=None, name=None):
    """A Dataset from a folder with one subfolder per class (class names sorted, label = the
    position), images read with Pillow. All gray (8- or 16-bit) -> 1 channel, else RGB. The
    images are brought to `size` (H, W) when given, else to the size most of them have
    (bilinear). 16-bit images are reduced to 8 bits."""
    try:
        from PIL import Image
    except ImportError:
        raise NetDSLError("reading image folders needs Pillow", hint='pip install "netdsl[image]"')
    if not os.path.isdir(path):
        raise NetDSLError(f"no such folder: {path}")
    subs = sorted(d for d in os.listdir(path) if os.path.isdir(os.path.join(path, d))
                  and not d.startswith("."))
    exts = ", ".join(inputs.IMAGE_EXT)
    if not subs:
        loose = [f for f in os.listdir(path) if f.lower().endswith(inputs.IMAGE_EXT)]
        raise NetDSLError(f"the folder {path} has no class subfolders" +
                          (f" ({len(loose)} images lie in it directly)" if loose else ""),
                          hint=f"put the images in one subfolder per class ({path}/cat/1.png, "
                               f"{path}/dog/2.png, ...); files read: {exts}")
    files = {c: sorted(f for f in os.listdir(os.path.join(path, c)) if f.lower().endswith(inputs.IMAGE_EXT))
             for c in subs}
    if not any(files.values()):
        raise NetDSLError(f"the folder {path} has no images in its subfolders ({', '.join(subs[:5])}"
                          f"{', ...' if len(subs) > 5 else ''})", hint=f"files read: {exts}")
    empty = [c for c in subs if not files[c]]
    if empty:
        raise NetDSLError(f"the class folder {os.path.join(path, empty[0])} has no images"
                          + (f" (nor {', '.join(empty[1:4])})" if len(empty) > 1 else ""),
                          hint=f"add images to it or remove it: every subfolder is a class; "
                               f"files read: {exts}")
    pics, labels = [], []
    for k, c in enumerate(subs):
        for f in files[c]:
            pics.append(_read_image(os.path.join(path, c, f), Image))
            labels.append(k)
    gray = all(p.ndim == 2 for p in pics)
    if size is None:
        sizes = [p.shape[:2] for p in pics]
        size = max(set(sizes), key=lambda s: (sizes.count(s), s))
    h, w = size
    x = np.empty((len(pics), 1 if gray else 3, h, w), np.uint8)
    for i, p in enumerate(pics):
        im = Image.fromarray(p)
        if not gray and im.mode != "RGB":
            im = im.convert("RGB")
        if im.size != (w, h):
            im = im.resize((w, h), Image.BILINEAR)
        a = np.asarray(im)
        x[i] = a[None] if gray else a.transpose(2, 0, 1)
    return Dataset(x, np.array(labels, np.int64), subs, name or os.path.basename(os.path.normpath(path)))


def _read_image(path, Image):
    """One image as uint8 [H, W] (gray) or [H, W, 3]."""
    try:
        with Image.open(path) as im:
            if im.mode in ("L", "1", "P", "PA", "LA"):
                im = im.convert("L") if im.mode in ("L", "1", "LA") else im.convert("RGB")
                return np.asarray(im, np.uint8)
            if im.mode in ("RGB", "RGBA", "CMYK", "YCbCr", "RGBX", "LAB", "HSV"):
                return np.asarray(im.convert("RGB"), np.uint8)
            a = inputs._pixels(im, path)           # 16-bit and float, read by their range
            return np.clip(np.rint(a[..., 0] if a.shape[2] == 1 else a), 0, 255).astype(np.uint8)
    except NetDSLError:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise NetDSLError(f"cannot read image {path}: {e}",
                          hint="is it a complete image file? remove or replace it")


def get_dataset(spec, size=None):
    """--data value -> (train, test or None): 'digits', 'sklearn-digits', a .npz file, or a
    folder (one subfolder per class; with train/ and test/ subfolders, both are read).
    `size` (H, W) is passed to folder reading."""
    if spec == "digits":
        return digits("train"), digits("test")
    if spec == "sklearn-digits":
        return sklearn_digits()
    if os.path.isdir(spec):
        subs = {d for d in os.listdir(spec) if os.path.isdir(os.path.join(spec, d))}
        if "train" in subs and subs <= {"train", "test", "val"} and \
                any(os.path.isdir(os.path.join(spec, "train", d)) for d in os.listdir(os.path.join(spec, "train"))):
            base = os.path.basename(os.path.normpath(spec))
            train = load_folder(os.path.join(spec, "train"), size, f"{base}-train")
            held = "test" if "test" in subs else "val" if "val" in subs else None
            test = load_folder(os.path.join(spec, held), size or train.x.shape[2:],
                               f"{base}-{held}") if held else None
            if test is not None and test.classes != train.classes:
                raise NetDSLError(f"{spec}/train and {spec}/{held} have different classes "
                                  f"({', '.join(train.classes[:5])} ... vs {', '.join(test.classes[:5])} ...)",
                                  hint="both need the same class subfolders")
            return train, test
        return load_folder(spec, size), None
    if spec.lower().endswith(".npz"):
        if not os.path.exists(spec):
            raise NetDSLError(f"no such file: {spec}")
        return load_npz(spec)
    hint = did_you_mean(spec, BUILTIN)
    raise NetDSLError(f"unknown data set {spec!r}: not a built-in one, a .npz file or a folder",
                      hint=hint or f"built in: {', '.join(BUILTIN)}; or a .npz with x and y, or a "
                                   "folder of class subfolders")


# ---- batches -----------------------------------------------------------------------------

class Loader:
    """Batches of one data set: `for x, y in loader` runs one epoch (the next one each
    time), `loader.epoch(e, start=s)` runs epoch e from step s. x is float32 network input
    [batch, *input_shape], y int64 [batch].

    Reproducible and resumable: epoch e shuffles with np.random.default_rng(seed + e), and
    step s of it augments with np.random.default_rng((seed + e, s)), so (epoch, step) alone
    decides a batch. `augment`: an Augment, a spec string ("crop,flip"), or None; one that
    needs data statistics (lighting) is fitted on this data set first."""

    def __init__(self, dataset, batch, shuffle=True, seed=0, drop_last=False, augment=None):
        if int(batch) < 1:
            raise NetDSLError(f"the batch size must be at least 1, not {batch}")
        if len(dataset) == 0:
            raise NetDSLError(f"the data set {dataset.name!r} is empty")
        self.dataset, self.batch, self.shuffle = dataset, int(batch), shuffle
        self.seed, self.drop_last, self.next_epoch = int(seed), drop_last, 0
        if isinstance(augment, str):
            from .augment import Augment
            augment = Augment.from_spec(augment)
        if augment is not None and hasattr(augment, "fit"):
            augment = augment.fit(dataset.x)
        self.augment = augment
        if drop_last and len(dataset) < self.batch:
            raise NetDSLError(f"drop_last with a batch of {self.batch} leaves no batch of the "
                              f"{len(dataset)} samples of {dataset.name!r}", hint="use a smaller batch")

    def __len__(self):
        n = len(self.dataset)
        return n // self.batch if self.drop_last else -(-n // self.batch)

    def order(self, epoch):
        """The sample indices of an epoch, in the order its batches take them."""
        n = len(self.dataset)
        return np.random.default_rng(self.seed + epoch).permutation(n) if self.shuffle else np.arange(n)

    def epoch(self, e, start=0):
        """Batches (x, y) of epoch e, from step `start` on."""
        idx = self.order(e)
        ds = self.dataset
        for s in range(start, len(self)):
            take = idx[s * self.batch:(s + 1) * self.batch]
            xb = ds.x[take]
            if self.augment is not None:
                xb = self.augment(xb, np.random.default_rng((self.seed + e, s)))
            yield ds.normalize(xb), ds.y[take]

    def __iter__(self):
        e = self.next_epoch
        self.next_epoch += 1
        return self.epoch(e)
