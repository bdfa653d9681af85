"""What an op IS, declared once on its spec (netdsl/ops/spec.py, OpSpec) and in the activation
table (netdsl/ops/activations.py), and the passes and planner reading exactly those
declarations: each declaration is checked against the op's own numpy reference (an independent
oracle: the arithmetic itself), and each reader is shown to follow the declaration, not a name."""
from __future__ import annotations

import inspect
import math
import textwrap

import numpy as np
import pytest

import netdsl
from netdsl import ops
from netdsl.ops import activations as acts
from netdsl.passes import DEFAULT_LEVEL, LEVELS, fold_batchnorm, fuse_activations, fuse_residual
from netdsl.runtime.reference import init_weights, run_reference

SPECS = ops.all_specs()
COMBINES = {"sum", "product", "concat", "max", "min", "mean"}


def parse(text):
    return netdsl.parse(textwrap.dedent(text)).graph


# ---------------------------------------------------------------- the activation table

def test_table_names_its_ops_and_c_enums():
    assert acts.NAMES == ("relu", "leakyrelu", "sigmoid", "tanh", "relu6", "hardsigmoid", "hardswish", "silu",
                          "gelu", "mish")
    for name, entry in acts.TABLE.items():
        assert entry.name == name == entry.op.lower()
        assert entry.c_enum == "ND_ACT_" + name.upper() == acts.c_enum(name)
        assert ops.get(entry.op).epilogue({k: v for k, v in entry.fixed}) == name
    assert acts.c_enum("none") == acts.c_enum(None) == "ND_ACT_NONE"
    with pytest.raises(ValueError, match="no fused epilogue for activation 'elu'"):
        acts.c_enum("elu")


@pytest.mark.parametrize("name", acts.NAMES)
def test_table_functions_are_the_textbook_ones_and_keep_nan(name):
    x = np.array([-3.0, -0.5, 0.0, 0.25, 4.0, np.nan, np.inf, -np.inf])
    erf = np.vectorize(math.erf)
    with np.errstate(invalid="ignore", over="ignore"):
        want = {"relu": np.where(x > 0, x, 0.0), "leakyrelu": np.where(x > 0, x, 0.01 * x),
                "sigmoid": 1 / (1 + np.exp(-x)), "tanh": np.tanh(x),
                "relu6": np.clip(x, 0, 6), "hardsigmoid": np.clip(x / 6 + 0.5, 0, 1),
                "hardswish": x * np.clip(x + 3, 0, 6) / 6, "silu": x / (1 + np.exp(-x)),
                "gelu": 0.5 * x * (1 + erf(x / math.sqrt(2))), "mish": x * np.tanh(np.log1p(np.exp(x)))}[name]
    got = acts.get(name)(x)
    finite = np.isfinite(x)
    np.testing.assert_allclose(got[finite], want[finite], rtol=1e-12, atol=1e-300)
    assert np.isnan(got[5]) == acts.get(name).keeps_nan
    wide = acts.get(name)(np.linspace(-50, 50, 1001))
    assert (wide >= 0).all() == acts.get(name).nonneg
    assert got.dtype == x.dtype and acts.get(name)(x.astype(np.float32)).dtype == np.float32


@pytest.mark.parametrize("name", acts.NAMES)
def test_standalone_op_and_every_fused_epilogue_compute_the_table_entry(name):
    """ReLU alone, Conv(act=relu) and the -O2 fused graph agree value for value, NaN included."""
    entry = acts.get(name)
    g0 = parse(f"input x: 3x5x5\nConv(4, 3) - {entry.op}")
    g1 = parse(f"input x: 3x5x5\nConv(4, 3, act={name})")
    w = init_weights(g0, seed=3)
    x = np.random.default_rng(0).standard_normal((2, 3, 5, 5)) * 3
    x[0, :, 2, 2] = np.nan
    a = run_reference(g0, w, x)["output"]
    b = run_reference(g1, w, x)["output"]
    np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
    assert np.isnan(a).any() and not np.isnan(a[1]).any()
    np.testing.assert_allclose(np.nan_to_num(a), np.nan_to_num(b), rtol=1e-12, atol=1e-12)
    g2, w2, records = fuse_activations(g0, w)
    assert len(records) == 1 and g2["conv1"].attrs["act"] == name


