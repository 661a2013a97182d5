"""Queries for training, serving and the events API, on both backends."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from hybrec.data.records import ErrorCollector, InteractionRecord, ItemRecord, SourceData, UserRecord
from hybrec.ingest import ingest
from hybrec.store import queries
from hybrec.store.engine import session_scope
from hybrec.store.queries import (
    UnknownItemsError,
    get_or_create_users,
    insert_interactions,
    item_metadata,
    items_by_external_ids,
    load_interaction_arrays,
    seen_items_by_url,
    store_counts,
    user_events_by_url,
    user_interactions,
)

T0 = datetime(2022, 5, 1, tzinfo=UTC)


@pytest.fixture
def shop(store_url: str) -> str:
    items = [ItemRecord("a", "Alpha", brand="Acme", features=["x"], price=3.5), ItemRecord("b", "Beta")]
    interactions = [
        InteractionRecord("u1", "a", "rating", T0, rating=4.0),
        InteractionRecord("u1", "b", "purchase", T0 + timedelta(hours=1), weight=5.0),
        InteractionRecord("u2", "a", "view", T0 + timedelta(hours=2)),
    ]
    ingest(SourceData("shop", [UserRecord("u1")], items, interactions), store_url, ErrorCollector(), progress=False)
    return store_url


def test_load_interaction_arrays(shop: str) -> None:
    with session_scope(shop) as session:
        arrays = load_interaction_arrays(session)
    assert len(arrays) == 3
    assert list(arrays.user_ids) == ["u1", "u1", "u2"] and list(arrays.item_ids) == ["a", "b", "a"]
    assert list(arrays.kinds) == ["rating", "purchase", "view"]
    assert arrays.ratings[0] == 4.0 and math.isnan(arrays.ratings[1])
    assert list(arrays.values) == [4.0, 5.0, 1.0]
    assert list(arrays.timestamps) == [int(T0.timestamp()) + h * 3600 for h in range(3)]


def test_items_by_external_ids_and_metadata(shop: str) -> None:
    with session_scope(shop) as session:
        found = items_by_external_ids(session, ["a", "missing", "a"])
        assert set(found) == {"a"}
        meta = item_metadata(found["a"])
    assert meta["name"] == "Alpha" and meta["brand"] == "Acme" and meta["features"] == ["x"]
    assert meta["price"] == 3.5 and meta["avg_rating"] == 4.0 and meta["num_ratings"] == 1


def test_get_or_create_users_is_idempotent(shop: str) -> None:
    with session_scope(shop) as session:
        first = get_or_create_users(session, ["u1", "new", "new"])
    with session_scope(shop) as session:
        second = get_or_create_users(session, ["new", "u1"])
        assert store_counts(session)["users"] == 3
    assert first == second and len(set(first.values())) == 2


def test_insert_interactions_returns_only_new_ones(shop: str) -> None:
    event = InteractionRecord("u9", "b", "click", T0, idempotency_key="evt-1")
    keyless = InteractionRecord("u9", "a", "view", T0)
    with session_scope(shop) as session:
        assert insert_interactions(session, [event, event, keyless]) == [event, keyless]
    with session_scope(shop) as session:
        assert insert_interactions(session, [event]) == []
        assert store_counts(session)["interactions"] == 5


def test_insert_interactions_with_an_unknown_item_inserts_nothing(shop: str) -> None:
    with session_scope(shop) as session, pytest.raises(UnknownItemsError, match="nope"):
        insert_interactions(
            session, [InteractionRecord("u1", "a", "view", T0), InteractionRecord("u1", "nope", "view", T0)]
        )
    with session_scope(shop) as session:
        assert store_counts(session)["interactions"] == 3


def test_user_interactions_oldest_first(shop: str) -> None:
    with session_scope(shop) as session:
        rows = user_interactions(session, "u1")
        latest = user_interactions(session, "u1", limit=1)
        assert user_interactions(session, "nobody") == []
    assert [(r.item_id, r.kind) for r in rows] == [("a", "rating"), ("b", "purchase")]
    assert rows[0].ts == T0 and rows[1].weight == 5.0
    assert [r.item_id for r in latest] == ["b"]


def test_seen_items_of_a_batch_of_users_in_one_read(shop: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # The exact index's search thread reads a batch's exclusions with this: per user, in the order asked (repeats
    # and unknown users included), the same items as the serving read of one user's events.
    odd = "quote' \"comma, [bracket] \\ \u00e9 \U0001f600"  # ids travel through a JSON array in SQL
    ingest(
        SourceData("more", [], [ItemRecord(odd, "Odd")], [InteractionRecord("u2", odd, "view", T0)]),
        shop,
        ErrorCollector(),
        progress=False,
    )
    asked = ["u2", "nobody", "u1", "u2"]
    assert seen_items_by_url(shop, asked) == [{"a", odd}, set(), {"a", "b"}, {"a", odd}]
    assert [{e.item_id for e in user_events_by_url(shop, u)} for u in asked] == seen_items_by_url(shop, asked)
    assert seen_items_by_url(shop, []) == []
    monkeypatch.setattr(queries, "_IN_CHUNK", 2)  # more users than one statement takes: several statements
    assert seen_items_by_url(shop, asked) == [{"a", odd}, set(), {"a", "b"}, {"a", odd}]
