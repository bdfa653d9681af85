"""Every op of the language either trains (a gradient rule, a float64 oracle) or is named
here with the reason it does not, so a new op cannot silently be untrainable: adding one
means adding its rule next to its shape rule, or a line below."""
from __future__ import annotations

from netdsl import ops
from netdsl.train import registry

NOT_TRAINED = {
    "Input": "the data, not a layer",
    "YoloDecode": "a detection decoder: boxes from the feature map, trained through its input's loss",
    "RegionDecode": "a detection decoder, as YoloDecode",
}


def test_every_op_trains_or_says_why_not():
    missing = []
    for name, spec in sorted(ops.all_specs().items()):
        if name in NOT_TRAINED or ("no_op" in spec.flags and name != "Dropout"):
            continue                     # views pass the gradient through in the planner
        if registry.backward_rule(name) is None:
            missing.append(f"{name}: no @backward rule")
        if registry.grad_reference(name) is None:
            missing.append(f"{name}: no @grad_ref oracle")
    assert not missing, missing


def test_the_exceptions_are_real_ops():
    assert set(NOT_TRAINED) <= set(ops.all_specs())
