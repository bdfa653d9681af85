"""`netdsl compile MODEL --emit c`: the emitted C, compiled with the system `cc`, gives the runtime's outputs.

The oracle is the runtime itself (`netdsl.load(name)(x)`): same graph, same folded weights, same
kernels. The emitted library packs its conv weights at init with the ISA the CPU picks, as the
runtime does at plan time, so with packing the outputs must be equal BIT FOR BIT (same float
operations in the same order: the extension is built -std=c11, which in GCC means no FMA
contraction, and the emitted build says -ffp-contract=off too; these tests build at -O2, the
emitted Makefile at -O3, test_the_makefile_builds_and_runs checks that build too). The
unpacked path (packed = NULL) takes other algorithms for some convs (no Winograd, no direct
rows): there the bound is float rounding, 1e-5 of the output's scale, and bit-equality with the
runtime's own unpacked plan (Program(prepack=False)). Under ARM emulation the kernels run their
portable C, compared with the runtime forced to NETDSL_ISA=portable: bit for bit as well, except
that a NaN's sign is the CPU's (ARM's default NaN is positive, x86's negative).

Default run: lenet5, resnet18, mobilenet_v2 and generated networks covering most ops; every zoo
model is @slow (python -m pytest -q -m slow tests/deploy).
"""
from __future__ import annotations

import os
import re
import subprocess
import sys

import numpy as np
import pytest

import netdsl
from netdsl.cli import main as cli_main
from netdsl.deploy.csources import Sources, _file_scope, strip_c
from netdsl.deploy.emit_c import emit_c
from netdsl.errors import NetDSLError
from netdsl.runtime import lib as rlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cbuild import Builder, have  # noqa: E402

GEN_SEEDS = (6, 23, 0)     # the generated networks with the most distinct ops (30, 26 and 23 of them)
ROUNDING = 1e-5            # unpacked path: relative to the largest |output|
ARM_CC = "aarch64-linux-gnu-gcc"


def zoo_names():
    from netdsl import zoo
    for attr in ("names", "list_models", "available"):
        if hasattr(zoo, attr):
            return sorted(getattr(zoo, attr)())
    here = os.path.dirname(os.path.abspath(zoo.__file__))
    return sorted(f[:-4] for f in os.listdir(here) if f.endswith(".net"))


@pytest.fixture(scope="session")
def builder(tmp_path_factory):
    return Builder(str(tmp_path_factory.mktemp("emitc-objects")))


def _model(name):
    if name.startswith("gen"):
        from netdsl.testing import generate as gen
        return gen.generate(int(name[3:]))[2]
    return netdsl.load(name)


