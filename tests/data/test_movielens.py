from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from hybrec.data.movielens import read_movielens
from hybrec.data.records import DataError, ErrorCollector, SourceData


def _consume(source: SourceData) -> tuple[list, list, list]:
    return list(source.users), list(source.items), list(source.interactions)


def _write_100k(folder: Path, data: str, items: bytes | None = None, users: str | None = None) -> Path:
    folder.mkdir(exist_ok=True)
    flags = "|".join(["0"] * 19)
    comedy = "|".join(["0"] * 5 + ["1"] + ["0"] * 13)
    (folder / "u.item").write_bytes(
        items
        if items is not None
        else (
            f"1|Toy Story (1995)|01-Jan-1995||http://x|{comedy}\n"
            f"2|Les Mis\xe9rables (1995)|01-Jan-1995||http://y|{flags}\n"
        ).encode("latin-1")
    )
    (folder / "u.user").write_text(users if users is not None else "1|24|M|technician|85711\n2|53|F|other|94043\n")
    (folder / "u.data").write_text(data)
    return folder


def test_100k_fixture_records(tmp_path: Path) -> None:
    folder = _write_100k(tmp_path / "ml", "1\t1\t5\t881250949\n2\t2\t3\t881250950\n")
    users, items, interactions = _consume(read_movielens(folder, ErrorCollector()))
    assert [(u.external_id, u.attributes["age"], u.attributes["occupation"]) for u in users] == [
        ("1", 24, "technician"),
        ("2", 53, "other"),
    ]
    assert items[0].name == "Toy Story (1995)" and items[0].category == "Comedy"
    assert items[0].attributes["year"] == 1995 and items[0].attributes["genres"] == ["Comedy"]
    assert items[1].name == "Les Misérables (1995)" and items[1].category is None  # latin-1 decoded
    first = interactions[0]
    assert (first.user_id, first.item_id, first.kind, first.rating) == ("1", "1", "rating", 5.0)
    assert first.ts == datetime(1997, 12, 4, 15, 55, 49, tzinfo=UTC)
    assert (first.source_line, Path(first.source_file or "").name) == (1, "u.data")


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ("1\t1\t7\t881250949\n", r"u\.data:1: field 'rating': rating 7 is outside the range 1-5"),
        ("1\t1\tgood\t881250949\n", r"u\.data:1: field 'rating': rating is not a number"),
        ("1\t1\t4\t881250949\n1\t1\t5\t881250949\n", r"u\.data:2: duplicate interaction .* first seen on line 1"),
        ("1\t1\t4\n", r"u\.data:1: expected 4 fields, found 3"),
        ("1\t1\t4\tlater\n", r"u\.data:1: field 'timestamp'"),
    ],
)
def test_100k_bad_ratings(tmp_path: Path, data: str, match: str) -> None:
    folder = _write_100k(tmp_path / "ml", data)
    with pytest.raises(DataError, match=match):
        list(read_movielens(folder, ErrorCollector()).interactions)


def test_100k_skip_invalid_goes_on(tmp_path: Path) -> None:
    folder = _write_100k(tmp_path / "ml", "1\t1\t7\t1\n1\t2\t4\t2\n2\t1\t4\t3\n2\t1\t4\t3\n")
    errors = ErrorCollector(skip_invalid=True)
    interactions = list(read_movielens(folder, errors).interactions)
    assert [(i.user_id, i.item_id) for i in interactions] == [("1", "2"), ("2", "1")]
    assert [(e.line, e.field) for e in errors.errors] == [(1, "rating"), (4, None)]


def test_100k_non_utf8_in_u_data_names_the_line(tmp_path: Path) -> None:
    folder = _write_100k(tmp_path / "ml", "1\t1\t4\t1\n")
    (folder / "u.data").write_bytes(b"1\t1\t4\t1\n2\t\xff\t4\t1\n")
    with pytest.raises(DataError, match=r"u\.data:2: not valid UTF-8"):
        list(read_movielens(folder, ErrorCollector()).interactions)


def test_100k_duplicate_item_id(tmp_path: Path) -> None:
    flags = "|".join(["0"] * 19)
    items = f"1|A (1990)|||u|{flags}\n1|B (1991)|||u|{flags}\n".encode("latin-1")
    folder = _write_100k(tmp_path / "ml", "1\t1\t4\t1\n", items=items)
    with pytest.raises(DataError, match=r"u\.item:2: field 'item_id': duplicate id '1' \(first seen on line 1\)"):
        list(read_movielens(folder, ErrorCollector()).items)


def test_100k_empty_ratings_file(tmp_path: Path) -> None:
    folder = _write_100k(tmp_path / "ml", "")
    with pytest.raises(DataError, match=r"u\.data:0: file is empty"):
        list(read_movielens(folder, ErrorCollector()).interactions)


def test_latest_small_fixture(tmp_path: Path) -> None:
    (tmp_path / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,1,4.5,964982703\n7,2,0.5,964982704\n")
    (tmp_path / "movies.csv").write_text(
        'movieId,title,genres\n1,"American President, The (1995)",Comedy|Drama|Romance\n2,Hyena Road,'
        "(no genres listed)\n"
    )
    users, items, interactions = _consume(read_movielens(tmp_path, ErrorCollector()))
    assert [u.external_id for u in users] == ["1", "7"]
    assert items[0].name == "American President, The (1995)" and items[0].category == "Comedy"
    assert items[0].attributes == {"genres": ["Comedy", "Drama", "Romance"], "year": 1995}
    assert items[1].category is None and items[1].attributes == {"genres": [], "year": None}
    assert [i.rating for i in interactions] == [4.5, 0.5]


def test_latest_small_missing_column(tmp_path: Path) -> None:
    (tmp_path / "ratings.csv").write_text("userId,movieId,timestamp\n1,1,964982703\n")
    (tmp_path / "movies.csv").write_text("movieId,title,genres\n1,A,Drama\n")
    with pytest.raises(DataError, match=r"ratings\.csv:1: field 'rating': missing required column"):
        list(read_movielens(tmp_path, ErrorCollector()).interactions)


def test_latest_small_rating_below_half_is_out_of_range(tmp_path: Path) -> None:
    (tmp_path / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,1,0.4,964982703\n")
    (tmp_path / "movies.csv").write_text("movieId,title,genres\n1,A,Drama\n")
    with pytest.raises(DataError, match=r"ratings\.csv:2: field 'rating': rating 0.4 is outside the range 0.5-5"):
        list(read_movielens(tmp_path, ErrorCollector()).interactions)


def test_not_a_movielens_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not a MovieLens folder"):
        read_movielens(tmp_path, ErrorCollector())


@pytest.mark.shared_data
def test_real_movielens_100k(movielens_100k: Path) -> None:
    errors = ErrorCollector()
    users, items, interactions = _consume(read_movielens(movielens_100k, errors))
    assert (len(users), len(items), len(interactions)) == (943, 1682, 100000)
    assert errors.errors == []
    assert {i.rating for i in interactions} == {1.0, 2.0, 3.0, 4.0, 5.0}
    item_ids = {i.external_id for i in items}
    assert {i.item_id for i in interactions} <= item_ids
    assert any("é" in i.name for i in items)  # u.item is latin-1


@pytest.mark.shared_data
def test_real_movielens_latest_small(movielens_latest_small: Path) -> None:
    errors = ErrorCollector()
    users, items, interactions = _consume(read_movielens(movielens_latest_small, errors))
    assert (len(users), len(items), len(interactions)) == (610, 9742, 100836)
    assert errors.errors == []
    assert min(i.rating for i in interactions) == 0.5
    assert len({i.item_id for i in interactions}) == 9724
