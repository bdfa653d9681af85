"""netdsl.fileio.replace_atomic: the old file survives a failed write, no temporary is left."""
import os

import pytest

from netdsl.errors import NetDSLError
from netdsl.fileio import replace_atomic, write_bytes_atomic


def test_a_complete_write_replaces_the_file(tmp_path):
    p = tmp_path / "out.bin"
    p.write_bytes(b"old")
    write_bytes_atomic(str(p), b"new content", "hint")
    assert p.read_bytes() == b"new content"
    assert os.listdir(tmp_path) == ["out.bin"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    p = tmp_path / "out.bin"
    p.write_bytes(b"old")

    def half_then_fail(tmp):
        with open(tmp, "wb") as f:
            f.write(b"half")
        raise OSError(28, "No space left on device")
    with pytest.raises(NetDSLError) as e:
        replace_atomic(str(p), half_then_fail, "free some space")
    assert "cannot write" in str(e.value) and "No space left" in str(e.value)
    assert e.value.diagnostics[0].hint == "free some space"
    assert p.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["out.bin"]


def test_a_folder_that_does_not_exist_is_a_clear_error(tmp_path):
    with pytest.raises(NetDSLError) as e:
        write_bytes_atomic(str(tmp_path / "no" / "out.bin"), b"x", "check the folder exists")
    assert "No such file" in str(e.value)
