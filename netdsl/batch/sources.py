"""What `netdsl batch` reads: the list of inputs, their ids, and how one is loaded.

    src = open_source("photos/", decl)         # a folder, a files.txt, a .npz or a .npy
    src.ids[:3], len(src), src.fingerprint()
    x, reason = src.load(7)                    # float32 [C, H, W] as the network takes it, or (None, why)

Three kinds of input, each with a deterministic order and an id per item:
- a folder: every image below it (netdsl.runtime.inputs.IMAGE_EXT, any depth), sorted by
  the path relative to the folder, which is the id (`/` separators on every system);
- one image file: a job of one, its id the file name;
- a text file (any other name but .npz/.npy): one path per line, relative ones resolved against
  the text file's folder; the id is the line as written; blank lines and lines starting
  with `#` are skipped; a path listed twice is refused (ids must be unique);
- an array file: `.npy` [N, *shape], or `.npz` holding one array (or `x`, with optional
  string `ids`); the id is the row index (or ids[i]). uint8 arrays are pixels and are
  normalized as the input declares (`scale`, `mean`, `std`), float arrays are used as they
  are (like `netdsl run --input x.npy`).

Images are decoded, resized and normalized by netdsl.runtime.inputs.load_image, the code
`netdsl run --input img.png` uses; an image that cannot be read is not an error here: load()
returns the reason and the caller skips it.

The fingerprint hashes the ordered ids with each file's size and modification time (for an
array, its file's), so a resumed job notices an input list that changed. It does not read
the files' bytes: a file rewritten in place with the same size and time goes unnoticed.

A Source is small and picklable: the worker processes and Ray actors get their own copy and
read the inputs themselves (from a filesystem every node sees).

Not here: URLs and object stores (mount them), globs (pass the folder or a list), video,
several-input networks.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field

import numpy as np

from ..errors import NetDSLError
from ..runtime.inputs import IMAGE_EXT, load_image, normalize

ARRAY_EXT = (".npz", ".npy")


@dataclass(frozen=True)
class InputDecl:
    """The network input an image is made for: what load_image reads from a graph node."""
    name: str
    shape: tuple
    attrs: dict


@dataclass
class Source:
    """The ordered inputs of a job. kind: "files" (paths[i] read as an image) or "array"
    (row i of the array in `path`)."""
    kind: str
    spec: str                   # what the user passed (for messages)
    ids: list
    decl: InputDecl
    paths: list = field(default_factory=list)      # files: absolute path of each id
    path: str = ""                                  # array: the .npy/.npz file
    key: str = ""                                   # array: the member of a .npz
    _array: object = field(default=None, repr=False, compare=False)

    def __len__(self):
        return len(self.ids)

    def __getstate__(self):
        d = dict(self.__dict__)
        d["_array"] = None          # each process opens the array itself
        return d

    def fingerprint(self) -> str:
        """sha256 over the ordered ids and each file's size and mtime (see the module docstring)."""
        h = hashlib.sha256()
        h.update(f"{self.kind}\0{len(self.ids)}\0".encode())
        if self.kind == "array":
            st = _stat(self.path)
            h.update(f"{self.key}\0{st}\0{tuple(self._data().shape)}\0".encode())
            for i in self.ids:
                h.update(f"{i}\0".encode())
        else:
            for i, p in zip(self.ids, self.paths):
                h.update(f"{i}\0{_stat(p)}\0".encode())
        return h.hexdigest()

    def _data(self):
        if self._array is None:
            self._array = _open_array(self.path, self.key)[0]
        return self._array

    def load(self, i: int):
        """Item i as float32 [C, H, W] (the declared input), or (None, reason) when it cannot be
        read: (array, None) or (None, str)."""
        if self.kind == "array":
            a = np.asarray(self._data()[i])
            if a.dtype == np.uint8:
                a = normalize(a, self.decl.attrs.get("scale"), self.decl.attrs.get("mean"), self.decl.attrs.get("std"))
            return np.ascontiguousarray(a, np.float32), None
        path = self.paths[i]
        if not os.path.isfile(path):
            return None, "no such file" if not os.path.exists(path) else "not a file"
        try:
            return load_image(path, self.decl, 1)[0], None
        except NetDSLError as e:
            return None, _reason(e.message, path)
        except MemoryError:
            return None, "out of memory decoding it"


def _reason(message, path):
    """load_image's message without the leading 'cannot read image PATH: ' (the id says which)."""
    for head in (f"cannot read image {path}: ", f"{path} "):
        if message.startswith(head):
            return message[len(head):]
    return message


def _stat(path):
    try:
        st = os.stat(path)
        return f"{st.st_size}:{st.st_mtime_ns}"
    except OSError:
        return "missing"


