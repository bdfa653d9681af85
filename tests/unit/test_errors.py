"""Every kind of mistake is reported as `file:line:col: error: message`, the
source line, a caret under the spot, and a hint — asserted on the rendered
text, one broken file per kind in tests/data/broken (each opens with a
comment saying what is wrong, so the mistake is on line 3 or later)."""
from __future__ import annotations

import os

import pytest

import netdsl
from netdsl import NetDSLError

BROKEN = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data", "broken")


def load_error(name) -> NetDSLError:
    with pytest.raises(NetDSLError) as info:
        netdsl.load(os.path.join(BROKEN, name + ".net"))
    return info.value


def caret_col(rendered: str, header: str) -> int:
    """The 1-based column the caret points at, under the diagnostic starting with `header`."""
    lines = rendered.splitlines()
    i = next(k for k, ln in enumerate(lines) if ln.startswith(header) or header in ln)
    caret = lines[i + 2]
    assert caret.lstrip().startswith("^"), rendered
    return caret.index("^") - 4 + 1


# name, line, col, message (substring), hint (substring)
CASES = [
    ("syntax_missing_comma", 3, 12, "unexpected 'pad'", "join layers with '-'"),
    ("syntax_unclosed", 3, 16, "unexpected end of file", "a '(' is never closed"),
    ("syntax_bad_char", 3, 3, "unexpected character '@'", "labels are written name:Op"),
    ("unknown_op", 3, 1, "unknown op 'Conv2'", "did you mean 'Conv2d' or 'Conv'"),
    ("unknown_arg", 3, 13, "Conv has no argument 'strid'", "did you mean 'stride'?"),
    ("bad_enum", 3, 13, "'pad' must be same, valid or integers, got sme", "did you mean 'same'?"),
    ("duplicate_label", 4, 1, "'a' is defined twice", "labels must be unique"),
    ("undefined_name", 3, 26, "undefined name 'zz'", "label a layer first"),
    ("forward_reference", 3, 26, "'y' is defined later (line 4)", "move the line that defines 'y' above"),
    ("label_mid_chain", 3, 21, "'c1' is a label; a reference can only start a chain",
     "[ _ | c1 ] - Concat"),
    ("shrinks_to_zero", 3, 1, "the output height shrinks to zero: the window (11) is larger than the input (8): (8 − 11)/1 + 1 = -2",
     "the input is only 8 pixels there"),
    ("input_rank", 2, 1, "an input is CxHxW (e.g. 3x224x224) or a feature count", "batch size"),
    ("fc_then_conv", 3, 8, "Conv expects a feature map (C,H,W) as input, got shape 10", "CxHxW"),
    ("add_mismatch", 3, 43, "Add at add1: Add inputs differ in shape: 64x14x14 vs 64x28x28",
     "a stride-2 1x1 projection on the shortcut?"),
    ("add_channels", 3, 28, "Add inputs differ in shape: 32x28x28 vs 64x28x28", "same channels"),
    ("concat_mismatch", 3, 36, "Concat inputs differ in size: 30x30 vs 32x32", "height and width must match"),
    ("unmerged_branches", 3, 1, "ends in parallel branches that are never merged", "Concat or - Add"),
    ("merge_one_input", 3, 12, "Add merges two or more inputs but gets one", "branch first"),
    ("recursive_block", 4, 21, "block 'B' nests more than 64 deep: does it call itself?", "recursion"),
    ("division_by_zero", 4, 6, "division by zero", "the divisor is 0"),
    ("zero_channels", 3, 6, "'out_channels' must be at least 1, got 0", "Conv(out_channels"),
    ("negative_kernel", 3, 9, "'kernel' must be at least 1, got -3", "Conv(out_channels"),
    ("huge_repeat", 3, 26, "a repeat count must be a whole number from 0 to 100000", "*2"),
    ("output_undefined", 5, 16, "output 'faet' is not a label or input", "did you mean 'feat'?"),
    ("block_missing_param", 6, 1, "block B needs 'c'", "give c a default"),
    ("empty", 1, 1, "the file defines no layers", "input x: 3x32x32"),
]


