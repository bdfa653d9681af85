"""The per-layer profiler (netdsl/runtime/profile.py, `netdsl run --profile`): the algorithm
column against what the conv kernel observably does, the table's sums, the JSON, the layer
names, and that profiling leaves the same activations a real run does. No timed assertions:
only sums, names, codes and values."""
from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest

import netdsl
from netdsl import ops
from netdsl.runtime import lib as L

pytestmark = pytest.mark.skipif(not L.available(), reason="C kernels not built")

SMALL = """input x: 3x16x16

stem:Conv(8, 3, pad=1) - sbn:BN - ReLU
- [ a:Conv(8, 3, pad=1, bias=false) - abn:BN | b:Identity ] - Add - ReLU
- pool:MaxPool(2)
- [ p:Conv(8, 1) | q:Conv(8, 3, pad=1) ] - cat:Concat - cbn:BN - ReLU
- dw:Conv(16, 3, pad=1, groups=16) - ReLU
- GAP - fc:FC(10)
"""
FAST = 1e-4        # seconds of samples per step: the tests check structure, not speed


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    path = tmp_path_factory.mktemp("prof") / "small.net"
    path.write_text(SMALL)
    return netdsl.load(str(path))


def conv_program(n, c, h, w, oc, k, stride=1, pad=0, groups=1, algo=0, prepack=True):
    """A one-step Program running Conv as the planner builds it (algo forced when non-zero),
    with its input in the arena; returns (prog, arena, out_floats, x, weights)."""
    from netdsl.runtime.executor import Program, Step
    from netdsl.runtime.kparams import builder
    spec = ops.get("Conv")
    shapes = [(c, h, w)]
    a = spec.resolve(spec.bind((), dict(out_channels=oc, kernel=k, stride=stride, pad=pad, groups=groups)), shapes)
    out = tuple(spec.infer(a, shapes))
    call = builder("Conv")(a, shapes, out, n)
    if algo:
        call.fields["algo"] = algo
        call.ws_floats = int(L.lib.nd_conv_ws_floats(L.ffi.new("nd_conv_params *", call.fields)))
    rng = np.random.default_rng(0)
    wts = spec.init(a, shapes, rng)
    of = n * math.prod(out)
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    prog = Program([Step(call, 0, [of], wts["weight"], wts.get("bias"), out_floats=of, in_floats=[x.size])],
                   of + x.size, prepack=prepack)
    arena = prog.new_arena()
    arena[of:] = x.ravel()
    return prog, arena, of, x, (spec, a, wts)


# (n, c, h, w, oc, k, stride, pad, groups, algo)
CASES = [
    (1, 16, 20, 20, 32, 3, 1, 1, 1, 0),      # auto
    (1, 16, 20, 20, 32, 3, 1, 1, 1, 1),      # forced GEMM
    (1, 16, 20, 20, 32, 3, 1, 1, 1, 2),      # forced transposed GEMM
    (1, 16, 20, 20, 32, 3, 1, 1, 1, 3),      # forced direct (GEMM where the ISA has no direct row kernel)
    (2, 17, 7, 7, 41, 3, 1, 1, 1, 3),
    (1, 40, 14, 14, 32, 3, 1, 1, 1, 0),      # thin: direct where the ISA has it
    (1, 16, 20, 20, 32, 1, 1, 0, 1, 0),      # 1x1: pointwise
    (1, 16, 20, 20, 32, 1, 1, 0, 1, 1),
    (1, 16, 20, 20, 32, 1, 2, 0, 1, 0),      # 1x1 stride 2: not pointwise
    (1, 16, 20, 20, 16, 3, 1, 1, 16, 0),     # depthwise
    (1, 16, 5, 5, 32, 5, 1, 0, 1, 0),        # the kernel covers the image: fc-like at batch <= 8
    (9, 16, 5, 5, 32, 5, 1, 0, 1, 0),        # ... not past 8 images
    (1, 512, 7, 7, 512, 3, 1, 1, 1, 0),      # late ResNet stage: transposed on auto
]


