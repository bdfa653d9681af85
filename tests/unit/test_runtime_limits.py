"""Runtime limits and ordering: memory checked before allocating, bounded caches,
weight files read header first, weight values checked, and weight changes that
always win over a concurrent session build (issue 7)."""
from __future__ import annotations

import struct
import threading
import tracemalloc
import zipfile

import numpy as np
import pytest

import netdsl
from netdsl import NetDSLError
from netdsl.runtime import lib

pytestmark = pytest.mark.skipif(not lib.available(), reason="C kernels not built")

NET = """input x: 3x8x8
c1:Conv(4, 3, pad=1) - bn:BN - ReLU - Pool - fc:FC(5)
"""

BIG = """input x: 3x64x64
c1:Conv(64, 3, pad=1) - ReLU
c2:Conv(64, 3, pad=1) - GAP - FC(10)
"""


def numpy_forward(sd, x):
    """Independent oracle for NET: conv 3x3 pad 1, BN (eps 1e-5), ReLU, 2x2 max pool, FC."""
    n = x.shape[0]
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (1, 1), (1, 1)))
    w = sd["c1.weight"].astype(np.float64)
    y = np.zeros((n, 4, 8, 8))
    for i in range(3):
        for j in range(3):
            y += np.einsum("nchw,oc->nohw", xp[:, :, i:i + 8, j:j + 8], w[:, :, i, j])
    y += sd["c1.bias"][None, :, None, None]
    y = (y - sd["bn.running_mean"][None, :, None, None]) / np.sqrt(sd["bn.running_var"][None, :, None, None] + 1e-5)
    y = y * sd["bn.weight"][None, :, None, None] + sd["bn.bias"][None, :, None, None]
    y = np.maximum(y, 0).reshape(n, 4, 4, 2, 4, 2).max(axis=(3, 5))
    return y.reshape(n, -1) @ sd["fc.weight"].T.astype(np.float64) + sd["fc.bias"]


def shifted(m, k=0.5):
    sd = {name: v + k for name, v in m.state_dict().items()}
    sd["bn.running_var"] = np.abs(sd["bn.running_var"]) + 0.5
    return sd


# -- memory: checked before anything is allocated, both numbers and the largest layer named

def test_memory_limit_refuses_before_allocating(monkeypatch):
    m = netdsl.parse(BIG, "big.net")
    # weights 4 * (64*3*9+64 + 64*64*9+64 + 64*10+10) = 157,480 B; the arena at batch 64 is over 100 MiB
    monkeypatch.setenv("NETDSL_MEMORY_LIMIT", str(20 * 2**20))
    x = np.zeros((64, 3, 64, 64), np.float32)
    with pytest.raises(NetDSLError) as e:
        m(x)
    text = str(e.value)
    assert "running this network at batch 64 needs" in text
    assert "but only 20 MiB of memory is available (NETDSL_MEMORY_LIMIT)" in text
    assert "weights 154 KiB" in text                            # 157,480 B / 1024 = 153.8
    assert "the largest layer is c1 (Conv, big.net line 2): its output for batch 64 is 64 MiB" in text
    assert "big.net:2:" in text and "hint: that layer alone does not fit: use a smaller batch" in text
    assert m._weights is None and m._session is None          # nothing was allocated
    # batch 4: c1 and c2 outputs 64*64*64*4*4 B = 4 MiB each, both live: arena 8 MiB; each layer fits
    monkeypatch.setenv("NETDSL_MEMORY_LIMIT", str(6 * 2**20))
    with pytest.raises(NetDSLError) as e:
        m(x[:4])
    text = str(e.value)
    assert "needs 8.15 MiB (weights 154 KiB + arena for batch 4 8 MiB) but only 6 MiB" in text
    assert "its output for batch 4 is 4 MiB" in text and "hint: use a smaller batch (--batch)" in text
    monkeypatch.setenv("NETDSL_MEMORY_LIMIT", str(2**40))
    assert m(x[:1]).shape == (1, 10)                           # fits: runs


def test_weights_too_large_are_refused_before_init(monkeypatch):
    m = netdsl.parse("input x: 3x8x8\nc1:Conv(8, 3) - big:FC(100000)\n", "w.net")
    monkeypatch.setenv("NETDSL_MEMORY_LIMIT", str(10**8))    # 8*6*6*100000*4 = 115.2 MB of FC weight
    with pytest.raises(NetDSLError) as e:
        m.state_dict()
    text = str(e.value)
    # (288*100000 + 100000 + 8*27 + 8) * 4 B = 115,600,896 B = 110.2 MiB
    assert "initializing this network's weights needs 110 MiB (weights 110 MiB)" in text
    assert "the largest layer is big (FC, w.net line 2): its weights are 110 MiB" in text
    assert m._weights is None


