"""The ingestion pipeline end to end: real readers into a real store, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from hybrec.data.amazon import read_amazon
from hybrec.data.csv_formats import read_ratings_csv
from hybrec.data.records import DataError, ErrorCollector
from hybrec.ingest import IngestReport, ingest
from hybrec.store.engine import session_scope
from hybrec.store.models import Interaction, Item
from hybrec.store.queries import store_counts


def _counts(url: str) -> dict[str, int]:
    with session_scope(url) as session:
        return store_counts(session)


def _ingest_gift_cards(directory: Path, url: str) -> IngestReport:
    errors = ErrorCollector()
    source = read_amazon(directory / "Gift_Cards_5.json.gz", directory / "meta_Gift_Cards.json.gz", errors)
    return ingest(source, url, errors, progress=False)


@pytest.mark.shared_data
def test_amazon_gift_cards_acceptance(amazon_gift_cards: Path, store_url: str) -> None:
    report = _ingest_gift_cards(amazon_gift_cards, store_url)
    counts = _counts(store_url)
    assert counts["users"] == 458
    assert counts["interactions"] == report.interactions.inserted == report.interactions.read
    with session_scope(store_url) as session:
        reviewed = list(session.scalars(select(Item).where(Item.id.in_(select(Interaction.item_id)))))
        assert len(reviewed) == 148
        assert all(item.name and not item.name.startswith("Amazon product") for item in reviewed)
        prices = [item.price for item in reviewed if item.price is not None]
        assert len(prices) == 107 and all(isinstance(p, float) and p >= 0 for p in prices)
        assert sum(1 for item in reviewed if item.brand) == 119
        assert sum(1 for item in reviewed if item.description) >= 140
        assert all(item.num_ratings > 0 and 1.0 <= (item.avg_rating or 0) <= 5.0 for item in reviewed)

    again = _ingest_gift_cards(amazon_gift_cards, store_url)
    assert again.interactions.inserted == 0 and again.users.inserted == 0 and again.items.inserted == 0
    assert _counts(store_url) == counts


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_a_bad_row_from_the_reader_writes_nothing(store_url: str, tmp_path: Path) -> None:
    good = _write(tmp_path / "good.csv", "userid,itemid,timestamp,rating\nu1,a,2020-01-01T00:00:00,4\n")
    ingest(read_ratings_csv(good, None, ErrorCollector()), store_url, ErrorCollector(), progress=False)
    before = _counts(store_url)

    rows = "".join(f"u{n},b{n % 7},2020-01-02T00:00:{n % 60:02d},{1 + n % 5}\n" for n in range(30))
    bad = _write(tmp_path / "bad.csv", "userid,itemid,timestamp,rating\n" + rows + "u99,b1,2020-01-03T00:00:00,7\n")
    errors = ErrorCollector()
    with pytest.raises(DataError) as raised:
        ingest(read_ratings_csv(bad, None, errors), store_url, errors, progress=False)
    [error] = raised.value.errors
    assert (Path(error.file).name, error.line, error.field) == ("bad.csv", 32, "rating")
    assert _counts(store_url) == before

    skipping = ErrorCollector(skip_invalid=True)
    report = ingest(read_ratings_csv(bad, None, skipping), store_url, skipping, progress=False)
    assert report.interactions.inserted == 30
    assert [(Path(r.file).name, r.line) for r in report.skipped_rows] == [("bad.csv", 32)]
