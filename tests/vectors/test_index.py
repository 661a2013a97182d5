"""Behaviour of the vector index, the same on the exact in-process index and on a real Chroma server."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from hybrec.vectors.base import (
    CollectionExists,
    CollectionNotFound,
    DimensionMismatch,
    UnknownIds,
    VectorIndex,
)
from hybrec.vectors.filters import Filter

DIM = 8


def _catalog(size: int = 40, seed: int = 0) -> tuple[list[str], np.ndarray, list[dict]]:
    """Items with known metadata: categories by i % 3, brands by i % 4, prices i (missing when i % 5 == 4)."""
    rng = np.random.default_rng(seed)
    ids = [f"item-{i}" for i in range(size)]
    vectors = rng.standard_normal((size, DIM)).astype(np.float32)
    brands = ["Acme Corp", "Hewlett-Packard", "' OR 1=1 --", '{"$ne": null}']
    metas: list[dict] = []
    for i in range(size):
        metas.append(
            {
                "category": ["books", "games", "tools"][i % 3],
                "brand": brands[i % 4],
                "price": None if i % 5 == 4 else float(i),
                "avg_rating": None if i % 7 == 6 else float(i % 5) + 0.5,
                "name": f"Item {i}",
            }
        )
    return ids, vectors, metas


@pytest.fixture
def filled(vector_index: VectorIndex, collection_name: str) -> tuple[VectorIndex, str, list[str], np.ndarray, list]:
    ids, vectors, metas = _catalog()
    vector_index.create_collection(collection_name, DIM, "ip")
    vector_index.upsert(collection_name, ids, vectors, metas)
    return vector_index, collection_name, ids, vectors, metas


def _exact_order(vectors: np.ndarray, ids: list[str], query: np.ndarray, allowed: list[int]) -> list[str]:
    scores = vectors[allowed] @ query
    return [ids[allowed[j]] for j in np.argsort(-scores, kind="stable")]


def test_query_returns_best_first_with_dot_product_scores(filled) -> None:  # type: ignore[no-untyped-def]
    index, name, ids, vectors, _ = filled
    query = vectors[3] + 0.1
    hits = index.query(name, query, 5)[0]
    assert [h.id for h in hits] == _exact_order(vectors, ids, query, list(range(len(ids))))[:5]
    for hit in hits:
        assert hit.score == pytest.approx(float(vectors[ids.index(hit.id)] @ query), rel=1e-4, abs=1e-4)
        assert hit.metadata["name"] == f"Item {ids.index(hit.id)}"
        assert "brand_norm" not in hit.metadata
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_batch_of_queries(filled) -> None:  # type: ignore[no-untyped-def]
    index, name, ids, vectors, _ = filled
    results = index.query(name, vectors[:3], 4)
    assert len(results) == 3
    for q, hits in enumerate(results):
        assert [h.id for h in hits] == _exact_order(vectors, ids, vectors[q], list(range(len(ids))))[:4]


def _check_filter(filled, where: Filter, allowed: list[int]) -> None:  # type: ignore[no-untyped-def]
    index, name, ids, vectors, _ = filled
    query = np.ones(DIM, np.float32)
    hits = index.query(name, query, len(ids), where=where)[0]
    assert [h.id for h in hits] == _exact_order(vectors, ids, query, allowed)


@pytest.mark.parametrize(
    ("where", "predicate"),
    [
        (Filter(category="games"), lambda i, m: m["category"] == "games"),
        (Filter(category="Games"), lambda i, m: False),  # category is exact
        (Filter(brand="hewlett packard"), lambda i, m: m["brand"] == "Hewlett-Packard"),
        (Filter(brand="  ACME  corp. "), lambda i, m: m["brand"] == "Acme Corp"),
        (Filter(min_price=10), lambda i, m: m["price"] is not None and m["price"] >= 10),
        (Filter(max_price=10.5), lambda i, m: m["price"] is not None and m["price"] <= 10.5),
        (Filter(min_price=5, max_price=20), lambda i, m: m["price"] is not None and 5 <= m["price"] <= 20),
        (Filter(min_price=0), lambda i, m: m["price"] is not None),  # a missing price never passes
        (Filter(min_rating=3.5), lambda i, m: m["avg_rating"] is not None and m["avg_rating"] >= 3.5),
        (Filter(ids={"item-1", "item-2", "item-9", "no-such-item"}), lambda i, m: i in (1, 2, 9)),
        (Filter(ids=set()), lambda i, m: False),
        (
            Filter(category="tools", brand="acme corp", max_price=30, min_rating=1),
            lambda i, m: (
                m["category"] == "tools"
                and m["brand"] == "Acme Corp"
                and m["price"] is not None
                and m["price"] <= 30
                and m["avg_rating"] is not None
                and m["avg_rating"] >= 1
            ),
        ),
        (Filter(category="books", ids={"item-0", "item-1", "item-3"}), lambda i, m: i in (0, 3)),
    ],
)
def test_filters(filled, where: Filter, predicate) -> None:  # type: ignore[no-untyped-def]
    _, _, _, _, metas = filled
    allowed = [i for i, m in enumerate(metas) if predicate(i, m)]
    _check_filter(filled, where, allowed)


@pytest.mark.parametrize(
    ("brand", "stored"),
    [
        ("' OR 1=1 --", "' OR 1=1 --"),
        ("' or 1=1", "' OR 1=1 --"),  # normalised on both sides: "or 1 1"
        ('{"$ne": null}', '{"$ne": null}'),
        ("$NE NULL", '{"$ne": null}'),
        ("$ne", None),
        ("*", None),
        ("%", None),
        ("", None),
    ],
)
def test_injection_strings_are_literals(filled, brand: str, stored: str | None) -> None:  # type: ignore[no-untyped-def]
    _, _, _, _, metas = filled
    allowed = [i for i, m in enumerate(metas) if m["brand"] == stored]
    assert stored is None or 0 < len(allowed) < len(metas)
    _check_filter(filled, Filter(brand=brand), allowed)
    _check_filter(filled, Filter(category=brand), [])


def test_injection_brand_matches_only_itself(filled) -> None:  # type: ignore[no-untyped-def]
    _, _, _, _, metas = filled
    allowed = [i for i, m in enumerate(metas) if m["brand"] == "' OR 1=1 --"]
    assert 0 < len(allowed) < len(metas)
    _check_filter(filled, Filter(brand="' OR 1=1 --"), allowed)


def test_exclusion_keeps_n_results(filled) -> None:  # type: ignore[no-untyped-def]
    index, name, ids, vectors, _ = filled
    query = vectors[0]
    order = _exact_order(vectors, ids, query, list(range(len(ids))))
    excluded = set(order[:5]) | {"unknown-id"}
    hits = index.query(name, query, 5, exclude_ids=excluded)[0]
    assert [h.id for h in hits] == order[5:10]


def test_exclusion_combined_with_filter_and_allow_list(filled) -> None:  # type: ignore[no-untyped-def]
    index, name, ids, vectors, metas = filled
    query = vectors[1]
    games = [i for i, m in enumerate(metas) if m["category"] == "games"]
    order = _exact_order(vectors, ids, query, games)
    hits = index.query(name, query, 3, where=Filter(category="games"), exclude_ids={order[0]})[0]
    assert [h.id for h in hits] == order[1:4]
    allow = {ids[i] for i in games[:4]}
    hits = index.query(name, query, 10, where=Filter(ids=allow), exclude_ids={ids[games[0]]})[0]
    assert {h.id for h in hits} == allow - {ids[games[0]]}


@pytest.mark.parametrize(
    "where", [None, Filter(category="games"), Filter(min_price=10.0, brand="acme corp")], ids=["all", "cat", "brand"]
)
def test_hits_without_metadata_are_the_same_hits(filled, where: Filter | None) -> None:  # type: ignore[no-untyped-def]
    index, name, _, vectors, _ = filled
    queries = vectors[[2, 5]] + 0.05
    exclude = {"item-7", "item-11"}
    full = index.query(name, queries, 4, where=where, exclude_ids=exclude)
    bare = index.query(name, queries, 4, where=where, exclude_ids=exclude, with_metadata=False)
    assert [[(h.id, h.score) for h in row] for row in bare] == [[(h.id, h.score) for h in row] for row in full]
    assert all(h.metadata == {} for row in bare for h in row) and all(h.metadata for row in full for h in row)
    one = asyncio.run(index.query_async(name, queries[0], 4, where, exclude, with_metadata=False))
    assert [(h.id, h.score, h.metadata) for h in one[0]] == [(h.id, h.score, {}) for h in full[0]]


def test_n_larger_than_matches_returns_all_matches(filled) -> None:  # type: ignore[no-untyped-def]
    index, name, ids, _, metas = filled
    books = {ids[i] for i, m in enumerate(metas) if m["category"] == "books"}
    hits = index.query(name, np.ones(DIM, np.float32), 1000, where=Filter(category="books"))[0]
    assert {h.id for h in hits} == books
    assert len(index.query(name, np.ones(DIM, np.float32), 1000)[0]) == len(ids)


def test_empty_collection(vector_index: VectorIndex, collection_name: str) -> None:
    vector_index.create_collection(collection_name, DIM, "ip")
    assert vector_index.count(collection_name) == 0
    assert vector_index.ids(collection_name) == []
    assert vector_index.query(collection_name, np.ones((2, DIM), np.float32), 5) == [[], []]


def test_dimension_mismatch(filled) -> None:  # type: ignore[no-untyped-def]
    index, name, _, _, _ = filled
    with pytest.raises(DimensionMismatch, match="dimension 4, expected 8"):
        index.query(name, np.ones(4, np.float32), 3)
    with pytest.raises(DimensionMismatch):
        index.upsert(name, ["x-1"], np.ones((1, DIM + 1), np.float32))


def test_upsert_replaces_vector_and_metadata(filled) -> None:  # type: ignore[no-untyped-def]
    index, name, ids, _, _ = filled
    index.upsert(name, ["item-0", "item-new"], np.full((2, DIM), 10.0, np.float32), [{"category": "new"}, None])
    assert index.count(name) == len(ids) + 1
    np.testing.assert_array_equal(index.get_vectors(name, ["item-0"]), np.full((1, DIM), 10.0, np.float32))
    meta = index.get_metadata(name, ["item-0", "item-new", "missing"])
    assert meta == {"item-0": {"category": "new"}, "item-new": {}}
    # the old price is gone, so item-0 no longer passes a price filter
    hits = index.query(name, np.ones(DIM, np.float32), 100, where=Filter(min_price=0))[0]
    assert "item-0" not in {h.id for h in hits}


def test_delete_ids_and_get_vectors(filled) -> None:  # type: ignore[no-untyped-def]
    index, name, ids, vectors, _ = filled
    index.delete(name, ["item-1", "item-2", "never-there"])
    assert index.count(name) == len(ids) - 2
    assert sorted(index.ids(name)) == sorted(set(ids) - {"item-1", "item-2"})
    np.testing.assert_allclose(index.get_vectors(name, ["item-5", "item-3"]), vectors[[5, 3]], rtol=1e-6)
    with pytest.raises(UnknownIds, match="item-1"):
        index.get_vectors(name, ["item-3", "item-1"])
    hits = index.query(name, vectors[1], len(ids))[0]
    assert {"item-1", "item-2"}.isdisjoint(h.id for h in hits)


def test_collections_lifecycle(vector_index: VectorIndex, new_name) -> None:  # type: ignore[no-untyped-def]
    a, b = new_name(), new_name()
    vector_index.create_collection(a, DIM, "ip")
    vector_index.create_collection(b, 3, "cosine")
    vector_index.create_collection(a, DIM, "ip")  # same settings: fine
    with pytest.raises(CollectionExists, match="dim 8"):
        vector_index.create_collection(a, 4, "ip")
    with pytest.raises(CollectionExists):
        vector_index.create_collection(a, DIM, "ip", exist_ok=False)
    assert {a, b} <= set(vector_index.list_collections())
    info = vector_index.collection_info(b)
    assert (info.dim, info.metric) == (3, "cosine")
    vector_index.delete_collection(a)
    assert a not in vector_index.list_collections()
    with pytest.raises(CollectionNotFound):
        vector_index.query(a, np.ones(DIM, np.float32), 1)
    with pytest.raises(CollectionNotFound):
        vector_index.delete_collection(a)


def test_cosine_scores(vector_index: VectorIndex, collection_name: str) -> None:
    vector_index.create_collection(collection_name, 3, "cosine")
    vectors = np.array([[10, 0, 0], [1, 1, 0], [0, 0, 2]], np.float32)
    vector_index.upsert(collection_name, ["x", "xy", "z"], vectors)
    hits = vector_index.query(collection_name, np.array([3.0, 0.0, 0.0]), 3)[0]
    assert [h.id for h in hits] == ["x", "xy", "z"]
    assert [h.score for h in hits] == pytest.approx([1.0, 2**-0.5, 0.0], abs=1e-5)
    np.testing.assert_allclose(vector_index.get_vectors(collection_name, ["x"]), [[1, 0, 0]], atol=1e-6)


def test_large_upsert_is_batched(vector_index: VectorIndex, collection_name: str) -> None:
    rng = np.random.default_rng(5)
    vectors = rng.standard_normal((6000, 4)).astype(np.float32)
    ids = [f"big-{i}" for i in range(6000)]
    vector_index.create_collection(collection_name, 4, "ip")
    vector_index.upsert(collection_name, ids, vectors, [{"price": float(i)} for i in range(6000)])
    assert vector_index.count(collection_name) == 6000
    assert len(set(vector_index.ids(collection_name))) == 6000


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda ix, c: ix.query(c, np.ones(DIM), 0), ValueError, "positive"),
        (lambda ix, c: ix.query(c, np.ones(DIM), -1), ValueError, "positive"),
        (lambda ix, c: ix.upsert(c, ["a", "a"], np.ones((2, DIM))), ValueError, "duplicate"),
        (lambda ix, c: ix.upsert(c, ["a"], np.ones((2, DIM))), ValueError, "2 vectors for 1"),
        (lambda ix, c: ix.upsert(c, ["a"], np.full((1, DIM), np.nan)), ValueError, "NaN"),
        (lambda ix, c: ix.upsert(c, ["a"], np.ones((1, DIM)), [{"price": "cheap"}]), ValueError, "price"),
        (lambda ix, c: ix.upsert(c, ["a"], np.ones((1, DIM)), [{"tags": ["x"]}]), ValueError, "tags"),
        (lambda ix, c: ix.create_collection("no", DIM), ValueError, "collection name"),
        (lambda ix, c: ix.create_collection("../../etc", DIM), ValueError, "collection name"),
        (lambda ix, c: ix.create_collection("okay-name", DIM, "l2"), ValueError, "metric"),
        (lambda ix, c: ix.create_collection("okay-name", 0), ValueError, "dimension"),
    ],
    ids=[
        "n0",
        "n-neg",
        "dup-ids",
        "count-mismatch",
        "nan",
        "price-text",
        "list-value",
        "short-name",
        "path-name",
        "metric",
        "dim0",
    ],
)
def test_bad_input(filled, call, error: type, message: str) -> None:  # type: ignore[no-untyped-def]
    index, name, _, _, _ = filled
    with pytest.raises(error, match=message):
        call(index, name)