@pytest.mark.parametrize("case", CASES, ids=[f"n{c[0]}c{c[1]}h{c[2]}o{c[4]}k{c[5]}s{c[6]}g{c[8]}a{c[9]}" for c in CASES])
def test_algo_column_is_what_the_kernel_does(case):
    """nd_conv_algo against what the kernel observably did to its workspace, on every ISA:
    direct and fc-like read the image in place and never touch it; the transposed GEMM leaves
    Y^T there; the GEMMs pack panels into it; depthwise needs none."""
    from netdsl.runtime.profile import algo_name, conv_algo_code, record_algo
    n, c, h, w, oc, k, s, p, g, algo = case
    for isa in L.supported_isas():
        with L.using_isa(isa):
            prog, arena, of, x, (spec, a, wts) = conv_program(n, c, h, w, oc, k, s, p, g, algo)
            name = record_algo(prog, 0)
            assert name == algo_name(conv_algo_code(prog.records[0].params))
            ws = np.full(max(prog.ws_floats, 1), 7.0, np.float32)
            prog.run(arena, ws, 1)
            y = arena[:of].reshape(n, oc, -1)
            ref = spec.reference(a, [x.astype(np.float64)], {kk: v.astype(np.float64) for kk, v in wts.items()})
            assert np.allclose(y.reshape(ref.shape), ref, rtol=1e-4, atol=1e-4)
            touched = bool((ws != 7.0).any())
            ohw = y.shape[2]
            where = f"{isa}: {case} reported {name}"
            if name == "depthwise":
                assert g == c and prog.ws_floats == 0, where
            elif name in ("direct", "fc-like"):
                assert not touched, where
            else:
                assert touched, where
            t = ws[:n * ohw * oc].reshape(n, ohw, oc).transpose(0, 2, 1) if ws.size >= n * ohw * oc else None
            left_yt = t is not None and np.array_equal(t, y)
            assert left_yt == (name == "gemm-t"), where
            if name == "fc-like":
                assert (k, k) == (h, w) and n <= 8 and algo == 0, where
            if name == "pointwise":
                assert k == 1 and s == 1 and p == 0, where
            if algo == 2:
                assert name == "gemm-t", where
            if algo == 1:
                assert name == ("pointwise" if (k, s, p) == (1, 1, 0) else "gemm"), where
            if algo == 3:
                assert name in ("direct", "gemm"), where   # gemm: this ISA has no direct row kernel


def test_algo_codes_for_params_the_kernel_refuses():
    from netdsl.runtime.profile import conv_algo_code
    prog, *_ = conv_program(1, 16, 8, 8, 16, 3, 1, 1, 16, prepack=False)     # depthwise
    fields = dict(prog.steps[0].call.fields)
    assert conv_algo_code(fields) == 6
    # depthwise with prepacked weights: the kernel returns ND_EUNSUPPORTED, the query -1
    packed = dict(fields, w_packed_mr=int(L.lib.nd_gemm_mr()))
    assert conv_algo_code(packed) == -1
    p = L.ffi.new("nd_conv_params *", packed)
    x = np.zeros(16 * 64, np.float32)
    y = np.zeros(16 * 64, np.float32)
    wt = np.zeros(16 * 9, np.float32)
    ins = L.ffi.new("const float *[1]", [L.ffi.from_buffer("float[]", x)])
    st = L.lib.nd_conv_f32(p, L.ffi.from_buffer("float[]", y), ins, L.ffi.from_buffer("float[]", wt),
                           L.ffi.NULL, L.ffi.NULL)
    assert st == L.lib.ND_EUNSUPPORTED
    assert conv_algo_code(dict(fields, c=0)) == -1          # bad params: ND_EINVAL in the kernel
    assert conv_algo_code(dict(fields, residual=2)) == -1


