from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest

from hybrec.data import progress
from hybrec.data.io import iter_lines
from hybrec.data.records import ErrorCollector


@pytest.fixture(autouse=True)
def _restore() -> Iterator[None]:
    before = progress.progress_enabled()
    yield
    progress.set_progress_enabled(before)


def test_forced_off_and_on() -> None:
    progress.set_progress_enabled(False)
    assert progress.byte_progress(10, "x").disable
    progress.set_progress_enabled(True)
    bar = progress.count_progress(10, "x")
    assert not bar.disable
    bar.close()


def test_hidden_when_not_a_terminal() -> None:
    progress.set_progress_enabled(None)
    bar = progress.byte_progress(10, "x")  # pytest captures stderr: not a tty
    assert bar.disable


def test_reader_bar_reaches_file_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "big.txt"
    path.write_text("line\n" * 10_000)
    bars = []
    real = progress.byte_progress

    def spy(total: int | None, desc: str):  # type: ignore[no-untyped-def]
        bar = real(total, desc)
        bar.fp = io.StringIO()
        bars.append(bar)
        return bar

    monkeypatch.setattr("hybrec.data.io.byte_progress", spy)
    progress.set_progress_enabled(True)
    assert sum(1 for _ in iter_lines(path, ErrorCollector())) == 10_000
    assert bars[0].total == path.stat().st_size and bars[0].n == path.stat().st_size
