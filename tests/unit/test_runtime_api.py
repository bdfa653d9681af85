"""The Python runtime API: inputs, weights, errors."""
from __future__ import annotations

import numpy as np
import pytest

import netdsl
from netdsl import NetDSLError
from netdsl.runtime import lib

pytestmark = pytest.mark.skipif(not lib.available(), reason="C kernels not built")

NET = """
input x: 3x8x8
c1:Conv(4, 3, pad=1) - bn:BN - ReLU - Pool - fc:FC(5) - SM
"""


@pytest.fixture
def m():
    return netdsl.parse(NET)


def test_state_dict_names_order_and_layouts(m):
    sd = m.state_dict()
    assert list(sd) == ["c1.weight", "c1.bias", "bn.weight", "bn.bias", "bn.running_mean",
                        "bn.running_var", "fc.weight", "fc.bias"]
    assert sd["c1.weight"].shape == (4, 3, 3, 3)
    assert sd["fc.weight"].shape == (5, 4 * 4 * 4)
    assert all(v.dtype == np.float32 for v in sd.values())


def test_softmax_output_sums_to_one(m):
    y = m(np.random.default_rng(0).standard_normal((3, 3, 8, 8)).astype(np.float32))
    assert y.shape == (3, 5)
    np.testing.assert_allclose(y.sum(1), 1, rtol=1e-5)


def test_float64_int_and_noncontiguous_inputs_are_converted(m):
    x = np.random.default_rng(1).standard_normal((2, 3, 8, 8))
    want = m(x.astype(np.float32))
    np.testing.assert_allclose(m(x), want, rtol=1e-6)                       # float64
    xt = np.ascontiguousarray(x.transpose(0, 1, 3, 2)).transpose(0, 1, 3, 2)  # non-contiguous view
    assert not xt.flags.c_contiguous
    np.testing.assert_allclose(m(xt), want, rtol=1e-6)
    xi = np.arange(2 * 3 * 8 * 8, dtype=np.int16).reshape(2, 3, 8, 8) % 7
    np.testing.assert_allclose(m(xi), m(xi.astype(np.float32)), rtol=1e-6)


@pytest.mark.parametrize("x, msg", [
    (np.zeros((3, 8, 8), np.float32), "needs a batch dimension"),
    (np.zeros((1, 3, 9, 8), np.float32), "expects [N, 3, 8, 8]"),
    (np.zeros((1, 4, 8, 8), np.float32), "expects [N, 3, 8, 8]"),
    (np.zeros((1, 3, 8, 8), bool), "dtype bool"),
    (np.zeros((0, 3, 8, 8), np.float32), "empty batch"),
    ("hello", "dtype <U5"),
], ids=["unbatched", "wrong-h", "wrong-c", "bool", "empty", "string"])
def test_bad_inputs_are_clear_errors(m, x, msg):
    with pytest.raises(NetDSLError) as e:
        m(x)
    assert msg in str(e.value)


def test_weights_roundtrip_npz(m, tmp_path):
    sd = m.state_dict()
    rng = np.random.default_rng(2)
    sd = {k: rng.standard_normal(v.shape).astype(np.float32) for k, v in sd.items()}
    sd["bn.running_var"] = np.abs(sd["bn.running_var"]) + 0.5
    m.load_state_dict(sd)
    x = rng.standard_normal((1, 3, 8, 8)).astype(np.float32)
    y = m(x)
    np.testing.assert_allclose(y, m.reference(x), rtol=1e-4, atol=1e-6)
    p = tmp_path / "w.npz"
    m.save_weights(str(p))
    m2 = netdsl.parse(NET)
    m2.load_weights(str(p))
    np.testing.assert_array_equal(m2(x), y)
    for k in sd:
        np.testing.assert_array_equal(m2.state_dict()[k], sd[k])


def test_mismatched_weights_report_every_problem(m):
    sd = m.state_dict()
    sd["c1.weight"] = np.zeros((4, 3, 5, 5), np.float32)
    del sd["fc.bias"]
    sd["fc2.weight"] = np.zeros(3, np.float32)
    with pytest.raises(NetDSLError) as e:
        m.load_state_dict(sd)
    text = str(e.value)
    assert "'c1.weight' has shape [4, 3, 5, 5]; the network expects [4, 3, 3, 3]" in text
    assert "missing 1 entry: fc.bias" in text
    assert "unexpected entry 'fc2.weight'" in text
    assert len(e.value.diagnostics) == 3


