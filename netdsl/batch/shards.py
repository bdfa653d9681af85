"""Shards: the unit of work of `netdsl batch`, the work folder that makes a job resumable,
and the final output assembled from it.

The inputs (a Source, in its fixed order) are cut into shards of `shard_size` consecutive
items; shard k holds items [k * shard_size, (k + 1) * shard_size). A finished shard is one
small .npz (its ids, its outputs, the ids it skipped and why), written into the work folder
next to the output (`preds.parquet` -> `preds.parquet.parts/shard-000003.npz`) under a
temporary name and renamed, so a shard file is either complete or absent, whatever kills the
job. The folder's `manifest.json` says what the shards were made from: the input list's
fingerprint, the model bundle's sha256 (graph and weights), the batch and shard sizes. A rerun
with the same arguments reads the manifest, keeps every shard file that opens, and does the
rest; a rerun that differs in any of them is refused (restart=True discards the folder). When
every shard is there the output is written (again tmp + rename) and the folder removed.

Output rows, in input order, finished shards only, skipped inputs left out: `id`, one column
per network output (its values flattened per row; the shape is in the metadata), and for a
classifier (first output one vector of 2 or more classes) `top1` and `score` (top-1
probability: the output itself when the network ends in Softmax, else the softmax of its
logits). .npz: arrays `id`, the outputs [N, *shape], `top1`, `score`, `skipped_id`,
`skipped_reason`, and `metadata` (a JSON string). .parquet (needs pyarrow): the same columns,
and the JSON under the schema metadata key `netdsl`.

Not here: reading inputs (sources.py), running the model (run.py), scheduling (engines).
"""
from __future__ import annotations

import io
import json
import os
import shutil
import zipfile

import numpy as np

from .._version import __version__
from ..errors import NetDSLError
from ..fileio import replace_atomic, write_bytes_atomic

MANIFEST = "manifest.json"
PARTS_FORMAT = "netdsl-batch-parts"
PARTS_VERSION = 1
OUTPUT_EXT = (".parquet", ".npz")
RESERVED = ("id", "top1", "score", "skipped_id", "skipped_reason", "metadata")
_UNREADABLE = (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile)    # what np.load of a bad .npz raises


def shard_count(n_items: int, shard_size: int) -> int:
    return (n_items + shard_size - 1) // shard_size


def shard_range(k: int, n_items: int, shard_size: int) -> range:
    return range(k * shard_size, min((k + 1) * shard_size, n_items))


def column_names(outputs) -> dict:
    """Network output name -> its column: the name itself, or `output_<name>` when it would
    clash with one of the fixed columns."""
    return {o: (f"output_{o}" if o in RESERVED else o) for o in outputs}


# -- one shard's result, as bytes (what a worker or an actor hands back)

def encode_shard(ids, outputs: dict, skipped) -> bytes:
    """ids: the inputs that ran, in order; outputs: {name: float32 [len(ids), *shape]};
    skipped: [(id, reason)]."""
    buf = io.BytesIO()
    arrays = {"ids": np.array(list(ids), dtype=str),
              "skipped_ids": np.array([s[0] for s in skipped], dtype=str),
              "skipped_reasons": np.array([s[1] for s in skipped], dtype=str)}
    for i, (name, a) in enumerate(outputs.items()):
        arrays[f"out{i}"] = np.ascontiguousarray(a, np.float32)
    arrays["out_names"] = np.array(list(outputs), dtype=str)
    np.savez(buf, **arrays)
    return buf.getvalue()


def decode_shard(data_or_path):
    """(ids, {name: array}, [(id, reason)]) of an encoded shard (bytes or a file path)."""
    src = io.BytesIO(data_or_path) if isinstance(data_or_path, (bytes, bytearray)) else data_or_path
    with np.load(src, allow_pickle=False) as z:
        names = z["out_names"].tolist()
        outs = {n: z[f"out{i}"] for i, n in enumerate(names)}
        return (z["ids"].tolist(), outs,
                list(zip(z["skipped_ids"].tolist(), z["skipped_reasons"].tolist())))


def write_atomic(path: str, data: bytes):
    write_bytes_atomic(path, data, "check that the output's folder exists, is writable and has space")


