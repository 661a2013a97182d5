"""The compiled pruned-scan kernel: its build cache, its candidates, its stops, its overflow, and life without it.

The exact index's answers with the kernel are checked against the numpy scan and a brute-force ranking in
``test_exact_batching.py`` (its ``scan`` fixture); these tests look at the kernel's own contract.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from hybrec.vectors import exact_search, scan_kernel
from hybrec.vectors.exact_index import ExactVectorIndex
from hybrec.vectors.exact_search import NormLayout, error_bound
from hybrec.vectors.scan_kernel import PANEL, PrunedScanKernel, panels_of, pruned_scan_kernel

DIM = 32


@pytest.fixture(scope="module")
def kernel() -> PrunedScanKernel:
    loaded = pruned_scan_kernel()
    assert loaded is not None, "the pruned-scan kernel did not build (is a C compiler installed?)"
    return loaded


def _als_like(rows: int, rng: np.random.Generator) -> np.ndarray:
    mix = rng.standard_normal((rows, DIM // 4)) @ rng.standard_normal((DIM // 4, DIM))
    scale = rng.lognormal(0.0, 0.5, size=(rows, 1))
    return ((mix + 0.5 * rng.standard_normal((rows, DIM))) * scale / np.sqrt(DIM)).astype(np.float32)


def _scan(
    kernel: PrunedScanKernel,
    layout: NormLayout,
    queries: np.ndarray,
    k: list[int],
    allowed: list[np.ndarray | None],
    excluded_rows: list[list[int]],
    capacity: int = 1024,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    n = layout.order.size
    relative_error = error_bound(DIM)
    norm = np.linalg.norm(queries.astype(np.float64), axis=1)
    positions = [np.sort(layout.position[np.asarray(rows, dtype=np.int64)]) for rows in excluded_rows]
    start = np.zeros(len(queries) + 1, dtype=np.int64)
    np.cumsum([p.size for p in positions], out=start[1:])
    assert layout.panels is not None
    return kernel.scan(
        layout.panels, n, layout.norms, layout.order,
        np.ascontiguousarray(queries, dtype=np.float32), np.asarray(k, dtype=np.int64),
        relative_error * norm * layout.max_norm, norm * (1 + relative_error), allowed,
        start, np.concatenate(positions), capacity,
    )  # fmt: skip


def test_candidates_hold_each_querys_allowed_top_k_and_the_scan_stops_by_the_norm_bound(
    kernel: PrunedScanKernel,
) -> None:
    rng = np.random.default_rng(3)
    rows = 10 * PANEL * 4 + 37  # a partial last panel and block
    vectors = _als_like(rows, rng)
    layout = NormLayout.of(vectors, panels=True)
    queries = _als_like(12, rng) * 2
    k = [1, 5, 10, 10, 25, 3, 10, 10, 7, 10, 40, 10]
    allowed: list[np.ndarray | None] = [None] * len(queries)
    allowed[2] = np.arange(rows) % 3 == 0
    allowed[6] = np.arange(rows) % 50 == 0  # narrow: 52 rows pass
    excluded_rows: list[list[int]] = [[] for _ in queries]
    exact = queries.astype(np.float64) @ vectors.astype(np.float64).T
    excluded_rows[3] = np.argsort(-exact[3])[:15].tolist()  # the 15 best rows of query 3
    excluded_rows[6] = [0, 50, 100]
    count, positions, scores, read = _scan(kernel, layout, queries, k, allowed, excluded_rows)
    norms = np.linalg.norm(vectors.astype(np.float64), axis=1)
    for j, query in enumerate(queries):
        ok = np.ones(rows, dtype=bool) if allowed[j] is None else allowed[j].copy()
        ok[excluded_rows[j]] = False
        candidates = layout.order[positions[j, : count[j]]]
        assert ok[candidates].all()  # rejected and excluded rows never come back
        best = np.flatnonzero(ok)[np.argsort(-exact[j, ok], kind="stable")[: k[j]]]
        assert set(best.tolist()) <= set(candidates.tolist())
        assert np.allclose(scores[j, : count[j]], exact[j, candidates], rtol=1e-5, atol=1e-5)
        kth = exact[j, best[-1]]
        needed = int((np.linalg.norm(query) * norms >= kth).sum())  # rows the norm bound cannot rule out
        assert read[j] <= rows
        if allowed[j] is None and j != 3:  # the norm bound cuts the scan short of the end
            assert read[j] < rows
            assert count[j] < 6 * k[j] + 60  # a running threshold keeps few rows
        assert read[j] >= needed - 1  # never stopped before a row that could still rank


def test_a_query_with_more_candidates_than_room_is_flagged_and_rerun_with_room(
    kernel: PrunedScanKernel, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(5)
    vectors = rng.integers(-1, 2, (3000, DIM)).astype(np.float32)  # thousands of rows tie on a few scores
    query = np.ones(DIM, dtype=np.float32)
    layout = NormLayout.of(vectors, panels=True)
    count, _, _, _ = _scan(kernel, layout, query[None], [3], [None], [[]], capacity=8)
    assert count.tolist() == [-1]

    monkeypatch.setattr(exact_search, "KERNEL_CAPACITY", 8)
    monkeypatch.setattr(exact_search, "use_kernel", True)
    index = ExactVectorIndex(coalesce=False)
    index.create_collection("items", DIM, "ip")
    index.upsert("items", [f"i{r}" for r in range(3000)], vectors, [{} for _ in range(3000)])
    other = rng.standard_normal(DIM).astype(np.float32)
    got = index.query("items", np.stack([query, other]), 3)
    exact = vectors.astype(np.float64) @ np.stack([query, other]).astype(np.float64).T
    for j, hits in enumerate(got):
        scores = exact[:, j].astype(np.float32)
        best = np.lexsort((np.arange(3000), -scores))[:3]
        assert [(h.id, h.score) for h in hits] == [(f"i{r}", float(scores[r])) for r in best]


def test_panels_are_cache_line_aligned_columns_of_the_rows_padded_with_zeros() -> None:
    vectors = np.arange(130 * 3, dtype=np.float32).reshape(130, 3)
    panels = panels_of(vectors)
    assert panels.shape == (3, 3, PANEL) and panels.ctypes.data % 64 == 0
    assert np.array_equal(panels[1, :, 5], vectors[PANEL + 5])
    assert not panels[2, :, 2:].any()
    unpacked = panels.transpose(0, 2, 1).reshape(-1, 3)[:130]
    assert np.array_equal(unpacked, vectors)


def test_inputs_of_the_wrong_kind_are_refused_before_the_call(kernel: PrunedScanKernel) -> None:
    layout = NormLayout.of(np.ones((100, DIM), dtype=np.float32), panels=True)
    assert layout.panels is not None
    good = {
        "panels": layout.panels, "n": 100, "norms": layout.norms, "order": layout.order,
        "queries": np.ones((1, DIM), dtype=np.float32), "k": np.array([5]), "slack": np.array([0.0]),
        "stop_scale": np.array([1.0]), "allowed": [None], "excluded_start": np.array([0, 0]),
        "excluded": np.empty(0, dtype=np.int64), "capacity": 128,
    }  # fmt: skip
    assert kernel.scan(**good)[0].tolist() == [100]  # 100 equal rows: all within slack of the 5th best
    for change, message in [
        ({"queries": np.ones((1, DIM))}, "queries"),
        ({"k": np.array([5], dtype=np.int32)}, "k"),
        ({"n": 99}, "do not hold"),
        ({"k": np.array([101])}, "at most n"),
        ({"allowed": [np.ones(100, dtype=np.uint8)]}, "bool"),
        ({"excluded_start": np.array([0, 1])}, "excluded_start"),
    ]:
        with pytest.raises(ValueError, match=message):
            kernel.scan(**{**good, **change})


def test_the_build_is_cached_by_content_and_reused(tmp_path: Path) -> None:
    first = scan_kernel.build(tmp_path)
    made = first.stat().st_mtime_ns
    assert scan_kernel.build(tmp_path) == first and first.stat().st_mtime_ns == made
    assert first.name.startswith("pruned_scan-") and [p.name for p in tmp_path.iterdir()] == [first.name]
    PrunedScanKernel(first)  # loads, and its symbol is there


def test_without_a_compiler_the_index_scans_with_numpy_and_answers_the_same(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rng = np.random.default_rng(9)
    vectors = _als_like(5000, rng)
    queries = _als_like(6, rng)
    index = ExactVectorIndex(coalesce=False)
    index.create_collection("items", DIM, "ip")
    index.upsert("items", [f"i{r}" for r in range(5000)], vectors, [{} for _ in range(5000)])
    with_kernel = index.query("items", queries, 10, exclude_ids={"i1", "i2"})

    monkeypatch.setattr(scan_kernel, "_COMPILERS", ("no-such-compiler",))
    monkeypatch.setattr(scan_kernel, "_kernel", None)
    monkeypatch.setattr(scan_kernel, "_failure", None)
    monkeypatch.setattr(scan_kernel, "default_cache_directory", lambda: tmp_path)  # nothing built there yet
    with caplog.at_level(logging.WARNING, logger="hybrec.vectors.scan_kernel"):
        assert scan_kernel.pruned_scan_kernel() is None
        assert scan_kernel.pruned_scan_kernel() is None  # decided once
    assert [r.getMessage() for r in caplog.records if "no C compiler" in r.getMessage()] != []
    assert len(caplog.records) == 1
    fresh = ExactVectorIndex(coalesce=False)  # a new snapshot: its layout is built in numpy's form
    fresh.create_collection("items", DIM, "ip")
    fresh.upsert("items", [f"i{r}" for r in range(5000)], vectors, [{} for _ in range(5000)])
    assert fresh.query("items", queries, 10, exclude_ids={"i1", "i2"}) == with_kernel
    layout = fresh._get("items").derived.layout(panels=False)
    assert layout.matrix_t is not None and layout.panels is None
