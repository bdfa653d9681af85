"""Fuzzing the front end: whatever the text, netdsl answers with a checked
model or a NetDSLError whose diagnostics render and point inside the file —
never another exception. Inputs are token soups from the grammar's
vocabulary and random mutations (delete / duplicate / swap / insert
characters and tokens) of the zoo files and a few inline networks.
Bounded: a few hundred examples, well under 30 s."""
from __future__ import annotations

import glob
import os
import re
from unittest import mock

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import netdsl
from netdsl import NetDSLError
from netdsl.frontend import limits

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

INLINE = [
    "input x: 3x32x32\nConv(10, 5, pad=2)-ReLU-Pool-FC(10)-SM\n",
    # LeNet-ish with constants, defaults, labels and a table line
    "# lenet\nconst C = 6\ninput x: 1x32x32\ndefault Conv(pad=0)\n"
    "c1:Conv(C, 5)-ReLU-Pool(2)\nConv(16, 5)-ReLU-Pool\n3x3 conv, 64, /2\nFC 120\nFC(84)-ReLU-FC(10)-SM\n",
    # a residual block, repeated, with a projection
    "input x: 3x32x32\nblock Res(c, s=1) {\n  [ Conv(c, 3, stride=s, pad=1)-BN-ReLU-Conv(c, 3, pad=1)-BN\n"
    "  | if s > 1 { Conv(c, 1, stride=s)-BN } ]-Add-ReLU\n}\nConv(16, 3, pad=1)-BN-ReLU\n"
    "layer1:Res(16)*2\nlayer2:(Res(32, 2)-Res(32))\nGAP-FC(10)\n",
    # inception-style concat, named outputs
    "input img: 3x28x28\nstem = Conv(32, 3, pad=same)-ReLU\n"
    "mix = stem-[ Conv(16, 1) | Conv(16, 3, pad=1) | MaxPool(3, stride=1, pad=1)-Conv(8, 1) ]-Concat\n"
    "head = mix-GAP-FC(10)\noutput head, mix\n",
    # U-Net-ish skip with a deconv and a crop-free concat
    "input x: 1x64x64\nd1 = Conv(8, 3, pad=1)-ReLU\nd2 = d1-Pool-Conv(16, 3, pad=1)-ReLU\n"
    "up = d2-Deconv(8, 2, stride=2)\n[ up | d1 ]-Concat-Conv(2, 1)\n",
]

SEEDS = INLINE + [open(p, encoding="utf-8").read() for p in sorted(glob.glob(os.path.join(ROOT, "netdsl", "zoo", "*.net")))]

VOCAB = [
    # keywords and punctuation of grammars/netdsl.lark
    "import", "const", "default", "input", "output", "block", "if", "else", "and", "or", "not",
    "(", ")", "[", "]", "{", "}", "-", "|", ",", "=", ":", "*", "/", "//", "%", "+", "<", ">=", "==",
    "_", "#", "\n", "\n", "\n", " ", "\\\n", "\t",
    # names, numbers, sizes, strings
    "x", "y", "c1", "a", "b", "C", "n", "same", "valid", "sme", "true", "stride", "pad", "strid",
    "0", "1", "2", "3", "64", "-1", "100000", "1.5", "1e400", ".5", "3x3", "3x32x32", "0x0", "3x32",
    '"nope.net"', '"', "resnet", "@", "$", ";", "é", "\x00",
    # sizes too large for their slot, and characters pasted from slides (issue 7)
    "2147483648", "9223372036854775808", "1" * 40, "1e999", "×", "–", "—", "−", "“", " x ", "(hwc)", "hwc",
    "none", "act=none", "StochasticPool", "Mul",
    # ops and aliases
    "Conv", "conv", "Conv2", "ReLU", "Pool", "MaxPool", "FC", "SM", "BN", "GAP", "Add", "Concat",
    "Deconv", "Dropout", "Flatten", "Crop", "Pad", "Upsample", "Identity", "Sigmoid", "Reshape",
]

TOKEN = re.compile(r"\d+(?:x\d+)+|\d+\.\d*|\d+|[A-Za-z_]\w*|\"[^\"\n]*\"|//|==|!=|<=|>=|\s+|.", re.S)


def check_answer(text: str):
    """Parse and check `text`: a Model, or a NetDSLError whose diagnostics point into the text."""
    try:
        m = netdsl.parse(text, name="fuzz.net")
        m.explain()                          # the printed arithmetic of every layer
        for w in m.graph.warnings:
            assert w.span is not None and w.render()
    except NetDSLError as e:
        rendered = e.render()
        assert rendered and "Traceback" not in rendered
        assert e.diagnostics
        for d in e.diagnostics:
            assert d.message
            assert d.span is not None, rendered
            # the span is in this file, or in a standard-library file a block came from
            assert d.span.source.name == "fuzz.net" or d.span.source.name.endswith(".net"), rendered
            lines = d.span.source.text.splitlines()
            assert 1 <= d.span.line <= max(1, len(lines)), rendered
            line = lines[d.span.line - 1] if lines else ""
            assert 1 <= d.span.col <= len(line) + 1, rendered
            d.render()


@st.composite
def token_soup(draw):
    toks = draw(st.lists(st.sampled_from(VOCAB), min_size=0, max_size=40))
    sep = draw(st.sampled_from(["", " "]))
    return sep.join(toks)


@st.composite
def mutated(draw):
    text = draw(st.sampled_from(SEEDS))
    for _ in range(draw(st.integers(1, 4))):
        by_token = draw(st.booleans())
        units = TOKEN.findall(text) if by_token else list(text)
        if not units:
            units = [""]
        i = draw(st.integers(0, len(units) - 1))
        j = draw(st.integers(0, len(units) - 1))
        op = draw(st.sampled_from(["delete", "duplicate", "swap", "insert", "replace"]))
        if op == "delete":
            del units[i]
        elif op == "duplicate":
            units.insert(i, units[i])
        elif op == "swap":
            units[i], units[j] = units[j], units[i]
        else:
            new = draw(st.sampled_from(VOCAB)) if by_token else draw(
                st.sampled_from(list("()[]{}-|,=:*/_#\n 0123456789xabcXYZ\"@.")))
            if op == "insert":
                units.insert(i, new)
            else:
                units[i] = new
        text = "".join(units)
    return text


# Keep every example fast: a mutation can turn `*2` into `*22222`.
FEW_NODES = 5000
FUZZ = settings(max_examples=250, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


@FUZZ
@given(token_soup())
def test_token_soup_gives_model_or_netdsl_error(text):
    with mock.patch.object(limits, "MAX_LAYERS", FEW_NODES):
        check_answer(text)


@FUZZ
@given(mutated())
def test_mutated_networks_give_model_or_netdsl_error(text):
    with mock.patch.object(limits, "MAX_LAYERS", FEW_NODES):
        check_answer(text)


@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(st.text(max_size=60))
def test_arbitrary_text_gives_model_or_netdsl_error(text):
    with mock.patch.object(limits, "MAX_LAYERS", FEW_NODES):
        check_answer(text)


def test_seeds_are_valid():
    """The unmutated inputs check cleanly, so mutations start from working networks."""
    for text in SEEDS:
        netdsl.parse(text)