def test_profile_shares_times_and_steps(small):
    from netdsl.runtime.profile import profile
    for batch in (1, 2):
        p = profile(small, batch=batch, peak=100.0, seconds_per_step=FAST)
        plan, prog = small.session().program(batch)
        assert [r.node for r in p.rows] == prog.names
        assert len(p.rows) == len(plan.steps)
        assert math.isclose(sum(r.share for r in p.rows), 100.0, rel_tol=1e-9)
        assert math.isclose(sum(r.seconds for r in p.rows), p.total_s, rel_tol=1e-9)
        for r in p.rows:
            assert r.seconds > 0
            node = small.session().graph[r.node]
            assert r.flops == 2 * node.macs * batch
            if r.flops:
                assert math.isclose(r.gflops, r.flops / r.seconds / 1e9, rel_tol=1e-9)
                assert math.isclose(r.pct_peak, r.gflops, rel_tol=1e-9)        # peak 100 GFLOP/s
            else:
                assert r.gflops is None and r.pct_peak is None
        # at batch 1 the concat is elided (its producers write the slices): no step, listed as elided
        assert ("cat" in p.elided) == (batch == 1) and ("cat" in [r.node for r in p.rows]) == (batch == 2)


def step_of(unit):
    """half the last printed digit of a time cell"""
    return 0.05 if unit == "µs" else 0.0005


def test_printed_table_adds_up(small):
    """The printed ms / shares add up to the printed total / 100% within the rounding of the cells."""
    from netdsl.runtime.profile import profile
    p = profile(small, batch=2, peak=100.0, seconds_per_step=FAST)
    from netdsl.cli_format import profile_table
    text = profile_table(p)
    lines = text.splitlines()
    head = lines[1]
    unit = "µs" if " µs " in head else "ms"
    cols = re.split(r"\s{2,}", head.strip())
    assert cols == ["#", "layer", "op", "algo", "input → output", unit, f"in plan {unit}", "GFLOP/s", "% peak", "share"]
    body = [ln for ln in lines[3:3 + len(p.rows)]]
    cells = [re.split(r"\s{2,}", ln.strip()) for ln in body]
    times = [float(c[5]) for c in cells]
    shares = [float(c[9].rstrip("%")) for c in cells]
    in_plan = [float(c[6]) for c in cells]
    said = float(re.search(r"its steps timed inside it sum to ([\d.]+) " + unit, text).group(1))
    assert abs(sum(in_plan) - said) <= step_of(unit) * (len(in_plan) + 1)
    total = float(re.search(r"total: ([\d.]+) " + unit, text).group(1))
    assert abs(sum(times) - total) <= step_of(unit) * (len(times) + 1)
    assert abs(sum(shares) - 100.0) <= 0.05 * len(shares) + 1e-9
    assert [c[1] for c in cells] == [r.layer for r in p.rows]


def test_layer_names_are_the_source_names_with_what_was_fused(small):
    from netdsl.runtime.profile import profile
    p = profile(small, batch=2, peak=100.0, seconds_per_step=FAST)
    by_node = {r.node: r for r in p.rows}
    assert by_node["stem"].layer == "stem+sbn+relu1" and by_node["stem"].op == "Conv 3x3+BN+ReLU"
    assert by_node["a"].layer == "a+abn"
    assert by_node["add1"].layer == "add1+relu2"
    assert by_node["cbn"].layer == "cbn+relu3"
    assert by_node["dw"].layer == "dw+relu4" and by_node["dw"].algo == "depthwise"
    # a 1x1 stride-1 conv is a GEMM on x itself, or, where the ISA has the direct row kernel
    # (AVX-512), that kernel (csrc/kernels/conv.c nd_conv_algo tries direct first)
    assert by_node["p"].algo == ("direct" if L.isa() == "avx512" else "pointwise"), (by_node["p"].algo, L.isa())
    assert by_node["pool"].algo == "—"
    src = {nd.name for nd in small.graph.nodes()}
    for r in p.rows:                    # every name in the column is one of the file's layers
        assert r.node in src and set(r.fused) <= src and r.node not in r.fused
    fused = [f for r in p.rows for f in r.fused]
    assert len(fused) == len(set(fused))


