"""netdsl next to PyTorch and ONNX Runtime: same network, same weights, same thread count.

    python benchmarks/compare.py [--models lenet5 vgg16 ...|all] [--batch 1 8] [--threads 2]
                                 [--repeat N] [--budget S] [--engines netdsl torch ort]
                                 [--peak GFLOPS | --no-peak] [--profile] [--check-only]

For every model and batch size it prints the median latency of each engine,
the ratio netdsl/peer (below 1: netdsl is faster), netdsl's achieved GFLOP/s
(2·MACs·N / median) and that as a share of the machine's measured SGEMM peak
(benchmarks/gemm_peak.py at the same thread count, the best of netdsl's
prepacked GEMM and numpy's BLAS), and the largest difference between each
peer's output and netdsl's (relative to the largest |output|: a mismatch is a
bug, not noise).

The peers are built from netdsl's own graph (benchmarks/torch_port.py), so
every zoo model works: PyTorch runs the ported module in eval mode under
torch.inference_mode(); ONNX Runtime runs an ONNX graph written directly
with onnx.helper (intra-op threads = --threads, inter-op 1, sequential,
all graph optimizations on). Engines that are not installed are skipped;
netdsl alone still runs.

Noise: machines are shared. The engines are interleaved — each round runs
every engine in turn (rotating the order) — and the median is taken over all
rounds, so a slow spell hits all engines alike. Between engine blocks the
script idles --gap seconds (0.1) and gives a fast engine one untimed call:
ONNX Runtime's worker thread keeps spinning for some 20-100 ms after a run,
and netdsl timed in that window on 2 cores measured ~2x slower. Each round
also records how many CPUs *other* processes used (/proc/stat minus this
process); when enough rounds were quiet (< 0.25 CPU), only those are used,
and the table says how many ("runs (quiet rounds)"). Before each
configuration the script waits up to --quiet-wait seconds for a quiet
moment. Heavy configurations (U-Net at 572x572) get fewer rounds (--budget
bounds each configuration's timed seconds, all engines together).

--profile adds, for each configuration slower than 1.5x ONNX Runtime, a
per-layer table: each netdsl kernel timed on its own (its plan step run alone
on the real activation), next to ONNX Runtime's own per-node profile mapped
back to the same layer (ORT fuses BN/ReLU into the conv; their time lands on it).

Not a test: numbers vary with the machine and its load; quote medians and ratios.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)

DEFAULT_MODELS = ["lenet5", "vgg16", "resnet18", "resnet50", "densenet121", "unet"]
TARGET = 1.5     # netdsl / ORT


def early_threads(argv):
    """Set thread env vars before numpy/torch load their runtimes."""
    t = "2"
    for i, a in enumerate(argv):
        if a == "--threads" and i + 1 < len(argv):
            t = argv[i + 1]
        elif a.startswith("--threads="):
            t = a.split("=", 1)[1]
    for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(k, t)


early_threads(sys.argv)

import numpy as np  # noqa: E402

import netdsl  # noqa: E402


# ---------------------------------------------------------------- machine facts

def machine_info(threads):
    info = {"date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"), "python": platform.python_version(),
            "numpy": np.__version__, "threads": threads}
    try:
        txt = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        facts = dict(re.findall(r"^([^:\n]+):\s*(.*)$", txt, re.M))
        info["cpu"] = facts.get("Model name", platform.processor())
        info["cpus"] = facts.get("CPU(s)", "?")
        info["cores_per_socket"] = facts.get("Core(s) per socket", "?")
        info["threads_per_core"] = facts.get("Thread(s) per core", "?")
        info["hypervisor"] = facts.get("Hypervisor vendor", "")
        info["caches"] = ", ".join(f"{k.split()[0]} {facts[k]}" for k in facts if k.endswith("cache"))
        flags = facts.get("Flags", "").split()
        info["avx512"] = " ".join(f for f in flags if f.startswith("avx512")) or "no"
        info["avx2"] = "avx2" in flags
        info["fma"] = "fma" in flags
    except (OSError, subprocess.SubprocessError):
        info["cpu"] = platform.processor() or "?"
    try:
        from netdsl.runtime import lib
        info["netdsl_isa"] = lib.isa()
    except Exception:  # noqa: BLE001
        info["netdsl_isa"] = "?"
    return info


def measure_peak(threads):
    """Best SGEMM GFLOP/s from benchmarks/gemm_peak.py (netdsl prepacked and numpy) at `threads`."""
    cmd = [sys.executable, os.path.join(HERE, "gemm_peak.py"), "--threads", str(threads),
           "--sizes", "1024", "2048", "--reps", "5", "--prepack"]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=300).stdout
    except (OSError, subprocess.SubprocessError) as e:
        print(f"(peak not measured: {e})")
        return None, ""
    vals = [float(v) for v in re.findall(r"([\d.]+) GFLOP/s", out)]
    return (max(vals) if vals else None), out.strip()


# ---------------------------------------------------------------- engines

def test_weights(m, seed=1):
    """netdsl's deterministic weights with BatchNorm statistics and biases made non-trivial,
    so that the output check exercises every term (identity BN would hide mistakes)."""
    rng = np.random.default_rng(seed)
    sd = m.state_dict()
    bn = {n.name for n in m.graph.nodes() if n.op == "BatchNorm"}
    for k, v in sd.items():
        layer, _, p = k.rpartition(".")
        if layer in bn:
            if p in ("weight", "running_var"):
                sd[k] = rng.uniform(0.5, 1.5, v.shape).astype(np.float32)
            else:
                sd[k] = (0.1 * rng.standard_normal(v.shape)).astype(np.float32)
        elif p == "bias":
            sd[k] = (0.1 * rng.standard_normal(v.shape)).astype(np.float32)
    m.load_state_dict(sd)
    return sd


def outputs_list(y):
    if isinstance(y, dict):
        return list(y.values())
    if isinstance(y, (list, tuple)):
        return list(y)
    return [y]


def build_engines(m, sd, threads, wanted):
    """name -> callable(x) returning a list of numpy outputs, plus a dict of errors."""
    fns, errors = {}, {}
    m.threads = threads

    def nd(x):
        return [np.asarray(o) for o in outputs_list(m(x))]
    fns["netdsl"] = nd
    if "torch" in wanted:
        try:
            import torch
            from torch_port import to_torch
            torch.set_num_threads(threads)
            mod = to_torch(m.graph, sd)

            def tr(x, mod=mod, torch=torch):
                with torch.inference_mode():
                    return [o.numpy() for o in outputs_list(mod(torch.from_numpy(x)))]
            fns["torch"] = tr
        except ImportError:
            errors["torch"] = "not installed"
        except Exception as e:  # noqa: BLE001 — report, keep benchmarking the rest
            errors["torch"] = f"{type(e).__name__}: {e}"
    if "ort" in wanted:
        try:
            import onnxruntime as ort
            from torch_port import to_onnx
            proto = to_onnx(m.graph, sd)
            so = ort.SessionOptions()
            so.intra_op_num_threads = threads
            so.inter_op_num_threads = 1
            so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            sess = ort.InferenceSession(proto.SerializeToString(), so, providers=["CPUExecutionProvider"])
            iname = sess.get_inputs()[0].name
            fns["ort"] = lambda x, s=sess, i=iname: s.run(None, {i: x})
            fns["ort"].proto = proto
        except ImportError:
            errors["ort"] = "not installed"
        except Exception as e:  # noqa: BLE001
            errors["ort"] = f"{type(e).__name__}: {e}"
    return fns, errors


def max_rel_diff(ref, other):
    """max |a - b| over all outputs, relative to the largest |ref|."""
    scale = max(float(np.abs(r).max()) for r in ref) or 1.0
    return max(float(np.abs(np.asarray(r) - np.asarray(o)).max()) for r, o in zip(ref, other)) / scale


def timed(fn, x):
    t = time.perf_counter()
    fn(x)
    return time.perf_counter() - t


class LoadMeter:
    """CPUs kept busy by *other* processes since the last call (from /proc; None elsewhere):
    all busy ticks on the machine minus this process's own."""

    def __init__(self):
        self.tck = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self.last = self._read()

    def _read(self):
        try:
            with open("/proc/stat") as f:
                v = [int(t) for t in f.readline().split()[1:]]
            busy = sum(v) - v[3] - (v[4] if len(v) > 4 else 0)       # minus idle and iowait
            with open("/proc/self/stat") as f:
                own = f.read().rsplit(")", 1)[1].split()
            mine = int(own[11]) + int(own[12])                        # utime + stime, all threads
            return time.perf_counter(), busy, mine
        except (OSError, ValueError, IndexError):
            return None

    def foreign(self):
        now = self._read()
        prev, self.last = self.last, now
        if now is None or prev is None or now[0] - prev[0] < 1e-3:
            return None
        return max(0.0, ((now[1] - prev[1]) - (now[2] - prev[2])) / self.tck / (now[0] - prev[0]))


