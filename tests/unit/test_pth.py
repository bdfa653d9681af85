"""PyTorch .pth checkpoints read without torch (netdsl/runtime/pth.py).

Two oracles: files written here by a tiny writer (pickle protocol 2 opcodes and
zip records, the layout torch.save uses) with numpy's own strided views as the
expected values, so the loader is tested in CI without torch; and, where torch
is installed, files written by the real torch.save, compared with torch's own
tensors and (ResNet-18) with torch's own forward pass.
"""
from __future__ import annotations

import io
import struct
import zipfile

import numpy as np
import pytest

import netdsl
from netdsl import NetDSLError
from netdsl.runtime import lib
from netdsl.runtime import weights as wio

NET = """
input x: 3x8x8
c1:Conv(4, 3, pad=1) - bn:BN - ReLU - Pool - fc:FC(5) - SM
"""
needs_kernels = pytest.mark.skipif(not lib.available(), reason="C kernels not built")


# ---------------------------------------------------------------- a tiny torch.save writer (no torch)

def op_int(n: int) -> bytes:
    if 0 <= n < 256:
        return b"K" + bytes([n])
    if 0 <= n < 65536:
        return b"M" + struct.pack("<H", n)
    if -2**31 <= n < 2**31:
        return b"J" + struct.pack("<i", n)
    raw = n.to_bytes((n.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(raw)]) + raw                  # LONG1


def op_str(s: str) -> bytes:
    raw = s.encode()
    return b"X" + struct.pack("<I", len(raw)) + raw          # BINUNICODE


