"""netdsl next to PyTorch and ONNX Runtime: same network, same weights, same thread count.

    python benchmarks/compare.py [--models lenet5 vgg16 ...|all] [--batch 1 8] [--threads 1 2]
                                 [--repeat N] [--budget S] [--engines netdsl torch ort]
                                 [--peak GFLOPS | --no-peak] [--profile | --profile-over R]
                                 [--profile-top N] [--busy] [--json FILE] [--check-only]

Defaults: every zoo model, batch 1 and 8, 1 and 2 threads (all configurations
in one run: the table has a threads column). --engines takes netdsl, torch,
ort (alias onnxruntime); any other name is an error.

For every model, batch size and thread count it prints the median latency of each engine,
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

--profile adds, after each configuration's row, its per-layer table: netdsl's
profiler (netdsl/runtime/profile.py, what `netdsl run --profile` prints: each
plan step timed alone on its real activations, the conv algorithm, GFLOP/s,
% of peak, share) with ONNX Runtime's own per-node profile next to it, each
ORT node charged to the netdsl layer that computes the same value (ORT names
a fused node after its output, e.g. conv1+bn1+relu is ORT's "relu"); ORT's
layout reorders and nodes no netdsl layer matches are summed on their own
line. --profile-over R profiles only the configurations slower than R x ORT;
--profile-top N shows the N layers with the most time over ORT.

--busy keeps one core busy for the whole run with a spinning child process
(the "with one core kept busy" rows of issue 8): it is killed when the script
ends, on Ctrl-C and on errors, and it exits by itself if this script dies
without killing it. The quiet-round logic then discounts that one CPU.

--json FILE also writes every row (and every profile) as JSON.

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

TARGET = 1.5     # netdsl / ORT: the floor; the target is 1.0 (0.9 the goal)
ENGINES = {"netdsl": "netdsl", "torch": "torch", "pytorch": "torch", "ort": "ort", "onnxruntime": "ort"}


def early_threads(argv):
    """Set thread env vars before numpy/torch load their runtimes: the largest --threads value
    (netdsl sizes its workspaces for OpenMP's count; each configuration then runs at its own)."""
    vals, i = [], 0
    while i < len(argv):
        a = argv[i]
        if a == "--threads":
            i += 1
            while i < len(argv) and argv[i].isdigit():
                vals.append(int(argv[i]))
                i += 1
            continue
        if a.startswith("--threads="):
            vals += [int(v) for v in a.split("=", 1)[1].replace(",", " ").split() if v.isdigit()]
        i += 1
    t = str(max(vals)) if vals else "2"
    for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(k, t)


early_threads(sys.argv)

import numpy as np  # noqa: E402

import netdsl  # noqa: E402
from netdsl.runtime.profile import LoadMeter as _LoadMeter  # noqa: E402


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


EXPECTED_LOAD = 0.0     # CPUs this script keeps busy on purpose (--busy): not counted as foreign


class LoadMeter(_LoadMeter):
    """CPUs kept busy by *other* processes since the last call (netdsl/runtime/profile.py's meter),
    not counting EXPECTED_LOAD (--busy's spinner)."""

    def __init__(self):
        super().__init__(EXPECTED_LOAD)


SPIN = """
import os, sys
parent = int(sys.argv[1])
while True:
    for _ in range(2000000):
        pass
    if os.getppid() != parent:       # our parent died without killing us: stop spinning
        break
"""


class Busy:
    """A child process spinning on one core for the duration of a `with` block (--busy). It is
    killed on leaving the block however that happens (normal end, error, Ctrl-C), from an atexit
    hook and on SIGTERM too; and it stops by itself once its parent is gone."""

    def __init__(self):
        self.proc = None

    def __enter__(self):
        import atexit
        import signal
        self.proc = subprocess.Popen([sys.executable, "-c", SPIN, str(os.getpid())],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        atexit.register(self.stop)
        try:
            self._old_term = signal.signal(signal.SIGTERM, self._on_term)
        except ValueError:            # not the main thread
            self._old_term = None
        return self

    def _on_term(self, signum, frame):
        self.stop()
        raise SystemExit(128 + signum)

    def stop(self):
        p, self.proc = self.proc, None
        if p is not None and p.poll() is None:
            p.kill()
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass

    def __exit__(self, *exc):
        self.stop()
        if self._old_term is not None:
            import signal
            signal.signal(signal.SIGTERM, self._old_term)
        return False


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

def profile_netdsl(m, x, threads, peak=None):
    """netdsl's per-layer profile (netdsl/runtime/profile.py: each plan step alone, same params,
    same prepacked weights, on its real input activations)."""
    from netdsl.runtime.profile import profile
    return profile(m, x, threads=threads, peak=peak, measure_peak=False)


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
            node = node[len("fused "):] if node.startswith("fused ") else node    # ORT's name for some fusions
            acc.setdefault(node, []).append(e["dur"] * 1e-6)
    out = {}
    for node, ds in acc.items():
        ds = ds[1:] if len(ds) > reps else ds          # drop the warm-up run
        layer = node.split("/")[0]
        out[layer] = out.get(layer, 0.0) + statistics.median(ds)
    return out


def ort_by_row(prof, ort_times):
    """Charge ORT's per-layer seconds to the netdsl profile's rows: an ORT node named after layer L
    (its output) goes to the row that computes L (L is the row's layer or one fused into it).
    Returns ({row node: seconds}, {unmatched ORT layer: seconds})."""
    owner = {}
    for r in prof.rows:
        owner[r.node] = r.node
        for f in r.fused:
            owner[f] = r.node
    by_row, other = {}, {}
    for layer, t in ort_times.items():
        k = owner.get(layer)
        if k is None:
            other[layer] = other.get(layer, 0.0) + t
        else:
            by_row[k] = by_row.get(k, 0.0) + t
    return by_row, other


def print_profile(m, x, threads, ort_fn, peak=None, top=None):
    """netdsl's per-layer table with ORT's time per layer next to it; returns a JSON-able dict."""
    from netdsl.cli_format import ms_text, table_text, time_unit
    prof = profile_netdsl(m, x, threads, peak)
    ot = profile_ort(ort_fn.proto, x, threads) if ort_fn is not None else {}
    by_row, other = ort_by_row(prof, ot)
    total_ort = sum(ot.values())
    unit = time_unit(min(prof.total_s, total_ort or prof.total_s))
    rows = prof.rows
    if top:
        rows = sorted(rows, key=lambda r: -(r.seconds - by_row.get(r.node, 0.0)))[:top]
    body = []
    for r in rows:
        o = by_row.get(r.node)
        ip = r.in_plan
        body.append([str(r.index), r.layer, r.op, r.algo, r.shape, ms_text(r.seconds, unit),
                     ms_text(ip, unit) if ip is not None else "—",
                     ms_text(o, unit) if o else "—", f"{r.seconds / o:.2f}" if o else "—",
                     f"{ip / o:.2f}" if o and ip is not None else "—",
                     f"{r.gflops:.1f}" if r.gflops is not None else "—",
                     f"{r.pct_peak:.0f}%" if r.pct_peak is not None else "—", f"{r.share:.1f}%"])
    in_plan = sum(r.in_plan for r in prof.rows if r.in_plan is not None)
    print(f"\n  per-layer, {m.name} batch {x.shape[0]}, {threads} thread{'s' if threads != 1 else ''}: "
          f"netdsl steps sum {ms_text(prof.total_s, unit)} {unit} each alone, {ms_text(in_plan, unit)} {unit} "
          f"timed inside the plan (whole plan {ms_text(prof.plan_s, unit)}), "
          f"ORT nodes sum {ms_text(total_ort, unit)} {unit} (ORT's profiler: inside its runs)"
          + (f"; the {top} layers with the most time over ORT" if top else ""))
    table = table_text(["#", "layer", "op", "algo", "input → output", f"netdsl {unit}", f"in plan {unit}",
                        f"ORT {unit}", "nd/ORT", "plan/ORT", "GFLOP/s", "% peak", "share"], body,
                       right={0, 5, 6, 7, 8, 9, 10, 11, 12})
    print("\n".join("  " + ln for ln in table.splitlines()))
    by_algo, by_algo_ort = {}, {}
    for r in prof.rows:
        k = f"conv {r.algo}" if r.algo != "—" else r.op.split(" ")[0].split("+")[0]
        by_algo[k] = by_algo.get(k, 0.0) + r.seconds
        by_algo_ort[k] = by_algo_ort.get(k, 0.0) + by_row.get(r.node, 0.0)
    print("  by algorithm (netdsl / ORT " + unit + "): " + ", ".join(
        f"{k} {ms_text(t, unit)} / {ms_text(by_algo_ort[k], unit) if by_algo_ort[k] else '—'}"
        for k, t in sorted(by_algo.items(), key=lambda kv: -kv[1])))
    if other:
        print(f"  ORT nodes with no netdsl step (layout reorders, views, elided concats): {ms_text(sum(other.values()), unit)} {unit}: "
              + ", ".join(f"{k} {ms_text(t, unit)}" for k, t in sorted(other.items(), key=lambda kv: -kv[1])[:6]))
    return {"netdsl": prof.to_dict(), "ort_by_layer": by_row, "ort_other": other, "ort_total_s": total_ort}


# ---------------------------------------------------------------- main

def fmt_ms(t):
    if t is None:
        return "—"
    return f"{t * 1e3:.3f}" if t < 0.01 else f"{t * 1e3:.1f}" if t < 10 else f"{t * 1e3:.0f}"


def engine_names(values):
    """--engines values -> canonical names (ort for onnxruntime); an unknown name is an error."""
    out = []
    for v in values:
        for name in v.replace(",", " ").split():
            key = ENGINES.get(name.lower())
            if key is None:
                raise argparse.ArgumentTypeError(
                    f"unknown engine {name!r}; choose from {', '.join(sorted(set(ENGINES)))}")
            if key not in out:
                out.append(key)
    return out


def positive_ints(values, what):
    for v in values:
        if v < 1:
            raise SystemExit(f"compare.py: error: {what} must be at least 1, got {v}")
    return list(dict.fromkeys(values))


def main(argv=None):
    global EXPECTED_LOAD
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["all"], help="zoo names or .net paths; 'all' (default) = the zoo")
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2],
                    help="thread counts, each one a set of rows (default 1 2)")
    ap.add_argument("--repeat", type=int, default=0, help="timed runs per engine (default: fit --budget)")
    ap.add_argument("--budget", type=float, default=6.0,
                    help="seconds of timed runs per configuration, all engines together (default 6)")
    ap.add_argument("--quiet-wait", type=float, default=5.0,
                    help="before each configuration, wait up to this many seconds for the machine to be quiet")
    ap.add_argument("--gap", type=float, default=0.1,
                    help="idle seconds between engine blocks (ORT's workers spin ~20-100 ms after a run)")
    ap.add_argument("--engines", nargs="+", default=["netdsl", "torch", "ort"],
                    help="netdsl, torch, ort (or onnxruntime); netdsl always runs (the others are compared with it)")
    ap.add_argument("--peak", type=float, default=None, help="SGEMM peak GFLOP/s (skip measuring it)")
    ap.add_argument("--no-peak", action="store_true")
    ap.add_argument("--profile", action="store_true", help="per-layer table (netdsl and ORT) for every configuration")
    ap.add_argument("--profile-over", type=float, default=None, metavar="R",
                    help="per-layer table only where netdsl is slower than R x ORT")
    ap.add_argument("--profile-all", action="store_true", help=argparse.SUPPRESS)    # the old name of --profile
    ap.add_argument("--profile-top", type=int, default=None, metavar="N",
                    help="in the per-layer tables, only the N layers with the most time over ORT")
    ap.add_argument("--busy", action="store_true", help="keep one core busy with a spinning process for the run")
    ap.add_argument("--json", metavar="FILE", help="also write every row (and profile) as JSON to FILE")
    ap.add_argument("--check-only", action="store_true", help="only compare outputs (no timing)")
    args = ap.parse_args(argv)
    try:
        engines = engine_names(args.engines)
    except argparse.ArgumentTypeError as e:
        ap.error(str(e))
    threads_list = positive_ints(args.threads, "--threads")
    batches = positive_ints(args.batch, "--batch")
    if args.peak is not None and not args.peak > 0:
        ap.error(f"--peak must be a positive GFLOP/s figure, got {args.peak}")
    models = netdsl.model.zoo_names() if args.models == ["all"] else args.models
    if args.busy:
        EXPECTED_LOAD = 1.0
        with Busy() as b:
            print(f"# one core kept busy by a spinning process (pid {b.proc.pid}) for the whole run")
            return run_all(args, models, engines, threads_list, batches)
    return run_all(args, models, engines, threads_list, batches)


