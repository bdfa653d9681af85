"""Printed arithmetic is true (issue 7, bug 5): every formula `explain` and the size errors
print is evaluated here, exactly (fractions, ⌊⌋ and ⌈⌉ as written), for many random sizes,
and must equal both the result printed after it and an independent oracle (PyTorch's
output-size rule, and a walk over the windows for the "does not fit" note)."""
from __future__ import annotations

import math
import random
import re
from fractions import Fraction

import pytest

import netdsl
from netdsl import NetDSLError


def evaluate(formula: str) -> Fraction:
    """The value of a printed formula such as '⌊(7 + 2·1 − 3)/2⌋ + 1 − 1'."""
    py = formula.replace("·", "*").replace("−", "-")
    py = py.replace("⌊", "math.floor(").replace("⌋", ")").replace("⌈", "math.ceil(").replace("⌉", ")")
    py = re.sub(r"(\d+)", r"Fraction(\1)", py)
    assert re.fullmatch(r"[\sFraction()\d+\-*/.mathflorcei]*", py), formula
    return Fraction(eval(py, {"math": math, "Fraction": Fraction}))


def checked(line: str) -> int:
    """Evaluate 'H: formula = result' and assert the two sides agree; return the result."""
    lhs, rhs = line.removeprefix("H: ").removeprefix("W: ").rsplit(" = ", 1)
    value = evaluate(lhs)
    assert value == int(rhs), f"printed arithmetic is false: {line} (it is {value})"
    return int(rhs)


