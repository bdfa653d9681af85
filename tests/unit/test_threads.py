"""Threads: the tiny-plan decision, the OpenMP wait policy netdsl sets, the thread count a
run leaves behind, and the --bench noise warning (synthetic timings, nothing timed)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import netdsl
from netdsl.cli import BENCH_OTHERS, BENCH_SPREAD, bench_noise
from netdsl.runtime import lib
from netdsl.runtime.session import SERIAL_WORK, plan_threads, plan_work

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
needs_kernels = pytest.mark.skipif(not lib.available(), reason="C kernels not built")


def test_plan_threads_small_plans_run_on_one_thread():
    assert plan_threads(SERIAL_WORK - 1, 2) == 1
    assert plan_threads(0, None) == 1
    assert plan_threads(SERIAL_WORK, 2) == 2
    assert plan_threads(SERIAL_WORK * 10, None) == 0      # OpenMP's default
    assert plan_threads(SERIAL_WORK * 10, 1) == 1


@needs_kernels
def test_lenet_is_tiny_and_resnet_is_not():
    small = netdsl.load("lenet5", threads=2).session()
    assert small.threads_for(1) == 1
    plan, prog = small.program(1)
    assert prog.work == plan_work(small.graph, plan, 1) < SERIAL_WORK
    assert small.program(64)[1].work == 64 * prog.work
    big = netdsl.load("resnet18", threads=2).session()
    assert big.threads_for(1) == 2


@needs_kernels
def test_a_run_leaves_the_thread_count_alone():
    before = lib.max_threads()
    m = netdsl.load("lenet5", threads=2)        # a tiny plan: runs with threads=1 in C
    x = np.zeros((1, 1, 32, 32), np.float32)
    m(x)
    assert lib.max_threads() == before
    prog = m.session().program(1)[1]
    for t in (1, 3, 0):
        prog.run(prog.new_arena(), prog.new_ws(), threads=t)
        assert lib.max_threads() == before


def _wait_in_subprocess(env_extra, pre=""):
    env = {k: v for k, v in os.environ.items() if k not in lib.WAIT_VARS}
    env.update(env_extra)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    code = (f"{pre}\nimport json, os\nfrom netdsl.runtime import lib\nw = lib.wait_policy()\n"
            "w['env_after'] = {v: os.environ.get(v) for v in lib.WAIT_VARS}\nprint(json.dumps(w))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


@needs_kernels
@pytest.mark.skipif(not lib.has_openmp(), reason="no OpenMP")
def test_netdsl_sets_a_short_spin_for_libgomp_and_cleans_up():
    w = _wait_in_subprocess({})
    name, value = lib.WAIT_SETTING
    assert w[name] == value                                  # what libgomp's constructor read
    assert all(w[v] is None for v in lib.WAIT_VARS if v != name)
    assert w["set_by_netdsl"] and w["effective"]
    assert w["env_after"] == {"OMP_WAIT_POLICY": None, "GOMP_SPINCOUNT": None}   # children see the user's env


@needs_kernels
@pytest.mark.skipif(not lib.has_openmp(), reason="no OpenMP")
@pytest.mark.parametrize("var,value", [("OMP_WAIT_POLICY", "ACTIVE"), ("GOMP_SPINCOUNT", "12345")])
def test_a_users_own_wait_setting_wins(var, value):
    w = _wait_in_subprocess({var: value})
    assert w[var] == value
    other = [v for v in lib.WAIT_VARS if v != var][0]
    assert w[other] is None                                  # netdsl added nothing
    assert not w["set_by_netdsl"] and not w["effective"]
    assert w["env_after"][var] == value


@needs_kernels
@pytest.mark.skipif(not lib.has_openmp(), reason="no OpenMP")
def test_libgomp_loaded_first_is_reported():
    w = _wait_in_subprocess({}, pre="import ctypes\nctypes.CDLL('libgomp.so.1')")
    assert w["libgomp_preloaded"] and not w["effective"]


def test_bench_noise_quiet_timings_pass():
    assert bench_noise([1.0, 1.01, 0.99, 1.02, 1.0, 1.03, 0.98, 1.0, 1.01, 1.05], 0.0) is None
    assert bench_noise([1.0] * 20, None) is None


def test_bench_noise_wide_spread_warns():
    ts = [1.0] * 8 + [BENCH_SPREAD * 1.5] * 4
    note = bench_noise(ts, None)
    assert note and "noisy" in note and "median" in note


def test_bench_noise_other_processes_warn():
    note = bench_noise([1.0] * 10, BENCH_OTHERS + 0.5)
    assert note and "other processes" in note
    assert bench_noise([1.0] * 10, BENCH_OTHERS / 2) is None