def test_resnet_fused_names_pick_their_own_block():
    """The same source line recurs once per block: each BN / Add / ReLU is charged to its own block's conv."""
    from netdsl.runtime.profile import fused_layers
    from netdsl.passes import optimize
    m = netdsl.load("resnet18")
    g, _, rep = optimize(m.graph, None, level=m.run_level)
    fused = fused_layers(m.graph, g, rep)
    for survivor, names in fused.items():
        block = ".".join(survivor.split(".")[:2]) + "." if survivor.startswith("layer") else ""
        for r in names:
            assert r.startswith(block), (survivor, names)
    assert fused["conv1"] == ["bn1", "relu"]
    assert fused["layer1.0.conv1"] == ["layer1.0.bn1", "layer1.0.relu1"]
    owners = [s for s, ns in fused.items() if "layer1.0.add1" in ns]
    assert owners and owners[0].startswith("layer1.0.")


def test_json_round_trips_with_every_step(small, tmp_path):
    from netdsl.runtime.profile import Profile, profile
    p = profile(small, batch=1, peak=80.0, seconds_per_step=FAST)
    d = json.loads(p.to_json())
    assert d == p.to_dict()
    assert Profile.from_dict(d).to_dict() == p.to_dict()
    _, prog = small.session().program(1)
    assert [r["node"] for r in d["rows"]] == prog.names
    assert d["peak_gflops"] == 80.0 and d["peak_source"] == "given" and d["batch"] == 1
    for r in d["rows"]:
        assert set(r) >= {"layer", "op", "algo", "input", "output", "seconds", "gflops", "pct_peak", "share"}


def test_timed_run_computes_the_run_and_times_every_step(small):
    """Bound.run_timed (nd_run_plan_timed): the same outputs as run(), one non-negative time per
    step; the profile's in-plan column holds them. A failing step raises as run() does."""
    from netdsl.runtime.executor import KernelError
    from netdsl.runtime.profile import _write_inputs, profile
    x = np.random.default_rng(5).standard_normal((2, 3, 16, 16)).astype(np.float32)
    want = small(x)
    plan, prog = small.session().program(2)
    arena, ws = prog.new_arena(), prog.new_ws() if prog.ws_floats else None
    _write_inputs(plan, arena, {"x": x})
    t = prog.bind(arena, ws).run_timed(1)
    assert t.shape == (len(prog.steps),) and (t >= 0).all() and t.sum() > 0
    off = plan.offset(plan.outputs[next(iter(plan.outputs))])
    np.testing.assert_array_equal(arena[off:off + want.size].reshape(want.shape), want)
    p = profile(small, batch=2, peak=100.0, seconds_per_step=FAST)
    assert all(r.in_plan is not None and r.in_plan >= 0 for r in p.rows)
    bad = L.ffi.new("nd_record[]", 1)                    # a record without a kernel: ND_EINVAL at step 0
    b = prog.bind(arena, ws)
    b._records, b._n = bad, 1
    with pytest.raises(KernelError):
        b.run_timed(1)


