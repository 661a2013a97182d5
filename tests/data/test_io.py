from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from hybrec.data.io import CsvTable, iter_json_lines, iter_lines
from hybrec.data.records import DataError, ErrorCollector


def test_iter_lines_reads_gzip_transparently(tmp_path: Path) -> None:
    path = tmp_path / "data.txt"  # no .gz suffix: detection is by magic bytes
    path.write_bytes(gzip.compress(b"one\ntwo\n"))
    assert [(n, line.rstrip("\n")) for n, line in iter_lines(path, ErrorCollector())] == [(1, "one"), (2, "two")]


@pytest.mark.parametrize("content", [b"", b"  \n\n", gzip.compress(b"")])
def test_empty_file_is_a_clear_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "empty.csv"
    path.write_bytes(content)
    with pytest.raises(DataError, match="file is empty") as info:
        list(iter_lines(path, ErrorCollector(skip_invalid=True)))
    assert str(path) in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="file not found"):
        list(iter_lines(tmp_path / "nope.csv", ErrorCollector()))


def test_non_utf8_line_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(b"a,b\n1,caf\xe9\n2,ok\n")
    with pytest.raises(DataError, match=r"bad\.csv:2: not valid UTF-8: byte 0xe9 at column 6"):
        list(iter_lines(path, ErrorCollector()))
    errors = ErrorCollector(skip_invalid=True)
    assert [n for n, _ in iter_lines(path, errors)] == [1, 3]
    assert [e.line for e in errors.errors] == [2]


def test_latin1_decodes_every_byte(tmp_path: Path) -> None:
    path = tmp_path / "u.item"
    path.write_bytes(b"1|Caf\xe9\n")
    assert [line for _, line in iter_lines(path, ErrorCollector(), encoding="latin-1")] == ["1|Café\n"]


def test_corrupt_gzip(tmp_path: Path) -> None:
    path = tmp_path / "x.json.gz"
    path.write_bytes(gzip.compress(b'{"a": 1}\n' * 100)[:-30])
    with pytest.raises(DataError, match="not a valid gzip file"):
        list(iter_lines(path, ErrorCollector()))


def test_json_lines_malformed_line(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_text('{"a": 1}\n{"a": \n\n[1, 2]\n{"a": 3}\n')
    with pytest.raises(DataError, match=r"r\.json:2: malformed JSON"):
        list(iter_json_lines(path, ErrorCollector()))
    errors = ErrorCollector(skip_invalid=True)
    assert [(n, obj["a"]) for n, obj in iter_json_lines(path, errors)] == [(1, 1), (5, 3)]
    assert [(e.line, e.message.split(":")[0]) for e in errors.errors] == [
        (2, "malformed JSON"),
        (4, "expected a JSON object, found list"),
    ]


def test_csv_table_columns_rows_and_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text('\ufeffId,Name\n1,"multi\nline"\n\n2,plain\n3\n')
    errors = ErrorCollector(skip_invalid=True)
    table = CsvTable(path, errors)
    assert table.column("id") == 0
    assert table.column("title", "name") == 1
    assert list(table.rows()) == [(2, ["1", "multi\nline"]), (5, ["2", "plain"])]
    assert [(e.line, e.message) for e in errors.errors] == [(6, "expected 2 fields, found 1")]


def test_csv_missing_required_column_names_it(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("user,item\n1,2\n")
    table = CsvTable(path, ErrorCollector(skip_invalid=True))
    with pytest.raises(DataError, match=r"t\.csv:1: field 'rating': missing required column 'rating'"):
        table.column("rating")
    assert table.column("rating", required=False) is None


def test_csv_table_hands_over_at_a_bad_byte_late_in_the_file(tmp_path: Path) -> None:
    # The bad byte lies far past the first decoded chunk, after rows and a short row the fast read already handled:
    # every good row comes once, in order, and each problem is reported once, naming its line.
    path = tmp_path / "t.csv"
    good = [f"{n},name{n}\n".encode() for n in range(2, 3002)]
    body = b"id,name\n" + b"".join(good[:1000]) + b"short\n" + b"".join(good[1000:2000]) + b"9,\xff\n"
    path.write_bytes(body + b"".join(good[2000:]))
    errors = ErrorCollector(skip_invalid=True)
    rows = list(CsvTable(path, errors).rows())
    assert [row[0] for _, row in rows] == [str(n) for n in range(2, 3002)]
    assert [line for line, _ in rows] == list(range(2, 1002)) + list(range(1003, 2003)) + list(range(2004, 3004))
    assert [(e.line, e.message.split(":")[0]) for e in errors.errors] == [
        (1002, "expected 2 fields, found 1"),
        (2003, "not valid UTF-8"),
    ]
    path.write_bytes(b"id,name\n" + b"".join(good[:2000]) + b"9,\xff\n")
    with pytest.raises(DataError, match=r"t\.csv:2002: not valid UTF-8: byte 0xff"):
        list(CsvTable(path, ErrorCollector()).rows())


def test_csv_table_reports_malformed_csv_once_and_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text('a,b\n1,2\n3,"x"y\n4,5\n')
    errors = ErrorCollector(skip_invalid=True)
    assert list(CsvTable(path, errors).rows()) == [(2, ["1", "2"]), (4, ["4", "5"])]
    assert [(e.line, e.message.split(":")[0]) for e in errors.errors] == [(3, "malformed CSV")]


def test_headerless_csv_without_rows_is_empty(tmp_path: Path) -> None:
    path = tmp_path / "t.tsv"
    path.write_text("\n  \n")
    with pytest.raises(DataError, match=r"t\.tsv:0: file is empty"):
        list(CsvTable(path, ErrorCollector(), delimiter="\t", header=("a", "b")).rows())
