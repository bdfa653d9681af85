"""An op is its spec, its kernel, its builder and its tests (docs/CONTRIBUTING.md). These
tests fail when a registered op lacks one of them — each by checking the thing itself,
not that a name is mentioned somewhere:

- every sample of every op binds, resolves and infers, and the numpy reference runs on
  it with the inferred output shape and keeps float32;
- every op that is not a view has a kparams builder whose KernelCall names a kernel and
  a params struct that exist in the compiled extension, with exactly the struct's fields;
- every op with a kernel has at least one case in the generic kernel test
  (tests/ops/test_op_kernels.CASES, the list pytest parametrizes), so deleting the
  samples, the builder or that test file fails here;
- every op has a hand-checked reference test: a call of the reference-test fixture
  (`nd.run("PReLU", ...)`, tests/ops/conftest.py) with the op's name in tests/ops/test_*.py,
  found by parsing the code, so a name in a comment, a string or an id list does not count;
- the op table in docs/LANGUAGE.md is exactly what `netdsl ops --markdown --write` writes.
"""
from __future__ import annotations

import ast
import functools
import importlib.util
import os
import sys

import numpy as np
import pytest

from netdsl import ops
from netdsl.runtime import lib as L
from netdsl.runtime.kparams import builder

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OPS_TESTS = os.path.join(ROOT, "tests", "ops")
SPECS = {n: s for n, s in ops.all_specs().items() if n != "Input"}
KERNEL_OPS = sorted(n for n, s in SPECS.items() if "no_op" not in s.flags)


def _samples(spec):
    return [(tuple(s) + ({},))[:3] for s in spec.samples]


@pytest.mark.parametrize("name", sorted(SPECS))
def test_every_op_has_valid_samples_and_a_reference(name):
    spec = SPECS[name]
    assert spec.samples, f"{name} has no `samples` (netdsl/ops/: attrs and input shapes of a small valid instance)"
    assert type(spec).reference is not ops.OpSpec.reference, f"{name} has no numpy reference"
    for attrs, shapes, _ in _samples(spec):
        shapes = [tuple(s) for s in shapes]
        a = spec.resolve(spec.bind((), attrs), shapes)
        out = tuple(spec.infer(a, shapes))
        rng = np.random.default_rng(0)
        xs = [rng.standard_normal((2, *s)).astype(np.float32) for s in shapes]
        w = spec.init(a, shapes, rng)
        assert set(w) >= set(spec.params(a, shapes)) | set(spec.buffers(a, shapes)), \
            f"{name}{attrs}: init() leaves out some parameters or buffers"
        y = spec.reference(a, xs, w)
        assert y.shape == (2, *out), f"{name}{attrs}: the reference gives {y.shape}, infer says {out}"
        assert y.dtype == np.float32, f"{name}{attrs}: float32 in, {y.dtype} out"


@pytest.mark.parametrize("name", sorted(SPECS))
def test_every_op_has_a_kernel_or_is_a_view(name):
    spec = SPECS[name]
    assert "no_op" in spec.flags or builder(name) is not None, \
        f"{name} has no kparams builder (netdsl/runtime/kparams/) and is not a view (flag no_op)"


@pytest.mark.skipif(not L.available(), reason="C kernels not built")
@pytest.mark.parametrize("name", KERNEL_OPS)
def test_every_builder_names_a_compiled_kernel_and_struct(name):
    spec = SPECS[name]
    ffi, lib = L.ffi, L.lib
    for attrs, shapes, _ in _samples(spec):
        shapes = [tuple(s) for s in shapes]
        a = spec.resolve(spec.bind((), attrs), shapes)
        call = builder(name)(a, shapes, tuple(spec.infer(a, shapes)), 3)
        assert hasattr(lib, call.symbol), f"{name}: no kernel {call.symbol} in netdsl._kernels (csrc/kernels/)"
        fields = {f for f, _ in ffi.typeof(call.struct).fields}
        assert set(call.fields) == fields, \
            f"{name}: {call.struct} has fields {sorted(fields)}, the builder fills {sorted(call.fields)}"