def test_profiling_leaves_what_a_run_leaves(small):
    """Every step runs on the activations the steps before it produced (in-place steps are
    restored before each re-run): the output after profiling is the model's output."""
    from netdsl.runtime.profile import _write_inputs, time_steps
    for batch in (1, 3):
        x = np.random.default_rng(batch).standard_normal((batch, 3, 16, 16)).astype(np.float32)
        want = small(x)
        plan, prog = small.session().program(batch)
        assert plan.inplace                               # the restore path is exercised
        arena, ws = prog.new_arena(), prog.new_ws() if prog.ws_floats else None
        _write_inputs(plan, arena, {"x": x})
        times = time_steps(prog, arena, ws, 1, seconds=FAST)
        assert len(times) == len(prog.steps)
        off = plan.offset(plan.outputs[next(iter(plan.outputs))])
        got = arena[off:off + want.size].reshape(want.shape)
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_peak_is_measured_once_per_process(monkeypatch):
    from netdsl.runtime import profile as P
    calls = []
    monkeypatch.setattr(P, "_peak_cache", {})
    monkeypatch.setattr(P, "gemm_gflops", lambda m, n, k, t, s: calls.append((m, t)) or float(m))
    assert P.machine_peak(1) == 1024.0
    assert P.machine_peak(1) == 1024.0
    assert len(calls) == len(P.PEAK_SIZES)


def test_gemm_gflops_is_a_rate():
    from netdsl.runtime.profile import gemm_gflops
    g = gemm_gflops(64, 64, 64, 1, seconds=0.0)
    assert math.isfinite(g) and g > 0


# ---------------------------------------------------------------- the command line

def cli(capsys, *argv):
    from netdsl.cli import main
    rc = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return rc, out, err


def test_cli_profile_table(capsys):
    rc, out, err = cli(capsys, "run", "lenet5", "--profile", "--peak", "100")
    assert rc == 0, err
    assert "profile: lenet5, batch 1" in out and "peak 100.0 GFLOP/s (given)" in out
    rows = [ln.split()[1] for ln in out.splitlines() if re.match(r"\s*\d+\s{2}", ln)]
    assert rows == ["C1+tanh1", "S2", "C3+tanh2", "S4", "C5+tanh3", "F6+tanh4", "out"]
    assert "fc-like" in out.splitlines()[[i for i, ln in enumerate(out.splitlines()) if "C5+tanh3" in ln][0]]


def test_cli_profile_json(capsys, tmp_path):
    path = tmp_path / "p.json"
    rc, out, err = cli(capsys, "run", "lenet5", "--batch", "2", "--profile-json", str(path), "--peak", "50")
    assert rc == 0, err
    d = json.loads(path.read_text())
    assert d["batch"] == 2 and len(d["rows"]) == 7 and "profile:" not in out
    rc, out, err = cli(capsys, "run", "lenet5", "--profile-json", "-", "--peak", "50")
    assert rc == 0
    d = json.loads(out[out.index("{"):])
    assert [r["node"] for r in d["rows"]] == ["C1", "S2", "C3", "S4", "C5", "F6", "out"]


@pytest.mark.parametrize("peak", ["0", "-3", "nan"])
def test_cli_bad_peak_is_refused_before_running(capsys, peak):
    rc, out, err = cli(capsys, "run", "lenet5", "--profile", "--peak", peak)
    assert rc == 1 and "--peak must be a positive" in err and "top-5" not in out


def test_cli_profile_json_unwritable(capsys, tmp_path):
    rc, out, err = cli(capsys, "run", "lenet5", "--profile-json", str(tmp_path / "no" / "p.json"), "--peak", "9")
    assert rc == 1 and "cannot write" in err


# ---------------------------------------------------------------- benchmarks/compare.py's plumbing

@pytest.fixture
def compare(monkeypatch):
    """benchmarks/compare.py imported as a module, its import-time env defaults undone."""
    import importlib
    import os
    import sys
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    saved = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    monkeypatch.syspath_prepend(os.path.join(root, "benchmarks"))
    monkeypatch.setattr(sys, "argv", ["compare.py"])
    mod = importlib.import_module("compare")
    yield mod
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def test_compare_engine_names(compare):
    import argparse
    assert compare.engine_names(["onnxruntime"]) == ["ort"]
    assert compare.engine_names(["netdsl", "torch", "ORT", "ort"]) == ["netdsl", "torch", "ort"]
    with pytest.raises(argparse.ArgumentTypeError, match="unknown engine 'onnxruntim'"):
        compare.engine_names(["onnxruntim"])
    with pytest.raises(SystemExit) as e:
        compare.main(["--engines", "tensorflow", "--models", "lenet5"])
    assert e.value.code == 2


