"""Bulk loading through the pipeline: idempotency, upserts, atomicity and the missing-item check, on both backends."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import select

from hybrec.data.records import (
    DataError,
    ErrorCollector,
    InteractionRecord,
    ItemRecord,
    RowError,
    SourceData,
    UserRecord,
)
from hybrec.ingest import ingest
from hybrec.store import merge
from hybrec.store.bulk import derive_idempotency_key, load_source
from hybrec.store.engine import create_store_engine, get_engine, session_scope
from hybrec.store.models import Base, Interaction, Item, User
from hybrec.store.queries import store_counts

T0 = datetime(2021, 3, 1, 12, 0, tzinfo=UTC)


def _source(name: str = "shop", n_users: int = 3, n_items: int = 4, per_user: int = 2) -> SourceData:
    users = [UserRecord(f"u{u}", {"segment": u % 2}) for u in range(n_users)]
    items = [ItemRecord(f"i{i}", f"Item {i}", category="tools", price=10.0 + i) for i in range(n_items)]
    interactions = [
        InteractionRecord(f"u{u}", f"i{(u + k) % n_items}", "rating", T0 + timedelta(hours=u * 10 + k),
                          rating=float(1 + (u + k) % 5), source_file=f"{name}.csv", source_line=2 + u * per_user + k)
        for u in range(n_users)
        for k in range(per_user)
    ]
    return SourceData(name, users, items, interactions)


def _load(source: SourceData, url: str, skip: bool = False):  # type: ignore[no-untyped-def]
    return ingest(source, url, ErrorCollector(skip_invalid=skip), progress=False)


def _counts(url: str) -> dict[str, int]:
    with session_scope(url) as session:
        return store_counts(session)


def _item(url: str, external_id: str) -> Item:
    with session_scope(url) as session:
        item = session.scalars(select(Item).where(Item.external_id == external_id)).one()
        session.expunge(item)
        return item


def test_load_then_reload_changes_nothing(store_url: str) -> None:
    first = _load(_source(), store_url)
    assert (first.users.inserted, first.items.inserted, first.interactions.inserted) == (3, 4, 6)
    before = _counts(store_url)
    assert before["users"] == 3 and before["items"] == 4 and before["interactions"] == 6

    again = _load(_source(), store_url)
    assert again.interactions.read == 6
    assert (again.users.inserted, again.items.inserted, again.interactions.inserted) == (0, 0, 0)
    assert _counts(store_url) == before


def test_second_dataset_adds_to_the_first(store_url: str) -> None:
    _load(_source("a", n_users=3, n_items=4), store_url)
    other = SourceData(
        "b",
        [UserRecord("v1")],
        [ItemRecord("j1", "Other item")],
        [
            InteractionRecord("v1", "j1", "purchase", T0, weight=5.0),
            InteractionRecord("u0", "i1", "view", T0),  # known user, item only in the store: fine
            InteractionRecord("new-user", "j1", "click", T0),  # a user seen only in interactions is created
        ],
    )
    report = _load(other, store_url)
    assert (report.users.inserted, report.items.inserted, report.interactions.inserted) == (2, 1, 3)
    counts = _counts(store_url)
    assert (counts["users"], counts["items"], counts["interactions"]) == (5, 5, 9)


def test_item_upsert_updates_non_null_fields_and_never_erases(store_url: str) -> None:
    first = ItemRecord("x", "Drill", category="tools", brand="Bosch", description="A drill", features=["18V"],
                       price=99.0, attributes={"color": "blue", "size": "m"})
    _load(SourceData("one", [], [first], []), store_url)
    later = ItemRecord("x", "Drill Pro", category=None, brand=None, description=None, features=[], price=89.5,
                       attributes={"color": "green"})
    report = _load(SourceData("two", [], [later], []), store_url)
    assert (report.items.inserted, report.items.updated) == (0, 1)

    item = _item(store_url, "x")
    assert (item.name, item.price) == ("Drill Pro", 89.5)
    assert (item.category, item.brand, item.description, item.features) == ("tools", "Bosch", "A drill", ["18V"])
    assert item.attributes == {"color": "green", "size": "m"}


def test_placeholder_item_never_overwrites_a_described_one(store_url: str) -> None:
    _load(SourceData("meta", [], [ItemRecord("x", "Real title", brand="Acme")], []), store_url)
    placeholder = ItemRecord("x", "Item x", attributes={"metadata": False})
    _load(SourceData("ratings", [], [placeholder, ItemRecord("y", "Item y", attributes={"metadata": False})],
                     []), store_url)
    x, y = _item(store_url, "x"), _item(store_url, "y")
    assert (x.name, x.brand, x.attributes) == ("Real title", "Acme", {})
    assert (y.name, y.attributes) == ("Item y", {"metadata": False})  # a new placeholder is still inserted


def test_item_rating_stats_are_recomputed_from_all_ratings(store_url: str) -> None:
    def ratings(name: str, user: str, value: float) -> SourceData:
        return SourceData(name, [], [ItemRecord("x", "X")],
                          [InteractionRecord(user, "x", "rating", T0, rating=value),
                           InteractionRecord(user, "x", "view", T0 + timedelta(1))])

    _load(ratings("a", "u1", 5.0), store_url)
    assert (_item(store_url, "x").avg_rating, _item(store_url, "x").num_ratings) == (5.0, 1)
    _load(ratings("b", "u2", 2.0), store_url)
    assert (_item(store_url, "x").avg_rating, _item(store_url, "x").num_ratings) == (3.5, 2)


def test_interaction_naming_an_absent_item_is_an_error_and_writes_nothing(store_url: str) -> None:
    _load(_source(), store_url)
    before = _counts(store_url)
    bad = SourceData(
        "bad",
        [UserRecord("fresh-user")],
        [ItemRecord("fresh-item", "Fresh")],
        [
            InteractionRecord("fresh-user", "fresh-item", "view", T0, source_file="events.csv", source_line=2),
            InteractionRecord("fresh-user", "no-such-item", "view", T0, source_file="events.csv", source_line=3),
        ],
    )
    with pytest.raises(DataError) as raised:
        _load(bad, store_url)
    [error] = raised.value.errors
    assert (str(error.file), error.line, error.field) == ("events.csv", 3, "item_id")
    assert "no-such-item" in error.message and "absent from the catalog" in error.message
    assert _counts(store_url) == before  # not even the valid user, item and interaction of that file


def test_skip_invalid_loads_the_rest_and_reports_absent_items(store_url: str) -> None:
    source = SourceData(
        "partial",
        [],
        [ItemRecord("a", "A")],
        [InteractionRecord("u", "a", "view", T0), InteractionRecord("u", "ghost", "view", T0)],  # no file/line given
    )
    report = _load(source, store_url, skip=True)
    assert report.interactions.inserted == 1 and report.interactions.skipped == 1
    [row] = report.skipped_rows
    assert (row.file, row.line, row.field) == ("partial", 2, "item_id")  # source name and position in the stream


def test_reader_error_mid_stream_leaves_the_store_as_it_was(store_url: str) -> None:
    _load(_source(), store_url)
    before = _counts(store_url)

    def interactions() -> Iterator[InteractionRecord]:
        for n in range(25_000):  # past the first staging batch
            yield InteractionRecord(f"w{n % 50}", "i0", "view", T0 + timedelta(seconds=n))
        raise DataError(RowError("big.csv", 25_002, "rating", "rating 7 is out of range 1-5"))

    with pytest.raises(DataError, match=r"big\.csv:25002"):
        _load(SourceData("big", [UserRecord("w-new")], [ItemRecord("new", "New")], interactions()), store_url)
    assert _counts(store_url) == before


def test_idempotency_keys_given_or_derived(store_url: str) -> None:
    given = InteractionRecord("u", "a", "purchase", T0, idempotency_key="order-17")
    derived = InteractionRecord("u", "a", "view", T0.astimezone(timezone(timedelta(hours=2))))
    _load(SourceData("keys", [], [ItemRecord("a", "A")], [given, derived]), store_url)
    with session_scope(store_url) as session:
        keys = set(session.scalars(select(Interaction.idempotency_key)))
        stored_ts = set(session.scalars(select(Interaction.ts)))
    assert keys == {"order-17", derive_idempotency_key("keys", "u", "a", "view", T0)}
    assert stored_ts == {T0}  # every timestamp comes back as aware UTC


def test_large_load_path_rebuilds_constraints_and_dedupes(
    store_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """On PostgreSQL a large load drops and rebuilds the constraints of interactions; SQLite takes the normal path."""
    monkeypatch.setattr(merge, "REBUILD_MIN_ROWS", 10)
    caplog.set_level(logging.INFO, logger="hybrec.store.merge")
    repeated = [InteractionRecord("u0", "i0", "cart", T0, idempotency_key="same") for _ in range(3)]
    source = _source(n_users=20, n_items=5, per_user=3)
    report = _load(SourceData("shop", source.users, source.items, [*source.interactions, *repeated]), store_url)
    assert report.interactions.inserted == 60 + 1
    assert ("rebuilding constraints" in caplog.text) == store_url.startswith("postgresql")
    assert ("repeat idempotency keys" in caplog.text) == store_url.startswith("postgresql")
    again = _source(n_users=20, n_items=5, per_user=3)
    assert _load(again, store_url).interactions.inserted == 0
    assert _counts(store_url)["interactions"] == 61
    with get_engine(store_url).connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
    with session_scope(store_url) as session:  # foreign keys hold again
        assert session.scalar(select(User.id).where(User.external_id == "u0")) is not None


def test_absent_items_are_named_with_their_own_file(store_url: str) -> None:
    # Staging keeps each row's file as a number; the report must still name the right file for every row.
    source = SourceData(
        "two-files",
        [UserRecord("u")],
        [ItemRecord("a", "A")],
        [
            InteractionRecord("u", "a", "view", T0, source_file="first.csv", source_line=2),
            InteractionRecord("u", "ghost-1", "view", T0, source_file="first.csv", source_line=3),
            InteractionRecord("u", "ghost-2", "view", T0, source_file="second.csv", source_line=2),
            InteractionRecord("u", "ghost-3", "view", T0 + timedelta(1), source_file="first.csv", source_line=9),
        ],
    )
    report = _load(source, store_url, skip=True)
    assert [(str(e.file), e.line, e.field) for e in report.skipped_rows] == [
        ("first.csv", 3, "item_id"), ("first.csv", 9, "item_id"), ("second.csv", 2, "item_id"),
    ]
    assert (report.interactions.inserted, report.interactions.skipped) == (1, 3)


def test_load_on_a_session_whose_temp_buffers_are_already_fixed(store_url: str) -> None:
    # temp_buffers cannot change once a session has used a temporary table: the loader must go on with the size
    # it has (its SET fails inside a savepoint) and still load everything in its one transaction.
    if not store_url.startswith("postgresql"):
        pytest.skip("a PostgreSQL setting")
    engine = create_store_engine(store_url)  # a new server session, whatever the pooled ones have done
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql("SET LOCAL temp_buffers = '2MB'")
            connection.exec_driver_sql("CREATE TEMP TABLE touched (x int) ON COMMIT DROP")
            connection.exec_driver_sql("INSERT INTO touched VALUES (1)")
            counts = load_source(connection, _source(), ErrorCollector(), progress=False)
            assert connection.exec_driver_sql("SHOW temp_buffers").scalar() == "2MB"
    finally:
        engine.dispose()
    assert (counts.interactions.inserted, _counts(store_url)["interactions"]) == (6, 6)
