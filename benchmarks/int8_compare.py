"""int8 side by side: netdsl int8 vs netdsl float32 vs ONNX Runtime float32 vs ONNX Runtime int8.

    python benchmarks/int8_compare.py [--models resnet18 resnet50 mobilenet_v2] [--batch 1 8]
                                      [--threads 1 2] [--budget S] [--method minmax]
                                      [--accuracy] [--busy] [--json FILE]

Same weights (compare.py's test_weights: netdsl's deterministic init with non-trivial
BatchNorm statistics and biases), same calibration data (16 standard-normal inputs, for
both quantizers), same thread count. netdsl int8 is netdsl.quant.quantize (per-channel int8
weights, uint8 activations, the float32 graph's -O3 plan with its Convs / FCs on
csrc/kernels/qconv.c). ONNX Runtime int8 is onnxruntime.quantization.quantize_static on the
ONNX file netdsl exports (the one ORT float32 runs): QDQ format, per channel, uint8
activations / int8 weights, MinMax calibration on the same 16 inputs; ORT fuses the QDQ
pairs into its QLinearConv / MLAS int8 GEMM kernels at load (ORT_ENABLE_ALL).

Timing: compare.py's interleaved rounds (every engine in turn, rotating; medians; the quiet
rounds only when there are enough; the table says how many). Ratios: fp32/int8 is netdsl's
own int8 speed-up; ORT-int8/nd-int8 above 1 means netdsl int8 is faster. The agreement
columns are the top-1 agreement of each int8 engine with netdsl float32 on the 8 timed inputs
per configuration plus the output's relative error — with synthetic weights these say the
engines compute the same function, not that a trained model keeps its accuracy: --accuracy
measures that on trained networks (LeNet-5 and a ResNet-18 at 32x32, trained here on the
built-in digits for a few epochs; weights cached under ~/.cache/netdsl/int8_bench).
--busy keeps one core busy with a spinning child process for the whole run (compare.py's).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import compare  # noqa: E402  (sets the thread env vars before numpy loads: keep first)
import numpy as np  # noqa: E402

import netdsl  # noqa: E402
from netdsl.quant import quantize  # noqa: E402

CAL_N = 16


def ort_session(path_or_bytes, threads):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(path_or_bytes, so, providers=["CPUExecutionProvider"])


def ort_int8(proto, xcal, tmp, method="minmax"):
    """quantize_static of the float32 proto on xcal: the path of the int8 .onnx."""
    import onnx
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process
    src = os.path.join(tmp, "fp32.onnx")
    pre = os.path.join(tmp, "fp32.pre.onnx")
    dst = os.path.join(tmp, "int8.onnx")
    onnx.save(proto, src)
    try:
        quant_pre_process(src, pre, skip_symbolic_shape=True)
    except Exception:  # noqa: BLE001 — the pre-processing is an optimization only
        pre = src
    name = proto.graph.input[0].name

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{name: xcal[i:i + 1]} for i in range(len(xcal))])

        def get_next(self):
            return next(self.it, None)

    cm = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
          "entropy": CalibrationMethod.Entropy}[method]
    quantize_static(pre, dst, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, calibrate_method=cm)
    return dst


def agreement(ref, y):
    return float((ref.argmax(1) == y.argmax(1)).mean()) if ref.ndim == 2 else float("nan")


def rel(ref, y):
    return float(np.linalg.norm(y - ref) / max(np.linalg.norm(ref), 1e-30))


def bench_model(name, batches, threads_list, budget, method, rows):
    m = netdsl.load(name)
    sd = compare.test_weights(m)
    shape = m.graph[m.graph.inputs[0]].shape
    xcal = np.random.default_rng(123).standard_normal((CAL_N, *shape), dtype=np.float32)
    t0 = time.perf_counter()
    qm = quantize(m, xcal, method=method)
    tq = time.perf_counter() - t0
    from torch_port import to_onnx
    proto = to_onnx(m.graph, sd)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        q8 = ort_int8(proto, xcal, tmp, method)
        to = time.perf_counter() - t0
        q8_bytes = open(q8, "rb").read()
    print(f"{name}: {len(qm.qlayers)} int8 layers, {len(qm.skipped)} float32 "
          f"({', '.join(sorted(set(qm.skipped.values())))}); netdsl calibration {tq:.1f} s, ORT {to:.1f} s",
          flush=True)
    for t in threads_list:
        m.threads = qm.threads = t
        s32 = ort_session(proto.SerializeToString(), t)
        s8 = ort_session(q8_bytes, t)
        iname = s32.get_inputs()[0].name
        fns = {"nd_fp32": lambda x: m(x), "nd_int8": lambda x: qm(x),
               "ort_fp32": lambda x, s=s32: s.run(None, {iname: x})[0],
               "ort_int8": lambda x, s=s8: s.run(None, {iname: x})[0]}
        for n in batches:
            x = np.random.default_rng(7).standard_normal((n, *shape), dtype=np.float32)
            xa = np.random.default_rng(8).standard_normal((8, *shape), dtype=np.float32)
            ref = m(xa)
            acc = {k: (agreement(ref, fns[k](xa)), rel(ref, fns[k](xa))) for k in ("nd_int8", "ort_int8")}
            compare.wait_quiet(5)
            med, used, quiet = compare.interleaved_medians(fns, x, 0, budget)
            row = {"model": name, "batch": n, "threads": t, **{k: v * 1e3 for k, v in med.items()},
                   "speedup": med["nd_fp32"] / med["nd_int8"], "vs_ort_int8": med["ort_int8"] / med["nd_int8"],
                   "vs_ort_fp32": med["ort_fp32"] / med["nd_int8"], "quiet": quiet,
                   "agree_nd": acc["nd_int8"][0], "rel_nd": acc["nd_int8"][1],
                   "agree_ort": acc["ort_int8"][0], "rel_ort": acc["ort_int8"][1]}
            rows.append(row)
            print_row(row)


HEAD = (f"{'model':<13} {'N':>2} {'T':>2} {'nd fp32':>9} {'nd int8':>9} {'ort fp32':>9} {'ort int8':>9} "
        f"{'fp32/int8':>9} {'ort8/nd8':>8} {'agree nd':>8} {'agree ort':>9} {'rel nd':>7} {'rel ort':>7} quiet")


def print_row(r):
    print(f"{r['model']:<13} {r['batch']:>2} {r['threads']:>2} {r['nd_fp32']:>8.2f}m {r['nd_int8']:>8.2f}m "
          f"{r['ort_fp32']:>8.2f}m {r['ort_int8']:>8.2f}m {r['speedup']:>8.2f}x {r['vs_ort_int8']:>7.2f}x "
          f"{r['agree_nd']:>8.0%} {r['agree_ort']:>9.0%} {r['rel_nd']:>7.2%} {r['rel_ort']:>7.2%} {r['quiet']}",
          flush=True)




def trained(name, epochs, n_train):
    """A model trained on digits (cached): a zoo model, or examples/NAME.net."""
    from netdsl.train.data import digits
    example = os.path.join(os.path.dirname(HERE), "examples", f"{name}.net")
    m = netdsl.load(example if os.path.exists(example) else name)
    cache = os.path.join(os.path.expanduser("~"), ".cache", "netdsl", "int8_bench")
    os.makedirs(cache, exist_ok=True)
    path = os.path.join(cache, f"{name}-e{epochs}-n{n_train}.npz")
    if os.path.exists(path):
        m.load_weights(path)
    else:
        t0 = time.perf_counter()
        m.fit(digits("train", n=n_train), epochs=epochs, batch=64, lr=0.05, optimizer="sgd", progress=False, seed=0)
        print(f"  trained {name} in {time.perf_counter() - t0:.0f} s", flush=True)
        m.save_weights(path)
    return m


def accuracy(method, threads):
    """Top-1 agreement with float32 and accuracy on 1000 held-out digits, trained networks."""
    from netdsl.train.data import digits
    from torch_port import to_onnx
    out = []
    for name, ep, n in (("lenet5", 4, 4000), ("resnet18_32", 2, 4000)):
        m = trained(name, ep, n)
        m.threads = threads
        node = m.graph[m.graph.inputs[0]]
        cal = digits("train", n=256).to_input(node)
        xcal = cal.normalize(cal.x)
        held = digits("test", n=1000).to_input(node)
        x, y = held.normalize(held.x), held.y
        qm = quantize(m, xcal, method=method)
        f = np.concatenate([m(x[i:i + 100]) for i in range(0, len(x), 100)])
        q = np.concatenate([qm(x[i:i + 100]) for i in range(0, len(x), 100)])
        proto = to_onnx(m.graph, m.state_dict())
        with tempfile.TemporaryDirectory() as tmp:
            s8 = ort_session(open(ort_int8(proto, xcal[:64], tmp, method), "rb").read(), threads)
        iname = s8.get_inputs()[0].name
        o = np.concatenate([s8.run(None, {iname: x[i:i + 1]})[0] for i in range(len(x))])
        r = {"model": name, "acc_fp32": float((f.argmax(1) == y).mean()), "acc_nd8": float((q.argmax(1) == y).mean()),
             "acc_ort8": float((o.argmax(1) == y).mean()), "agree_nd8": agreement(f, q), "agree_ort8": agreement(f, o)}
        print(f"  {name:<12} fp32 acc {r['acc_fp32']:.1%}  netdsl int8 acc {r['acc_nd8']:.1%} "
              f"(agreement {r['agree_nd8']:.1%})  ORT int8 acc {r['acc_ort8']:.1%} (agreement {r['agree_ort8']:.1%})",
              flush=True)
        out.append(r)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="+", default=["resnet18", "resnet50", "mobilenet_v2"])
    ap.add_argument("--batch", nargs="+", type=int, default=[1, 8])
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--budget", type=float, default=6.0, help="timed seconds per configuration (all engines)")
    ap.add_argument("--method", default="minmax", choices=["minmax", "percentile", "entropy"])
    ap.add_argument("--accuracy", action="store_true", help="also the trained-network agreement (trains once)")
    ap.add_argument("--no-speed", action="store_true", help="only --accuracy")
    ap.add_argument("--busy", action="store_true", help="keep one core busy with a spinning process for the run")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    if args.busy:
        compare.EXPECTED_LOAD = 1.0          # the spinner is not foreign load
        with compare.Busy() as b:
            print(f"# one core kept busy by a spinning process (pid {b.proc.pid})", flush=True)
            return run(args)
    return run(args)


def run(args):
    info = compare.machine_info(max(args.threads))
    print(f"# {info.get('cpu')} ({info.get('cpus')} CPUs), netdsl ISA {info.get('netdsl_isa')}, "
          f"{info.get('date')}", flush=True)
    rows, acc = [], []
    if not args.no_speed:
        print(HEAD)
        for name in args.models:
            bench_model(name, args.batch, args.threads, args.budget, args.method, rows)
    if args.accuracy or args.no_speed:
        print("# accuracy on trained networks (digits, 1000 held-out images)")
        acc = accuracy(args.method, max(args.threads))
    if args.json:
        import json
        with open(args.json, "w") as f:
            json.dump({"machine": info, "busy": args.busy, "rows": rows, "accuracy": acc}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