def open_source(spec: str, decl: InputDecl) -> Source:
    """The inputs `spec` names (a folder, a .npz/.npy, or a text file listing images), checked
    against the network input `decl`; raises NetDSLError for a spec that cannot be used at all
    (an unreadable image inside it is not such a problem: it is skipped later)."""
    if not isinstance(spec, (str, os.PathLike)):
        raise NetDSLError(f"--input must be a folder, a .npz/.npy or a text file of paths, got {spec!r}",
                          hint="pass the path as a string")
    spec = os.fspath(spec)
    if not os.path.exists(spec):
        raise NetDSLError(f"no such input: {spec}",
                          hint="pass a folder of images, a text file with one image path per line, or a .npz/.npy")
    if os.path.isdir(spec):
        _need_images(decl, spec)
        root = os.path.abspath(spec)
        rel = []
        for d, dirs, files in os.walk(root, onerror=None):
            dirs.sort()
            for f in files:
                if f.lower().endswith(IMAGE_EXT):
                    rel.append(os.path.relpath(os.path.join(d, f), root).replace(os.sep, "/"))
        rel.sort()
        if not rel:
            raise NetDSLError(f"{spec} holds no images ({', '.join(IMAGE_EXT)})",
                              hint="point --input at the folder of images, or list them in a text file")
        return Source("files", spec, rel, decl, paths=[os.path.join(root, *r.split("/")) for r in rel])
    if spec.lower().endswith(ARRAY_EXT):
        arr, key, ids = _open_array(spec, None)
        shape = tuple(decl.shape)
        if arr.ndim != len(shape) + 1 or tuple(arr.shape[1:]) != shape:
            raise NetDSLError(f"{spec} holds an array of shape {list(arr.shape)}; the network expects "
                              f"[N, {', '.join(map(str, shape))}]",
                              hint="one row per input, each in the shape of the network's input line")
        if arr.dtype.kind not in "fiu" or (arr.dtype.kind in "iu" and arr.dtype != np.uint8):
            raise NetDSLError(f"{spec} holds {arr.dtype} values",
                              hint="save float32 inputs (used as they are) or uint8 pixels (normalized as "
                                   "the input line says)")
        if arr.shape[0] == 0:
            raise NetDSLError(f"{spec} holds no inputs (shape {list(arr.shape)})", hint="save at least one row")
        if ids is None:
            ids = [str(i) for i in range(arr.shape[0])]
        elif len(ids) != arr.shape[0]:
            raise NetDSLError(f"{spec}: `ids` has {len(ids)} entries for {arr.shape[0]} rows of `{key}`",
                              hint="give one id per row, or leave `ids` out to use the row numbers")
        _unique(ids, spec, "ids")
        src = Source("array", spec, ids, decl, path=os.path.abspath(spec), key=key)
        src._array = arr
        return src
    _need_images(decl, spec)
    if spec.lower().endswith(IMAGE_EXT):        # one image: a job of one
        return Source("files", spec, [os.path.basename(spec)], decl, paths=[os.path.abspath(spec)])
    try:
        with open(spec, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise NetDSLError(f"cannot read {spec}: {getattr(e, 'strerror', None) or e}",
                          hint="a list of inputs is a UTF-8 text file with one image path per line")
    base = os.path.dirname(os.path.abspath(spec))
    ids, paths, first = [], [], {}
    for n, line in enumerate(lines, 1):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        p = os.path.normpath(os.path.join(base, os.path.expanduser(s)))
        if p in first:
            raise NetDSLError(f"{spec}:{n}: {s} is listed twice (first on line {first[p]})",
                              hint="each input once: its path is its id in the output")
        first[p] = n
        ids.append(s)
        paths.append(p)
    if not ids:
        raise NetDSLError(f"{spec} lists no inputs", hint="one image path per line (# starts a comment)")
    return Source("files", spec, ids, decl, paths=paths)


def _need_images(decl, spec):
    shape = tuple(decl.shape)
    if len(shape) != 3 or shape[0] not in (1, 3):
        raise NetDSLError(f"{spec}: the network input {decl.name} is {'x'.join(map(str, shape))}; "
                          "images need 1xHxW or 3xHxW", hint="pass the inputs as a .npz/.npy array instead")
    try:
        import PIL  # noqa: F401
    except ImportError:
        raise NetDSLError("reading images needs Pillow", hint='pip install "netdsl[image]"  (or pass a .npz)') from None


def _unique(ids, spec, what):
    seen = set()
    for i in ids:
        if i in seen:
            raise NetDSLError(f"{spec}: {what} holds {i!r} twice", hint="ids must be unique: they name the output rows")
        seen.add(i)


def _open_array(path, key):
    """(array, member name, ids or None) of a .npy (memory-mapped) or .npz file."""
    try:
        if path.lower().endswith(".npy"):
            return np.load(path, mmap_mode="r", allow_pickle=False), "", None
        with np.load(path, allow_pickle=False) as z:
            names = list(z.files)
            if key is None:
                cand = [n for n in names if n != "ids"]
                key = "x" if "x" in names else (cand[0] if len(cand) == 1 else None)
                if key is None:
                    raise NetDSLError(f"{path} holds arrays {', '.join(names) or '(none)'}; which are the inputs?",
                                      hint="name the input array `x` (np.savez(path, x=inputs, ids=names))")
            arr = z[key]
            ids = [str(s) for s in z["ids"].tolist()] if "ids" in names and key != "ids" else None
            return arr, key, ids
    except NetDSLError:
        raise
    except (OSError, ValueError, EOFError) as e:
        raise NetDSLError(f"cannot read {path}: {e}",
                          hint="expected an array file written by numpy.save / numpy.savez") from None
