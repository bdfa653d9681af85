"""`netdsl train`: train a network on a dataset (netdsl/train/fit.py does the work).

    netdsl train lenet5 --data digits --epochs 10 --batch 64 --optimizer sgd --lr 0.05 \\
                 --momentum 0.9 --augment crop,flip -o lenet5.safetensors

Prints what will be trained and the training arena next to the inference one, a progress
bar per epoch, then the test set's loss and accuracy; writes the weights (-o), the
checkpoint next to them (<out>.ckpt.safetensors, for --resume) and the learning curves
(<out>.curves.csv / .png, or --curves PREFIX).
"""
from __future__ import annotations

import os
import sys

from .errors import NetDSLError

MIB = 2 ** 20


def add_parser(sub):
    s = sub.add_parser("train", help="train a network: compiled forward + backward + optimizer, "
                       "datasets, augmentation, checkpoints and learning curves")
    s.add_argument("model", help="a .net file or a zoo name")
    s.add_argument("--data", required=True,
                   help="digits (built in, no download), sklearn-digits, a .npz with x/y (and x_test/y_test), "
                        "or a folder with one subfolder of images per class")
    s.add_argument("--val", default=None,
                   help="validation: a fraction of the training data (0.1) or a dataset like --data; "
                        "default: the dataset's test split when it has one")
    s.add_argument("--epochs", type=int, default=10)
    s.add_argument("--batch", type=int, default=64)
    s.add_argument("--optimizer", default="sgd", choices=["sgd", "adam", "adamw"])
    s.add_argument("--lr", type=float, default=None, help="learning rate (sgd 0.01, adam/adamw 0.001)")
    s.add_argument("--momentum", type=float, default=None, help="SGD momentum (default 0.9)")
    s.add_argument("--nesterov", action="store_true", help="Nesterov momentum (SGD)")
    s.add_argument("--weight-decay", type=float, default=None)
    s.add_argument("--schedule", default="constant",
                   help="learning-rate schedule: constant, step (x0.1 at 1/2 and 3/4 of training), cosine")
    s.add_argument("--warmup", type=int, default=0, help="linear warm-up steps")
    s.add_argument("--loss", default="cross_entropy", help="cross_entropy, mse or bce_with_logits")
    s.add_argument("--label-smoothing", type=float, default=0.0)
    s.add_argument("--clip", type=float, default=None, help="clip the gradient norm to this value")
    s.add_argument("--augment", default=None,
                   help="comma-separated: crop[=PAD], flip, jitter, lighting (AlexNet's PCA noise)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--threads", type=int, default=None)
    s.add_argument("--weights", default=None, help="start from these weights instead of the initialization")
    s.add_argument("-o", "--out", default=None, help="write the trained weights here (.safetensors or .npz)")
    s.add_argument("--resume", default=None, help="continue from a checkpoint (<out>.ckpt.safetensors)")
    s.add_argument("--curves", default=None, help="write PREFIX.csv and PREFIX.png (default: <out>.curves)")
    s.add_argument("--output", default=None, help="the network output to train (when it has several)")
    s.add_argument("--no-progress", action="store_true", help="no progress bar: one line per epoch")
    s.set_defaults(fn=cmd_train)
    return s