@pytest.mark.parametrize("name,line,col,message,hint", CASES, ids=[c[0] for c in CASES])
def test_broken_file_renders_location_line_caret_hint(name, line, col, message, hint):
    e = load_error(name)
    text = e.render()
    header = f"{name}.net:{line}:{col}: error: "
    first = text.splitlines()[0]
    assert header in first, text
    assert message in first, text
    assert len(e.diagnostics) == 1, text
    d = e.diagnostics[0]
    # the source line is shown, with the caret under the reported column
    src_line = d.span.source.line(line)
    assert text.splitlines()[1] == "    " + src_line.replace("\t", " ")
    assert caret_col(text, header) == col
    assert "hint: " in text and hint in d.hint, text
    assert "Traceback" not in text


def test_every_broken_file_has_a_comment_and_a_case():
    files = sorted(f[:-4] for f in os.listdir(BROKEN) if f.endswith(".net"))
    covered = {c[0] for c in CASES} | set(MULTI)
    assert set(files) == covered, set(files) ^ covered
    for f in files:
        with open(os.path.join(BROKEN, f + ".net")) as fh:
            assert fh.readline().startswith("# broken: "), f


MULTI = {
    "syntax_multi": [(3, 12, "unexpected 'pad'"), (5, 10, "unexpected ')'"),
                     (6, 3, "unexpected character '@'")],
    "multi_semantic": [(3, 5, "unknown op 'Conv2'"), (4, 19, "no argument 'strid'"),
                       (5, 13, "undefined name 'nope'"), (7, 1, "'d' is defined twice")],
    "multi_shape": [(4, 7, "shrinks to zero"), (5, 37, "Add inputs differ in shape: 4x6x6 vs 4x4x4")],
}


@pytest.mark.parametrize("name", sorted(MULTI))
def test_multi_error_files_report_every_error(name):
    e = load_error(name)
    text = e.render()
    expected = MULTI[name]
    assert len(e.diagnostics) == len(expected), text
    for d, (line, col, message) in zip(e.diagnostics, expected):
        assert (d.span.line, d.span.col) == (line, col), d.render()
        assert message in d.message, d.render()
        assert d.hint, d.render()
        assert d.render().startswith(f"{d.span.source.name}:{line}:{col}: error: ")
        assert caret_col(d.render(), "error:") == col
    assert text.endswith(f"{len(expected)} errors")


def test_add_mismatch_notes_show_both_shapes_and_the_arithmetic():
    text = load_error("add_mismatch").render()
    assert "note: input 1 (relu1) is 14x14: conv1 (line 3) made it 14x14 — ⌊(28 + 2·1 − 3)/2⌋ + 1 = 14" in text
    assert "note: input 2 (x) is 28x28, the size of the input x" in text
    assert "Conv(64, 1, stride=2)" in text


def test_concat_mismatch_notes_show_the_arithmetic():
    text = load_error("concat_mismatch").render()
    assert "input 1 (conv1) is 30x30: conv1 (line 3) made it 30x30 — (32 − 3)/1 + 1 = 30" in text
    assert "input 2 (conv2) is 32x32" in text


# ---------------------------------------------------------------- the Python API

def test_python_api_raises_one_error_type_with_diagnostics():
    src = "input x: 3x32x32\nConv(10, 5, pad=sme)-ReLU\nFC(10)-Foo\n"
    with pytest.raises(NetDSLError) as info:
        netdsl.parse(src, name="model.net")
    e = info.value
    assert isinstance(e, Exception)
    assert e.message.startswith("'pad' must be")
    assert (e.span.line, e.span.col) == (2, 13)
    assert e.hint == "did you mean 'same'?"
    assert str(e) == e.render()
    assert e.render().startswith("model.net:2:13: error: ")
    for d in e.diagnostics:
        assert d.span.source.name == "model.net"


def test_python_api_syntax_error_is_netdsl_error():
    with pytest.raises(NetDSLError) as info:
        netdsl.parse("input x: 3x32x32\nConv(10, 5\n")
    assert info.value.diagnostics and info.value.span.line >= 2
    assert "never closed" in info.value.hint