class WorkDir:
    """The `<output>.parts` folder of one job (see the module docstring)."""

    def __init__(self, output: str, manifest: dict):
        self.output = output
        self.path = output + ".parts"
        self.manifest = manifest

    def shard_path(self, k: int) -> str:
        return os.path.join(self.path, f"shard-{k:06d}.npz")

    def open(self, restart: bool = False) -> list:
        """Create the folder or check the one there against this job's manifest; returns the
        shard numbers already finished (their files open). restart=True discards old shards."""
        man_path = os.path.join(self.path, MANIFEST)
        if restart and os.path.isdir(self.path):
            shutil.rmtree(self.path, ignore_errors=True)
        if os.path.exists(self.path) and not os.path.isdir(self.path):
            raise NetDSLError(f"{self.path} is in the way: the work folder of this job goes there",
                              hint="move that file, or choose another --output")
        done = []
        if os.path.isdir(self.path) and os.path.exists(man_path):
            try:
                with open(man_path, encoding="utf-8") as f:
                    old = json.load(f)
            except (OSError, ValueError) as e:
                raise NetDSLError(f"cannot read {man_path}: {e}",
                                  hint="rerun with --restart to discard the unfinished job") from None
            diff = self._differs(old)
            if diff:
                raise NetDSLError(f"{self.path} holds an unfinished job made with {diff}",
                                  hint="rerun with the same arguments to resume it, with --restart to discard it "
                                       "and start again, or choose another --output")
            for k in range(self.manifest["n_shards"]):
                p = self.shard_path(k)
                if os.path.exists(p):
                    try:
                        decode_shard(p)
                        done.append(k)
                    except _UNREADABLE:
                        os.unlink(p)            # not one we wrote (ours are renamed complete): redo it
        else:
            try:
                os.makedirs(self.path, exist_ok=True)
            except OSError as e:
                raise NetDSLError(f"cannot create {self.path}: {e.strerror or e}",
                                  hint="the output's folder must exist and be writable") from None
            write_atomic(man_path, json.dumps(self.manifest, indent=1).encode())
        return done

    def _differs(self, old) -> str | None:
        new = self.manifest
        if old.get("format") != PARTS_FORMAT or old.get("version") != PARTS_VERSION:
            return "another version of netdsl"
        what = {"input_sha256": "a different input list (files added, removed or changed)",
                "model_sha256": "a different model or weights",
                "batch": f"--batch {old.get('batch')} (now {new['batch']})",
                "shard_size": f"--shard-size {old.get('shard_size')} (now {new['shard_size']})"}
        for k, text in what.items():
            if old.get(k) != new[k]:
                return text
        return None

    def write_shard(self, k: int, data: bytes):
        write_atomic(self.shard_path(k), data)

    def read_shard(self, k: int):
        try:
            return decode_shard(self.shard_path(k))
        except _UNREADABLE as e:
            raise NetDSLError(f"cannot read {self.shard_path(k)}: {e}",
                              hint="rerun the same command: a shard that cannot be read is done again") from None

    def remove(self):
        shutil.rmtree(self.path, ignore_errors=True)


# -- the final output

def check_output_path(output: str):
    """Refuse an output format we cannot write before any work is done."""
    low = output.lower()
    if not low.endswith(OUTPUT_EXT):
        raise NetDSLError(f"unknown output format: {output}", hint="write predictions to a .parquet or a .npz file")
    if low.endswith(".parquet"):
        _pyarrow()
    folder = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(folder):
        raise NetDSLError(f"the folder of {output} does not exist", hint="create it first, or choose another --output")


def _pyarrow():
    try:
        import pyarrow
        import pyarrow.parquet  # noqa: F401
        return pyarrow
    except ImportError:
        raise NetDSLError("writing .parquet needs pyarrow",
                          hint='pip install pyarrow (it comes with "netdsl[ray]"), or write a .npz instead') from None


def top1(values: np.ndarray, is_softmax: bool):
    """(class index int64 [N], its probability float32 [N]) of [N, K] outputs."""
    v = values.reshape(values.shape[0], int(np.prod(values.shape[1:])))     # -1 fails on 0 rows
    if v.shape[0] == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    k = np.argmax(v, axis=1).astype(np.int64)
    if is_softmax:
        p = v[np.arange(len(k)), k]
    else:           # softmax at the top class: 1 / sum(exp(v - max)), in float64
        m = v.max(axis=1, keepdims=True).astype(np.float64)
        p = 1.0 / np.exp(v.astype(np.float64) - m).sum(axis=1)
    return k, np.asarray(p, np.float32)


def shard_summary(data_or_path):
    """(rows, [(id, reason)]) of an encoded shard, without reading its outputs."""
    src = io.BytesIO(data_or_path) if isinstance(data_or_path, (bytes, bytearray)) else data_or_path
    with np.load(src, allow_pickle=False) as z:
        return len(z["ids"]), list(zip(z["skipped_ids"].tolist(), z["skipped_reasons"].tolist()))


