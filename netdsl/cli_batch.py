"""`netdsl batch`: a model over a folder (or list, or array) of inputs, into one predictions file.

    netdsl batch resnet18 --weights r18.safetensors --input photos/ --output preds.parquet
    netdsl batch lenet5.netc --input digits.npz --output preds.npz --batch 64 --actors 2 --threads 1
    netdsl batch resnet18 --input /shared/photos --output preds.parquet --engine ray --address auto

netdsl/batch/ does the work; this module only reads the arguments and prints the summary.
"""
from __future__ import annotations

import sys

from .errors import NetDSLError


def add_parser(sub):
    from .batch import DEFAULT_BATCH, DEFAULT_SHARD
    s = sub.add_parser("batch", help="run a model over many inputs (a folder, a list, a .npz) into .parquet/.npz "
                       "predictions: batched, resumable, locally or on a Ray cluster")
    s.add_argument("model", help="a .net file, a zoo name or a compiled .netc bundle")
    s.add_argument("--input", "-i", required=True,
                   help="a folder of images (searched recursively), a text file with one image path per line, "
                        "or a .npz/.npy array [N, *input shape]")
    s.add_argument("--output", "-o", required=True, help="preds.parquet (needs pyarrow) or preds.npz")
    s.add_argument("--weights", help=".npz, .safetensors or .pth weights (default: the model's own)")
    s.add_argument("--batch", type=int, default=DEFAULT_BATCH, help=f"inputs per model call (default {DEFAULT_BATCH})")
    s.add_argument("--shard-size", type=int, default=DEFAULT_SHARD,
                   help=f"inputs per unit of work, saved as it finishes (default {DEFAULT_SHARD})")
    s.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="local: this machine (default); ray: a Ray cluster through Ray Data")
    s.add_argument("--address", default=None,
                   help="with --engine ray: auto (the cluster this machine is in), ray://HOST:PORT or HOST:PORT; "
                        "default: a Ray instance started for the job")
    s.add_argument("--actors", type=int, default=None,
                   help="local: worker processes (default 1: this process); ray: actors (default CPUs / threads)")
    s.add_argument("--threads", type=int, default=None,
                   help="OpenMP threads per worker/actor (default: local all cores / actors, ray 1)")
    s.add_argument("--decoders", type=int, default=None,
                   help="local engine, one process: image-decoding threads (default 4 for inputs of 64x64 "
                        "or more, else 0 = inline)")
    s.add_argument("--restart", action="store_true", help="discard the shards of an unfinished earlier run")
    s.add_argument("--keep-parts", action="store_true", help="keep the work folder (OUTPUT.parts) after success")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    s.set_defaults(fn=cmd_batch)
    return s


def cmd_batch(args):
    from .batch import predict, skipped_text
    p = predict(args.model, args.input, args.output, weights=args.weights, batch=args.batch,
                shard_size=args.shard_size, engine=args.engine, address=args.address, actors=args.actors,
                threads=args.threads, decoders=args.decoders, restart=args.restart, keep_parts=args.keep_parts,
                progress=not args.no_progress, collect=False)
    if not p.stats.get("weights_loaded", True):
        print(f"note: {p.stats['model']} ran with its deterministic initial weights (seed 0), not trained ones: "
              "these outputs are not predictions\nhint: load real weights with --weights W (.npz, .safetensors "
              "or .pth; see docs/RUNTIME.md)", file=sys.stderr)
    if p.skipped:
        print(skipped_text(p.skipped), file=sys.stderr)
    reused = f", {p.reused} from an earlier run" if p.reused else ""
    rate = f", {p.images_per_s:,.1f} inputs/s" if p.ran else ""
    n = p.n
    print(f"wrote {args.output}: {n:,} prediction{'s' if n != 1 else ''}"
          + (f" ({len(p.skipped)} skipped)" if p.skipped else "")
          + f", {p.shards} shard{'s' if p.shards != 1 else ''}{reused}{rate}")
    if not n:
        hint = "see the reasons above"
        if args.engine == "ray" and p.skipped and all(why == "no such file" for _, why in p.skipped):
            hint = ("the Ray actors found none of the files: on a cluster the inputs must be on a filesystem "
                    "every node sees, under the same path (docs/SCALE.md)")
        raise NetDSLError(f"no input in {args.input} could be read", hint=hint)
    return 0
