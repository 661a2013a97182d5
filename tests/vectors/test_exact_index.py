"""The exact index's own behaviour: persistence, reload across processes, the selective-filter path, threads."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from hybrec.vectors.base import CollectionNotFound
from hybrec.vectors.exact_index import ExactVectorIndex
from hybrec.vectors.filters import Filter


def _fill(index: ExactVectorIndex, name: str, rows: int = 500, dim: int = 16) -> np.ndarray:
    vectors = np.random.default_rng(1).standard_normal((rows, dim)).astype(np.float32)
    index.create_collection(name, dim, "ip")
    index.upsert(
        name,
        [f"i{k}" for k in range(rows)],
        vectors,
        [{"category": "rare" if k % 100 == 0 else "common", "price": float(k), "brand": "Acme"} for k in range(rows)],
    )
    return vectors


def test_persisted_collection_reloads_in_a_new_instance(tmp_path: Path) -> None:
    first = ExactVectorIndex(tmp_path)
    vectors = _fill(first, "als_items_v3")
    first.delete("als_items_v3", ["i7"])
    expected = first.query("als_items_v3", vectors[0], 10, where=Filter(max_price=300, brand="ACME"))

    second = ExactVectorIndex(tmp_path)
    assert second.list_collections() == ["als_items_v3"]
    assert second.count("als_items_v3") == 499
    assert second.collection_info("als_items_v3").dim == 16
    assert second.query("als_items_v3", vectors[0], 10, where=Filter(max_price=300, brand="ACME")) == expected
    assert second.get_metadata("als_items_v3", ["i8"]) == {"i8": {"category": "common", "price": 8.0, "brand": "Acme"}}
    assert [p.name for p in tmp_path.iterdir()] == ["als_items_v3.npz"]  # no temporary files left behind


def test_changes_written_by_another_instance_are_picked_up(tmp_path: Path) -> None:
    reader = ExactVectorIndex(tmp_path)
    writer = ExactVectorIndex(tmp_path)
    _fill(writer, "products")
    assert reader.count("products") == 500
    writer.upsert("products", ["new"], np.ones((1, 16), np.float32))
    assert reader.count("products") == 501
    writer.delete_collection("products")
    with pytest.raises(CollectionNotFound):
        reader.count("products")


def test_memory_only_index_writes_nothing(tmp_path: Path) -> None:
    index = ExactVectorIndex()
    _fill(index, "products")
    assert index.count("products") == 500
    assert list(tmp_path.iterdir()) == []


def test_selective_filter_scores_only_matching_rows(tmp_path: Path) -> None:
    index = ExactVectorIndex()
    vectors = _fill(index, "products")  # 5 of 500 rows are "rare": below the subset threshold
    query = vectors[3]
    hits = index.query("products", query, 10, where=Filter(category="rare"), exclude_ids={"i100"})[0]
    rare = [0, 200, 300, 400]
    expected = [f"i{rare[j]}" for j in np.argsort(-(vectors[rare] @ query))]
    assert [h.id for h in hits] == expected
    assert [h.score for h in hits] == pytest.approx(sorted((vectors[rare] @ query).tolist(), reverse=True), rel=1e-5)


def test_exclusion_without_filter_never_returns_excluded_rows(tmp_path: Path) -> None:
    index = ExactVectorIndex()
    vectors = _fill(index, "products", rows=50)
    kept = ["i7", "i31"]
    excluded = {f"i{k}" for k in range(50)} - set(kept) | {"not-an-item"}
    for hits in index.query("products", vectors[:3], 10, exclude_ids=excluded):  # n larger than what is left
        assert sorted(h.id for h in hits) == sorted(kept)
    hits = index.query("products", vectors[5], 3, exclude_ids={"i5"})[0]
    scores = vectors @ vectors[5]
    scores[5] = -np.inf
    assert [h.id for h in hits] == [f"i{k}" for k in np.argsort(-scores)[:3]]


def test_concurrent_queries_agree_with_a_single_query(tmp_path: Path) -> None:
    index = ExactVectorIndex(tmp_path)
    vectors = _fill(index, "products", rows=2000)
    expected = [index.query("products", vectors[k], 5)[0] for k in range(8)]
    results: dict[int, list] = {}

    def worker(k: int) -> None:
        for _ in range(20):
            results[k] = index.query("products", vectors[k], 5)[0]

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [results[k] for k in range(8)] == expected