def test_load_missing_file_is_netdsl_error(tmp_path):
    with pytest.raises(NetDSLError) as info:
        netdsl.load(str(tmp_path / "nope.net"))
    assert "no such file" in info.value.message


def test_load_non_utf8_file_is_netdsl_error(tmp_path):
    p = tmp_path / "bin.net"
    p.write_bytes(b"\xff\xfe\x00\x01garbage\x80")
    with pytest.raises(NetDSLError) as info:
        netdsl.load(str(p))
    assert "cannot read" in info.value.message


def test_load_directory_is_netdsl_error(tmp_path):
    with pytest.raises(NetDSLError):
        netdsl.load(str(tmp_path))


def test_deep_nesting_is_netdsl_error_not_recursion_error():
    src = "input x: 3x32x32\n" + "(" * 500 + "ReLU" + ")" * 500 + "\n"
    with pytest.raises(NetDSLError) as info:
        netdsl.parse(src, name="deep.net")
    d = info.value.diagnostics[0]
    assert (d.span.line, d.span.col) == (2, 1)
    assert "nests too deeply" in d.message and d.hint
    # a very long line is shown as a window, not whole
    assert max(len(ln) for ln in info.value.render().splitlines()) < 200


def test_moderate_nesting_still_works():
    m = netdsl.parse("input x: 3x32x32\n" + "(" * 50 + "ReLU" + ")" * 50 + "-FC(10)\n")
    assert m.output_shape == (10,)


def test_long_expression_is_netdsl_error_or_ok():
    src = "input x: 3x32x32\nConv(" + "+".join(["1"] * 3000) + ", 3)\n"
    try:
        netdsl.parse(src)
    except NetDSLError as e:
        assert "nests too deeply" in e.message


def test_recursive_block_with_stop_condition_works():
    src = ("input x: 3x32x32\nblock B(n) {\n  if n > 0 { Conv(8, 3, pad=1)-B(n - 1) }\n}\nB(3)-FC(10)\n")
    m = netdsl.parse(src)
    assert sum(1 for n in m.graph.nodes() if n.op == "Conv") == 3


def test_failed_input_does_not_cascade():
    with pytest.raises(NetDSLError) as info:
        netdsl.parse("input x: 3x32\nConv(10, 3)-ReLU\n")
    assert len(info.value.diagnostics) == 1


def test_error_after_failed_statement_is_still_reported():
    src = "input x: 3x32x32\na = Foo(3)\nb = x-Conv(8, 3, pad=sme)\n"
    with pytest.raises(NetDSLError) as info:
        netdsl.parse(src)
    assert [d.span.line for d in info.value.diagnostics] == [2, 3]


def test_long_line_window_keeps_caret_under_the_spot():
    src = "input x: 3x32x32\n" + "ReLU-" * 100 + "Foo-" + "ReLU-" * 100 + "ReLU\n"
    with pytest.raises(NetDSLError) as info:
        netdsl.parse(src)
    lines = info.value.render().splitlines()
    col = lines[2].index("^")
    assert lines[1][col:col + 3] == "Foo"
    assert lines[2].strip() == "^~~"


def test_error_inside_an_imported_block_says_where_the_block_was_used(tmp_path):
    (tmp_path / "lib.net").write_text("block Trans(c) {\n  Conv(c, 1)-AvgPool(2)\n}\n")
    (tmp_path / "m.net").write_text('import "lib.net"\ninput x: 3x32x32\nConv(8, 3)-Trans(oops)\n')
    with pytest.raises(NetDSLError) as info:
        netdsl.load(str(tmp_path / "m.net"))
    d = info.value.diagnostics[0]
    assert d.span.source.name.endswith("lib.net") and d.span.line == 2
    assert any(n.startswith("in block Trans, used at ") and n.endswith("m.net:3:12") for n in d.notes), d.notes


def test_import_of_a_binary_file(tmp_path):
    (tmp_path / "lib.net").write_bytes(b"\xff\xfe\x00")
    (tmp_path / "m.net").write_text('import "lib.net"\ninput x: 3x32x32\nReLU\n')
    with pytest.raises(NetDSLError) as info:
        netdsl.load(str(tmp_path / "m.net"))
    assert "not UTF-8" in info.value.message and info.value.span.line == 1