def op_global(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def op_tuple(*items: bytes) -> bytes:
    return b"(" + b"".join(items) + b"t"                      # MARK ... TUPLE


def op_ints(v) -> bytes:
    return op_tuple(*(op_int(x) if isinstance(x, int) else x for x in v))


ODICT = op_global("collections", "OrderedDict") + b")R"       # OrderedDict()


def op_tensor(key, stype="FloatStorage", numel=None, offset=0, size=(), stride=(), rebuild="_rebuild_tensor_v2",
              dtype=None, smodule="torch") -> bytes:
    """_rebuild_tensor_v2(persistent ('storage', torch.<stype>, key, 'cpu', numel), offset, size, stride,
    False, OrderedDict()); with dtype: _rebuild_tensor_v3 on an UntypedStorage (numel in bytes)."""
    pid = op_tuple(op_str("storage"), op_global(smodule, stype), op_str(key), op_str("cpu"),
                   op_int(numel) if isinstance(numel, int) else numel) + b"Q"      # BINPERSID
    args = [pid, op_int(offset) if isinstance(offset, int) else offset, op_ints(size) if not isinstance(size, bytes)
            else size, op_ints(stride) if not isinstance(stride, bytes) else stride, b"\x89", ODICT]
    if dtype is not None:
        args.append(op_global("torch", dtype))
    return op_global("torch._utils", rebuild) + op_tuple(*args) + b"R"


def op_dict(items) -> bytes:
    """OrderedDict() with SETITEMS of (key, value-opcodes) pairs."""
    return ODICT + b"(" + b"".join(op_str(k) + v for k, v in items) + b"u"


def pickle_bytes(body: bytes) -> bytes:
    return b"\x80\x02" + body + b"."


STORE = {"f4": "FloatStorage", "f2": "HalfStorage", "f8": "DoubleStorage", "i8": "LongStorage",
         "i4": "IntStorage", "u1": "ByteStorage"}


def write_zip(path, records: dict, prefix="archive", byteorder=b"little", version=b"3\n", compress=False):
    """records: name under <prefix>/ -> bytes (data.pkl, data/<key>, ...)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED) as z:
        for name, data in records.items():
            z.writestr(f"{prefix}/{name}", data)
        if byteorder is not None:
            z.writestr(f"{prefix}/byteorder", byteorder)
        if version is not None:
            z.writestr(f"{prefix}/version", version)
    return path


def write_pth(path, arrays: dict, prefix="archive", order="<", **kw):
    """A state dict of numpy arrays (each its own contiguous storage) as torch.save would write it."""
    items, records = [], {}
    for i, (k, a) in enumerate(arrays.items()):
        a = np.ascontiguousarray(a)
        stride = tuple(s // a.itemsize for s in a.strides)
        items.append((k, op_tensor(str(i), STORE[a.dtype.str[1:]], a.size, 0, a.shape, stride)))
        records[f"data/{i}"] = a.astype(a.dtype.newbyteorder(order)).tobytes()
    records["data.pkl"] = pickle_bytes(op_dict(items))
    return write_zip(path, records, prefix=prefix, byteorder=b"big" if order == ">" else b"little", **kw)


# ---------------------------------------------------------------- hand-built files (CI, no torch)

@pytest.mark.parametrize("prefix", ["archive", "my_resnet-18.v2"])
@pytest.mark.parametrize("order", ["<", ">"])
def test_handbuilt_dtypes_views_and_byte_orders(tmp_path, prefix, order):
    rng = np.random.default_rng(0)
    base = rng.standard_normal(24).astype(np.float32)
    half = rng.standard_normal(5).astype(np.float16)
    dbl = rng.standard_normal((2, 3))
    bf_bits = (rng.standard_normal(4).astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)
    enc = {"f4": base, "f2": half, "f8": dbl, "bf": bf_bits}
    records = {f"data/{k}": v.astype(v.dtype.newbyteorder(order)).tobytes() for k, v in enc.items()}
    body = op_dict([
        ("t", op_tensor("f4", numel=24, offset=2, size=(3, 4), stride=(1, 3))),        # a transposed view
        ("s", op_tensor("f4", numel=24, offset=5, size=(2, 3), stride=(8, 2))),        # same storage, strided
        ("b", op_tensor("f4", numel=24, offset=23, size=(1,), stride=(1,))),            # the last element
        ("z", op_tensor("f4", numel=24, offset=24, size=(0, 3), stride=(3, 1))),        # empty, at the end
        ("h", op_tensor("f2", "HalfStorage", 5, 0, (5,), (1,))),
        ("d", op_tensor("f8", "DoubleStorage", 6, 0, (3, 2), (1, 3))),
        ("bf", op_tensor("bf", "BFloat16Storage", 4, 1, (3,), (1,))),
        ("u", op_tensor("f4", "UntypedStorage", 96, 4, (2,), (1,), "_rebuild_tensor_v3", "float32",
                        smodule="torch.storage")),
        ("n", op_tensor("n", "LongStorage", 1, 0, (), ())),
    ])
    records["data/n"] = np.array([7], np.dtype("i8").newbyteorder(order)).tobytes()
    records["data.pkl"] = pickle_bytes(body)
    p = write_zip(tmp_path / "w.pth", records, prefix=prefix, byteorder=b"big" if order == ">" else b"little")
    d = wio.load(str(p))
    strided = np.lib.stride_tricks.as_strided
    want = {"t": strided(base[2:], (3, 4), (4, 12)), "s": strided(base[5:], (2, 3), (32, 8)),
            "b": base[23:], "z": np.zeros((0, 3), np.float32), "h": half.astype(np.float32),
            "d": dbl.T.astype(np.float32),
            "bf": (bf_bits[1:].astype(np.uint32) << 16).view(np.float32), "u": base[4:6],
            "n": np.array(7, np.int64)}
    assert list(d) == list(want)
    for k, w in want.items():
        assert d[k].dtype == w.dtype and d[k].flags.c_contiguous and d[k].dtype.isnative, k
        np.testing.assert_array_equal(d[k], w, err_msg=k)


@needs_kernels
def test_handbuilt_state_dict_loads_into_a_model(tmp_path):
    m = netdsl.parse(NET)
    sd = {k: v * 0.5 + 0.25 if not k.endswith("running_var") else v + 1 for k, v in m.state_dict().items()}
    sd["bn.num_batches_tracked"] = np.array(12, np.int64)    # every torchvision BN checkpoint has it
    p = write_pth(tmp_path / "w.pth", sd)
    m2 = netdsl.parse(NET)
    m2.load_weights(str(p))
    for k, v in m2.state_dict().items():
        np.testing.assert_array_equal(v, sd[k])
    x = np.random.default_rng(1).random((2, 3, 8, 8), dtype=np.float32)
    m.load_state_dict(sd)                                     # the same weights through the dict path
    np.testing.assert_array_equal(m2(x), m(x))
    m3 = netdsl.load("lenet5")
    sd3 = {k: (v * 0.5).astype(np.float16) for k, v in m3.state_dict().items()}
    m4 = netdsl.load("lenet5", weights=str(write_pth(tmp_path / "l.pt", sd3)))
    for k, v in m4.state_dict().items():
        np.testing.assert_array_equal(v, sd3[k].astype(np.float32))


def test_check_state_dict_accepts_num_batches_tracked():
    m = netdsl.parse(NET)
    sd = m.state_dict()
    got = wio.check_state_dict(m.graph, {**sd, "bn.num_batches_tracked": np.array(7, np.int64)})
    assert list(got) == list(sd)
    with pytest.raises(NetDSLError, match="unexpected entry 'bn.num_batches'"):
        wio.check_state_dict(m.graph, {**sd, "bn.num_batches": np.array(7, np.int64)})


def test_selection_is_checked_before_reading(tmp_path):
    m = netdsl.parse(NET)
    want = wio.expected(m.graph)
    sd = {k: np.zeros(s, np.float32) for k, s in want.items()}
    sd["c1.weight"] = np.zeros((4, 3, 5, 5), np.float32)
    del sd["fc.bias"]
    sd["fc2.weight"] = np.zeros(3, np.float32)
    p = write_pth(tmp_path / "w.pth", sd)
    with pytest.raises(NetDSLError) as e:
        wio.load(str(p), want)
    text = str(e.value)
    assert f"weights in {p}: 'c1.weight' has shape [4, 3, 5, 5]; the network expects [4, 3, 3, 3]" in text
    assert "missing 1 entry: fc.bias" in text and "unexpected entry 'fc2.weight'" in text
    sd["c1.weight"] = np.zeros((4, 3, 3, 3), np.float32)
    p = write_pth(tmp_path / "w2.pth", sd)
    got = wio.load(str(p), want, strict=False)
    assert set(got) == set(want) - {"fc.bias"}


def test_training_checkpoint_is_unwrapped(tmp_path):
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    inner = op_dict([("w", op_tensor("0", numel=6, size=(2, 3), stride=(3, 1)))])
    body = b"}(" + op_str("epoch") + op_int(3) + op_str("state_dict") + inner + b"u"
    p = write_zip(tmp_path / "ck.pth", {"data.pkl": pickle_bytes(body), "data/0": a.tobytes()})
    np.testing.assert_array_equal(wio.load(str(p))["w"], a)
    with pytest.raises(NetDSLError) as e:
        wio.load(str(p), {"v": (2, 3)})
    assert f"weights in {p} (its 'state_dict' entry): unexpected entry 'w'" in str(e.value)
    body = b"}(" + op_str("epoch") + op_int(3) + op_str("weights") + inner + b"u"
    p = write_zip(tmp_path / "ck2.pth", {"data.pkl": pickle_bytes(body), "data/0": a.tobytes()})
    with pytest.raises(NetDSLError) as e:
        wio.load(str(p))
    text = str(e.value)
    assert "it is not a state dict: entry 'epoch' is a int, not a tensor (keys: 'epoch', 'weights')" in text
    assert "'state_dict', 'model_state_dict', 'model', 'net'" in text


def test_format_by_content_and_refused_formats(tmp_path):
    a = np.ones((2,), np.float32)
    p = write_pth(tmp_path / "model.weights", {"w": a})           # unknown suffix, torch zip content
    np.testing.assert_array_equal(wio.load(str(p))["w"], a)
    (tmp_path / "x.weights").write_bytes(b"hello")
    with pytest.raises(NetDSLError) as e:
        wio.load(str(tmp_path / "x.weights"))
    assert "unknown weights format '.weights'" in str(e.value) and ".pth" in str(e.value)
    legacy = b"\x80\x02\x8a\x0a" + (0x1950a86a20f9469cfc6c).to_bytes(10, "little") + b".\x80\x02M\xe9\x03."
    (tmp_path / "old.pth").write_bytes(legacy)
    (tmp_path / "old.dat").write_bytes(legacy)                     # found by content too
    for name in ("old.pth", "old.dat"):
        with pytest.raises(NetDSLError) as e:
            wio.load(str(tmp_path / name))
        assert "legacy torch.save format (before torch 1.6), which is not supported" in str(e.value)
        assert "re-save it with torch >= 1.6" in str(e.value)
    (tmp_path / "plain.pth").write_bytes(b"\x80\x04K\x01.")
    with pytest.raises(NetDSLError, match="a plain pickle, not a torch.save zip archive"):
        wio.load(str(tmp_path / "plain.pth"))
    with zipfile.ZipFile(tmp_path / "ts.pt", "w") as z:
        z.writestr("m/constants.pkl", b"\x80\x02).")
        z.writestr("m/code/__torch__.py", "")
    with pytest.raises(NetDSLError, match=r"a TorchScript archive \(torch.jit.save\), not a state dict"):
        wio.load(str(tmp_path / "ts.pt"))


@needs_kernels
def test_cli_run_with_pth_and_with_a_malicious_one(tmp_path, capsys):
    from netdsl.cli import main
    m = netdsl.load("lenet5")
    sd = {k: v * 0.5 for k, v in m.state_dict().items()}
    p = write_pth(tmp_path / "l.pth", sd)
    m.load_state_dict(sd)
    x = np.random.default_rng(0).random((1,) + tuple(m.graph[m.graph.inputs[0]].shape), dtype=np.float32)
    np.save(tmp_path / "x.npy", x)
    rc = main(["run", "lenet5", "--weights", str(p), "--input", str(tmp_path / "x.npy"),
               "--save", str(tmp_path / "y.npz")])
    out, err = capsys.readouterr()
    assert rc == 0 and "Traceback" not in out + err and "deterministic initial weights" not in err
    y = np.load(tmp_path / "y.npz")
    np.testing.assert_allclose(y[next(iter(m.graph.outputs))], m(x), rtol=1e-6, atol=1e-7)
    evil = tmp_path / "evil.pth"
    sentinel = tmp_path / "pwned"
    body = op_global("os", "system") + op_tuple(op_str(f"touch {sentinel}")) + b"R"
    write_zip(evil, {"data.pkl": pickle_bytes(body)})
    rc = main(["run", "lenet5", "--weights", str(evil)])
    out, err = capsys.readouterr()
    assert rc == 1 and "Traceback" not in out + err and not sentinel.exists()
    assert f"cannot read weights from {evil}: it uses the global 'os.system'" in err


def test_loading_never_imports_torch(tmp_path):
    import os
    import subprocess
    import sys
    p = write_pth(tmp_path / "w.pth", {"w": np.ones(3, np.float32)})
    code = ("import sys; from netdsl.runtime import weights; d = weights.load(sys.argv[1]); "
            "assert d['w'].sum() == 3; print('torch' in sys.modules)")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = subprocess.run([sys.executable, "-c", code, str(p)], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


# ---------------------------------------------------------------- files written by real torch.save

def test_torch_save_dtypes_views_and_prefixes(tmp_path):
    torch = pytest.importorskip("torch")
    g = torch.Generator().manual_seed(0)
    base = torch.randn(40, generator=g)
    w = torch.randn(4, 6, generator=g)
    sd = {"f32": torch.randn(3, 5, generator=g), "f16": torch.randn(7, generator=g).half(),
          "bf16": torch.randn(2, 3, generator=g).bfloat16(), "f64": torch.randn(3, 2, generator=g).double(),
          "t": w.t(), "sl": w[1:3, ::2], "v1": base[3:9].view(2, 3), "v2": base[10::3], "e": base[40:],
          "p": torch.nn.Parameter(torch.randn(3, generator=g)), "i64": torch.tensor(17), "u16": torch.zeros(
              2, dtype=torch.uint16), "ex": torch.randn(1, 3, generator=g).expand(4, 3)}
    for target in ("my.model-v2.pth", io.BytesIO()):
        if isinstance(target, str):
            path = tmp_path / target
            torch.save(sd, path)
        else:
            torch.save(sd, target)
            path = tmp_path / "buf.bin"
            path.write_bytes(target.getvalue())
        prefix = zipfile.ZipFile(path).namelist()[0].split("/")[0]
        got = wio.load(str(path))
        assert list(got) == list(sd)
        for k, v in sd.items():
            v = v.detach()
            want = (v.float() if v.is_floating_point() else v).numpy()
            assert got[k].dtype == want.dtype, k
            np.testing.assert_array_equal(got[k], want, err_msg=f"{k} (prefix {prefix})")
    assert prefix == "archive"


def test_torch_save_legacy_and_module_pickles_are_refused(tmp_path):
    torch = pytest.importorskip("torch")
    lin = torch.nn.Linear(2, 3)
    torch.save(lin.state_dict(), tmp_path / "old.pth", _use_new_zipfile_serialization=False)
    with pytest.raises(NetDSLError, match="legacy torch.save format"):
        wio.load(str(tmp_path / "old.pth"))
    torch.save(lin, tmp_path / "whole.pth")                     # a pickled nn.Module, not a state dict
    with pytest.raises(NetDSLError) as e:
        wio.load(str(tmp_path / "whole.pth"))
    assert "it uses the global 'torch.nn.modules.linear.Linear', which a plain state dict never needs" in str(e.value)
    torch.save({"model": lin.state_dict(), "epoch": 4, "best": 0.5}, tmp_path / "ck.pth")
    got = wio.load(str(tmp_path / "ck.pth"))
    np.testing.assert_array_equal(got["weight"], lin.weight.detach().numpy())


def _resnet18(torch):
    """ResNet-18 in plain torch with torchvision's module names (torchvision is not installable here)."""
    nn = torch.nn

    class BasicBlock(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.downsample = None
            if stride != 1 or cin != cout:
                self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

        def forward(self, x):
            y = torch.relu(self.bn1(self.conv1(x)))
            y = self.bn2(self.conv2(y))
            return torch.relu(y + (x if self.downsample is None else self.downsample(x)))

    class ResNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
            self.bn1 = nn.BatchNorm2d(64)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
            chans, cin = (64, 128, 256, 512), 64
            for i, c in enumerate(chans):
                setattr(self, f"layer{i + 1}", nn.Sequential(BasicBlock(cin, c, 1 if i == 0 else 2),
                                                             BasicBlock(c, c, 1)))
                cin = c
            self.fc = nn.Linear(512, 1000)

        def forward(self, x):
            x = self.maxpool(torch.relu(self.bn1(self.conv1(x))))
            for i in range(4):
                x = getattr(self, f"layer{i + 1}")(x)
            return self.fc(torch.flatten(x.mean((2, 3), keepdim=True), 1))

    return ResNet()


@needs_kernels
def test_resnet18_from_torch_save_matches_torch(tmp_path):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    net = _resnet18(torch)
    with torch.no_grad():                                    # BN statistics that do something
        for mod in net.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.2, 0.2)
                mod.running_var.uniform_(0.5, 1.5)
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.uniform_(-0.2, 0.2)
                mod.num_batches_tracked.fill_(100)
    net.eval()
    p = tmp_path / "resnet18.pth"
    torch.save(net.state_dict(), p)
    m = netdsl.load("resnet18", weights=str(p))
    for k, v in net.state_dict().items():
        if not k.endswith("num_batches_tracked"):
            np.testing.assert_array_equal(m.state_dict()[k], v.numpy(), err_msg=k)
    x = np.random.default_rng(0).random((1, 3, 224, 224), dtype=np.float32)
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    got = m(x)
    rel = np.abs(got - want).max() / np.abs(want).max()
    assert rel <= 1e-4, f"max rel err {rel:.2e}"
