from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from hybrec.data.csv_formats import read_ratings_csv
from hybrec.data.records import DataError, ErrorCollector, SourceData


def _consume(source: SourceData) -> tuple[list, list, list]:
    return list(source.users), list(source.items), list(source.interactions)


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_amazon_style_ratings_with_item_text(tmp_path: Path) -> None:
    ratings = _write(
        tmp_path / "r.csv",
        "userid,itemid,timestamp,rating\nU1,A1,2003-04-27T00:00:00,5.0\n"
        "U2,A2,1051401600,3\nU1,A2,2004-01-01T00:00:00,4\n",
    )
    items = _write(
        tmp_path / "items.csv",
        "asin,title,categories,brand,unisrec_text\nA1,Sanding Roll &amp; Disc,Industrial & Scientific,PORTER-CABLE,x\n",
    )
    users, item_records, interactions = _consume(read_ratings_csv(ratings, items, ErrorCollector()))
    assert [u.external_id for u in users] == ["U1", "U2"]
    assert [(i.external_id, i.name, i.brand, i.category) for i in item_records] == [
        ("A1", "Sanding Roll & Disc", "PORTER-CABLE", "Industrial & Scientific"),
        ("A2", "Item A2", None, None),
    ]
    assert item_records[1].attributes == {"metadata": False}
    assert [(i.kind, i.rating) for i in interactions] == [("rating", 5.0), ("rating", 3.0), ("rating", 4.0)]
    assert interactions[0].ts == datetime(2003, 4, 27, tzinfo=UTC)
    assert interactions[1].ts == datetime(2003, 4, 27, tzinfo=UTC)  # unix seconds accepted too


def test_generic_user_item_value(tmp_path: Path) -> None:
    ratings = _write(tmp_path / "plays.csv", "user,item,value\nu1,i1,12\nu2,i1,0.5\n")
    users, items, interactions = _consume(read_ratings_csv(ratings, None, ErrorCollector()))
    assert [u.external_id for u in users] == ["u1", "u2"]
    assert [i.external_id for i in items] == ["i1"]
    assert [(i.kind, i.weight, i.rating, i.ts.year) for i in interactions] == [
        ("view", 12.0, None, 1970),
        ("view", 0.5, None, 1970),
    ]


def test_kind_column(tmp_path: Path) -> None:
    ratings = _write(tmp_path / "e.csv", "user_id,item_id,value,kind,ts\nu1,i1,1,purchase,1\nu1,i1,1,teleport,2\n")
    errors = ErrorCollector(skip_invalid=True)
    interactions = list(read_ratings_csv(ratings, None, errors).interactions)
    assert [i.kind for i in interactions] == ["purchase"]
    assert (errors.errors[0].line, errors.errors[0].field) == (3, "kind")


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ("U1,A1,2003-04-27,7\n", r"r\.csv:2: field 'rating': rating 7 is outside the range 1-5"),
        ("U1,A1,2003-04-27,five\n", r"r\.csv:2: field 'rating': rating is not a number: 'five'"),
        ("U1,A1,2003-04-27,NaN\n", r"r\.csv:2: field 'rating': rating is not a finite number"),
        (",A1,2003-04-27,4\n", r"r\.csv:2: field 'userid': missing value"),
        ("U1,A1,someday,4\n", r"r\.csv:2: field 'timestamp': not a unix or ISO 8601 timestamp"),
        ("U1,A1,2003-04-27,4\nU1,A1,2003-04-27,5\n", r"r\.csv:3: duplicate interaction"),
    ],
)
def test_bad_rows(tmp_path: Path, body: str, match: str) -> None:
    ratings = _write(tmp_path / "r.csv", "userid,itemid,timestamp,rating\n" + body)
    with pytest.raises(DataError, match=match):
        list(read_ratings_csv(ratings, None, ErrorCollector()).interactions)


def test_skip_invalid_records_and_goes_on(tmp_path: Path) -> None:
    ratings = _write(tmp_path / "r.csv", "userid,itemid,timestamp,rating\nU1,A1,1,7\nU1,A2,2,4\nU2,A1,3,x\nU2,A2,4,1\n")
    errors = ErrorCollector(skip_invalid=True)
    interactions = list(read_ratings_csv(ratings, None, errors).interactions)
    assert [(i.user_id, i.item_id, i.source_line) for i in interactions] == [("U1", "A2", 3), ("U2", "A2", 5)]
    assert [(e.line, e.field) for e in errors.errors] == [(2, "rating"), (4, "rating")]


def test_missing_required_column(tmp_path: Path) -> None:
    ratings = _write(tmp_path / "r.csv", "userid,timestamp,rating\nU1,1,4\n")
    with pytest.raises(DataError, match=r"r\.csv:1: field 'itemid': missing required column"):
        list(read_ratings_csv(ratings, None, ErrorCollector()).interactions)


def test_neither_rating_nor_value_column(tmp_path: Path) -> None:
    ratings = _write(tmp_path / "r.csv", "user,item\nU1,A1\n")
    with pytest.raises(DataError, match=r"missing required column 'rating' or 'value'"):
        list(read_ratings_csv(ratings, None, ErrorCollector()).interactions)


def test_empty_file(tmp_path: Path) -> None:
    ratings = _write(tmp_path / "r.csv", "")
    with pytest.raises(DataError, match="file is empty"):
        list(read_ratings_csv(ratings, None, ErrorCollector(skip_invalid=True)).interactions)


