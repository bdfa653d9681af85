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
    assert "hint: did you mean 'relu'" in text          # (or 'relu6': both are one edit away)


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


@pytest.mark.parametrize("text,first", [
    ("const a = 1/0\ninput x: 3x8x8\nConv(a, 3) - Conv(a * 2, 3)\n", "t.net:1:11: error: division by zero"),
    ('import "nothere.net"\ninput x: 3x8x8\nMyBlock(4) - ReLU\nOther(3)\n', "t.net:1:1: error: cannot import"),
    ("default act = Reluu\ninput x: 3x8x8\nConv(4, 3) - act - Conv(4, 3) - act\n",
     "t.net:1:1: error: unknown op or block 'Reluu'"),
    ("input x: 3x8x8\nblock B(c, skip) {\n  [ _ | skip ] - Concat\n}\nc1:Conv(4, 3, bogus=1)\nx - B(4, c1)\n",
     "t.net:5:15: error: Conv has no argument 'bogus'"),
])
def test_a_failed_definition_does_not_cascade_into_its_uses(text, first):
    text = error(text)
    assert text.count("error:") == 1 and text.startswith(first), text


def test_a_failed_import_still_reports_case_typos_of_ops():
    text = error('import "nothere.net"\ninput x: 3x8x8\nConv(4, 3) - Relu\n')
    assert "t.net:3:14: error: unknown op 'Relu'" in text and text.endswith("2 errors"), text


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


def test_every_unknown_op_of_a_block_body_is_reported_once():
    text = error("""
        input x: 3x8x8
        block B(c) {
          Conv(c, 3) - Relu - Fooo
          Bar(2)
        }
        B(4)
        x - B(8)
    """)
    for where, name in [("3:16", "Relu"), ("3:23", "Fooo"), ("4:3", "Bar")]:
        assert f"t.net:{where}: error: unknown op '{name}'" in text, text
    assert "note: in block B, used at t.net:6:1" in text and "used at t.net:7:" not in text
    assert text.endswith("3 errors")


def test_block_labels_and_parameters_are_not_unknown_ops():
    m = parse("""
        input x: 3x8x8
        block B(c, Skip) {
          C1:Conv(c, 3, pad=1) - ReLU
          [ C1 | Skip ] - Add
        }
        s:Conv(4, 1) - B(4, s)
    """)
    assert m.output_shape == (4, 8, 8)


# ---------------------------------------------------------------- bug 10: sizes nobody can run

def cli(tmp_path, capsys, text, cmd="check"):
    """Run `netdsl CMD file` on `text`; (exit code, stderr, seconds)."""
    import time

    from netdsl.cli import main
    path = tmp_path / "big.net"
    path.write_text(text)
    t0 = time.perf_counter()
    rc = main([cmd, str(path)])
    return rc, capsys.readouterr().err.replace(str(path), "big.net"), time.perf_counter() - t0


HUGE = [
    # (source line 2, expected start of the rendered error)
    ("Conv(4, 3, dilation=" + "1" * 120 + ")", "big.net:2:21: error: number too large: 111111111111… (120 digits)"),
    ("Conv(4, 3, pad=" + "1" * 120 + ")", "big.net:2:16: error: number too large: 111111111111… (120 digits)"),
    ("Conv(" + "7" * 5000 + ", 3)", "big.net:2:6: error: number too large: 777777777777… (5,000 digits)"),
    ("Conv(4, 3, stride=9223372036854775808)",
     "big.net:2:12: error: 'stride' is too large: 9223372036854775808; the most any size or count may be is "
     "2,147,483,647"),
    ("Conv(4, 3, pad=2 * 1000000000000)", "big.net:2:12: error: 'pad' is too large: 2000000000000"),
    ("Conv(4, 3x" + "9" * 25 + ")", "big.net:2:9: error: 'kernel' is too large: 9999999999… (25 digits)"),
    ("(ReLU*1000)*1000", "big.net:2:13: error: this repeat makes 1,000 copies of 1,000 layers: the network "
     "would have 1,000,001 layers, more than netdsl's limit of 100,000"),
    ("(Conv(64, 3, pad=1))*100000", "big.net:2:22: error: this repeat makes 100,000 copies of 1 layer: the "
     "network would have 100,001 layers, more than netdsl's limit of 100,000"),
    ("Conv(1000000000, 3)", "big.net:2:1: error: Conv at conv1: 28,000,000,000 parameters (104.3 GiB of float32 "
     "weights) in this one layer; netdsl's limit is 2,147,483,648 (8.0 GiB) per network"),
    ("FC(40000) - FC(40000) - FC(40000)", "big.net:2:25: error: FC at fc3: the network's parameters pass "
     "netdsl's limit of 2,147,483,648 (8.0 GiB) here: 1,607,760,000 before this layer + 1,600,040,000 in it"),
    ("[ " + " | ".join(["Conv(1, 1)"] * 129) + " ] - Add",
     f"big.net:2:{len('[ ' + ' | '.join(['Conv(1, 1)'] * 129) + ' ] - ') + 1}: error: Add gets 129 inputs; "
     "a merge takes at most 128"),
    ("Dropout(1e999)", "big.net:2:9: error: 'p' must be a finite number, got inf"),
]


