"""Regression tests for the front end's bugs of issue 7: the word `none`, the case rules of
op names, errors that cascade from one mistake, and every unknown op reported. Each asserts
on the rendered text (file:line:col, the line, the caret, the hint)."""
from __future__ import annotations

import textwrap

import numpy as np
import pytest

import netdsl
from netdsl import NetDSLError


def parse(text, name="t.net"):
    return netdsl.parse(textwrap.dedent(text).lstrip("\n"), name)


def error(text, name="t.net") -> str:
    with pytest.raises(NetDSLError) as info:
        parse(text, name)
    return info.value.render()


def caret_under(rendered: str, header: str) -> str:
    """The source text the caret of the diagnostic starting with `header` marks."""
    lines = rendered.splitlines()
    i = next(k for k, ln in enumerate(lines) if ln.startswith(header))
    src, caret = lines[i + 1][4:], lines[i + 2][4:]
    start = caret.index("^")
    return src[start:start + len(caret.strip())]


# ---------------------------------------------------------------- bug 3: act=none

def test_act_none_switches_off_a_default_activation():
    m = parse("""
        input x: 3x8x8
        default Conv(act=relu)
        Conv(4, 3) - Conv(4, 3, act=none)
    """)
    assert m.graph["conv1"].attrs["act"] == "relu"
    assert m.graph["conv2"].attrs["act"] == "none"
    # the oracle: a ReLU output is never negative; with act=none random weights give negatives
    y = m(np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32))
    assert y.min() < 0


@pytest.mark.parametrize("op", ["Conv(4, 3, act=none)", "FC(4, act=none)", "BN(act=none)",
                                "Deconv(4, 2, act=None)"])
def test_act_none_is_accepted_by_every_op_with_act(op):
    m = parse(f"input x: 3x8x8\n{op}\n")
    assert [n.attrs["act"] for n in m.graph.nodes() if "act" in n.attrs] == ["none"]


def test_none_reads_as_no_value_for_optional_attributes():
    m = parse("input x: 3x8x8\nMaxPool(2, stride=none) - Upsample(scale=none, size=4x4)\n")
    assert m.graph["maxpool1"].attrs["stride"] == (2, 2)       # defaults to the kernel
    assert m.graph["upsample1"].attrs["scale"] is None
    assert m.output_shape == (3, 4, 4)


def test_a_bad_act_still_names_the_spelling():
    text = error("input x: 3x8x8\nConv(4, 3, act=rleu)\n")
    assert text.startswith("t.net:2:12: error: 'act' must be one of none, relu"), text
    assert "hint: did you mean 'relu'?" in text


# ---------------------------------------------------------------- case rules (docs/LANGUAGE.md, Ops)

@pytest.mark.parametrize("written,want", [("relu", "ReLU"), ("Relu", "ReLU"), ("maxpool", "MaxPool"),
                                          ("softmax", "Softmax")])
def test_op_names_are_case_sensitive_in_chains(written, want):
    text = error(f"input x: 3x8x8\nConv(4, 3) - {written}\n")
    assert text.startswith(f"t.net:2:14: error: unknown op '{written}'"), text
    assert caret_under(text, "t.net:2:14") == written
    assert f"hint: did you mean '{want}'? op names are case-sensitive" in text


def test_table_notation_ignores_case():
    for line in ("3x3 conv, 8", "3x3 Conv, 8", "3x3 CONV, 8"):
        m = parse(f"input x: 3x8x8\n{line}\n")
        assert m.output_shape == (8, 6, 6) and m.total_params == 8 * 3 * 9 + 8
    m = parse("input x: 3x8x8\nGAP\nfc 10\nFc 5\n")
    assert m.output_shape == (5,) and m.total_params == 3 * 10 + 10 + 10 * 5 + 5


# ---------------------------------------------------------------- bug 6: one mistake, one error

def test_a_failed_labelled_line_does_not_cascade():
    text = error("""
        input x: 3x8x8
        c1:Conv(4, 3, bogus=1) - ReLU
        c1 - r: ReLU
        x - [ c1 | Conv(4, 3) ] - Add
        r - Conv(4, 1)
        output c1, r
    """)
    assert text.count("error:") == 1, text
    assert text.startswith("t.net:2:15: error: Conv has no argument 'bogus'")


def test_a_failed_assignment_does_not_cascade():
    text = error("""
        input x: 3x8x8
        a = Conv(4, 3, strid=2)
        b = a - ReLU
        [ a | b ] - Add
        output a, b
    """)
    assert text.count("error:") == 1, text


def test_independent_errors_after_a_failed_line_are_still_reported():
    text = error("""
        input x: 3x8x8
        c1:Conv(4, 3, bogus=1)
        x - Conv(4, 3, pad=sme)
        output c1, nothere
    """)
    assert "t.net:2:15: error: Conv has no argument 'bogus'" in text
    assert "t.net:3:16: error: 'pad' must be same, valid or integers, got sme" in text
    assert "t.net:4:12: error: output 'nothere' is not a label or input" in text
    assert text.endswith("3 errors")


def test_every_unknown_op_is_reported():
    text = error("""
        input x: 3x8x8
        Conv2(4, 3) - Relu - Foo
        Bar
        y = [ Baz | Conv(4, 3) ] - Add
    """)
    for where, name in [("2:1", "Conv2"), ("2:15", "Relu"), ("2:22", "Foo"), ("3:1", "Bar"), ("4:7", "Baz")]:
        assert f"t.net:{where}: error: unknown op '{name}'" in text, text
        assert caret_under(text, f"t.net:{where}") == name or name == "Conv2"
    assert text.endswith("5 errors")