def _inputs(m, n, seed=0, special=False):
    g = m.session().graph
    rng = np.random.default_rng(seed)
    xs = {k: rng.standard_normal((n, *g[k].shape)).astype(np.float32) for k in g.inputs}
    if special:                  # NaN, +inf and -inf at fixed places of the first input
        x = next(iter(xs.values())).reshape(-1)
        x[[0, x.size // 3, x.size // 2]] = [np.nan, np.inf, -np.inf]
    return xs


def _flat(out):
    return np.concatenate([v.ravel() for v in (out.values() if isinstance(out, dict) else [out])])


def _reference(m, xs):
    return _flat(m(xs if len(xs) > 1 else next(iter(xs.values()))))


def _run_demo(exe, d, xs, extra=(), runner=(), runs=1):
    np.concatenate([v.ravel() for v in xs.values()]).tofile(os.path.join(d, "in.f32"))
    r = subprocess.run([*runner, exe, "-i", "in.f32", "-o", "out.f32", "-n", str(runs), *extra], cwd=d,
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, f"{exe} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
    return np.fromfile(os.path.join(d, "out.f32"), np.float32), r.stdout


def assert_bits(y, ref, what, nan_bits=True):
    """Equal bit for bit; nan_bits=False: any NaN equals any NaN (a NaN's sign and payload are
    the CPU's: x86 makes the default NaN negative, ARM positive)."""
    assert y.shape == ref.shape, f"{what}: {y.shape} values, the runtime gives {ref.shape}"
    same = y.view(np.uint32) == ref.view(np.uint32)
    if not nan_bits:
        same |= np.isnan(y) & np.isnan(ref)
    if not same.all():
        i = int(np.flatnonzero(~same)[0])
        diff = np.nanmax(np.abs(y.astype(np.float64) - ref)) if np.isfinite(y).any() else float("nan")
        raise AssertionError(f"{what}: {int((~same).sum())} of {y.size} values differ from the runtime "
                             f"(first at {i}: {y[i]!r} vs {ref[i]!r}; max |diff| {diff:.3g})")


def assert_rounding(y, ref, what):
    assert y.shape == ref.shape
    assert np.array_equal(np.isnan(y), np.isnan(ref)), f"{what}: NaN in different places"
    fin = np.isfinite(ref)
    assert np.array_equal(y[~fin & ~np.isnan(ref)], ref[~fin & ~np.isnan(ref)]), f"{what}: inf differ"
    scale = max(float(np.abs(ref[fin]).max()) if fin.any() else 0.0, 1e-30)
    err = float(np.abs(y[fin].astype(np.float64) - ref[fin]).max()) if fin.any() else 0.0
    assert err <= ROUNDING * scale, f"{what}: max |diff| {err:.3g} > {ROUNDING} x {scale:.3g}"


@pytest.fixture(scope="session")
def emitted(builder, tmp_path_factory):
    """(name, batch=1, openmp=True, embed=False) -> (Model, folder, demo binary), built once a session."""
    cache = {}

    def get(name, batch=1, openmp=True, embed=False):
        key = (name, batch, openmp, embed)
        if key not in cache:
            m = _model(name)
            d = str(tmp_path_factory.mktemp(f"emit-{name}-b{batch}"))
            emit_c(m, d, batch=batch, embed_weights=embed)
            cache[key] = (m, d, builder.build(d, openmp=openmp))
        return cache[key]
    return get


def _compare(emitted, name, *, openmp=True, batch=1, special=False, embed=False, unpacked=True):
    m, d, exe = emitted(name, batch, openmp, embed)
    xs = _inputs(m, batch, special=special)
    ref = _reference(m, xs)
    y, out = _run_demo(exe, d, xs)
    assert f"OpenMP {'on' if openmp else 'off'}" in out
    assert_bits(y, ref, f"{name} (packed)")
    if unpacked:
        y2, _ = _run_demo(exe, d, xs, ["--no-pack"])
        assert_rounding(y2, ref, f"{name} (unpacked)")
    return m, d, ref


# ------------------------------------------------------------------ matches the runtime

DEFAULT = ["lenet5", "resnet18", "mobilenet_v2"] + [f"gen{s}" for s in GEN_SEEDS[:2]]


@pytest.mark.parametrize("name", DEFAULT + [pytest.param(f"gen{s}", marks=pytest.mark.slow) for s in GEN_SEEDS[2:]])
def test_emitted_c_gives_the_runtimes_outputs_bit_for_bit(emitted, name):
    _compare(emitted, name)


def test_the_default_models_reach_most_kernels():
    """The default run's networks call most of the inference kernels (the generated ones add
    what the zoo lacks: pads, slices, PReLU, resize, LRN, local convs, the activations ...)."""
    from netdsl.runtime.plan import lower
    calls = set()
    for name in DEFAULT:
        m = _model(name)
        calls |= {(st.call.symbol, st.call.fields.get("act", st.call.fields.get("mode"))) for st in
                  lower(m.session().graph, 1).steps}
    symbols = {c[0] for c in calls}
    assert len(symbols) >= 20, sorted(symbols)


@pytest.mark.parametrize("name", ["lenet5", pytest.param("gen6", marks=pytest.mark.slow)])
def test_without_openmp_the_same_bits(emitted, name):
    _compare(emitted, name, openmp=False, unpacked=False)


def test_batch_3_plan_matches_the_runtime_at_batch_3(emitted):
    _, d, _ = _compare(emitted, "gen23", batch=3, unpacked=False)
    assert re.search(r"#define \w+_BATCH 3\n", open(os.path.join(d, "model.h")).read())


@pytest.mark.parametrize("name", ["lenet5", "gen6", pytest.param("gen0", marks=pytest.mark.slow)])
def test_nan_and_inf_propagate_as_in_the_runtime(emitted, name):
    *_, ref = _compare(emitted, name, special=True, unpacked=False)
    assert not np.isfinite(ref).all(), "the special input should reach the output"


def test_unpacked_path_equals_the_runtimes_unpacked_plan(emitted):
    """packed = NULL runs the plan the Python executor runs with Program(prepack=False)."""
    from netdsl.runtime.executor import Program, Step
    from netdsl.runtime.plan import lower
    m, d, exe = emitted("resnet18")
    sess = m.session()
    g = sess.graph
    plan = lower(g, 1)
    steps = []
    for st in plan.steps:
        w, b = sess._node_weights(st.node, st.call)
        steps.append(Step(st.call, plan.offset(st.out), [plan.offset(i) for i in st.ins], w, b, name=st.node))
    prog = Program(steps, plan.arena_floats, prepack=False)
    xs = _inputs(m, 1)
    arena = prog.new_arena()
    name = g.inputs[0]
    arena[plan.offset(name):plan.offset(name) + xs[name].size] = xs[name].ravel()
    prog.run(arena, prog.new_ws())
    (oname, node), = plan.outputs.items()
    ref = arena[plan.offset(node):plan.offset(node) + int(np.prod(g[node].shape))].copy()
    y, _ = _run_demo(exe, d, xs, ["--no-pack"])
    assert_bits(y, ref, "resnet18 unpacked vs Program(prepack=False)")
    packed = _reference(m, xs)
    assert not np.array_equal(y, packed), "resnet18's packed plan (Winograd) should round differently"


def test_embedded_weights_give_the_same_bits(emitted):
    _, d, _ = _compare(emitted, "lenet5", embed=True, unpacked=False)
    assert os.path.exists(os.path.join(d, "model_weights.c"))
    assert not os.path.exists(os.path.join(d, "model.weights"))


def test_loaded_weights_are_the_ones_emitted(builder, tmp_path):
    """--weights W: the emitted library runs W, as `netdsl run --weights W` does."""
    m = netdsl.load("lenet5")
    rng = np.random.default_rng(5)
    state = {k: rng.standard_normal(v.shape).astype(np.float32) * 0.2 for k, v in m.state_dict().items()}
    wfile = str(tmp_path / "w.npz")
    np.savez(wfile, **state)
    d = str(tmp_path / "out")
    assert cli_main(["compile", "lenet5", "--emit", "c", "--weights", wfile, "-o", d]) == 0
    exe = builder.build(d)
    m2 = netdsl.load("lenet5", weights=wfile)
    xs = _inputs(m2, 1)
    y, _ = _run_demo(exe, d, xs)
    assert_bits(y, _reference(m2, xs), "lenet5 with --weights")
    assert not np.array_equal(y, _reference(m, xs))


# ------------------------------------------------------------------ what is emitted

def test_only_the_kernels_the_plan_uses_are_copied(tmp_path):
    e = emit_c(netdsl.load("lenet5"), str(tmp_path / "l5"))
    ks = set(e.kernels)
    assert {"kernels/conv.c", "kernels/pool.c", "kernels/fc.c", "dispatch.c", "kernels/gemm.c"} <= ks
    for never in ("kernels/resize.c", "kernels/detect.c", "kernels/merge.c", "kernels/norm.c",
                  "runtime/executor.c", "kernels/softmax.c"):
        assert never not in ks
    assert not any("train_" in k for k in ks)
    on_disk = {os.path.relpath(os.path.join(r, f), tmp_path / "l5" / "netdsl").replace(os.sep, "/")
               for r, _, fs in os.walk(tmp_path / "l5" / "netdsl") for f in fs}
    assert on_disk == ks


def test_the_closure_finds_each_symbols_definer_and_what_it_calls():
    src = Sources()
    assert src.definer["nd_conv_f32"] == "kernels/conv.c"
    assert src.definer["nd_dw_plane_avx2"] == "kernels/conv_dw.c"      # pasted by ND_EACH_ISA
    assert "kernels/conv_winograd.c" in src.closure(["nd_conv_f32"])  # conv.c calls nd_wino_run
    assert "kernels/conv_winograd_body.inc" in src.closure(["nd_conv_f32"])
    relu = src.closure(["nd_relu_f32"])
    assert "kernels/conv.c" not in relu and "kernels/activation.c" in relu
    with pytest.raises(NetDSLError, match="no C source"):
        src.closure(["nd_nosuch_f32"])


def test_model_c_is_straight_line_with_no_stdio_malloc_or_mutable_globals(tmp_path):
    emit_c(_model("gen6"), str(tmp_path / "g"))
    text = open(tmp_path / "g" / "model.c").read()
    assert "nd_run_plan" not in text and "nd_record" not in text
    for banned in ("stdio.h", "printf", "malloc", "free(", "fopen"):
        assert banned not in text, banned
    # every file-scope object is const
    scope = _file_scope(strip_c(text))          # function bodies and initializers emptied
    scope = re.sub(r"[^;{}]*\([^;{}]*\)\s*\{\}", "", scope)     # function definitions
    decls = [d.strip() for d in scope.split(";") if d.strip()]
    data = [d for d in decls if "(" not in d.split("=")[0] and not d.startswith("typedef")]   # objects
    assert len(data) > 5
    for decl in data:
        assert re.search(r"\bconst\b", decl.split("=")[0]), f"mutable global in model.c: {decl}"


def test_model_h_states_the_memory_contract(tmp_path):
    m = netdsl.load("lenet5")
    e = emit_c(m, str(tmp_path / "l5"), batch=2, threads=2)
    h = open(tmp_path / "l5" / "model.h").read()
    assert "#define LENET5_BATCH 2" in h
    assert "#define LENET5_INPUT0_SHAPE {2, 1, 32, 32}" in h
    assert "#define LENET5_OUTPUT0_SHAPE {2, 10}" in h
    assert f"#define LENET5_ARENA_BYTES ((size_t){e.arena_bytes})" in h
    assert f"#define LENET5_WEIGHT_BYTES ((size_t){e.weight_bytes})" in h
    assert os.path.getsize(tmp_path / "l5" / "model.weights") == e.weight_bytes
    params = sum(v.size for v in m.state_dict().values())
    assert e.weight_bytes >= 4 * params           # every tensor, each on a 64-byte line
    assert "#define LENET5_MAX_THREADS 2" in h


# ------------------------------------------------------------------ the builds a user runs

def test_the_makefile_builds_and_runs(tmp_path):
    """The emitted Makefile (its default -O3, here without OpenMP) builds a demo that gives the
    runtime's bits: the tests above build at -O2, so both levels are checked."""
    if not have("make"):
        pytest.skip("no make on this machine")
    d = tmp_path / "l5"
    m = netdsl.load("lenet5")
    emit_c(m, str(d))
    assert "CFLAGS ?= -O3" in (d / "Makefile").read_text()
    r = subprocess.run(["make", "-s", "-j2", "OPENMP="], cwd=d, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    xs = _inputs(m, 1, seed=3)
    y, out = _run_demo(str(d / "lenet5_demo"), str(d), xs, runs=2)
    assert "OpenMP off" in out and "top-5" in out and "median" in out
    assert_bits(y, _reference(m, xs), "lenet5 built by its Makefile")


@pytest.mark.slow
def test_cmake_builds_and_runs(tmp_path):
    if not have("cmake"):
        pytest.skip("no cmake on this machine")
    d = tmp_path / "l5"
    emit_c(netdsl.load("lenet5"), str(d))
    for cmd in (["cmake", "-S", ".", "-B", "build"], ["cmake", "--build", "build", "-j2"]):
        r = subprocess.run(cmd, cwd=d, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stdout + r.stderr
    r = subprocess.run(["build/lenet5_demo", "-w", "model.weights", "-n", "1"], cwd=d, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0 and "top-5" in r.stdout, r.stderr


# ------------------------------------------------------------------ bad input

def test_the_c_api_refuses_bad_arguments_without_crashing(builder, tmp_path):
    d = tmp_path / "l5"
    emit_c(netdsl.load("lenet5"), str(d))
    (d / "bad.c").write_text(r'''
#define _POSIX_C_SOURCE 200112L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "model.h"
int main(void) {
    float *w = calloc(LENET5_WEIGHT_FLOATS, 4), *a = aligned_alloc(64, LENET5_ARENA_BYTES);
    float x[LENET5_INPUT_FLOATS] = {0}, y[LENET5_OUTPUT_FLOATS];
    float junk[64]; memset(junk, 0, sizeof junk);
    printf("%d %d %d %d %d %d\n",
        lenet5_run(w, NULL, a, LENET5_ARENA_BYTES - 4, x, y),            /* arena too small */
        lenet5_run(NULL, NULL, a, LENET5_ARENA_BYTES, x, y),             /* no weights */
        lenet5_run(w, NULL, (char *)a + 1, LENET5_ARENA_BYTES, x, y),    /* misaligned */
        lenet5_run(w, junk, a, LENET5_ARENA_BYTES, x, y),                /* packed not packed */
        lenet5_pack(w, junk, sizeof junk),                               /* packed too small */
        lenet5_run(w, NULL, a, LENET5_ARENA_BYTES, NULL, y));            /* no input */
    printf("%d\n", lenet5_run(w, NULL, a, LENET5_ARENA_BYTES, x, y));
    setenv("NETDSL_GEMM_BLOCKS", "512,512,4096", 1);                     /* would outgrow the workspace */
    printf("%d\n", lenet5_run(w, NULL, a, LENET5_ARENA_BYTES, x, y));
    printf("%s|%s\n", lenet5_layer_name(0), lenet5_layer_name(99));
    return 0;
}
''')
    main_c = (d / "main.c").read_text()
    (d / "main.c").write_text((d / "bad.c").read_text())
    exe = builder.build(str(d))
    (d / "main.c").write_text(main_c)
    r = subprocess.run([exe], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.split("\n")
    assert lines[0] == "-1 -1 -1 -2 -2 -1" and lines[1] == "0" and lines[2] == "-3" and lines[3] == "C1|?", r.stdout


def test_the_demo_rejects_a_weights_file_from_another_emit(emitted):
    _, d, exe = emitted("lenet5")
    import pathlib
    d = pathlib.Path(d)
    w = np.fromfile(d / "model.weights", np.float32)
    w[7] += 1.0
    w.tofile(d / "other.weights")
    r = subprocess.run([exe, "-w", "other.weights"], cwd=d, capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "CRC-32" in r.stderr and "another emit" in r.stderr
    w[:-1].tofile(d / "short.weights")
    r = subprocess.run([exe, "-w", "short.weights"], cwd=d, capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and f"needs {w.size * 4}" in r.stderr


def _cli(capsys, *argv):
    code = cli_main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_errors_are_clear(capsys, tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    code, _, err = _cli(capsys, "compile", "lenet5", "--emit", "c", "-o", str(f / "sub"))
    assert code == 1 and "is a file, not a directory" in err and "hint:" in err and "Traceback" not in err
    code, _, err = _cli(capsys, "compile", "lenet5", "--emit", "c", "-o", str(f))
    assert code == 1 and "not a directory" in err
    code, _, err = _cli(capsys, "compile", "lenet5", "--emit", "c", "-o", str(tmp_path / "o"), "--batch", "0")
    assert code == 1 and "--batch must be a positive integer" in err
    code, _, err = _cli(capsys, "compile", "lenet5", "--emit", "c", "-o", str(tmp_path / "o"), "--threads", "0")
    assert code == 1 and "--threads" in err and "hint:" in err
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "model.c").write_text("int my_own_code;\n")
    code, _, err = _cli(capsys, "compile", "lenet5", "--emit", "c", "-o", str(tmp_path / "mine"))
    assert code == 1 and "netdsl did not write" in err and "--force" in err
    assert (tmp_path / "mine" / "model.c").read_text() == "int my_own_code;\n"
    code, out, err = _cli(capsys, "compile", "lenet5", "--emit", "c", "-o", str(tmp_path / "ok"))
    assert code == 0 and "wrote" in out and "initial weights" in err
    code, out, _ = _cli(capsys, "compile", "lenet5", "--emit", "c", "-o", str(tmp_path / "ok"))
    assert code == 0, "re-emitting over our own output needs no --force"
    code, _, err = _cli(capsys, "compile", "lenet5", "--embed-weights", "-o", str(tmp_path / "l5.netc"))
    assert code == 1 and "--embed-weights goes with --emit c" in err and "hint:" in err
    assert not (tmp_path / "l5.netc").exists()
    os.environ["NETDSL_GEMM_BLOCKS"] = "64,64,256"
    try:
        code, _, err = _cli(capsys, "compile", "lenet5", "--emit", "c", "-o", str(tmp_path / "blocks"))
    finally:
        del os.environ["NETDSL_GEMM_BLOCKS"]
    assert code == 1 and "NETDSL_GEMM_BLOCKS is set" in err and "unset" in err


def test_an_int8_bundle_is_refused_not_emitted_as_float32(capsys, tmp_path):
    """--emit c writes float32 kernels: an int8 bundle (netdsl quantize) is an error that says
    what to emit instead, and nothing is written."""
    from netdsl.quant import quantize
    m = netdsl.load("lenet5")
    x = np.random.default_rng(0).standard_normal((8, *m.input_shapes["x"])).astype(np.float32)
    quantize(m, x).save(str(tmp_path / "l5.int8.netc"))
    code, _, err = _cli(capsys, "compile", str(tmp_path / "l5.int8.netc"), "--emit", "c", "-o", str(tmp_path / "c"))
    assert code == 1 and "is an int8 bundle" in err and "hint:" in err and "Traceback" not in err
    assert not (tmp_path / "c").exists()


def test_a_kernel_that_cannot_be_emitted_names_its_layer(tmp_path, monkeypatch):
    from netdsl.runtime import kparams
    orig = kparams.builder

    def fake(op):
        b = orig(op)
        if op != "AvgPool":
            return b

        def build(*a, **k):
            call = b(*a, **k)
            call.symbol = "nd_avgpool_gpu_only"
            return call
        return build
    monkeypatch.setattr(kparams, "builder", fake)
    m = netdsl.load("lenet5")
    with pytest.raises(NetDSLError, match=r"layer 'S2' \(AvgPool.*cannot be emitted"):
        emit_c(m, str(tmp_path / "x"))


def test_embedding_huge_weights_warns(tmp_path, monkeypatch):
    from netdsl.deploy import emit_c as mod
    monkeypatch.setattr(mod, "EMBED_WARN_BYTES", 1000)
    e = emit_c(netdsl.load("lenet5"), str(tmp_path / "l5"), embed_weights=True)
    assert e.warnings and "MiB" in e.warnings[0] and "model.weights" in e.warnings[0]
    e = emit_c(netdsl.load("lenet5"), str(tmp_path / "l5b"))
    assert not e.warnings


# ------------------------------------------------------------------ 64-bit ARM under emulation

def _arm_or_skip():
    if not have(ARM_CC) or not have("qemu-aarch64"):
        pytest.skip(f"no {ARM_CC} / qemu-aarch64 (apt-get install gcc-aarch64-linux-gnu qemu-user)")


def _arm_compare(builder, tmp_path, name):
    _arm_or_skip()
    m = _model(name)
    d = str(tmp_path / name)
    emit_c(m, d)
    exe = builder.build(d, cc=ARM_CC, static=True)
    xs = _inputs(m, 1, special=True)
    with rlib.using_isa("portable"):
        ref = _reference(_model(name), xs)
    y, out = _run_demo(exe, d, xs, runner=["qemu-aarch64"], runs=0)
    assert "ISA portable" in out
    assert_bits(y, ref, f"{name} on aarch64 (qemu) vs the runtime's portable kernels", nan_bits=False)


@pytest.mark.parametrize("name", ["gen6", pytest.param("lenet5", marks=pytest.mark.slow)])
def test_arm64_under_qemu_gives_the_portable_runtimes_bits(builder, tmp_path, name):
    _arm_compare(builder, tmp_path, name)


# ------------------------------------------------------------------ every zoo model (slow)

@pytest.mark.slow
@pytest.mark.parametrize("name", zoo_names())
def test_zoo_model_emitted_c_matches_the_runtime(emitted, name):
    _compare(emitted, name)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mobilenet_v2", "resnet18", "yolov2_tiny", "squeezenet1_1", "gen23"])
def test_arm64_zoo_models_under_qemu(builder, tmp_path, name):
    _arm_compare(builder, tmp_path, name)
