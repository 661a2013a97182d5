from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest

from hybrec.data.amazon import read_amazon, read_meta
from hybrec.data.records import DataError, ErrorCollector, SourceData


def _consume(source: SourceData) -> tuple[list, list, list]:
    return list(source.users), list(source.items), list(source.interactions)


def _jsonl(path: Path, rows: list[Any], *, gz: bool = True) -> Path:
    text = "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows)
    path.write_bytes(gzip.compress(text.encode()) if gz else text.encode())
    return path


def _review(user: str = "U1", asin: str = "A1", overall: Any = 5.0, ts: int = 1529193600, **extra: Any) -> dict:
    return {
        "reviewerID": user,
        "asin": asin,
        "overall": overall,
        "unixReviewTime": ts,
        "verified": True,
        "summary": "Five Stars",
        "reviewText": "Great &amp; fast",
        **extra,
    }


META = [
    {
        "asin": "A1",
        "title": " Maggiano&#39;s Gift Card",
        "brand": "",
        "price": "$1,299.00",
        "description": ["<div>Nice <b>card</b></div>"],
        "feature": ["No fees", "No fees"],
        "category": ["Gift Cards", "Restaurants"],
    },
    {"asin": "A1", "title": "A later title", "brand": "Maggiano's", "price": "$5.00"},  # collapses into the first
    {"asin": "A2", "title": '<span class="a-size-medium a-color-secondary"', "brand": "Reason", "price": "junk<br>"},
    {"asin": "A3", "title": "Unreviewed", "price": "$10.00 - $25.00"},
]


def test_join_clean_and_collapse(tmp_path: Path) -> None:
    reviews = _jsonl(
        tmp_path / "R_5.json.gz", [_review(), _review("U2", "A2", 4.0, reviewerName="Ann"), _review("U2", "A9", 3.0)]
    )
    meta = _jsonl(tmp_path / "meta_R.json.gz", META)
    users, items, interactions = _consume(read_amazon(reviews, meta, ErrorCollector()))
    assert [(u.external_id, u.attributes) for u in users] == [("U1", {}), ("U2", {"name": "Ann"})]
    by_id = {i.external_id: i for i in items}
    assert list(by_id) == ["A1", "A2", "A3", "A9"]
    a1 = by_id["A1"]
    assert (a1.name, a1.brand, a1.price, a1.description, a1.features, a1.category) == (
        "Maggiano's Gift Card",
        "Maggiano's",
        1299.0,
        "Nice card",
        ["No fees"],
        "Restaurants",
    )
    assert by_id["A2"].name == "Reason (A2)" and by_id["A2"].attributes["name_source"] == "fallback"
    assert by_id["A2"].price is None
    assert by_id["A3"].price == 10.0  # a range gives its lower bound
    assert by_id["A9"].name == "Amazon product A9" and by_id["A9"].attributes["metadata"] is False
    first = interactions[0]
    assert (first.kind, first.rating, first.verified, first.review_text) == (
        "review",
        5.0,
        True,
        "Five Stars\nGreat & fast",
    )
    assert first.ts.year == 2018 and first.ts.tzinfo is not None


def test_reviewed_catalog_only(tmp_path: Path) -> None:
    reviews = _jsonl(tmp_path / "r.json", [_review()], gz=False)  # plain .json lines work too
    meta = _jsonl(tmp_path / "meta.json.gz", META)
    items = list(read_amazon(reviews, meta, ErrorCollector(), catalog="reviewed").items)
    assert [i.external_id for i in items] == ["A1"]


def test_without_meta(tmp_path: Path) -> None:
    reviews = _jsonl(tmp_path / "r.json.gz", [_review()])
    assert [i.name for i in read_amazon(reviews, None, ErrorCollector()).items] == ["Amazon product A1"]


def test_repeated_review_collapsed_with_warning(tmp_path: Path) -> None:
    reviews = _jsonl(tmp_path / "r.json.gz", [_review(), _review(reviewText="again")])
    errors = ErrorCollector()
    interactions = list(read_amazon(reviews, None, errors).interactions)
    assert len(interactions) == 1 and interactions[0].review_text == "Five Stars\nGreat & fast"
    assert [(w.line, "collapsed into line 1" in w.message) for w in errors.warnings] == [(2, True)]


