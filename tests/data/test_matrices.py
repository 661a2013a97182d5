"""Interaction matrices: named datasets, CSVs, synthetic generators."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hybrec.data.matrices import from_triples, load_csv, load_dataset, synthetic_interactions


def test_from_triples_merges_duplicates_and_keeps_latest_timestamp() -> None:
    data = from_triples(
        np.array(["b", "a", "b"]), np.array(["x", "y", "x"]), np.array([1.0, 2.0, 3.0]), np.array([10, 20, 30])
    )
    assert data.user_ids == ["a", "b"] and data.item_ids == ["x", "y"]
    assert data.matrix[1, 0] == 4.0 and data.matrix[0, 1] == 2.0
    assert data.timestamp_matrix[1, 0] == 30 and data.timestamp_matrix[0, 1] == 20


def test_from_triples_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="NaN or infinite"):
        from_triples(np.array(["a"]), np.array(["x"]), np.array([np.nan]))
    with pytest.raises(ValueError, match="differ in length"):
        from_triples(np.array(["a", "b"]), np.array(["x"]), np.array([1.0]))


def test_load_csv(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("user,item,value,timestamp\nu1,i1,2,2024-01-01T00:00:00\nu2,i1,1,2024-01-02T00:00:00\n")
    data = load_csv(path)
    assert data.matrix.shape == (2, 1) and data.matrix.sum() == 3.0
    assert data.timestamps.tolist() == [1704067200, 1704153600]
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="lacks column"):
        load_csv(tmp_path / "bad.csv")


def test_unknown_dataset_names_the_choices() -> None:
    with pytest.raises(ValueError, match="ml-100k"):
        load_dataset("netflix")


def test_synthetic_is_seeded_power_law() -> None:
    a = synthetic_interactions(500, 300, 10, rank=5, seed=1)
    b = synthetic_interactions(500, 300, 10, rank=5, seed=1)
    assert (a.matrix != b.matrix).nnz == 0
    popularity = np.sort(np.diff(a.matrix.tocsc().indptr))[::-1]
    assert popularity[:30].sum() > 3 * popularity[-30:].sum()
    assert len(a.timestamps) == a.matrix.nnz


def test_movielens_100k(movielens_100k: Path) -> None:
    data = load_dataset("ml-100k", data_dir=movielens_100k.parent)
    assert data.matrix.shape == (943, 1682) and data.matrix.nnz == 100_000
    assert len(data.timestamps) == data.matrix.nnz


def test_amazon_industrial(amazon_industrial: Path) -> None:
    data = load_dataset("amazon-industrial", data_dir=amazon_industrial.parent.parent)
    assert data.matrix.nnz > 50_000 and data.timestamps.min() > 0