def run_all(args, models, engines, threads_list, batches):
    info = machine_info(threads_list)
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
    print("# " + ", ".join(versions) + f"; threads {' '.join(map(str, threads_list))}; engines {' '.join(engines)}"
          + ("; one core busy" if args.busy else ""))

    peaks = {}
    for t in threads_list:
        peaks[t] = args.peak
        if args.peak is None and not args.no_peak and not args.check_only:
            peaks[t], _ = measure_peak(t)
            if peaks[t]:
                print(f"# SGEMM peak at {t} thread{'s' if t != 1 else ''} (gemm_peak.py, best of netdsl/numpy, "
                      f"1024³ & 2048³): {peaks[t]:.1f} GFLOP/s")
    print()
    cols = ["model", "batch", "threads", "netdsl ms", "torch ms", "ORT ms", "nd/torch", "nd/ORT", "nd GFLOP/s",
            "% peak", "runs (quiet rounds)", "max rel diff torch / ORT"]
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    record = {"machine": info, "peaks": peaks, "busy": args.busy, "rows": [], "profiles": [], "problems": [],
              "not_run": []}
    slow, failures, n_ort = [], [], 0
    profile_over = 0.0 if (args.profile or args.profile_all) else args.profile_over
    for name in models:
        try:
            m = netdsl.load(name)
        except netdsl.NetDSLError as e:
            print(f"| {name} | cannot load: {str(e).splitlines()[0]} |")
            failures.append(f"{name}: cannot load")
            continue
        sd = test_weights(m)
        shape_in = next(iter(m.input_shapes.values()))
        macs = m.totals()["total_macs"]
        for threads in threads_list:
            fns, errors = build_engines(m, sd, threads, engines)
            for e, msg in errors.items():
                if msg == "not installed":
                    continue
                if msg.startswith("Unsupported"):     # the port cannot express this model: a gap, not a bug
                    record["not_run"].append(f"{name}: {e}: {msg}")
                else:
                    failures.append(f"{name}: {e}: {msg}")
            for n in batches:
                x = np.random.default_rng(n).standard_normal((n, *shape_in)).astype(np.float32)
                try:
                    ref = fns["netdsl"](x)
                except netdsl.NetDSLError as e:
                    print(f"| {name} | {n} | {threads} | netdsl failed: {str(e).splitlines()[0]} |")
                    failures.append(f"{name} b{n} t{threads}: netdsl: {e}")
                    continue
                diffs = {}
                for e in ("torch", "ort"):
                    if e in fns:
                        try:
                            diffs[e] = max_rel_diff(ref, fns[e](x))
                        except Exception as ex:  # noqa: BLE001
                            failures.append(f"{name} b{n} t{threads}: {e} failed: {type(ex).__name__}: {ex}")
                            fns.pop(e)
                for e, d in diffs.items():
                    if d > 1e-3:
                        failures.append(f"{name} b{n}: {e} output differs from netdsl's by {d:.2e} (relative)")
                diff_s = " / ".join(f"{diffs[e]:.1e}" if e in diffs else "—" for e in ("torch", "ort"))
                row = {"model": name, "batch": n, "threads": threads, "diff": diffs}
                if args.check_only:
                    print(f"| {name} | {n} | {threads} | | | | | | | | | {diff_s} |", flush=True)
                    record["rows"].append(row)
                    continue
                if args.quiet_wait:
                    wait_quiet(args.quiet_wait)
                med, runs, quiet = interleaved_medians(fns, x, args.repeat, args.budget, args.gap,
                                                         warm=len(fns) == 1)   # else the output check warmed them
                t_nd = med["netdsl"]
                gf = 2 * macs * n / t_nd / 1e9
                peak = peaks.get(threads)
                r_t = t_nd / med["torch"] if "torch" in med else None
                r_o = t_nd / med["ort"] if "ort" in med else None
                cells = [name, str(n), str(threads), fmt_ms(t_nd), fmt_ms(med.get("torch")), fmt_ms(med.get("ort")),
                         f"{r_t:.2f}" if r_t else "—", f"{r_o:.2f}" if r_o else "—", f"{gf:.1f}",
                         f"{100 * gf / peak:.0f}%" if peak else "—", f'{runs["netdsl"]} ({quiet})', diff_s]
                print("| " + " | ".join(cells) + " |", flush=True)
                row.update(median_s=med, runs=runs, quiet_rounds=quiet, gflops=gf,
                           pct_peak=100 * gf / peak if peak else None, nd_over_ort=r_o, nd_over_torch=r_t)
                record["rows"].append(row)
                n_ort += r_o is not None
                if r_o and r_o > TARGET:
                    slow.append((name, n, threads, r_o))
                if profile_over is not None and (profile_over == 0.0 or (r_o and r_o > profile_over)):
                    pr = print_profile(m, x, threads, fns.get("ort"), peak, args.profile_top)
                    record["profiles"].append({"model": name, "batch": n, "threads": threads, **pr})
            del fns
        del m
    print()
    if slow:
        print(f"over the {TARGET}x-of-ONNX-Runtime floor: " +
              ", ".join(f"{nm} b{n} t{t} ({r:.2f}x)" for nm, n, t, r in slow))
    elif not args.check_only and n_ort:
        print(f"every configuration with an ONNX Runtime figure is within {TARGET}x of it")
    for f in record["not_run"]:
        print("not run:", f)
    for f in failures:
        print("PROBLEM:", f)
    record["problems"] = failures
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(record, f, indent=1, ensure_ascii=False, default=str)
        print(f"wrote {args.json}")
    return 1 if failures else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:       # --busy's spinner is already gone (Busy.__exit__)
        print("\ninterrupted", file=sys.stderr)
        sys.exit(130)
