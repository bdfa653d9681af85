"""The README's sample sessions stay true: every `$ netdsl ...` block is run and
each line it shows (except `...`) must appear in the real output."""
from __future__ import annotations

import os
import re
import shlex

import pytest

from netdsl.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
README = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
SESSIONS = re.findall(r"```\n\$ (netdsl [^\n]+)\n(.*?)```", README, flags=re.S)


def test_readme_has_sessions():
    assert len(SESSIONS) >= 2


@pytest.mark.parametrize("cmd, shown", SESSIONS, ids=[c for c, _ in SESSIONS])
def test_readme_session(cmd, shown, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    main(shlex.split(cmd)[1:])
    out, err = capsys.readouterr()
    actual = [ln.rstrip() for ln in (out + err).splitlines()]
    for line in shown.splitlines():
        if line.strip() and line.strip() != "...":
            assert line.rstrip() in actual, f"README line not in the output of `{cmd}`:\n{line}"
