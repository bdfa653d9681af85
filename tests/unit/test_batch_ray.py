"""`netdsl batch --engine ray` on a local Ray instance started inside the test module.

One `ray.init(num_cpus=2)` is shared by the module. A few hundred generated images go
through two actors of one thread each; the oracle is the local engine on the same inputs
(same bundle, same batches: equal bit for bit) and, for the ids, the sorted folder listing.
A killed actor is a real one: the fault hook makes the actor that is about to run a given
shard os._exit, once; Ray restarts it and retries the shard.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason='Ray is an optional extra: pip install "netdsl[ray]"')
pytest.importorskip("ray.data", reason="--engine ray needs Ray Data (ray[data])")
Image = pytest.importorskip("PIL.Image", reason="Pillow is needed to write the test images")

from netdsl.batch import predict  # noqa: E402
from netdsl.batch.shards import read_output  # noqa: E402

from test_batch import NET, ROOT, make_images  # noqa: E402  (tests/unit is on sys.path)

# Ray Data's own DataContext deprecations (use_polars, ...), raised inside Ray, not by netdsl
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

N_IMAGES = 240
SHARD = 24


@pytest.fixture(scope="module")
def cluster():
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    d = tmp_path_factory.mktemp("rayjob")
    (d / "tiny.net").write_text(NET)
    root = str(d / "imgs")
    ids = make_images(root, N_IMAGES, seed=7)
    with open(os.path.join(root, "zz-broken.png"), "wb") as f:
        f.write(b"not a png")
    local = predict(str(d / "tiny.net"), root, None, batch=8, shard_size=SHARD, threads=1, progress=False)
    return str(d / "tiny.net"), root, ids, local


def _same(p, local, ids):
    assert p.ids == ids and len(set(p.ids)) == len(p.ids), "every id exactly once, in input order"
    np.testing.assert_array_equal(p.outputs["output"], local.outputs["output"])
    np.testing.assert_array_equal(p.top1, local.top1)
    assert [i for i, _ in p.skipped] == ["zz-broken.png"]


def test_ray_equals_the_local_engine(cluster, job, tmp_path):
    net, root, ids, local = job
    out = str(tmp_path / "p.npz")
    p = predict(net, root, out, batch=8, shard_size=SHARD, engine="ray", actors=2, threads=1, progress=False)
    _same(p, local, ids)
    back = read_output(out)
    assert back["id"] == ids and back["metadata"]["engine"] == "ray"
    np.testing.assert_array_equal(back["output"], local.outputs["output"])
    assert not os.path.exists(out + ".parts")


def test_a_killed_actor_is_restarted_and_its_shard_redone(cluster, job, tmp_path, monkeypatch):
    net, root, ids, local = job
    marker = tmp_path / "killed"
    monkeypatch.setenv("NETDSL_BATCH_FAULT", f"ray:4:{marker}")
    p = predict(net, root, str(tmp_path / "p.npz"), batch=8, shard_size=SHARD, engine="ray", actors=2,
                threads=1, progress=False)
    assert marker.exists(), "the fault hook did kill an actor"
    _same(p, local, ids)


def test_ray_resumes_a_job_the_local_engine_started(cluster, job, tmp_path):
    """The work folder is the engine's common ground: shards written by a killed local run are
    kept, the rest is done on Ray, and the result is the uninterrupted one."""
    net, root, ids, local = job
    out = str(tmp_path / "p.npz")
    env = dict(os.environ, PYTHONPATH=ROOT, NETDSL_BATCH_FAULT=f"local:3:{tmp_path}/marker")
    r = subprocess.run([sys.executable, "-m", "netdsl", "batch", net, "--input", root, "--output", out,
                        "--batch", "8", "--shard-size", str(SHARD), "--no-progress", "--threads", "1"],
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 17, r.stderr
    p = predict(net, root, out, batch=8, shard_size=SHARD, engine="ray", actors=2, threads=1, progress=False)
    assert p.reused == 3 and p.shards == -(-(N_IMAGES + 1) // SHARD)
    _same(p, local, ids)


def test_an_unreachable_cluster_is_a_quick_clear_error(tmp_path):
    """In a fresh process (no Ray initialized): nobody listens on that port."""
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    (tmp_path / "x.net").write_text("input x: 4\nFC(2)\n")
    np.save(tmp_path / "x.npy", np.zeros((3, 4), np.float32))
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "netdsl", "batch", str(tmp_path / "x.net"), "--input",
                        str(tmp_path / "x.npy"), "--output", str(tmp_path / "p.npz"), "--engine", "ray",
                        "--address", f"ray://127.0.0.1:{port}"], env=dict(os.environ, PYTHONPATH=ROOT),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1, r.stderr
    assert f"cannot reach the Ray cluster at ray://127.0.0.1:{port}" in r.stderr
    assert "hint:" in r.stderr and "Traceback" not in r.stderr
    assert time.perf_counter() - t0 < 30


@pytest.mark.slow
def test_a_shard_that_kills_every_actor_ends_the_job_and_keeps_the_rest(cluster, job, tmp_path, monkeypatch):
    """Ray's retries are bounded: the job stops with a NetDSLError, every other shard is kept,
    and once the fault is gone the rerun does only the missing shard."""
    from netdsl.errors import NetDSLError
    net, root, ids, local = job
    out = str(tmp_path / "p.npz")
    monkeypatch.setenv("NETDSL_BATCH_FAULT", "ray:2:always")
    with pytest.raises(NetDSLError, match="the Ray job failed") as e:
        predict(net, root, out, batch=8, shard_size=SHARD, engine="ray", actors=2, threads=1, progress=False)
    assert "rerun the same command" in e.value.hint
    kept = sorted(f for f in os.listdir(out + ".parts") if f.startswith("shard-"))
    assert "shard-000002.npz" not in kept
    monkeypatch.delenv("NETDSL_BATCH_FAULT")
    p = predict(net, root, out, batch=8, shard_size=SHARD, engine="ray", actors=2, threads=1, progress=False)
    missing = [k for k in range(p.shards) if f"shard-{k:06d}.npz" not in kept]     # shard 2, maybe others
    assert 2 in missing and p.reused == len(kept) == p.shards - len(missing)
    assert p.ran == sum(min(SHARD, N_IMAGES + 1 - k * SHARD) for k in missing)
    _same(p, local, ids)