def test_memory_limit_env_must_be_a_number(monkeypatch):
    monkeypatch.setenv("NETDSL_MEMORY_LIMIT", "lots")
    with pytest.raises(NetDSLError, match="is not a number of bytes"):
        netdsl.parse(NET)(np.zeros((1, 3, 8, 8), np.float32))


# -- per-batch caches are bounded

def test_batch_size_cache_is_bounded_and_results_stay_right():
    from netdsl.runtime.session import CACHED_BATCHES
    m = netdsl.parse(NET)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((12, 3, 8, 8)).astype(np.float32)
    want = numpy_forward(m.state_dict(), x)
    for n in range(1, 13):
        np.testing.assert_allclose(m(x[:n]), want[:n], rtol=1e-4, atol=1e-5)
        progs, arenas = m.session().cached_batches()
        assert len(progs) <= CACHED_BATCHES and len(arenas) <= CACHED_BATCHES
    assert progs == [9, 10, 11, 12] and arenas == [9, 10, 11, 12]
    np.testing.assert_allclose(m(x[:1]), want[:1], rtol=1e-4, atol=1e-5)   # evicted, rebuilt


# -- ordering: the last weight change wins over a concurrent first build

def test_load_weights_during_first_build_wins(monkeypatch):
    """Thread A's first call is held inside the session build, after it read the weights;
    the main thread loads new weights meanwhile. Every later call must use the new ones."""
    from netdsl.runtime import session as session_mod
    real = session_mod.Session.__init__
    x = np.random.default_rng(1).standard_normal((2, 3, 8, 8)).astype(np.float32)
    for _ in range(3):
        building, loaded = threading.Event(), threading.Event()

        def slow_init(self, *a, **k):
            building.set()
            loaded.wait(2)
            real(self, *a, **k)
        monkeypatch.setattr(session_mod.Session, "__init__", slow_init)
        m = netdsl.parse(NET)
        sd = shifted(m)
        t = threading.Thread(target=m, args=(x,))
        t.start()
        assert building.wait(5)
        loader = threading.Thread(target=m.load_state_dict, args=(sd,))
        loader.start()
        loader.join(0.2)           # a loader that waits for the build is fine too: release it
        loaded.set()
        loader.join()
        t.join()
        monkeypatch.setattr(session_mod.Session, "__init__", real)
        np.testing.assert_allclose(m(x), numpy_forward(sd, x), rtol=1e-4, atol=1e-4)


def test_load_weights_races_first_call_unpatched():
    """The same race without a hook: a short GIL switch interval lets the load interleave
    with the first call's build, so many trials hit the window between its read of the
    weights and the end of its build."""
    import sys
    x = np.random.default_rng(2).standard_normal((1, 3, 8, 8)).astype(np.float32)
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for i in range(40):
            m = netdsl.parse(NET)
            sd = shifted(m)
            m.state_dict()
            t = threading.Thread(target=m, args=(x,))
            t.start()
            m.load_state_dict(sd)
            t.join()
            np.testing.assert_allclose(m(x), numpy_forward(sd, x), rtol=1e-4, atol=1e-4)
    finally:
        sys.setswitchinterval(old)


# -- weight values

@pytest.mark.parametrize("bad, msg", [
    (-0.25, "'bn.running_var' has a negative variance -0.25 at index [2]"),
    (np.nan, "'bn.running_var' contains NaN or infinite values (first at index [2]: nan)"),
], ids=["negative", "nan"])
def test_bad_running_var_is_refused(bad, msg, tmp_path):
    m = netdsl.parse(NET)
    sd = m.state_dict()
    sd["bn.running_var"][2] = bad
    sd["bn.running_var"][3] = bad
    with pytest.raises(NetDSLError) as e:
        m.load_state_dict(sd)
    assert msg in str(e.value)
    np.savez(tmp_path / "w.npz", **sd)
    with pytest.raises(NetDSLError) as e:
        m.load_weights(str(tmp_path / "w.npz"))
    assert msg in str(e.value)
    assert m.state_dict()["bn.running_var"][2] == 1.0       # unchanged