def write_output(output: str, read, n_shards: int, out_shapes: dict, skipped, meta: dict,
                 classifier: str | None, is_softmax: bool):
    """Write the predictions (see the module docstring) atomically to `output`: read(k) gives
    shard k as decode_shard does; `skipped` is every shard's, in order (the metadata needs it
    before the rows). A .parquet is written shard by shard (one row group each), so its rows
    need not fit in memory at once; a .npz is assembled in memory."""
    cols = column_names(out_shapes)
    meta = dict(meta, skipped=[{"id": i, "reason": r} for i, r in skipped],
                columns={cols[o]: o for o in out_shapes},
                output_shapes={o: list(shape) for o, shape in out_shapes.items()})
    if classifier is not None:
        meta["top1_of"] = classifier
    if output.lower().endswith(".npz"):
        ids, parts = [], {o: [] for o in out_shapes}
        for k in range(n_shards):
            s_ids, s_outs, _ = read(k)
            ids += s_ids
            for o in parts:
                parts[o].append(s_outs[o])
        outs = {o: np.concatenate(v) if v else np.zeros((0, *out_shapes[o]), np.float32) for o, v in parts.items()}
        arrays = {"id": np.array(ids, dtype=str)}
        arrays.update({cols[o]: a for o, a in outs.items()})
        if classifier is not None:
            arrays["top1"], arrays["score"] = top1(outs[classifier], is_softmax)
        arrays["skipped_id"] = np.array([s[0] for s in skipped], dtype=str)
        arrays["skipped_reason"] = np.array([s[1] for s in skipped], dtype=str)
        arrays["metadata"] = np.array(json.dumps(meta))
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        write_atomic(output, buf.getvalue())
        return
    pa = _pyarrow()
    import pyarrow.parquet as pq
    fields = [pa.field("id", pa.string())]
    for o, shape in out_shapes.items():
        size = int(np.prod(shape)) if shape else 1
        fields.append(pa.field(cols[o], pa.float32() if size == 1 else pa.list_(pa.float32(), size)))
    if classifier is not None:
        fields += [pa.field("top1", pa.int64()), pa.field("score", pa.float32())]
    schema = pa.schema(fields, metadata={"netdsl": json.dumps(meta)})
    def write(tmp):
        with pq.ParquetWriter(tmp, schema) as w:
            for k in range(n_shards):
                s_ids, s_outs, _ = read(k)
                w.write_table(_arrow_rows(pa, schema, cols, s_ids, s_outs, classifier, is_softmax))
    replace_atomic(output, write, "check that the output's folder is writable and has space")


def _arrow_rows(pa, schema, cols, ids, outs, classifier, is_softmax):
    """One shard's rows as a pyarrow Table of `schema`."""
    data = [pa.array(ids, pa.string())]
    for o, a in outs.items():
        flat = np.ascontiguousarray(a.reshape(a.shape[0], int(np.prod(a.shape[1:]))), np.float32)
        if flat.shape[1] == 1 and not pa.types.is_fixed_size_list(schema.field(cols[o]).type):
            data.append(pa.array(flat[:, 0]))
        else:
            data.append(pa.FixedSizeListArray.from_arrays(pa.array(flat.reshape(-1)), flat.shape[1]))
    if classifier is not None:
        k, p = top1(outs[classifier], is_softmax)
        data += [pa.array(k), pa.array(p)]
    return pa.Table.from_arrays(data, schema=schema)


def read_output(path: str) -> dict:
    """A written predictions file back as {"id": [...], column: array [N, *shape], "top1",
    "score", "skipped": [(id, reason)], "metadata": dict} (tests, and users who want numpy)."""
    if path.lower().endswith(".npz"):
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["metadata"]))
            out = {"id": z["id"].tolist(), "metadata": meta,
                   "skipped": list(zip(z["skipped_id"].tolist(), z["skipped_reason"].tolist()))}
            for c in list(meta["columns"]) + (["top1", "score"] if "top1" in z.files else []):
                out[c] = z[c]
            return out
    pa = _pyarrow()
    import pyarrow.parquet as pq
    t = pq.read_table(path)
    meta = json.loads(t.schema.metadata[b"netdsl"])
    out = {"id": t.column("id").to_pylist(), "metadata": meta,
           "skipped": [(s["id"], s["reason"]) for s in meta["skipped"]]}
    for c, o in meta["columns"].items():
        col = t.column(c).combine_chunks()
        shape = meta["output_shapes"][o]
        if isinstance(col.type, pa.FixedSizeListType):
            vals = col.flatten().to_numpy(zero_copy_only=False)
        else:
            vals = col.to_numpy(zero_copy_only=False)
        out[c] = np.asarray(vals, np.float32).reshape(len(col), *shape)
    for c in ("top1", "score"):
        if c in t.column_names:
            out[c] = t.column(c).to_numpy()
    return out


def manifest(source, model_sha: str, model_name: str, batch: int, shard_size: int, outputs: dict) -> dict:
    return {"format": PARTS_FORMAT, "version": PARTS_VERSION, "netdsl_version": __version__,
            "input": source.spec, "n_inputs": len(source), "input_sha256": source.fingerprint(),
            "model": model_name, "model_sha256": model_sha, "batch": batch, "shard_size": shard_size,
            "n_shards": shard_count(len(source), shard_size),
            "outputs": {k: list(v) for k, v in outputs.items()}}