def _generic_cases():
    """The parameter sets of tests/ops/test_op_kernels.py, read from the module itself."""
    sys.path.insert(0, OPS_TESTS)          # it imports its helpers from tests/ops/conftest.py
    try:
        spec = importlib.util.spec_from_file_location("_meta_op_kernels", os.path.join(OPS_TESTS, "test_op_kernels.py"))
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    finally:
        sys.path.remove(OPS_TESTS)
    return [p.values[0] for p in mod.CASES]


def test_every_kernel_runs_in_the_generic_kernel_test():
    assert os.path.exists(os.path.join(OPS_TESTS, "test_op_kernels.py")), "tests/ops/test_op_kernels.py is gone"
    covered = set(_generic_cases())
    missing = [n for n in KERNEL_OPS if n not in covered]
    assert not missing, f"ops with a C kernel but no case in tests/ops/test_op_kernels.py: {', '.join(missing)} " \
                        f"(give the spec `samples`)"


@functools.lru_cache(maxsize=1)
def _ops_called_in_tests():
    """Op names written as the first argument of a call to the reference-test fixture
    (`nd.run("MaxPool", ...)`, `nd.prepare(...)`, `nd.n_params(...)`) in tests/ops/test_*.py."""
    names = set()
    for f in sorted(os.listdir(OPS_TESTS)):
        if not (f.startswith("test_") and f.endswith(".py")):
            continue
        tree = ast.parse(open(os.path.join(OPS_TESTS, f), encoding="utf-8").read())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "nd" \
                    and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                names.add(node.args[0].value)
    return names


@pytest.mark.parametrize("name", sorted(SPECS))
def test_every_op_has_a_hand_checked_test(name):
    spec = SPECS[name]
    called = _ops_called_in_tests()
    assert {spec.name, *spec.aliases} & called, \
        f"no test in tests/ops checks {name}'s reference by hand: nd.run({name!r}, x, ...) against known values"


@pytest.mark.parametrize("name", sorted(SPECS))
def test_every_op_documents_itself(name):
    spec = SPECS[name]
    assert spec.doc, f"{name} has no doc line"
    assert all(a.doc for a in spec.attrs), f"{name} has an undocumented attribute"


def _table_in(path):
    from netdsl.cli import OPS_BEGIN, OPS_END
    text = open(path, encoding="utf-8").read()
    assert OPS_BEGIN in text and OPS_END in text, f"{path}: the op table markers are missing"
    return text[text.index(OPS_BEGIN) + len(OPS_BEGIN):text.index(OPS_END)].strip("\n")


def test_language_reference_op_table_is_current():
    from netdsl.cli import ops_markdown
    got = _table_in(os.path.join(ROOT, "docs", "LANGUAGE.md"))
    assert got == ops_markdown(), "docs/LANGUAGE.md's op table is stale: run `netdsl ops --markdown --write`"
    for name in SPECS:
        assert f"| `{name}` |" in got


def test_ops_write_regenerates_the_table_in_place(tmp_path, capsys):
    from netdsl.cli import main, ops_markdown
    from netdsl.cli import OPS_BEGIN, OPS_END
    doc = tmp_path / "LANGUAGE.md"
    head, tail = "# Ops\n\nsome text | with a pipe\n\n", "\n\nmore text\n"
    stale = f"{head}{OPS_BEGIN}\n| `Conv` | old row |\n| `Gone` | | `Gone()` | an op that left |\n{OPS_END}{tail}"
    doc.write_text(stale, encoding="utf-8")
    assert main(["ops", "--markdown", "--write", str(doc)]) == 0
    assert "op table updated" in capsys.readouterr().out
    assert doc.read_text(encoding="utf-8") == f"{head}{OPS_BEGIN}\n{ops_markdown()}\n{OPS_END}{tail}"
    assert main(["ops", "--markdown", "--write", str(doc)]) == 0
    assert "already current" in capsys.readouterr().out
    assert _table_in(doc) == ops_markdown()


def test_ops_write_without_markers_is_a_clean_error(tmp_path, capsys):
    from netdsl.cli import main
    doc = tmp_path / "x.md"
    doc.write_text("# no table here\n", encoding="utf-8")
    assert main(["ops", "--markdown", "--write", str(doc)]) == 1
    err = capsys.readouterr().err
    assert "has no op table markers" in err and "Traceback" not in err
    assert doc.read_text(encoding="utf-8") == "# no table here\n"