def test_nan_weight_names_first_index():
    m = netdsl.parse(NET)
    sd = m.state_dict()
    sd["c1.weight"][1, 2, 0, 1] = np.inf
    with pytest.raises(NetDSLError, match=r"'c1.weight' contains NaN or infinite values \(first at index "
                                          r"\[1, 2, 0, 1\]: inf\)"):
        m.load_state_dict(sd)


# -- weight files: names and declared sizes checked before reading data

def _npy_header(shape, descr="<f4"):
    h = ("{'descr': '%s', 'fortran_order': False, 'shape': %s, }" % (descr, shape)).encode()
    h += b" " * (63 - (len(h) + 10) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(h)) + h


def _bomb(path, sd, key, shape, nbytes):
    """sd's entries, then `key` declaring `shape` float32, streamed as zeros (deflate: ~1000x)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for k, v in sd.items():
            with z.open(k + ".npy", "w") as f:
                np.lib.format.write_array(f, v)
        with z.open(key + ".npy", "w", force_zip64=True) as f:
            f.write(_npy_header(shape))
            chunk = bytes(1 << 20)
            for _ in range(nbytes >> 20):
                f.write(chunk)


def _peak(fn):
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_npz_unexpected_huge_entry_is_refused_unread(tmp_path):
    m = netdsl.parse(NET)
    p = tmp_path / "bomb.npz"
    _bomb(p, m.state_dict(), "junk", "(16777216,)", 64 << 20)      # 64 MiB of zeros in ~70 KB
    assert p.stat().st_size < 2 << 20

    def load():
        with pytest.raises(NetDSLError, match="unexpected entry 'junk'"):
            m.load_weights(str(p))
    assert _peak(load) < 8 << 20             # the 64 MiB entry was never decompressed
    m.load_weights(str(p), strict=False)     # ignored, unread, the rest loads
    assert _peak(lambda: m.load_weights(str(p), strict=False)) < 8 << 20


def test_npz_entry_declaring_a_wrong_shape_is_refused_unread(tmp_path):
    m = netdsl.parse(NET)
    sd = m.state_dict()
    w = sd.pop("fc.weight")
    p = tmp_path / "bomb.npz"
    _bomb(p, sd, "fc.weight", "(16777216,)", 64 << 20)

    def load():
        with pytest.raises(NetDSLError, match=r"'fc.weight' has shape \[16777216\]; the network expects \[5, 64\]"):
            m.load_weights(str(p))
    assert _peak(load) < 8 << 20
    assert w.shape == (5, 64)


def test_npz_member_larger_than_its_header_says_is_refused(tmp_path):
    m = netdsl.parse(NET)
    sd = m.state_dict()
    p = tmp_path / "lie.npz"
    _bomb(p, {k: v for k, v in sd.items() if k != "fc.bias"}, "fc.bias", "(5,)", 4 << 20)
    with pytest.raises(NetDSLError, match=r"entry 'fc.bias' declares 4,194,432 bytes for a \[5\] float32 array"):
        m.load_weights(str(p))


def test_pytorch_counter_entries_are_ignored_in_files(tmp_path):
    m = netdsl.parse(NET)
    sd = shifted(m)
    np.savez(tmp_path / "w.npz", **sd, **{"bn.num_batches_tracked": np.array(7)})
    m.load_weights(str(tmp_path / "w.npz"))
    x = np.ones((1, 3, 8, 8), np.float32)
    np.testing.assert_allclose(m(x), numpy_forward(sd, x), rtol=1e-4, atol=1e-4)


def test_safetensors_checked_from_the_header(tmp_path):
    """An entry numpy cannot represent (BF16) or that the network lacks is reported, unread."""
    pytest.importorskip("safetensors")
    import json
    m = netdsl.parse(NET)
    m.save_weights(str(tmp_path / "a.safetensors"))
    data = (tmp_path / "a.safetensors").read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    h = json.loads(data[8:8 + n])
    h["c1.bias"]["dtype"], h["c1.bias"]["shape"] = "BF16", [8]        # same 16 bytes, another type
    end = len(data) - 8 - n
    h["extra"] = {"dtype": "F32", "shape": [5], "data_offsets": [end, end + 20]}
    hb = json.dumps(h).encode()
    hb += b" " * (-len(hb) % 8)
    (tmp_path / "b.safetensors").write_bytes(struct.pack("<Q", len(hb)) + hb + data[8 + n:] + bytes(20))
    with pytest.raises(NetDSLError) as e:
        m.load_weights(str(tmp_path / "b.safetensors"))
    text = str(e.value)
    assert "'c1.bias' has dtype BF16; expected float32" in text and "unexpected entry 'extra'" in text