def test_every_act_attribute_offers_none_and_exactly_its_epilogues():
    for name, spec in SPECS.items():
        act = [a for a in spec.attrs if a.name == "act"]
        if not act:
            assert not spec.epilogues, f"{name} declares epilogues but has no act attribute"
            continue
        assert act[0].kind.options == ("none", *spec.epilogues), name
        assert set(spec.epilogues) <= set(acts.NAMES), name
        assert act[0].kind(None, "act") == "none"        # `act=none` (the word none arrives as None)


def test_act_none_switches_a_default_activation_off():
    g = parse("""
        input x: 3x8x8
        default Conv(act=relu)
        a:Conv(8, 3) - b:Conv(4, 3, act=none)
    """)
    assert (g["a"].attrs["act"], g["b"].attrs["act"]) == ("relu", "none")


def test_fused_epilogue_flag_agrees_with_the_epilogues():
    for name, spec in SPECS.items():
        assert ("fusible_epilogue" in spec.flags) == bool(spec.epilogues), name


def test_c_enum_names_exist_in_the_c_library_when_it_declares_them():
    lib = pytest.importorskip("netdsl.runtime.lib")
    try:
        clib = lib.lib
    except Exception:
        pytest.skip("C extension not built")
    from netdsl.runtime.kparams.conv import act_code
    assert clib.ND_ACT_NONE == 0
    for name in ("none", *acts.NAMES):
        assert act_code({"act": name}) == getattr(clib, acts.c_enum(name)), name


# ---------------------------------------------------------------- declarations against the references

# (op, attributes, input shapes); a spec's own `samples` (when ops declare them) are added below
CASES = [
    ("Conv", dict(out_channels=4, kernel=3, pad=1, stride=2), [(3, 6, 6)]),
    ("Conv", dict(out_channels=4, kernel=3, pad=1, residual=True), [(3, 5, 5), (4, 5, 5)]),
    ("Local", dict(out_channels=2, kernel=3), [(3, 5, 5)]),
    ("FC", dict(out_features=5), [(3, 2, 2)]),
    ("ConvTranspose", dict(out_channels=2, kernel=3, stride=2), [(4, 3, 3)]),
    ("BatchNorm", {}, [(3, 4, 4)]),
    ("Add", {}, [(3, 4, 4)] * 2),
    ("Concat", {}, [(3, 4, 4), (2, 4, 4)]),
    ("AvgPool", dict(kernel=3, stride=2, pad=1, count_include_pad=False), [(2, 7, 7)]),
    ("GlobalAvgPool", {}, [(2, 3, 5)]),
    ("Flatten", {}, [(2, 3, 3)]), ("Reshape", dict(shape=(18,)), [(2, 3, 3)]),
    ("Identity", {}, [(5,)]), ("Dropout", {}, [(5,)]),
    ("Upsample", dict(scale=2, mode="bilinear"), [(2, 3, 4)]),
    ("Pad", dict(pad=1, value=0.5), [(2, 3, 3)]), ("Pad", dict(pad=1, mode="reflect"), [(2, 3, 3)]),
    ("Crop", dict(size=(2, 2)), [(2, 4, 4)]),
    # not affine: declared False must also fail the identity below
    ("Mul", {}, [(3, 4, 4)] * 2), ("ReLU", {}, [(3, 4, 4)]), ("MaxPool", dict(kernel=2), [(2, 4, 4)]),
    ("LRN", dict(size=3), [(4, 3, 3)]), ("Softmax", {}, [(6,)]), ("Tanh", {}, [(6,)]),
]
NOT_AFFINE = {"Mul", "ReLU", "MaxPool", "LRN", "Softmax", "Tanh"}


def _all_cases():
    out = [(op, a, shapes, "") for op, a, shapes in CASES]
    for name, spec in sorted(SPECS.items()):
        for k, sample in enumerate(getattr(spec, "samples", ()) or ()):
            if isinstance(sample, tuple) and len(sample) >= 2 and not (len(sample) > 2 and sample[2]):
                out.append((name, dict(sample[0]), list(sample[1]), f"-sample{k}"))
    return out