@pytest.mark.parametrize("line,want", HUGE, ids=[w.split("error: ")[1][:30] for _, w in HUGE])
@pytest.mark.parametrize("cmd", ["check", "summary", "explain"])
def test_sizes_nobody_can_run_are_refused_up_front(tmp_path, capsys, line, want, cmd):
    rc, err, seconds = cli(tmp_path, capsys, f"input x: 3x8x8\n{line}\n", cmd)
    assert rc == 1, err
    assert err.startswith(want), err
    assert "internal error" not in err and err.split("\n")[2].lstrip().startswith("^"), err
    assert seconds < 30


def test_transition_of_a_huge_densenet_is_refused_at_the_conv_it_makes(tmp_path, capsys):
    text = "import densenet\ninput x: 3x8x8\nConv(3264064, 1) - Transition((64 + 100000*32) // 2)\n"
    rc, err, _ = cli(tmp_path, capsys, text)
    assert rc == 1 and "internal error" not in err
    assert "parameters (" in err and "netdsl's limit is 2,147,483,648 (8.0 GiB)" in err, err
    assert "note: in block Transition (0), used at big.net:3:20" in err, err


def test_an_input_too_large_for_memory_is_refused_at_its_line():
    text = error("input x: 3x100000x100000\nConv(8, 3)\n")
    assert text.startswith("t.net:1:1: error: Input at x: the output 3x100000x100000 holds 30,000,000,000 values "
                           "per sample (111.8 GiB); netdsl's limit is 2,147,483,648 (8.0 GiB) per layer"), text


def test_a_merge_of_128_inputs_still_works():
    m = parse("input x: 3x4x4\n[ " + " | ".join(["Conv(1, 1)"] * 128) + " ] - Concat\n")
    assert m.output_shape == (128, 4, 4)


# ---------------------------------------------------------------- bug 7: shapes as the slides write them

def warnings_of(m):
    return [w.render() for w in m.graph.warnings]


def test_an_hwc_looking_shape_warns_with_the_fix():
    m = parse("input x: 32x32x3\nConv(10, 5, pad=2)\n")
    assert m.total_params == 10 * (32 * 5 * 5 + 1)     # read as written: 32 channels
    [w] = warnings_of(m)
    assert w == ("t.net:1:10: warning: input shape 32x32x3 reads as 32 channels of 32x3 pixels: did you mean "
                 "3x32x32? netdsl shapes are CxHxW\n"
                 "    input x: 32x32x3\n"
                 "             ^~~~~~~\n"
                 "hint: write `input x: 3x32x32`, or `input x: 32x32x3 (hwc)` to keep the slide's order; "
                 "`(chw)` keeps 32 channels and silences this warning")


def test_hwc_reads_the_slides_order():
    m = parse("input x: 32x32x3 (hwc)\nConv(10, 5, pad=2)\n")
    assert m.graph["x"].shape == (3, 32, 32) and m.total_params == 10 * (3 * 5 * 5 + 1) == 760
    assert m.graph.warnings == []
    m = parse("input img: 224x224x3 (HWC, mean=(0.5, 0.5, 0.5))\nConv(8, 1)\n")
    assert m.graph["img"].attrs["mean"] == (0.5, 0.5, 0.5) and m.graph["img"].shape == (3, 224, 224)


@pytest.mark.parametrize("shape", ["3x32x32", "32x32x3 (chw)", "64x7x7", "16x4x4", "10", "4x4x3"])
def test_no_warning_for_shapes_that_are_channels_first_or_say_so(shape):
    assert parse(f"input x: {shape}\nIdentity\n").graph.warnings == []


def test_hwc_needs_an_image_shape():
    text = error("input x: 10 (hwc)\nFC(3)\n")
    assert text.startswith("t.net:1:10: error: (hwc) describes an image shape HxWxC, but 10 has 1 size"), text