@pytest.mark.parametrize(
    ("row", "match"),
    [
        (_review(overall=7), r"r\.json\.gz:2: field 'overall': rating 7 is outside the range 1-5"),
        (_review(overall="great"), r"r\.json\.gz:2: field 'overall': rating is not a number"),
        ({"asin": "A1", "overall": 5, "unixReviewTime": 1}, r"r\.json\.gz:2: field 'reviewerID': missing value"),
        ('{"reviewerID": "U1", "asin": ', r"r\.json\.gz:2: malformed JSON"),
        (_review(unixReviewTime=None), r"r\.json\.gz:2: field 'unixReviewTime': missing value"),
    ],
)
def test_bad_review_rows(tmp_path: Path, row: Any, match: str) -> None:
    reviews = _jsonl(tmp_path / "r.json.gz", [_review("U0"), row])
    with pytest.raises(DataError, match=match):
        list(read_amazon(reviews, None, ErrorCollector()).interactions)
    errors = ErrorCollector(skip_invalid=True)
    assert [i.user_id for i in read_amazon(reviews, None, errors).interactions] == ["U0"]
    assert [e.line for e in errors.errors] == [2]


def test_review_time_fallback(tmp_path: Path) -> None:
    row = _review(unixReviewTime=None, reviewTime="06 17, 2018")
    reviews = _jsonl(tmp_path / "r.json.gz", [row])
    (interaction,) = read_amazon(reviews, None, ErrorCollector()).interactions
    assert interaction.ts.isoformat() == "2018-06-17T00:00:00+00:00"


def test_meta_negative_price_and_missing_asin(tmp_path: Path) -> None:
    meta = _jsonl(tmp_path / "meta.json.gz", [{"asin": "A1", "title": "x", "price": "-$3.00"}, {"title": "no asin"}])
    with pytest.raises(DataError, match=r"meta\.json\.gz:1: field 'price': negative price"):
        read_meta(meta, ErrorCollector())
    errors = ErrorCollector(skip_invalid=True)
    assert read_meta(meta, errors) == {}
    assert [(e.line, e.field) for e in errors.errors] == [(1, "price"), (2, "asin")]


def test_empty_and_non_utf8_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty.json.gz"
    empty.write_bytes(gzip.compress(b""))
    with pytest.raises(DataError, match="file is empty"):
        list(read_amazon(empty, None, ErrorCollector()).interactions)
    bad = tmp_path / "bad.json"
    bad.write_bytes(json.dumps(_review()).encode() + b"\n" + b'{"reviewerID": "\xff"}\n')
    with pytest.raises(DataError, match=r"bad\.json:2: not valid UTF-8"):
        list(read_amazon(bad, None, ErrorCollector()).interactions)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="file not found"):
        read_amazon(tmp_path / "nope.json.gz", None, ErrorCollector())


@pytest.mark.shared_data
def test_real_gift_cards(amazon_gift_cards: Path) -> None:
    errors = ErrorCollector()
    source = read_amazon(
        amazon_gift_cards / "Gift_Cards_5.json.gz", amazon_gift_cards / "meta_Gift_Cards.json.gz", errors
    )
    users, items, interactions = _consume(source)
    assert len(users) == 458
    assert errors.errors == [] and len(errors.warnings) == 3  # the dump's 3 repeated reviews
    assert len(interactions) == 2972 - 3
    reviewed = {i.item_id for i in interactions}
    by_id = {i.external_id: i for i in items}
    assert len(reviewed) == 148 and reviewed <= set(by_id)
    assert all(by_id[a].attributes["name_source"] == "title" for a in reviewed)
    prices = [by_id[a].price for a in reviewed if by_id[a].price is not None]
    assert len(prices) == 107 and all(isinstance(p, float) and p >= 0 for p in prices)
    assert sum(1 for a in reviewed if by_id[a].brand) == 119
    assert not any("<" in (i.description or "") or "&amp;" in i.name for i in items)
