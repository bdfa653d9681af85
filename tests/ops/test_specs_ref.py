"""The spec contract, checked for every op in netdsl/ops/: registered names,
documented attributes, known flags, and on a sample input: infer agrees with the
reference's output shape, float32 stays float32, and window/params/macs/explain
return well-formed values."""
from fractions import Fraction

import numpy as np
import pytest

from netdsl import ops

FLAGS = {"elementwise", "inplace_ok", "has_weights", "fusible_epilogue", "merge", "no_op"}

# op -> (input shapes, positional args, keyword args)
SAMPLES = {
    "Conv": ([(3, 9, 7)], (4, 3), {"stride": 2, "pad": "same"}),
    "Local": ([(3, 6, 5)], (2, 3), {}),
    "ConvTranspose": ([(4, 5, 3)], (2, 4), {"stride": 2, "pad": 1}),
    "MaxPool": ([(3, 9, 7)], (3,), {"stride": 2, "ceil_mode": True}),
    "AvgPool": ([(3, 9, 7)], (3,), {"stride": 2, "pad": 1, "count_include_pad": False}),
    "MinPool": ([(3, 9, 7)], (2,), {}),
    "StochasticPool": ([(3, 9, 7)], (2,), {}),
    "GlobalAvgPool": ([(3, 9, 7)], (), {}),
    "GlobalMaxPool": ([(3, 9, 7)], (), {}),
    "FC": ([(3, 4, 4)], (5,), {}),
    "Flatten": ([(3, 4, 4)], (), {}),
    "Reshape": ([(48,)], ((3, 4, 4),), {}),
    "Identity": ([(3, 4, 4)], (), {}),
    "Dropout": ([(10,)], (), {}),
    "ReLU": ([(3, 4, 4)], (), {}),
    "LeakyReLU": ([(3, 4, 4)], (), {}),
    "Sigmoid": ([(10,)], (), {}),
    "Tanh": ([(10,)], (), {}),
    "Softmax": ([(10,)], (), {}),
    "LogSoftmax": ([(5, 2, 3)], (), {}),
    "BatchNorm": ([(3, 4, 4)], (), {}),
    "LRN": ([(6, 4, 4)], (), {}),
    "Concat": ([(3, 4, 4), (2, 4, 4), (1, 4, 4)], (), {}),
    "Add": ([(3, 4, 4), (3, 4, 4)], (), {}),
    "Mul": ([(3, 4, 4), (3, 1, 1)], (), {}),
    "Upsample": ([(3, 4, 5)], (2,), {"mode": "bilinear"}),
    "Pad": ([(3, 4, 5)], ((1, 2, 0, 1),), {"mode": "replicate"}),
    "Crop": ([(3, 7, 6), (1, 4, 4)], (), {}),
}
NOT_MINE = {"Input"}
# an op not named above is checked on the first of its own samples (netdsl/ops/): no edit here to add one
SAMPLES.update({n: ([tuple(x) for x in spec.samples[0][1]], (), dict(spec.samples[0][0]))
                for n, spec in ops.all_specs().items() if n not in SAMPLES and n not in NOT_MINE and spec.samples})


def test_every_registered_op_has_a_sample():
    assert set(ops.all_specs()) - NOT_MINE == set(SAMPLES)


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_declaration(name):
    spec = ops.get(name)
    assert spec.name == name and spec.doc
    assert spec.flags <= FLAGS
    for alias in spec.aliases:
        assert ops.get(alias) is spec
    for a in spec.attrs:
        assert a.doc, f"{name}.{a.name} has no doc"
    shapes, args, kw = SAMPLES[name]
    _, a, _ = _prepare(spec, shapes, args, kw)
    assert bool(spec.params(a, shapes)) == ("has_weights" in spec.flags)


def _prepare(spec, shapes, args, kw):
    a = spec.resolve(spec.bind(args, kw), shapes)
    return spec, a, spec.infer(a, shapes)


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_contract_on_a_sample(nd, name):
    shapes, args, kw = SAMPLES[name]
    spec, a, out = _prepare(ops.get(name), shapes, args, kw)
    assert isinstance(out, tuple) and all(isinstance(d, int) and d > 0 for d in out)
    arity = spec.arity
    assert (len(shapes) >= 2 if arity is None else
            arity[0] <= len(shapes) <= arity[1] if isinstance(arity, tuple) else len(shapes) == arity)
    win = spec.window(a, shapes)
    assert len(win) == 4 and all(isinstance(v, (int, Fraction)) and v > 0 for v in win)
    assert isinstance(spec.macs(a, shapes, out), int) and spec.macs(a, shapes, out) >= 0
    assert all(isinstance(line, str) for line in spec.explain(a, shapes, out))
    params = {**spec.params(a, shapes), **spec.buffers(a, shapes)}
    weights = spec.init(a, shapes, np.random.default_rng(0))
    assert {k: v.shape for k, v in weights.items()} == {k: tuple(v) for k, v in params.items()}
    assert all(v.dtype == np.float32 for v in weights.values())
    rng = np.random.default_rng(1)
    xs = [rng.random((2, *s)).astype(np.float32) for s in shapes]
    y = nd.run(name, xs, *args, **kw)           # checks (N, *out) and float32 in -> float32 out
    assert np.isfinite(y).all()
    assert a == spec.resolve(a, shapes), "resolve should be idempotent"

