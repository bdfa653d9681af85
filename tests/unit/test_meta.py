"""Adding an op means adding its spec, kernel, tests and reference row: these
tests fail when one of them is missing (STYLE.md, "adding an op touches its
own files only")."""
from __future__ import annotations

import os
import re

import pytest

from netdsl import ops
from netdsl.runtime.kparams import builder

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SPECS = {n: s for n, s in ops.all_specs().items() if n != "Input"}


@pytest.mark.parametrize("name", sorted(SPECS))
def test_every_op_has_a_kernel_or_is_a_view(name):
    spec = SPECS[name]
    assert "no_op" in spec.flags or builder(name) is not None, f"{name} has no kparams builder / C kernel"


@pytest.mark.parametrize("name", sorted(SPECS))
def test_every_op_is_in_the_language_reference(name):
    text = open(os.path.join(ROOT, "docs", "LANGUAGE.md"), encoding="utf-8").read()
    assert re.search(rf"\|\s*`?{re.escape(name)}`?\s*\|", text), f"{name} has no row in docs/LANGUAGE.md's op table"


def _text(prefixes):
    d = os.path.join(ROOT, "tests", "ops")
    return "".join(open(os.path.join(d, f), encoding="utf-8").read() for f in sorted(os.listdir(d))
                   if f.endswith(".py") and f.startswith(prefixes))


@pytest.mark.parametrize("name", sorted(SPECS))
def test_every_op_has_a_reference_test(name):
    """Named as a string ("MaxPool") in a test of the numpy references."""
    assert re.search(rf"[\"']{re.escape(name)}[\"']", _text(("test_",))), f"no test in tests/ops names {name!r}"


@pytest.mark.parametrize("name", sorted(n for n, s in SPECS.items() if "no_op" not in s.flags))
def test_every_kernel_has_a_kernel_test(name):
    """Named as a string in a test that runs the C kernel (tests/ops/test_kernels_*.py, test_executor.py)."""
    text = _text(("test_kernels", "test_executor"))
    assert re.search(rf"[\"']{re.escape(name)}[\"']", text), f"no C kernel test names {name!r}"


@pytest.mark.parametrize("name", sorted(SPECS))
def test_every_op_documents_itself(name):
    spec = SPECS[name]
    assert spec.doc, f"{name} has no doc line"
    assert all(a.doc for a in spec.attrs), f"{name} has an undocumented attribute"


def test_language_reference_op_table_is_current():
    from netdsl.cli import ops_markdown
    text = open(os.path.join(ROOT, "docs", "LANGUAGE.md"), encoding="utf-8").read()
    assert ops_markdown() in text, "regenerate the op table: netdsl ops --markdown"