def _case_id(c):
    return f"{c[0]}{c[3]}-" + "+".join("x".join(map(str, s)) for s in c[2])


def _ref(op, xs, **attrs):
    spec = ops.get(op)
    a = spec.bind((), attrs)
    shapes = [tuple(x.shape[1:]) for x in xs]
    a = spec.resolve(a, shapes)
    g = np.random.default_rng(1)
    w = {k: g.standard_normal(s) for k, s in {**spec.params(a, shapes), **spec.buffers(a, shapes)}.items()}
    if "running_var" in w:
        w["running_var"] = np.abs(w["running_var"]) + 0.5
    return spec.reference(a, xs, w)


def _inputs(shapes, rng, n=2):
    return [rng.standard_normal((n, *s)) for s in shapes]


def test_combine_is_what_the_merge_computes():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, 3, 4, 4)), rng.standard_normal((2, 3, 4, 4))
    want = {"sum": a + b, "product": a * b, "concat": np.concatenate([a, b], axis=1),
            "max": np.maximum(a, b), "min": np.minimum(a, b), "mean": (a + b) / 2}
    merges = {n: s for n, s in SPECS.items() if s.combine is not None}
    assert {"Add", "Mul", "Concat"} <= set(merges)
    for name, spec in SPECS.items():
        assert ("merge" in spec.flags) == (spec.combine is not None), name
        assert spec.combine is None or spec.combine in COMBINES, name
    for name, spec in merges.items():
        np.testing.assert_allclose(_ref(name, [a, b]), want[spec.combine], err_msg=name)


@pytest.mark.parametrize("case", _all_cases(), ids=_case_id)
def test_linear_is_what_the_reference_does(case):
    """linear: f(αx + βy) − f(0) = α(f(x) − f(0)) + β(f(y) − f(0)), every input at once (an
    affine map). Declared True must hold on every case; declared False must fail on the
    non-affine ops (Mul, ReLU, MaxPool, LRN, Softmax, Tanh)."""
    op, attrs, shapes, _ = case
    spec = ops.get(op)
    if spec.linear and attrs.get("act", "none") != "none":
        attrs = {**attrs, "act": "none"}           # linear is a claim about the op without its epilogue
    rng = np.random.default_rng(5)
    x, y = _inputs(shapes, rng), _inputs(shapes, rng)
    z = [np.zeros_like(v) for v in x]

    def f(v):
        return _ref(op, v, **attrs)

    lhs = f([2.0 * a - 0.5 * b for a, b in zip(x, y)]) - f(z)
    rhs = 2.0 * (f(x) - f(z)) - 0.5 * (f(y) - f(z))
    holds = np.allclose(lhs, rhs, rtol=1e-9, atol=1e-9)
    if spec.linear:
        assert holds, f"{op} is declared linear but its reference is not affine"
    elif op in NOT_AFFINE and not case[3]:
        assert not holds, f"{op}: the identity held; the test case proves nothing"


NAN_CASES = CASES + [
    ("LeakyReLU", {}, [(3, 4, 4)]), ("Sigmoid", {}, [(3, 4, 4)]),
    ("Conv", dict(out_channels=4, kernel=3, act="relu"), [(3, 6, 6)]),
    ("BatchNorm", dict(act="relu"), [(3, 4, 4)]), ("Add", dict(act="relu"), [(3, 4, 4)] * 2),
    ("FC", dict(out_features=3, act="sigmoid"), [(7,)]),
]


@pytest.mark.parametrize("case", [(op, a, s, "") for op, a, s in NAN_CASES] +
                         [c for c in _all_cases() if c[3]], ids=_case_id)