def test_truncated_and_corrupt_weight_files(m, tmp_path):
    p = tmp_path / "w.npz"
    m.save_weights(str(p))
    data = p.read_bytes()
    (tmp_path / "trunc.npz").write_bytes(data[: len(data) // 2])
    (tmp_path / "junk.npz").write_bytes(b"not a zip file at all")
    for bad in ("trunc.npz", "junk.npz"):
        with pytest.raises(NetDSLError) as e:
            m.load_weights(str(tmp_path / bad))
        assert "cannot read weights" in str(e.value)
    with pytest.raises(NetDSLError):
        m.load_weights(str(tmp_path / "missing.npz"))


def test_npz_with_pickled_objects_is_refused(m, tmp_path):
    p = tmp_path / "evil.npz"
    np.savez(p, **{"c1.weight": np.array([{"a": 1}], dtype=object)})
    with pytest.raises(NetDSLError) as e:
        m.load_weights(str(p))
    assert "cannot read weights" in str(e.value)


def test_safetensors_roundtrip(m, tmp_path):
    pytest.importorskip("safetensors")
    p = tmp_path / "w.safetensors"
    m.save_weights(str(p))
    m2 = netdsl.parse(NET)
    m2.load_weights(str(p))
    for k, v in m.state_dict().items():
        np.testing.assert_array_equal(m2.state_dict()[k], v)


def test_load_with_weights_argument(tmp_path):
    m = netdsl.load("lenet5")
    sd = {k: v * 0.5 for k, v in m.state_dict().items()}
    p = tmp_path / "l.npz"
    np.savez(p, **sd)
    m2 = netdsl.load("lenet5", weights=str(p))
    np.testing.assert_array_equal(m2.state_dict()["c1.weight"] if "c1.weight" in sd else
                                  next(iter(m2.state_dict().values())), next(iter(sd.values())))


def test_threads_validation(m):
    with pytest.raises(NetDSLError):
        m.threads = 0


def test_threads_accepts_numpy_integers_and_refuses_huge(m):
    m.threads = np.int64(2)
    assert m(np.zeros((1, 3, 8, 8), np.float32)).shape == (1, 5)
    with pytest.raises(NetDSLError, match="more than the 1024 netdsl accepts"):
        m.threads = 2**40               # would overflow the C int (an internal error before)
    with pytest.raises(NetDSLError, match="positive integer"):
        m.threads = True


def test_huge_batch_view_is_refused_before_it_is_copied(m, monkeypatch):
    """A broadcast view costs nothing; converting it would allocate 7.7 GB: refused first."""
    monkeypatch.setenv("NETDSL_MEMORY_LIMIT", str(2**30))
    x = np.broadcast_to(np.float32(0), (10**7, 3, 8, 8))
    with pytest.raises(NetDSLError) as e:
        m(x)
    assert "running this network at batch 10000000 needs" in str(e.value)
    assert "input 7.15 GiB" in str(e.value)            # 10^7 * 192 * 4 B = 7.15 GiB
    assert m(x[:2]).shape == (2, 5)


def test_runtime_errors_are_located_netdsl_errors():
    """PlanError and KernelError are NetDSLErrors raised where the knowledge is, with the span."""
    from netdsl.runtime.executor import KernelError, PlanError, Program, Step
    from netdsl.runtime.kparams import builder
    mm = netdsl.parse("input x: 3x8x8\nr:ReLU\n", "net.net")
    nd = mm.graph["r"]
    call = builder("ReLU")(nd.attrs, [(3, 8, 8)], nd.shape, 1)
    with pytest.raises(PlanError) as e:
        Program([Step(call, out=10_000, ins=[0], out_floats=192, in_floats=[192], name="r", span=nd.span)], 400)
    assert isinstance(e.value, NetDSLError) and issubclass(KernelError, NetDSLError)
    text = str(e.value)
    assert text.startswith("net.net:2:3: error: r: output offset 10000 outside the arena of 400 floats")
    assert "    r:ReLU\n      ^~~~" in text