def test_byte_order_mark_is_ignored():
    m = netdsl.parse("\ufeffinput x: 3x32x32\nConv(8, 3)\n")
    assert m.output_shape == (8, 30, 30)


# Each snippet fails with exactly one located, hinted diagnostic: (source, line, message part).
SNIPPETS = [
    ("input x: 3x32x32\n[ _ | _ ]-Concat", 2, "Concat gets the same tensor on more than one input"),
    ("input x: 3x32x32\n[ FC(10) | FC(12) ]-Add", 2, "Add inputs differ in shape: 10 vs 12"),
    ('const a = "s" + 1\ninput x: 3x32x32\nReLU', 1, 'expected a number, got the string "s"'),
    ("input x: 3x32x32\nblock B(c) {\n ReLU\n}\nB(1, 2)", 5, "block B takes 1 arguments (c), got 2"),
    ("input x: 3x32x32\nblock B(c) {\n ReLU\n}\nB(1, c=1)", 5, "'c' is given twice"),
    ("input x: 3x32x32\nConv(8, 3, stride=2, stride=2)", 2, "argument 'stride' is given twice"),
    ("input x: 3x32x32 (mean=sme)\nReLU", 1, "'mean' must be numbers"),
    ("input x: 0x32x32\nReLU", 1, "input sizes must be positive"),
    ("input x: 3x32x32\ndefault act = Foo\nReLU", 2, "unknown op or block 'Foo'"),
    ("input x: 3x32x32\nif x { ReLU }", 2, "an if condition must be true or false"),
    ("input x: 3x32x32\na = ReLU\noutput a, a", 3, "output 'a' is listed twice"),
    ("input x: 3x32x32\n[ _ | _ ]-[ _ | _ ]", 2, "parallel branches must be merged before branching again"),
    ("input x: 3x32x32\n[ _ | _ ]-ReLU", 2, "ReLU takes one input, but 2 parallel branches arrive here"),
    ("input x: 3x32x32\nReLU*(1/2)", 2, "a repeat count must be a whole number"),
    ("input x: 3x32x32\n((_*100000)*100000)*100000", 2, "the repeats unroll more than 1,000,000 times"),
    ("input x: 3x32x32\nConv(8, 3, groups=5)", 2, "groups=5 must divide"),
    ("input x: 3x32x32\nPool(100)", 2, "shrinks to zero: the window (100) is larger than the input (32): ⌊(32 − 100)/100⌋ + 1 = 0"),
    ("input x: 3x32x32\nCrop(100)", 2, "larger than its input"),
    ("input x: 3x32x32\nx = ReLU", 2, "'x' is defined twice"),
    ("input x: 3x32x32\nReLU:ReLU", 2, "label 'ReLU' hides the op"),
    ("ReLU", 1, "this chain has no input"),
    ("import foo\ninput x: 3x32x32\nReLU", 1, "no standard library module 'foo'"),
]


@pytest.mark.parametrize("src,line,message", SNIPPETS, ids=[s[2][:40] for s in SNIPPETS])
def test_snippet_errors_are_located_and_hinted(src, line, message):
    with pytest.raises(NetDSLError) as info:
        netdsl.parse(src, name="s.net")
    e = info.value
    assert len(e.diagnostics) == 1, e.render()
    d = e.diagnostics[0]
    assert message in d.message, e.render()
    assert d.span is not None and d.span.line == line, e.render()
    assert d.hint, e.render()
    assert e.render().startswith(f"s.net:{line}:{d.span.col}: error: ")


def test_shape_error_inside_a_block_says_where_the_block_was_used():
    text = ("input x: 3x32x32\n"
            "block Res(c, stride=1) {\n"
            "  [ Conv(c, 3, stride=stride, pad=1) - ReLU | _ ] - Add\n"
            "}\n"
            "Conv(16, 3, pad=1) - Res(16) - blk:Res(16, stride=2)\n")
    with pytest.raises(netdsl.NetDSLError) as e:
        netdsl.parse(text, "res.net")
    out = str(e.value)
    assert "res.net:3:" in out and "Add at blk.add1" in out
    assert "note: in block Res (blk), used at res.net:5:36" in out