@pytest.mark.parametrize("pasted,plain", [
    ("input x: 3×32×32\nConv(8, 3)–ReLU—Pool\n", "input x: 3x32x32\nConv(8, 3)-ReLU-Pool\n"),
    ("input x: 3 x 32 x 32\nConv(8, 3 x 3)\n", "input x: 3x32x32\nConv(8, 3x3)\n"),
    ("input x: 3X32X32\n3X3 conv, 8\n", "input x: 3x32x32\n3x3 conv, 8\n"),
    ("const c = 9\ninput x: 3x32x32\n(Conv(c − 1, 3) - ReLU)×2\n", "input x: 3x32x32\n(Conv(8, 3) - ReLU)*2\n"),
])
def test_characters_pasted_from_slides_are_read_as_ascii(pasted, plain):
    a, b = parse(pasted), parse(plain)
    assert [(n.op, n.shape) for n in a.graph.nodes()] == [(n.op, n.shape) for n in b.graph.nodes()]


def test_pasted_characters_keep_the_columns_of_later_errors():
    text = error("input x: 3 x 32 x 32\nConv(8, 3) – Relu\n")
    assert text.startswith("t.net:2:14: error: unknown op 'Relu'"), text
    assert caret_under(text, "t.net:2:14") == "Relu"
    assert "    Conv(8, 3) – Relu" in text         # the line is shown as written


def test_strings_and_comments_keep_their_dashes(tmp_path):
    lib = tmp_path / "a–b.net"
    lib.write_text("block B(c) {\n  Conv(c, 1)\n}\n")
    main = tmp_path / "m.net"
    main.write_text('import "a–b.net"   # the en dash stays in the path – and here\ninput x: 3x8x8\nB(4)\n')
    m = netdsl.load(str(main))
    assert m.output_shape == (4, 8, 8)


# ---------------------------------------------------------------- warnings: StochasticPool's input sign

@pytest.mark.parametrize("before,warns", [
    ("Conv(4, 3, pad=1) - BN", "bn1, a BatchNorm without an activation"),
    ("Conv(4, 3, pad=1) - Tanh", "tanh1, a Tanh"),
    ("Conv(4, 3, pad=1)", "conv1, a Conv without an activation"),
    ("Conv(4, 3, pad=1, act=leakyrelu)", "conv1, a Conv with act=leakyrelu"),
    ("Conv(4, 3, pad=1, act=hardswish)", "conv1, a Conv with act=hardswish"),   # dips to -0.375
    ("Conv(4, 3, pad=1, act=relu6)", None),
    ("Conv(4, 3, pad=1, act=hardsigmoid)", None),
    ("Identity", "x, an Input"),
    ("Conv(4, 3, pad=1) - ReLU", None),
    ("Conv(4, 3, pad=1, act=relu) - Dropout - MaxPool(1)", None),
    ("Conv(4, 3, pad=1) - BN(act=relu) - [ _ | Sigmoid ] - Concat", None),
    ("Conv(4, 3, pad=1) - ReLU - [ _ | Tanh ] - Concat", "tanh1, a Tanh"),
    ("Conv(4, 3, pad=1) - Dropout - MaxPool(1)", "conv1, a Conv without an activation"),
    ("Conv(4, 3, pad=1) - ReLU - Pad(1, value=-1)", "pad1, a Pad"),
    ("Conv(4, 3, pad=1) - ReLU - Pad(1) - Crop(8x8) - Upsample(2)", None),
])
def test_stochastic_pool_warns_when_its_input_may_be_negative(before, warns):
    m = parse(f"input x: 3x8x8\n{before} - StochasticPool(2)\n")
    ws = warnings_of(m)
    if warns is None:
        assert ws == []
        return
    [w] = ws
    col = len(f"{before} - ") + 1
    assert w.startswith(f"t.net:2:{col}: warning: StochasticPool at stochasticpool1: its input is not known to "
                        f"be non-negative ({warns}"), w
    assert w.endswith("hint: the lecture's p_i = a_i / Σ a_k assumes activations after a ReLU: "
                      "put a ReLU before it"), w


def test_warnings_are_printed_by_the_commands_and_are_not_fatal(tmp_path, capsys):
    for cmd in ("check", "summary", "explain", "run"):
        rc, err, _ = cli(tmp_path, capsys, "input x: 32x32x3\nConv(4, 3, pad=1) - BN - StochasticPool(2)\n", cmd)
        assert rc == 0, (cmd, err)
        assert err.startswith("big.net:1:10: warning: input shape 32x32x3 reads as 32 channels"), err
        assert "big.net:2:26: warning: StochasticPool at stochasticpool1" in err, err
        # the warnings close with their count; `run` then notes the seed-0 weights
        assert "\n2 warnings\n" in err and err.rstrip().endswith(
            "2 warnings" if cmd != "run" else "see docs/RUNTIME.md)"), err