def torch_out(size, k_eff, s, p0, p1, ceil_mode=False):
    """PyTorch's pooling/conv output length (aten pooling_output_shape), independently."""
    num = size + p0 + p1 - k_eff
    out = (-(-num // s) if ceil_mode else num // s) + 1
    if ceil_mode and (out - 1) * s >= size + p0:
        out -= 1
    return out


def uncovered_at_end(size, k_eff, s, p0, p1, out):
    """Rows at the end of the padded input that no window reaches, by walking the windows."""
    covered = max(i * s + k_eff for i in range(out))
    return max(0, size + p0 + p1 - covered)


def _note_count(note):
    m = re.search(r"the last (\d+ )?(row|column)", note)
    return int(m.group(1) or 1)


@pytest.mark.parametrize("seed", range(4))
def test_conv_and_pool_explain_formulas_are_true(seed):
    rng = random.Random(seed)
    for _ in range(60):
        h, w = rng.randint(1, 40), rng.randint(1, 40)
        k, s, d = rng.randint(1, 7), rng.randint(1, 5), rng.randint(1, 3)
        p = rng.randint(0, 3)
        k_eff = (k - 1) * d + 1
        op = rng.choice(["conv", "pool", "pool_ceil"])
        if op == "conv":
            text = f"Conv(2, {k}x{k}, stride={s}, pad={p}, dilation={d})"
        else:
            k_eff, p = k, min(p, k // 2)
            text = f"MaxPool({k}, stride={s}, pad={p}, ceil_mode={'true' if op == 'pool_ceil' else 'false'})"
        ceil = op == "pool_ceil"
        src = f"input x: 1x{h}x{w}\n{text}\n"
        want_h, want_w = torch_out(h, k_eff, s, p, p, ceil), torch_out(w, k_eff, s, p, p, ceil)
        try:
            m = netdsl.parse(src)
        except NetDSLError as e:
            assert min(want_h, want_w) <= 0 or h + 2 * p < k_eff or w + 2 * p < k_eff, (src, e.render())
            shown = re.search(r"shrinks to zero: .*?: (.*)$", e.diagnostics[0].message).group(1)
            lhs, rhs = shown.rsplit(" = ", 1)
            assert evaluate(lhs) == int(rhs) and int(rhs) <= 0, (src, shown)
            continue
        node = m.graph.nodes()[-1]
        assert node.shape[1:] == (want_h, want_w), src
        lines = netdsl.ops.get(node.op).explain(node.attrs, [(1, h, w)], node.shape)
        arith = [ln for ln in lines if ln.startswith(("H:", "W:"))]
        results = [checked(ln) for ln in arith]
        for ln in lines:
            if ln.startswith("params: "):          # '(5·5·1 + 1)·2 = 52  (26 per filter)' is the count
                lhs, rhs = ln.removeprefix("params: ").split("  ")[0].rsplit(" = ", 1)
                assert evaluate(lhs) == int(rhs.replace(",", "")) == node.n_params, (src, ln)
        assert results[0] == want_h and results[-1] == want_w, (src, lines)
        notes = [ln for ln in lines if "does not fit" in ln]
        for size, want, note_axis in ((h, want_h, 0), (w, want_w, 1)):
            fits = (size + 2 * p - k_eff) % s == 0
            gap = uncovered_at_end(size, k_eff, s, p, p, want)
            if fits:
                assert gap == 0
                continue
            mine = [n for n in notes if ("row" in n) == (note_axis == 0) or " and column" in n]
            assert mine, (src, lines)
            if "partial window" in mine[0]:
                assert ceil and want > (size + 2 * p - k_eff) // s + 1
                assert _note_count(mine[0]) == (size + 2 * p - k_eff) % s
            else:
                assert _note_count(mine[0]) == gap, (src, mine[0], gap)
                assert ("padding only" in mine[0]) == (gap <= p), (src, mine[0])


@pytest.mark.parametrize("src,op", [
    ("input x: 3x7x7\nDeconv(4, 4, stride=2, pad=1)", "ConvTranspose"),
    ("input x: 3x7x5\nDeconv(6, 3x2, stride=3, pad=(0, 1), groups=3, bias=false)", "ConvTranspose"),
    ("input x: 3x7x7\nFC(10)", "FC"), ("input x: 30\nFC(10, bias=false)", "FC"),
    ("input x: 3x9x7\nLocal(4, 3, stride=2)", "Local"), ("input x: 6x9x9\nConv(4, 3, groups=2, bias=false)", "Conv"),
])
def test_other_printed_formulas_are_true(src, op):
    m = netdsl.parse(src)
    node = m.graph.nodes()[-1]
    shapes = [m.graph[p].shape for p in m.graph.preds(node.name)]
    lines = netdsl.ops.get(op).explain(node.attrs, shapes, node.shape)
    for ln in lines:
        if ln.startswith(("H:", "W:")):
            assert checked(ln) == node.shape[1 if ln.startswith("H:") else 2], ln
        elif " = " in ln and "params" in ln:
            lhs, rhs = ln.removeprefix("params: ").split("  ")[0].split(" (")[0].rsplit(" = ", 1)
            lhs = lhs.removeprefix("flatten ")
            assert evaluate(lhs.replace(" positions", "")) == int(rhs.split()[0].replace(",", "")) == node.n_params, ln


def test_the_lecture_examples():
    m = netdsl.parse("input x: 3x7x7\nConv(4, 3, stride=3)\n")
    lines = netdsl.ops.get("Conv").explain(m.graph["conv1"].attrs, [(3, 7, 7)], m.graph["conv1"].shape)
    assert lines[0] == "H: ⌊(7 − 3)/3⌋ + 1 = 2"
    assert lines[1] == "stride 3 does not fit the input evenly: the last row and column of the input are never covered"
    m = netdsl.parse("input x: 3x7x7\nConv(4, 3, stride=2)\n")
    lines = netdsl.ops.get("Conv").explain(m.graph["conv1"].attrs, [(3, 7, 7)], m.graph["conv1"].shape)
    assert lines[0] == "H: (7 − 3)/2 + 1 = 3" and not any("fit" in ln for ln in lines)


def test_a_kernel_larger_than_the_input_prints_the_true_negative_result():
    with pytest.raises(NetDSLError) as e:
        netdsl.parse("input x: 3x32x32\nConv(4, 40)\n", "t.net")
    text = e.value.render()
    assert text.startswith("t.net:2:1: error: Conv at conv1: Conv: the output height shrinks to zero: "
                           "the window (40) is larger than the input (32): (32 − 40)/1 + 1 = -7"), text
    with pytest.raises(NetDSLError) as e:
        netdsl.parse("input x: 3x8x8\nConv(4, 11, pad=1, stride=2)\n", "t.net")
    assert ("the window (11) is larger than the padded input (10): ⌊(8 + 2·1 − 11)/2⌋ + 1 = 0"
            in e.value.render())