def test_non_utf8_bytes_name_the_line(tmp_path: Path) -> None:
    ratings = tmp_path / "r.csv"
    ratings.write_bytes(b"userid,itemid,timestamp,rating\nU1,A1,1,4\nU\xc3\x28,A1,2,4\n")
    with pytest.raises(DataError, match=r"r\.csv:3: not valid UTF-8"):
        list(read_ratings_csv(ratings, None, ErrorCollector()).interactions)


def test_item_file_duplicate_id_and_negative_price(tmp_path: Path) -> None:
    ratings = _write(tmp_path / "r.csv", "userid,itemid,timestamp,rating\nU1,A1,1,4\n")
    items = _write(tmp_path / "items.csv", "item_id,name,price\nA1,Mug,$5.00\nA1,Mug again,$6.00\nA2,Cup,-$3.00\n")
    with pytest.raises(DataError, match=r"items\.csv:3: field 'item_id': duplicate id 'A1'"):
        list(read_ratings_csv(ratings, items, ErrorCollector()).items)
    errors = ErrorCollector(skip_invalid=True)
    records = list(read_ratings_csv(ratings, items, errors).items)
    assert [(r.external_id, r.price) for r in records] == [("A1", 5.0)]
    assert [(e.line, e.field) for e in errors.errors] == [(3, "item_id"), (4, "price")]
    assert "negative price" in errors.errors[1].message


def test_gzip_ratings(tmp_path: Path) -> None:
    import gzip

    path = tmp_path / "r.csv.gz"
    path.write_bytes(gzip.compress(b"userid,itemid,timestamp,rating\nU1,A1,1,4\n"))
    assert len(list(read_ratings_csv(path, None, ErrorCollector()).interactions)) == 1


@pytest.mark.shared_data
def test_real_industrial_scientific(amazon_industrial: Path) -> None:
    errors = ErrorCollector()
    source = read_ratings_csv(
        amazon_industrial / "Industrial_and_Scientific_5core_ratings.csv",
        amazon_industrial / "items_from_unisrec_text.csv",
        errors,
    )
    users, items, interactions = _consume(source)
    assert (len(users), len(items), len(interactions)) == (11041, 5334, 72025)
    assert errors.errors == []
    assert sum(1 for i in items if i.attributes.get("metadata") is not False) == 4385
    assert {i.item_id for i in interactions} == {i.external_id for i in items}
    assert not any(i.name.endswith("/>") for i in items)


def test_checked_and_inline_rows_agree_and_share_the_duplicate_check(tmp_path: Path) -> None:
    # Row 2 takes the inline path (unix seconds); rows 3-4 the checked one (ISO date, non-ASCII id). A repeat of
    # row 2's instant written as an ISO date is still the same interaction.
    ratings = _write(
        tmp_path / "r.csv",
        "userid,itemid,timestamp,rating\nU1,A1,1420070400,4\nU2,A1,2015-01-01T00:00:00Z,3.5\n"
        "Ｕ3,A2,1420070400,5\nU1,A1,2015-01-01T00:00:00+00:00,2\n",
    )
    duplicate = r"r\.csv:5: duplicate interaction \(user 'U1', item 'A1'.*first seen on line 2"
    with pytest.raises(DataError, match=duplicate):
        list(read_ratings_csv(ratings, None, ErrorCollector()).interactions)
    errors = ErrorCollector(skip_invalid=True)
    records = list(read_ratings_csv(ratings, None, errors).interactions)
    stamp = datetime(2015, 1, 1, tzinfo=UTC)
    assert [(r.user_id, r.item_id, r.kind, r.rating, r.weight, r.ts, r.source_line) for r in records] == [
        ("U1", "A1", "rating", 4.0, 1.0, stamp, 2),
        ("U2", "A1", "rating", 3.5, 1.0, stamp, 3),
        ("U3", "A2", "rating", 5.0, 1.0, stamp, 4),  # NFKC-normalised like every id
    ]
    assert all(r.ts.tzinfo is UTC and r.source_file == str(ratings) for r in records)
    assert [e.line for e in errors.errors] == [5]


def test_bad_fields_are_named_whichever_path_reads_the_row(tmp_path: Path) -> None:
    ratings = _write(tmp_path / "r.csv", "user,item,ts,value\nU1,A1,1420070400,2\nU1,A2,1.5e9,0\nU1,A3,nan,1\n")
    errors = ErrorCollector(skip_invalid=True)
    records = list(read_ratings_csv(ratings, None, errors).interactions)
    assert [(r.item_id, r.kind, r.rating, r.weight) for r in records] == [("A1", "view", None, 2.0)]
    assert [(e.line, e.field) for e in errors.errors] == [(3, "value"), (4, "ts")]


def test_users_and_items_come_from_the_interaction_pass_or_a_scan(tmp_path: Path) -> None:
    ratings = _write(tmp_path / "r.csv", "userid,itemid,rating\nU2,B,4\nU1,A,5\nU2,A,3\n")
    source = read_ratings_csv(ratings, None, ErrorCollector())
    assert source.interactions_first
    assert len(list(source.interactions)) == 3  # read first, as the loader does: it collects the ids
    assert [u.external_id for u in source.users] == ["U2", "U1"]
    assert [i.external_id for i in source.items] == ["B", "A"]
    users, items, interactions = _consume(read_ratings_csv(ratings, None, ErrorCollector()))  # scan first
    assert ([u.external_id for u in users], [i.external_id for i in items], len(interactions)) == (
        ["U2", "U1"], ["B", "A"], 3)
