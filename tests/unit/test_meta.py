"""Adding an op means adding its spec, kernel, test and reference row: these
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


@pytest.mark.parametrize("name", sorted(SPECS))
def test_every_op_has_a_reference_test(name):
    tests = ""
    for d in ("tests/ops",):
        for f in os.listdir(os.path.join(ROOT, d)):
            if f.endswith(".py"):
                tests += open(os.path.join(ROOT, d, f), encoding="utf-8").read()
    assert re.search(rf"\b{re.escape(name)}\b", tests), f"no test in tests/ops mentions {name}"


@pytest.mark.parametrize("name", sorted(SPECS))
def test_every_op_documents_itself(name):
    spec = SPECS[name]
    assert spec.doc, f"{name} has no doc line"
    assert all(a.doc for a in spec.attrs), f"{name} has an undocumented attribute"


def test_language_reference_op_table_is_current():
    from netdsl.cli import ops_markdown
    text = open(os.path.join(ROOT, "docs", "LANGUAGE.md"), encoding="utf-8").read()
    assert ops_markdown() in text, "regenerate the op table: netdsl ops --markdown"
