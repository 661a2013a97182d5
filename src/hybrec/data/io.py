"""Streaming access to dataset files: text lines, CSV rows and JSON lines, each with its line number.

Every reader goes through this module so that all of them share the same behaviour:

* files are streamed line by line, never loaded whole; gzip is detected from the magic bytes, not the file name;
* a missing file or an empty one (no bytes, or only whitespace) raises :class:`DataError` ("file is empty") — a
  whole-file problem is never skipped, even with ``skip_invalid``;
* a line that is not valid in the file's encoding becomes a :class:`RowError` naming the file and line (and is
  skipped when the collector skips bad rows);
* a CSV header that lacks a required column raises :class:`DataError` naming the column;
* a malformed JSON line becomes a :class:`RowError`;
* a byte-counting progress bar (:mod:`hybrec.data.progress`) follows the read position of the file on disk.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import zlib
from collections.abc import Generator, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal, overload

from hybrec.data.progress import byte_progress
from hybrec.data.records import DataError, ErrorCollector, RowError

_GZIP_MAGIC = b"\x1f\x8b"
_PROGRESS_EVERY = 4096  # lines between progress-bar updates


def is_gzip(path: Path) -> bool:
    """Whether ``path`` starts with the gzip magic bytes."""
    with open(path, "rb") as fh:
        return fh.read(2) == _GZIP_MAGIC


def require_file(path: Path) -> Path:
    """``path`` as a :class:`Path`; :class:`DataError` when it does not exist or is not a regular file."""
    path = Path(path)
    if not path.is_file():
        raise DataError("file not found" if not path.exists() else "not a regular file", file=path)
    return path


def iter_lines(
    path: Path, errors: ErrorCollector, *, encoding: str = "utf-8", desc: str | None = None
) -> Generator[tuple[int, str], None, None]:
    """Yield ``(line_number, line)`` for every line of a text file (gzip'd or plain), line numbers from 1.

    Lines keep their terminator (``csv`` needs it for quoted fields spanning lines). A line that does not decode
    in ``encoding`` is reported to ``errors`` with its number and skipped.

    Raises
    ------
    DataError
        When the file is missing, empty, not valid gzip, or a line does not decode and ``errors`` does not skip.
    """
    path = require_file(path)
    size = path.stat().st_size
    check_utf8 = encoding.replace("_", "-").lower() in ("utf-8", "utf8", "utf-8-sig")
    with open(path, "rb") as raw:
        stream: Any = gzip.GzipFile(fileobj=raw) if raw.read(2) == _GZIP_MAGIC else raw
        raw.seek(0)
        # surrogateescape keeps undecodable bytes as lone surrogates so the bad line can be found and named.
        text = io.TextIOWrapper(stream, encoding=encoding, errors="surrogateescape", newline="")
        seen_content = False
        bar = byte_progress(size, desc or path.name)
        try:
            for number, line in enumerate(text, start=1):
                if number % _PROGRESS_EVERY == 0:
                    bar.update(raw.tell() - bar.n)
                if check_utf8 and not line.isascii():
                    try:
                        line.encode("utf-8")
                    except UnicodeEncodeError as exc:
                        bad = line[exc.start].encode("utf-8", "surrogateescape")
                        errors.add(RowError(path, number, None, f"not valid UTF-8: byte 0x{bad.hex()} at column "
                                            f"{exc.start + 1}"))
                        seen_content = True
                        continue
                if not seen_content and line.strip():
                    seen_content = True
                yield number, line
        except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
            raise DataError(f"not a valid gzip file: {exc}", file=path) from exc
        finally:
            bar.update(max(0, size - bar.n))
            bar.close()
    if not seen_content:
        raise DataError("file is empty", file=path)


def iter_json_lines(
    path: Path, errors: ErrorCollector, *, desc: str | None = None
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, object)`` for every JSON object of a JSON-lines file; blank lines are ignored.

    A line that is not valid JSON, or not a JSON object, is reported to ``errors`` and skipped.
    """
    for number, line in iter_lines(path, errors, desc=desc):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            errors.add(RowError(path, number, None, f"malformed JSON: {exc.msg} at column {exc.colno}"))
            continue
        if not isinstance(value, dict):
            errors.add(RowError(path, number, None, f"expected a JSON object, found {type(value).__name__}"))
            continue
        yield number, value


class CsvTable:
    """A CSV file read row by row: its header, and an iterator of ``(line_number, fields)``.

    Parameters
    ----------
    path:
        The file (plain or gzip'd).
    errors:
        Where bad rows go.
    delimiter, encoding:
        As in :mod:`csv` / :func:`open`.
    header:
        Column names when the file has no header line (MovieLens 100K); ``None`` reads them from the first line.
    quoting:
        ``csv.QUOTE_NONE`` for formats where a quote is an ordinary character (MovieLens ``|``-separated files).
    """

    def __init__(
        self,
        path: Path,
        errors: ErrorCollector,
        *,
        delimiter: str = ",",
        encoding: str = "utf-8",
        header: Sequence[str] | None = None,
        quoting: Literal[0, 1, 2, 3] = csv.QUOTE_MINIMAL,
        desc: str | None = None,
    ) -> None:
        self.path = require_file(path)
        self.errors = errors
        self._line = 0
        self._row_start = 0  # the first physical line of the row being read
        self._lines = iter_lines(self.path, errors, encoding=encoding, desc=desc)
        # The csv reader asks for physical lines; this records the number of the last one it took.
        self._reader = csv.reader(
            self._tracked(), delimiter=delimiter, quoting=quoting, strict=quoting != csv.QUOTE_NONE
        )
        self.header_line = 0
        if header is None:
            first = self._next_row()
            if first is None:
                raise DataError("file is empty", file=self.path)
            self.header_line, row = first
            self.columns = [c.strip().lstrip("\ufeff") for c in row]
        else:
            self.columns = list(header)
        self._index = {name.lower(): i for i, name in enumerate(self.columns)}
        self._options = (delimiter, encoding, quoting, desc)
        self._fast_done = 0  # the last physical line the fast read handled (see rows())

    def _tracked(self) -> Iterator[str]:
        for number, line in self._lines:
            self._line = number
            if self._row_start == 0:
                self._row_start = number  # a line iter_lines dropped (bad bytes) never starts a row
            yield line

    def _next_row(self, quiet_until: int = 0) -> tuple[int, list[str]] | None:
        while True:
            self._row_start = 0
            try:
                row = next(self._reader)
            except StopIteration:
                return None
            except csv.Error as exc:
                if self._line > quiet_until:
                    self.errors.add(RowError(self.path, self._line, None, f"malformed CSV: {exc}"))
                continue
            if row and (len(row) > 1 or row[0].strip()):  # a blank line is no row
                return self._row_start, row

    @overload
    def column(self, *names: str, required: Literal[True] = ...) -> int: ...

    @overload
    def column(self, *names: str, required: bool) -> int | None: ...

    def column(self, *names: str, required: bool = True) -> int | None:
        """The index of the first of ``names`` present in the header (case-insensitive).

        Raises
        ------
        DataError
            When none is present and ``required``; the message names the column and lists the header.
        """
        for name in names:
            if name.lower() in self._index:
                return self._index[name.lower()]
        if required:
            wanted = " or ".join(repr(n) for n in names)
            raise DataError(
                RowError(self.path, self.header_line or 1, names[0],
                         f"missing required column {wanted} (header has: {', '.join(self.columns)})")
            )
        return None

    def rows(self) -> Iterator[tuple[int, list[str]]]:
        """Yield ``(line_number, fields)`` for each data row; rows with the wrong field count are reported.

        The rows come from :meth:`_fast_rows` (the :mod:`csv` reader straight on the decoded file, about three times
        less Python work per row); at the first line that does not decode it hands over to the line-checking path of
        :func:`iter_lines`, which names that line, so both give the same rows and the same errors.
        """
        try:
            yield from self._fast_rows()
            return
        except UnicodeDecodeError:
            pass
        # Restart on the checked path; rows (and errors) up to where the fast read stopped were already handled.
        self._lines.close()
        self._line = 0
        delimiter, encoding, quoting, desc = self._options
        self._lines = iter_lines(self.path, self.errors, encoding=encoding, desc=desc)
        self._reader = csv.reader(self._tracked(), delimiter=delimiter, quoting=quoting,
                                  strict=quoting != csv.QUOTE_NONE)
        width = len(self.columns)
        quiet_until = max(self._fast_done, self.header_line)
        while (item := self._next_row(quiet_until)) is not None:
            number, row = item
            if number <= quiet_until:
                continue
            if len(row) != width:
                self.errors.add(RowError(self.path, number, None, f"expected {width} fields, found {len(row)}"))
                continue
            yield number, row

    def _fast_rows(self) -> Iterator[tuple[int, list[str]]]:
        """The data rows, read by :mod:`csv` directly from a strictly decoding text stream.

        Raises :class:`UnicodeDecodeError` (for :meth:`rows` to fall back on) at a chunk that does not decode; every
        row yielded before it lies wholly before that chunk.
        """
        self._lines.close()  # the header was read through the checked path; this read opens the file afresh
        delimiter, encoding, quoting, desc = self._options
        width, path, errors, skip = len(self.columns), self.path, self.errors, self.header_line
        size = path.stat().st_size
        with open(path, "rb") as raw:
            stream: Any = gzip.GzipFile(fileobj=raw) if raw.read(2) == _GZIP_MAGIC else raw
            raw.seek(0)
            text = io.TextIOWrapper(stream, encoding=encoding, errors="strict", newline="")
            reader = csv.reader(text, delimiter=delimiter, quoting=quoting, strict=quoting != csv.QUOTE_NONE)
            bar = byte_progress(size, desc or path.name)
            shown = 0
            end = 0  # the last physical line of the previous row
            content = False  # any row at all (a header-less file without one is empty, as iter_lines says)
            try:
                while True:
                    try:
                        for row in reader:
                            start, end = end + 1, reader.line_num
                            if len(row) == width and (width > 1 or row[0].strip()):
                                content = True
                                if start > skip:
                                    yield start, row
                            elif row and (len(row) > 1 or row[0].strip()) and start > skip:
                                content = True
                                errors.add(RowError(path, start, None,
                                                    f"expected {width} fields, found {len(row)}"))
                            if end - shown >= _PROGRESS_EVERY:
                                shown = end
                                bar.update(raw.tell() - bar.n)
                        break
                    except csv.Error as exc:
                        end, content = reader.line_num, True
                        if end > skip:
                            errors.add(RowError(path, end, None, f"malformed CSV: {exc}"))
            except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
                raise DataError(f"not a valid gzip file: {exc}", file=path) from exc
            finally:
                self._fast_done = end
                bar.update(max(0, size - bar.n))
                bar.close()
        if not content and not skip:
            raise DataError("file is empty", file=path)


def iter_json_records(path: Path, errors: ErrorCollector) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, object)`` from a file holding one JSON array of objects, or JSON lines.

    A JSON array cannot be streamed line by line, so the file is read whole — meant for catalogue files such as the
    seed's ``ProductsRAG.json``, not for interaction logs. An element that is not an object, or that holds bytes that
    are not UTF-8, is reported with the line it starts on; a syntax error inside the array stops the read with a
    :class:`DataError` (the rest of the array cannot be found reliably).
    """
    path = require_file(path)
    with open(path, "rb") as fh:
        data = fh.read()
    if data[:2] == _GZIP_MAGIC:
        try:
            data = gzip.decompress(data)
        except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
            raise DataError(f"not a valid gzip file: {exc}", file=path) from exc
    text = data.decode("utf-8", errors="surrogateescape").lstrip("\ufeff")
    start = len(text) - len(text.lstrip())
    if start == len(text):
        raise DataError("file is empty", file=path)
    if text[start] != "[":
        yield from iter_json_lines(path, errors)
        return
    decoder = json.JSONDecoder()
    line, counted_to = 1, 0

    def line_at(position: int) -> int:
        nonlocal line, counted_to
        line += text.count("\n", counted_to, position)
        counted_to = position
        return line

    index = start + 1
    while True:
        while index < len(text) and text[index].isspace():
            index += 1
        if index < len(text) and text[index] == "]":
            return
        try:
            value, end = decoder.raw_decode(text, index)
        except json.JSONDecodeError as exc:
            raise DataError(RowError(path, line_at(exc.pos), None, f"malformed JSON: {exc.msg}")) from exc
        number = line_at(index)
        try:
            text[index:end].encode("utf-8")
        except UnicodeEncodeError:
            errors.add(RowError(path, number, None, "not valid UTF-8"))
        else:
            if isinstance(value, dict):
                yield number, value
            else:
                errors.add(RowError(path, number, None, f"expected a JSON object, found {type(value).__name__}"))
        index = end
        while index < len(text) and text[index].isspace():
            index += 1
        if index < len(text) and text[index] == ",":
            index += 1
        elif index >= len(text) or text[index] != "]":
            raise DataError(RowError(path, line_at(min(index, len(text))), None,
                                     "malformed JSON: expected ',' or ']' after an array element"))