def test_warnings_are_shown_with_the_errors_they_explain():
    text = error("input x: 32x32x3\nConv(10, 5)\n")
    assert text.startswith("t.net:1:10: warning: input shape 32x32x3 reads as 32 channels"), text
    assert "t.net:2:1: error: Conv at conv1: Conv: the output width shrinks to zero" in text
    assert text.endswith("1 error, 1 warning")


# ---------------------------------------------------------------- attribute kinds accept what the docs say

@pytest.mark.parametrize("arg,want", [
    ("bias=1", "'bias' must be true or false, got 1"),
    ("bias=yes", "'bias' must be true or false, got yes"),
    ('bias="true"', "'bias' must be true or false, got true"),
    ("pad=-1", "'pad' must be at least 0, got -1"),
    ("pad=(1, 2, 3)", "'pad' must be same, valid, p, (ph, pw) or (top, left, bottom, right); got (1, 2, 3)"),
    ("kernel=3x3x3", "'kernel' must be an integer or two (e.g. 3 or 3x5), got (3, 3, 3)"),
    ("act=soft", "'act' must be one of none, relu, leakyrelu, sigmoid, tanh, relu6, hardsigmoid, hardswish, silu, "
                 "gelu, mish; got soft"),
    ("kernel=2.5", "'kernel' must be an integer or two (e.g. 3 or 3x5), got 2.5"),
])
def test_attribute_kinds_refuse_what_the_docs_do_not_allow(arg, want):
    text = error(f"input x: 3x8x8\nConv(4, {arg})\n")
    assert text.startswith(f"t.net:2:9: error: {want}"), text


@pytest.mark.parametrize("arg,attr,value", [
    ("bias=false", "bias", False), ("bias=True", "bias", True), ("pad=2.0", "pad", (2, 2, 2, 2)),
    ("kernel=3.0", "kernel", (3, 3)), ("pad=SAME", "pad", (1, 1, 1, 1)), ("pad=(1, 2)", "pad", (1, 2, 1, 2)),
    ("act=ReLU", "act", "relu"), ("act=none", "act", "none"), ("stride=2x1", "stride", (2, 1)),
])
def test_attribute_kinds_accept_what_the_docs_allow(arg, attr, value):
    m = parse(f"input x: 3x8x8\nConv(4, 3, {arg})\n")
    assert m.graph["conv1"].attrs[attr] == value


def test_a_block_that_calls_itself_twice_per_level_is_refused_not_hung(tmp_path, capsys):
    # builds no layer at all, but 2^40 block calls: found by fuzzing the language
    from unittest import mock

    from netdsl.frontend import limits
    text = "input x: 3x8x8\nblock B(n) {\n  if n > 0 { B(n - 1) - B(n - 1) }\n}\nB(40)\n"
    with mock.patch.object(limits, "MAX_LAYERS", 3000):      # the same check, sooner: keeps the test fast
        rc, err, seconds = cli(tmp_path, capsys, text)
    assert rc == 1 and seconds < 60
    first = err.splitlines()[0]      # at one of the two calls on line 3, whichever passes the limit
    assert first in ("big.net:3:14: error: blocks are used more than 3,000 times while expanding this network",
                     "big.net:3:25: error: blocks are used more than 3,000 times while expanding this network"), err


def test_a_second_analysis_does_not_repeat_warnings():
    """The passes re-analyze their graph: the warnings stay one each (they were doubled)."""
    from netdsl.passes import optimize
    m = netdsl.parse("input x: 32x32x3\nConv(4, 3, pad=1) - BN - StochasticPool(2)\n")
    assert len(m.graph.warnings) == 2
    g, _, _ = optimize(m.graph, None, 3)
    assert len(g.warnings) == 2, [w.message for w in g.warnings]


def test_a_curly_quote_inside_a_straight_quoted_string_is_kept():
    """Pasted-slide reading leaves strings as written: a ” inside "…" does not end the string
    (it did, and the rest of the line became code)."""
    with pytest.raises(netdsl.NetDSLError) as e:
        netdsl.parse('input x: 3x8x8 (mean="a”b")\nReLU\n')
    assert "got a”b" in e.value.render()


def test_a_whole_float_repeat_count_counts_as_the_integer():
    """LANGUAGE.md: a whole number written `2.0` counts as `2` — in a repeat count too."""
    m = netdsl.parse("input x: 3x8x8\nconst n = 3.0\nReLU*n\n")
    assert [nd.op for nd in m.graph.nodes()] == ["Input", "ReLU", "ReLU", "ReLU"]
    with pytest.raises(netdsl.NetDSLError, match="whole number"):
        netdsl.parse("input x: 3x8x8\nconst n = 2.5\nReLU*n\n")
