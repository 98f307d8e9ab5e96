"""Output files the user named: checked before the work, written whole or not at all."""

from __future__ import annotations

from pathlib import Path
from typing import IO

import pytest

from autoscaler.domain.errors import ConfigError
from autoscaler.outfiles import check_destination, write_atomically


def test_a_writer_that_fails_leaves_the_previous_file_and_no_staging_file(tmp_path: Path) -> None:
    out = tmp_path / "report.csv"
    write_atomically(out, "--export", lambda sink: sink.write(b"first\n"))
    assert out.read_bytes() == b"first\n"

    def half_then_fail(sink: IO[bytes]) -> None:
        sink.write(b"half")
        raise RuntimeError("the writer's own error")

    with pytest.raises(RuntimeError):
        write_atomically(out, "--export", half_then_fail)
    with pytest.raises(KeyboardInterrupt):
        write_atomically(out, "--export", lambda _sink: (_ for _ in ()).throw(KeyboardInterrupt))
    assert out.read_bytes() == b"first\n"
    assert [p.name for p in tmp_path.iterdir()] == ["report.csv"]


def test_the_check_creates_nothing_and_the_write_makes_the_folders(tmp_path: Path) -> None:
    out = tmp_path / "a" / "b" / "c.csv"
    assert check_destination(out, "--export") == out
    assert list(tmp_path.iterdir()) == []  # a run that fails after the check leaves no folder
    write_atomically(out, "--export", lambda sink: sink.write(b"x"))
    assert out.read_bytes() == b"x"


def test_a_file_where_a_folder_must_go_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a").write_text("not a folder")
    with pytest.raises(ConfigError, match="a is a file"):
        check_destination(tmp_path / "a" / "b" / "c.csv", "--export")