def test_preserves_nan_is_what_the_reference_does(case):
    """Sample 0 has NaN in input 0 everywhere, sample 1 none: a NaN-preserving op gives NaN in
    sample 0 and none in sample 1 (its outputs do not mix samples)."""
    op, attrs, shapes, _ = case
    spec = ops.get(op)
    xs = _inputs(shapes, np.random.default_rng(6))
    xs[0][0] = np.nan
    out = _ref(op, xs, **attrs)
    if spec.preserves_nan:
        assert np.isnan(out[0]).any(), f"{op} is declared preserves_nan but drops a NaN"
        assert not np.isnan(out[1]).any(), f"{op}: a NaN in sample 0 reached sample 1"


# ---------------------------------------------------------------- the readers follow the declaration

def test_fuse_residual_reads_combine_not_the_name(monkeypatch):
    g = parse("""
        input x: 8x6x6
        r = x - Conv(8, 1)
        c = x - Conv(8, 3, pad=1)
        [ c | r ] - Add
    """)
    assert len(fuse_residual(g, None)[2]) == 1
    monkeypatch.setattr(type(ops.get("Add")), "combine", "max")
    assert fuse_residual(g, None)[2] == []


def test_fuse_activations_reads_epilogues(monkeypatch):
    g = parse("input x: 3x6x6\nc:Conv(4, 3) - ReLU")
    assert len(fuse_activations(g, None)[2]) == 1
    monkeypatch.setattr(type(ops.get("Conv")), "epilogues", ("tanh",))
    assert fuse_activations(g, None)[2] == []


def test_fold_into_the_layer_after_reads_linear(monkeypatch):
    g = parse("input x: 3x6x6\nBN - c:FC(5)")
    w = init_weights(g)
    assert len(fold_batchnorm(g, w)[2]) == 1
    monkeypatch.setattr(type(ops.get("FC")), "linear", False)
    assert fold_batchnorm(g, w)[2] == []


def _inplace(text):
    from netdsl.runtime.plan import lower
    return lower(parse(text), 1, kernels=False).inplace


@pytest.mark.parametrize("merge,inplace", [("Add", True), ("Mul", True), ("Concat", False)])
def test_planner_writes_in_place_where_the_op_says_so(merge, inplace, monkeypatch):
    text = f"input x: 3x6x6\n[ Conv(3, 3, pad=1) | Conv(3, 1) ] - m:{merge} - Conv(2, 1)"
    assert any(node == "m" for node, _ in _inplace(text)) == inplace
    assert ("inplace_ok" in ops.get(merge).flags) == inplace
    if inplace:
        spec = ops.get(merge)
        monkeypatch.setattr(type(spec), "flags", spec.flags - {"inplace_ok"})
        assert not any(node == "m" for node, _ in _inplace(text))


# ---------------------------------------------------------------- the default level, defined once

def _compile_functions():
    """compiler.optimize / compiler.compile_model, wherever the compile pipeline lives."""
    import importlib
    found = {}
    for mod in ("netdsl.compiler", "netdsl.bundle"):
        try:
            m = importlib.import_module(mod)
        except ImportError:
            continue
        for fn in ("optimize", "compile_model"):
            if hasattr(m, fn) and "level" in inspect.signature(getattr(m, fn)).parameters:
                found[f"{mod}.{fn}"] = getattr(m, fn)
    assert any(k.endswith("compile_model") for k in found), found
    return found


def test_every_default_level_is_passes_default_level():
    from netdsl import cli, model
    from netdsl.passes import optimize
    assert DEFAULT_LEVEL in LEVELS
    defaults = {
        "passes.optimize": inspect.signature(optimize).parameters["level"].default,
        "model.load_source": inspect.signature(model.load_source).parameters["opt"].default,
        "Model.run_level": netdsl.parse("input x: 4\nFC(2)").run_level,
    }
    for name, fn in _compile_functions().items():
        defaults[name] = inspect.signature(fn).parameters["level"].default
    p = cli.build_parser()
    for cmd in ("compile", "graph"):
        sub = p._subparsers._group_actions[0].choices[cmd]
        defaults[f"netdsl {cmd} -O"] = sub.get_default("opt")
        opt = next(a for a in sub._actions if a.dest == "opt")
        assert f"default -O{DEFAULT_LEVEL}" in opt.help
    assert defaults == dict.fromkeys(defaults, DEFAULT_LEVEL)