def _optimizer(args, total_steps):
    from .train import optim
    kw = {}
    if args.lr is not None:
        kw["lr"] = args.lr
    if args.weight_decay is not None:
        kw["weight_decay"] = args.weight_decay
    if args.optimizer == "sgd":
        kw.setdefault("lr", 0.01)
        kw["momentum"] = 0.9 if args.momentum is None else args.momentum
        kw["nesterov"] = args.nesterov
    elif args.momentum is not None or args.nesterov:
        raise NetDSLError(f"--momentum/--nesterov are SGD settings; {args.optimizer} has betas instead")
    kw_sched = {}
    if args.schedule.strip().lower() == "step":       # x0.1 at half and three quarters of the run
        args.schedule = "multistep"
        kw_sched = {"milestones": [total_steps // 2, (3 * total_steps) // 4], "gamma": 0.1}
    sched = optim.schedule_from_name(args.schedule, total_steps=total_steps, warmup=args.warmup, **kw_sched)
    return optim.from_name(args.optimizer, schedule=sched, **kw)


def cmd_train(args):
    from . import load
    from .train import data as tdata
    from .train.fit import checkpoint_path, evaluate, fit
    from .train.losses import get_loss
    for flag, v in (("--epochs", args.epochs), ("--batch", args.batch)):
        if v < 1:
            raise NetDSLError(f"{flag} must be at least 1, got {v}")
    if args.threads is not None and args.threads < 1:
        raise NetDSLError(f"--threads must be at least 1, got {args.threads}")
    if args.out:
        ext = os.path.splitext(args.out)[1].lower()
        if ext not in (".safetensors", ".npz"):
            raise NetDSLError(f"-o {args.out}: weights are written as .safetensors or .npz",
                              hint=f"e.g. -o {os.path.splitext(args.out)[0]}.safetensors")
        folder = os.path.dirname(os.path.abspath(args.out))
        if not os.path.isdir(folder):
            raise NetDSLError(f"-o {args.out}: the folder {folder} does not exist")
    m = load(args.model, weights=args.weights, threads=args.threads)
    shape = m.graph[m.graph.inputs[0]].shape
    size = tuple(shape[1:]) if len(shape) == 3 else None
    train, test = tdata.get_dataset(args.data, size=size)
    val = test
    if args.val is not None:
        try:
            frac = float(args.val)
        except ValueError:
            frac = None
        if frac is not None:
            if not 0 < frac < 1:
                raise NetDSLError(f"--val {args.val}: a fraction must be between 0 and 1")
            val = frac
        else:
            val = tdata.get_dataset(args.val, size=size)[0]
    loss = get_loss(args.loss, **({"label_smoothing": args.label_smoothing} if args.label_smoothing else {}))
    n_train = len(train) if not isinstance(val, float) else len(train) - int(round(len(train) * val))
    steps = args.epochs * -(-n_train // args.batch)
    opt = _optimizer(args, steps)
    curves = args.curves or (os.path.splitext(args.out)[0] + ".curves" if args.out else None)
    inf_mib = m.memory(args.batch)["arena_bytes"] / MIB
    print(f"training {m.name}: {m.total_params:,} params on {train.name or args.data} "
          f"({len(train):,} images, {len(train.classes or []) or '?'} classes), batch {args.batch}, "
          f"{args.epochs} epochs, {opt.describe()}, loss {loss.name}")
    hist = fit(m, train, epochs=args.epochs, batch=args.batch, optimizer=opt, loss=loss, augment=args.augment,
               validation=val, seed=args.seed, clip=args.clip, threads=args.threads,
               progress="lines" if args.no_progress else True, out=args.out, resume=args.resume, output=args.output,
               curves=curves, on_start=lambda s: _print_memory(s, args.batch, inf_mib))
    if hist.stopped == "interrupted":
        print("interrupted: stopped after the current step", file=sys.stderr)
    if test is not None:
        ev = evaluate(m, test, loss=loss, output=args.output)
        print(f"test: loss {ev['loss']:.4f}, accuracy {100 * ev['accuracy']:.2f}% ({ev['n']:,} images)")
    wrote = [p for p in (args.out, checkpoint_path(args.out) if args.out else None,
                         curves + ".csv" if curves else None, curves + ".png" if curves else None) if p]
    if wrote:
        print("wrote " + ", ".join(wrote))
    return 130 if hist.stopped == "interrupted" else 0


def _print_memory(session, batch, inf_mib):
    mem = session.memory(batch)
    print(f"training arena {mem['arena_bytes'] / MIB:.2f} MiB at batch {batch} (parameters, gradients and "
          f"optimizer state {(mem['params_bytes'] + mem['grads_bytes'] + mem['optimizer_state_bytes']) / MIB:.2f} "
          f"MiB, activations {mem['activations_bytes'] / MIB:.2f} MiB, lower bound "
          f"{mem['activations_lower_bound_bytes'] / MIB:.2f}); inference arena {inf_mib:.2f} MiB")


__all__ = ["add_parser", "cmd_train"]