def wait_quiet(limit_s, threshold=0.25):
    """Wait (up to limit_s) for a half-second in which other processes use under `threshold` CPUs."""
    meter, t0 = LoadMeter(), time.perf_counter()
    while time.perf_counter() - t0 < limit_s:
        time.sleep(0.5)
        f = meter.foreign()
        if f is None or f < threshold:
            return f
    return meter.foreign()


QUIET = 0.25      # a round counts as quiet when other processes used under this many CPUs on average


def interleaved_medians(fns, x, repeat, budget, gap=0.1, warm=True):
    """Median seconds per engine over interleaved rounds (see the module doc), the quiet rounds'
    samples only when there are enough of them. Returns (medians, samples used, quiet rounds/rounds)."""
    names = list(fns)
    for nm in names if warm else ():       # warm-up: first-call setup (plans, oneDNN primitives)
        fns[nm](x)
    one = {nm: timed(fns[nm], x) for nm in names}
    per_block = {nm: max(1, min(10, int(0.05 / max(one[nm], 1e-6)))) for nm in names}
    round_s = sum(one[nm] * (per_block[nm] + (one[nm] < 0.05)) for nm in names)
    if repeat:
        want = max(1, -(-repeat // min(per_block.values())))
    else:
        want = int(budget / max(round_s, 1e-9))
        want = max(2 if round_s > budget / 3 else 5, min(want, 40))
    cap = want if repeat else max(want, min(3 * want, int(2.5 * budget / max(round_s, 1e-9))))
    rounds = []                            # (foreign load, {engine: [samples]})
    meter = LoadMeter()
    r = 0
    while r < cap:
        order = names[r % len(names):] + names[:r % len(names)]
        got = {}
        meter.foreign()
        for nm in order:
            time.sleep(gap)                  # let the previous engine's worker threads stop spinning
            if one[nm] < 0.05:
                fns[nm](x)                   # untimed: absorbs the previous engine's spinning threads
            got[nm] = [timed(fns[nm], x) for _ in range(per_block[nm])]
        rounds.append((meter.foreign(), got))
        r += 1
        quiet = sum(1 for f, _ in rounds if f is None or f < QUIET)
        if r >= want and quiet >= min(want, 3 if round_s > budget / 3 else 5):
            break
    quiet = [g for f, g in rounds if f is None or f < QUIET]
    use = quiet if len(quiet) >= min(len(rounds), 2 if round_s > budget / 3 else 3) else [g for _, g in rounds]
    samples = {nm: [t for g in use for t in g[nm]] for nm in names}
    return ({nm: statistics.median(s) for nm, s in samples.items()}, {nm: len(s) for nm, s in samples.items()},
            f"{len(quiet)}/{len(rounds)}")


# ---------------------------------------------------------------- per-layer profile

def profile_netdsl(m, x, threads, reps=3):
    """{layer: seconds} for every step of the session's own plan, each run alone (same params,
    same prepacked weights) on its real input activations; best of `reps`."""
    from netdsl.runtime.executor import Program, Step
    sess = m.session()
    n = x.shape[0]
    plan, _ = sess.program(n)
    g = getattr(sess, "graph", m.graph)
    acts = {name: x for name in g.inputs}

    def act(name):
        if name not in acts:
            preds = g.preds(name)
            if g[name].op == "Concat":         # elided at batch 1: its producers wrote the slices
                acts[name] = np.concatenate([act(p) for p in preds], axis=1)
            else:                              # a view (Flatten, Reshape, Dropout, Identity)
                acts[name] = act(preds[0]).reshape(n, *g[name].shape)
        return acts[name]

    times = {}
    for st in plan.steps:
        xs = [np.ascontiguousarray(act(p), np.float32).ravel() for p in g.preds(st.node)]
        out_floats = n * int(np.prod(g[st.node].shape))
        w, bias = sess._node_weights(st.node, st.call)
        offs, off = [], out_floats + 16
        for a in xs:
            offs.append(off)
            off += a.size + 16
        prog = Program([Step(st.call, 0, offs, w, bias, out_floats=out_floats, in_floats=[a.size for a in xs],
                             name=st.node)], off)
        arena, ws = prog.new_arena(), prog.new_ws()
        for o, a in zip(offs, xs):
            arena[o:o + a.size] = a
        prog.run(arena, ws, threads)
        acts[st.node] = arena[:out_floats].reshape(n, *g[st.node].shape).copy()
        best = float("inf")
        for _ in range(reps):
            t = time.perf_counter()
            prog.run(arena, ws, threads)
            best = min(best, time.perf_counter() - t)
        times[st.node] = best
    return times


def profile_ort(proto, x, threads, reps=5):
    """{layer: seconds per run} from ONNX Runtime's own profiler (fused nodes keep the conv's name)."""
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.enable_profiling = True
    so.profile_file_prefix = os.path.join(tempfile.gettempdir(), "netdsl_ort_prof")
    s = ort.InferenceSession(proto.SerializeToString(), so, providers=["CPUExecutionProvider"])
    feed = {s.get_inputs()[0].name: x}
    s.run(None, feed)
    for _ in range(reps):
        s.run(None, feed)
    path = s.end_profiling()
    with open(path) as f:
        events = json.load(f)
    os.unlink(path)
    acc = {}
    for e in events:
        if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time"):
            node = e["name"][:-len("_kernel_time")]
            acc.setdefault(node, []).append(e["dur"] * 1e-6)
    out = {}
    for node, ds in acc.items():
        ds = ds[1:] if len(ds) > reps else ds          # drop the warm-up run
        layer = node.split("/")[0]
        out[layer] = out.get(layer, 0.0) + statistics.median(ds)
    return out


def print_profile(m, x, threads, ort_fn, top=15):
    nd = profile_netdsl(m, x, threads)
    g = getattr(m.session(), "graph", m.graph)
    ot = profile_ort(ort_fn.proto, x, threads) if ort_fn is not None else {}
    # ORT fuses BN, activations and residual Adds into the conv before them (and names the fused node
    # after its output): charge both engines' times to that conv. A merge goes to its last input's owner.
    owner = {}
    for node in m.graph.nodes():
        preds = m.graph.preds(node.name)
        if preds and node.op in ("BatchNorm", "ReLU", "LeakyReLU", "Sigmoid", "Tanh", "Add", "Mul"):
            owner[node.name] = owner.get(preds[-1], preds[-1])
    by_layer, ops_of, ot_layer = {}, {}, {}
    for layer, t in nd.items():
        key = owner.get(layer, layer)
        by_layer[key] = by_layer.get(key, 0.0) + t
        ops_of.setdefault(key, []).append(g[layer].op if layer in g else "?")
    for layer, t in ot.items():
        key = owner.get(layer, layer)
        ot_layer[key] = ot_layer.get(key, 0.0) + t
    ot = ot_layer
    g = m.graph
    total_nd, total_ort = sum(nd.values()), sum(ot.values())
    print(f"\n  per-layer, batch {x.shape[0]}: netdsl kernels sum {total_nd * 1e3:.1f} ms, "
          f"ORT nodes sum {total_ort * 1e3:.1f} ms")
    by_op, by_op_ort = {}, {}
    for key, t in by_layer.items():
        op = g[key].op
        by_op[op] = by_op.get(op, 0.0) + t
        by_op_ort[op] = by_op_ort.get(op, 0.0) + ot.get(key, 0.0)
    print("  by op (fused BN/act counted with their conv):")
    for op, t in sorted(by_op.items(), key=lambda kv: -kv[1]):
        o = by_op_ort.get(op, 0.0)
        print(f"    {op:14s} netdsl {t * 1e3:8.2f} ms   ort {o * 1e3:8.2f} ms   "
              f"ratio {t / o if o else float('nan'):5.2f}")
    print(f"  top {top} layers by netdsl time (excess over ORT first):")
    print(f"    {'layer':28s} {'ops':22s} {'in -> out':30s} {'netdsl ms':>9s} {'ort ms':>8s} {'ratio':>6s} "
          f"{'nd GF/s':>7s}")
    rows = sorted(by_layer.items(), key=lambda kv: -(kv[1] - ot.get(kv[0], 0.0)))[:top]
    for key, t in rows:
        node = g[key]
        preds = g.preds(key)
        shp = "x".join(map(str, g[preds[0]].shape)) + " -> " + "x".join(map(str, node.shape)) if preds else ""
        desc = ""
        if node.op == "Conv":
            a = node.attrs
            desc = f" k{a['kernel'][0]}s{a['stride'][0]}" + (f"g{a['groups']}" if a["groups"] > 1 else "")
        o = ot.get(key, 0.0)
        gf = 2 * node.macs * x.shape[0] / t / 1e9 if node.macs else 0.0
        print(f"    {key:28s} {'+'.join(ops_of[key])[:22]:22s} {(shp + desc)[:30]:30s} {t * 1e3:9.3f} "
              f"{o * 1e3:8.3f} {t / o if o else float('nan'):6.2f} {gf:7.1f}")


# ---------------------------------------------------------------- main

def fmt_ms(t):
    if t is None:
        return "—"
    return f"{t * 1e3:.3f}" if t < 0.01 else f"{t * 1e3:.1f}" if t < 10 else f"{t * 1e3:.0f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=DEFAULT_MODELS, help="zoo names or .net paths; 'all' = the zoo")
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=0, help="timed runs per engine (default: fit --budget)")
    ap.add_argument("--budget", type=float, default=6.0,
                    help="seconds of timed runs per configuration, all engines together (default 6)")
    ap.add_argument("--quiet-wait", type=float, default=5.0,
                    help="before each configuration, wait up to this many seconds for the machine to be quiet")
    ap.add_argument("--gap", type=float, default=0.1,
                    help="idle seconds between engine blocks (ORT's workers spin ~20-100 ms after a run)")
    ap.add_argument("--engines", nargs="+", default=["netdsl", "torch", "ort"])
    ap.add_argument("--peak", type=float, default=None, help="SGEMM peak GFLOP/s (skip measuring it)")
    ap.add_argument("--no-peak", action="store_true")
    ap.add_argument("--profile", action="store_true", help="per-layer profile where netdsl > 1.5x ORT")
    ap.add_argument("--profile-all", action="store_true", help="per-layer profile of every configuration")
    ap.add_argument("--check-only", action="store_true", help="only compare outputs (no timing)")
    args = ap.parse_args()
    models = netdsl.model.zoo_names() if args.models == ["all"] else args.models
    threads = args.threads

    info = machine_info(threads)
    print(f"# {info['date']}  {info.get('cpu', '?')}  ({info.get('cpus', '?')} CPUs, "
          f"{info.get('threads_per_core', '?')} thread/core{', ' + info['hypervisor'] + ' VM' if info.get('hypervisor') else ''})")
    print(f"# AVX-512: {info.get('avx512', '?')}; AVX2: {info.get('avx2')}; FMA: {info.get('fma')}; "
          f"netdsl ISA: {info['netdsl_isa']}; caches: {info.get('caches', '?')}")
    versions = [f"python {info['python']}", f"numpy {info['numpy']}"]
    for mod in ("torch", "onnxruntime"):
        try:
            versions.append(f"{mod} {__import__(mod).__version__}")
        except ImportError:
            versions.append(f"{mod} not installed")
    print("# " + ", ".join(versions) + f"; threads {threads}")

    peak = args.peak
    if peak is None and not args.no_peak and not args.check_only:
        peak, raw = measure_peak(threads)
        if peak:
            print(f"# SGEMM peak at {threads} threads (gemm_peak.py, best of netdsl/numpy, 1024³ & 2048³): "
                  f"{peak:.1f} GFLOP/s")
    print()
    cols = ["model", "batch", "netdsl ms", "torch ms", "ORT ms", "nd/torch", "nd/ORT", "nd GFLOP/s",
            "% peak", "runs (quiet rounds)", "max rel diff torch / ORT"]
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    slow, failures, n_ort = [], [], 0
    for name in models:
        try:
            m = netdsl.load(name)
        except netdsl.NetDSLError as e:
            print(f"| {name} | cannot load: {str(e).splitlines()[0]} |")
            continue
        sd = test_weights(m)
        fns, errors = build_engines(m, sd, threads, args.engines)
        for e, msg in errors.items():
            if msg != "not installed":
                failures.append(f"{name}: {e}: {msg}")
        shape_in = next(iter(m.input_shapes.values()))
        macs = m.totals()["total_macs"]
        for n in args.batch:
            x = np.random.default_rng(n).standard_normal((n, *shape_in)).astype(np.float32)
            try:
                ref = fns["netdsl"](x)
            except netdsl.NetDSLError as e:
                print(f"| {name} | {n} | netdsl failed: {str(e).splitlines()[0]} |")
                failures.append(f"{name} b{n}: netdsl: {e}")
                continue
            diffs = {}
            for e in ("torch", "ort"):
                if e in fns:
                    try:
                        diffs[e] = max_rel_diff(ref, fns[e](x))
                    except Exception as ex:  # noqa: BLE001
                        failures.append(f"{name} b{n}: {e} failed: {type(ex).__name__}: {ex}")
                        fns.pop(e)
            for e, d in diffs.items():
                if d > 1e-3:
                    failures.append(f"{name} b{n}: {e} output differs from netdsl's by {d:.2e} (relative)")
            diff_s = " / ".join(f"{diffs[e]:.1e}" if e in diffs else "—" for e in ("torch", "ort"))
            if args.check_only:
                print(f"| {name} | {n} | | | | | | | | | {diff_s} |", flush=True)
                continue
            if args.quiet_wait:
                wait_quiet(args.quiet_wait)
            med, runs, quiet = interleaved_medians(fns, x, args.repeat, args.budget, args.gap,
                                                     warm=len(fns) == 1)   # else the output check warmed them
            t_nd = med["netdsl"]
            gf = 2 * macs * n / t_nd / 1e9
            r_t = t_nd / med["torch"] if "torch" in med else None
            r_o = t_nd / med["ort"] if "ort" in med else None
            row = [name, str(n), fmt_ms(t_nd), fmt_ms(med.get("torch")), fmt_ms(med.get("ort")),
                   f"{r_t:.2f}" if r_t else "—", f"{r_o:.2f}" if r_o else "—", f"{gf:.1f}",
                   f"{100 * gf / peak:.0f}%" if peak else "—", f'{runs["netdsl"]} ({quiet})', diff_s]
            print("| " + " | ".join(row) + " |", flush=True)
            n_ort += r_o is not None
            if r_o and r_o > TARGET:
                slow.append((name, n, r_o))
            if args.profile_all or (args.profile and r_o and r_o > TARGET):
                print_profile(m, x, threads, fns.get("ort"))
        del fns, m
    print()
    if slow:
        print(f"over the {TARGET}x-of-ONNX-Runtime target: " +
              ", ".join(f"{nm} b{n} ({r:.2f}x)" for nm, n, r in slow))
    elif not args.check_only and n_ort:
        print(f"every configuration with an ONNX Runtime figure is within {TARGET}x of it")
    for f in failures:
        print("PROBLEM:", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