def test_compare_threads_env_takes_the_largest(compare, monkeypatch):
    import os
    for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.delenv(k, raising=False)
    compare.early_threads(["compare.py", "--threads", "1", "3", "--batch", "1"])
    assert os.environ["OMP_NUM_THREADS"] == "3"


def test_compare_busy_spinner_is_killed(compare):
    import subprocess
    import time
    with compare.Busy() as b:
        proc = b.proc
        time.sleep(0.2)
        assert proc.poll() is None                      # spinning
    assert proc.poll() is not None
    with pytest.raises(RuntimeError):
        with compare.Busy() as b:
            proc = b.proc
            raise RuntimeError("boom")
    assert proc.poll() is not None
    # a parent that dies without killing it (no atexit, no signal: os._exit): the spinner stops by itself
    code = ("import os, subprocess, sys; p = subprocess.Popen([sys.executable, '-c', sys.argv[1], str(os.getpid())], "
            "stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); print(p.pid, flush=True); os._exit(0)")
    parent = subprocess.run([sys_executable(), "-c", code, compare.SPIN], capture_output=True, text=True, timeout=30)
    pid = int(parent.stdout.split()[0])
    t0 = time.time()
    while alive(pid) and time.time() - t0 < 10:
        time.sleep(0.05)
    left = alive(pid)
    if left:                                            # do not leave it spinning when the test fails
        import os
        import signal
        os.kill(pid, signal.SIGKILL)
    assert not left


def sys_executable():
    import sys
    return sys.executable


def alive(pid):
    import os
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_compare_charges_ort_nodes_to_the_layer_computing_them(compare, small):
    from netdsl.runtime.profile import profile
    p = profile(small, batch=2, peak=100.0, seconds_per_step=FAST)
    by_row, other = compare.ort_by_row(p, {"relu1": 1.0, "stem": 0.5, "abn": 2.0, "relu3": 0.25,
                                           "ReorderOutput": 0.125})
    assert by_row == {"stem": 1.5, "a": 2.0, "cbn": 0.25} and other == {"ReorderOutput": 0.125}


def test_model_runs_the_same_after_profiling(small):
    """profile() works in the session's own arena: the next m(x) must not see what it left."""
    from netdsl.runtime.profile import profile
    x = np.random.default_rng(7).standard_normal((2, 3, 16, 16)).astype(np.float32)
    before = small(x)
    profile(small, np.random.default_rng(8).standard_normal((2, 3, 16, 16)).astype(np.float32),
            peak=10.0, seconds_per_step=FAST)
    np.testing.assert_array_equal(small(x), before)


def test_time_steps_refuses_a_short_arena(small):
    from netdsl.errors import NetDSLError
    from netdsl.runtime.profile import time_steps
    _, prog = small.session().program(1)
    with pytest.raises(NetDSLError, match="arena"):
        time_steps(prog, np.zeros(8, np.float32), prog.new_ws() if prog.ws_floats else None, 1)


def test_a_bundles_fused_activation_is_named_like_its_op():
    """Without source names (a bundle) the fused epilogue is read from the attributes and shown
    under the op's own name, for every activation of the table (relu6 -> +ReLU6)."""
    from netdsl.graph import Node
    from netdsl.ops import activations
    from netdsl.runtime.profile import _op_text
    for act, entry in activations.TABLE.items():
        node = Node("c", "Conv", {"kernel": (3, 3), "stride": (1, 1), "act": act, "residual": True})
        assert _op_text(node, []) == f"Conv 3x3+Add+{entry.op}"
