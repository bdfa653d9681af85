"""netdsl's Conv/FC backward kernels next to PyTorch's at ResNet-18 shapes, same thread count.

    python benchmarks/train_conv_bwd.py [--batch 8] [--threads 2] [--repeat 7] [--res 224]
                                        [--layers NAME ...] [--algo 0|1|2] [--clock wall|cpu]

For every distinct conv of ResNet-18 (and its FC) it times, as medians over --repeat
interleaved rounds: netdsl's dx kernel and its dparams kernel (dW then db), each one
Program step in an arena as a training plan runs it, and PyTorch's
aten.convolution_backward asked for the same gradients (torch.nn.functional.linear's
autograd for FC), after one untimed warm-up call each. The first conv only needs dparams
(its input is the image). It prints per layer ms for both and the ratio netdsl/torch
(below 1: netdsl faster), then the total over the network, each conv counted as often as
ResNet-18 has it. Rounds are interleaved (a slow spell hits both engines alike); before
each timed call the script idles --gap seconds and makes one untimed call, since torch's
and netdsl's OpenMP runtimes are separate and one's spinning workers slow the other
(measured on 2 cores: dW 5-8x slower without the gap). --algo forces the dx algorithm (nd_conv_bwd_params.algo: 1 conv of dy,
2 GEMM + col2im) to compare paths. --clock cpu times with the process's CPU time instead
of the wall clock: steadier on a shared machine, but only meaningful with --threads 1.

Not a test: numbers vary with the machine and its load; quote medians and ratios.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from netdsl import ops                                      # noqa: E402
from netdsl.runtime import lib as L                         # noqa: E402
from netdsl.runtime.executor import Program, Step           # noqa: E402
from netdsl.train.registry import backward_rule             # noqa: E402

# name, count in ResNet-18, (c, h, w), out_channels, kernel, stride, pad, needs dx
LAYERS = [
    ("conv1", 1, (3, 224, 224), 64, 7, 2, 3, False),
    ("l1.conv", 4, (64, 56, 56), 64, 3, 1, 1, True),
    ("l2.0.conv1", 1, (64, 56, 56), 128, 3, 2, 1, True),
    ("l2.ds", 1, (64, 56, 56), 128, 1, 2, 0, True),
    ("l2.conv", 3, (128, 28, 28), 128, 3, 1, 1, True),
    ("l3.0.conv1", 1, (128, 28, 28), 256, 3, 2, 1, True),
    ("l3.ds", 1, (128, 28, 28), 256, 1, 2, 0, True),
    ("l3.conv", 3, (256, 14, 14), 256, 3, 1, 1, True),
    ("l4.0.conv1", 1, (256, 14, 14), 512, 3, 2, 1, True),
    ("l4.ds", 1, (256, 14, 14), 512, 1, 2, 0, True),
    ("l4.conv", 3, (512, 7, 7), 512, 3, 1, 1, True),
]


def scaled(layers, res):
    """The layer list for a res x res input (224: the real network)."""
    out = []
    for name, k, (c, h, w), oc, ks, s, p, dx in layers:
        f = res / 224
        out.append((name, k, (c, max(1, round(h * f)), max(1, round(w * f))), oc, ks, s, p, dx))
    return out


class KernelRun:
    """One Bwd as a one-step Program on its own arena: run() is one C call."""

    def __init__(self, bwd, env, out_floats, threads):
        tokens = list(bwd.ins) + ([bwd.w] if bwd.w else [])
        offs, off = {}, -(-(out_floats + 16) // 16) * 16
        for t in tokens:
            if t not in offs:
                offs[t] = off
                off += -(-(env[t].size + 16) // 16) * 16
        step = Step(bwd.call, 0, [offs[t] for t in bwd.ins], None, None, out_floats=out_floats,
                    in_floats=[env[t].size for t in bwd.ins])
        self.prog = Program([step], off, prepack=False)
        self.arena = self.prog.new_arena()
        for t, o in offs.items():
            self.arena[o:o + env[t].size] = env[t].ravel()
        if bwd.w:
            step.w = self.arena[offs[bwd.w]:offs[bwd.w] + env[bwd.w].size]
            self.prog = Program([step], off, prepack=False)
        self.bound = self.prog.bind(self.arena, self.prog.new_ws())
        self.threads = threads
        self.out = self.arena[:out_floats]

    def run(self):
        self.bound.run(self.threads)


CLOCK = time.perf_counter


def median_ms(fn, repeat):
    fn()
    ts = []
    for _ in range(repeat):
        t0 = CLOCK()
        fn()
        ts.append(CLOCK() - t0)
    return 1e3 * float(np.median(ts))


def conv_case(torch, layer, n, threads, algo, rng):
    name, count, shape, oc, k, s, p, need_dx = layer
    spec = ops.get("Conv")
    a = spec.resolve(spec.bind((), dict(out_channels=oc, kernel=k, stride=s, pad=p)), [shape])
    out = tuple(spec.infer(a, [shape]))
    need = {"dx0", "dparams"} if need_dx else {"dparams"}
    bwds = {b.out: b for b in backward_rule("Conv")(a, [shape], out, n, need)}
    if algo and "dx0" in bwds:
        call = bwds["dx0"].call
        call.fields["algo"] = algo
        call.ws_floats = int(L.lib.nd_conv_bwd_data_ws_floats(L.ffi.new("nd_conv_bwd_params *", call.fields)))
    x = rng.standard_normal((n, *shape)).astype(np.float32)
    w = (rng.standard_normal((oc, shape[0], k, k)) * math.sqrt(2 / (shape[0] * k * k))).astype(np.float32)
    b = np.zeros(oc, np.float32)
    dy = rng.standard_normal((n, *out)).astype(np.float32)
    env = {"x0": x, "dy": dy, "params": np.concatenate([w.ravel(), b])}
    runs = {g: KernelRun(bw, env, x.size if g == "dx0" else w.size + oc, threads) for g, bw in bwds.items()}
    tx, tw, tdy = torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(dy)

    def torch_bwd(mask):
        return torch.ops.aten.convolution_backward(tdy, tx, tw, [oc], [s, s], [p, p], [1, 1], False, [0, 0], 1, mask)

    # agreement: a wrong kernel must not be timed as fast
    runs["dparams"].run()
    ref = torch_bwd([False, True, True])
    err = np.abs(runs["dparams"].out[:w.size] - ref[1].numpy().ravel()).max() / max(1e-30, np.abs(ref[1].numpy()).max())
    if "dx0" in runs:
        runs["dx0"].run()
        rx = torch_bwd([True, False, False])[0].numpy().ravel()
        err = max(err, np.abs(runs["dx0"].out - rx).max() / max(1e-30, np.abs(rx).max()))
    return runs, torch_bwd, err


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--res", type=int, default=224)
    ap.add_argument("--layers", nargs="*")
    ap.add_argument("--algo", type=int, default=0)
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall")
    ap.add_argument("--gap", type=float, default=0.05, help="seconds idle before each timed call")
    args = ap.parse_args(argv)
    global CLOCK
    CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter
    import torch
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    layers = [l for l in scaled(LAYERS, args.res) if not args.layers or l[0] in args.layers]
    print(f"netdsl {L.isa()} vs torch {torch.__version__}, batch {args.batch}, {args.threads} threads, "
          f"{args.res}x{args.res}, median of {args.repeat}, {args.clock} clock")
    print(f"{'layer':<12} {'x':>2} {'shape':>16}  {'dx nd':>8} {'dx torch':>8} {'ratio':>6}  "
          f"{'dW nd':>8} {'dW torch':>8} {'ratio':>6}  {'rel err':>8}")
    tot = {"nd": 0.0, "t": 0.0}
    for layer in layers:
        name, count, shape, oc, k, s, p, need_dx = layer
        runs, torch_bwd, err = conv_case(torch, layer, args.batch, args.threads, args.algo, rng)
        times = {key: [] for key in ("nd_dx", "t_dx", "nd_dw", "t_dw")}
        for r in range(args.repeat):        # interleaved: a slow spell hits both alike
            for key, fn in (("nd_dw", runs["dparams"].run), ("t_dw", lambda: torch_bwd([False, True, True])),
                            ("nd_dx", runs["dx0"].run if need_dx else None),
                            ("t_dx", (lambda: torch_bwd([True, False, False])) if need_dx else None)):
                if fn is None:
                    continue
                time.sleep(args.gap)     # let the other engine's OpenMP workers stop spinning
                fn()                     # untimed: wakes this engine's threads
                t0 = CLOCK()
                fn()
                times[key].append(1e3 * (CLOCK() - t0))
        med = {k2: float(np.median(v)) if v else 0.0 for k2, v in times.items()}
        dx = (f"{med['nd_dx']:8.2f} {med['t_dx']:8.2f} {med['nd_dx'] / med['t_dx']:6.2f}" if need_dx
              else f"{'-':>8} {'-':>8} {'-':>6}")
        print(f"{name:<12} {count:>2} {'x'.join(map(str, shape)) + '>' + str(oc):>16}  {dx}  "
              f"{med['nd_dw']:8.2f} {med['t_dw']:8.2f} {med['nd_dw'] / med['t_dw']:6.2f}  {err:8.1e}")
        tot["nd"] += count * (med["nd_dx"] + med["nd_dw"])
        tot["t"] += count * (med["t_dx"] + med["t_dw"])
    # FC 512 -> 1000
    spec = ops.get("FC")
    a = spec.resolve(spec.bind((), dict(out_features=1000)), [(512,)])
    n = args.batch
    bw = {b.out: b for b in backward_rule("FC")(a, [(512,)], (1000,), n, {"dx0", "dparams"})}
    x = rng.standard_normal((n, 512)).astype(np.float32)
    w = rng.standard_normal((1000, 512)).astype(np.float32) * 0.05
    dy = rng.standard_normal((n, 1000)).astype(np.float32)
    env = {"x0": x, "dy": dy, "params": np.concatenate([w.ravel(), np.zeros(1000, np.float32)])}
    rx, rw = KernelRun(bw["dx0"], env, x.size, args.threads), KernelRun(bw["dparams"], env, w.size + 1000, args.threads)
    tx = torch.from_numpy(x).requires_grad_()
    tw = torch.from_numpy(w).requires_grad_()
    tb = torch.zeros(1000, requires_grad=True)
    tdy = torch.from_numpy(dy)

    def fc_torch():
        y = torch.nn.functional.linear(tx, tw, tb)
        torch.autograd.grad(y, (tx, tw, tb), tdy)

    nd = median_ms(lambda: (rx.run(), rw.run()), args.repeat)
    tt = median_ms(fc_torch, args.repeat)   # includes torch's forward: an upper bound for torch
    print(f"{'fc':<12} {1:>2} {'512>1000':>16}  dx+dW nd {nd:.3f} ms, torch fwd+bwd {tt:.3f} ms")
    tot["nd"] += nd
    tot["t"] += tt
    print(f"total (each conv x its count in ResNet-18): netdsl {tot['nd']:.1f} ms, torch {tot['t']:.1f} ms, "
          f"ratio {tot['nd'] / tot['t']:.2f}")


if __name__ == "__main__":
    main()
