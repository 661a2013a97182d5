"""The compiled exact-search kernel: its answers, its stops, ties, its inputs, its build cache, and life without it.

The exact index's answers with the kernel are checked against the numpy scan and a brute-force ranking in
``test_exact_batching.py`` (its ``scan`` fixture); these tests look at the kernel's own contract.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from hybrec.vectors import scan_kernel
from hybrec.vectors.exact_index import ExactVectorIndex
from hybrec.vectors.exact_search import NormLayout, error_bound, exact_scores
from hybrec.vectors.scan_kernel import (
    PANEL,
    KernelMatrix,
    PrunedScanKernel,
    half_relative_error,
    panels_of,
    pruned_scan_kernel,
)

DIM = 32
BLOCK = 256  # positions between two stop checks (the C source's BLOCK)
_NO_ROWS = np.empty(0, dtype=np.int64)


@pytest.fixture(scope="module")
def kernel() -> PrunedScanKernel:
    loaded = pruned_scan_kernel()
    assert loaded is not None, "the pruned-scan kernel did not build (is a C compiler installed?)"
    return loaded


#: The source picks its vector width and query group for the machine it is built on (AVX-512: 16 and 4, AVX: 8 and
#: 2, else 4 and 1), and float16 panels where the CPU converts them (F16C); each is built here too, as generic
#: vectors for this machine, with a group that leaves queries over (3, 3 of them for 12 queries), and with float32
#: panels, so every machine's code gives the same answers on any machine.
OTHER_MACHINES = (("WIDTH=16", "GROUP=4"), ("WIDTH=8", "GROUP=3"), ("WIDTH=4", "GROUP=1"), ("FLOAT_PANELS",))


@pytest.fixture(scope="module", params=[(), *OTHER_MACHINES], ids=lambda d: "native" if not d else ",".join(d))
def any_kernel(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> PrunedScanKernel:
    if not request.param:
        return request.getfixturevalue("kernel")  # type: ignore[no-any-return]
    return PrunedScanKernel(scan_kernel.build(tmp_path_factory.mktemp("kernels"), defines=request.param))


def _als_like(rows: int, rng: np.random.Generator) -> np.ndarray:
    mix = rng.standard_normal((rows, DIM // 4)) @ rng.standard_normal((DIM // 4, DIM))
    scale = rng.lognormal(0.0, 0.5, size=(rows, 1))
    return ((mix + 0.5 * rng.standard_normal((rows, DIM))) * scale / np.sqrt(DIM)).astype(np.float32)


def _matrix(vectors: np.ndarray, kernel: PrunedScanKernel | None = None) -> KernelMatrix:
    panels = None if kernel is None else kernel.panel_dtype
    layout = NormLayout.of(vectors, for_kernel=True, panel_dtype=panels)
    assert layout.kernel is not None and layout.matrix_t is None
    return layout.kernel


def _reference(
    vectors: np.ndarray, query: np.ndarray, k: int, allowed: np.ndarray | None, excluded: list[int]
) -> tuple[list[int], list[float]]:
    """Every allowed row scored by :func:`exact_scores`, ranked by score, ties by lower row."""
    ok = np.ones(len(vectors), dtype=bool) if allowed is None else allowed.copy()
    ok[excluded] = False
    rows = np.flatnonzero(ok)
    scores = exact_scores(query, vectors[rows])
    best = np.lexsort((rows, -scores))[:k]
    return rows[best].tolist(), scores[best].tolist()


def test_each_query_gets_its_allowed_top_k_exactly_and_stops_by_the_norm_bound(any_kernel: PrunedScanKernel) -> None:
    rng = np.random.default_rng(3)
    rows = 40 * PANEL * 4 + 37  # a partial last panel and block
    vectors = _als_like(rows, rng)
    queries = _als_like(12, rng) * 2
    k = [1, 5, 10, 10, 25, 3, 10, 10, 7, 10, 40, 0]
    allowed: list[np.ndarray | None] = [None] * len(queries)
    allowed[2] = np.arange(rows) % 3 == 0
    allowed[6] = np.arange(rows) % 50 == 0  # narrow: 52 rows pass
    exact = queries.astype(np.float64) @ vectors.astype(np.float64).T
    excluded: list[list[int]] = [[] for _ in queries]
    excluded[3] = np.argsort(-exact[3])[:15].tolist()  # the 15 best rows of query 3, in no order
    excluded[6] = [100, 0, 50]
    excluded_rows = [np.asarray(e, dtype=np.int64) for e in excluded]
    found, read = any_kernel.search(_matrix(vectors, any_kernel), queries, k, allowed, excluded_rows, error_bound(DIM))
    norms = np.linalg.norm(vectors.astype(np.float64), axis=1)
    for j, query in enumerate(queries):
        best_rows, best_scores = found[j]
        assert (best_rows.tolist(), best_scores.tolist()) == _reference(vectors, query, k[j], allowed[j], excluded[j])
        if k[j] == 0:
            assert read[j] == 0
            continue
        kth = exact[j, best_rows[-1]]
        needed = int((np.linalg.norm(query) * norms >= kth).sum())  # rows the norm bound cannot rule out
        assert read[j] >= needed - 1  # never stopped before a row that could still rank
        if allowed[j] is None and j != 3:  # the running k-th best stops it soon after the final one would
            assert read[j] <= needed + 2 * BLOCK < rows


def test_many_rows_tied_near_the_kth_best_are_all_kept_and_ranked_by_row(kernel: PrunedScanKernel) -> None:
    rng = np.random.default_rng(5)
    vectors = rng.integers(-1, 2, (3000, DIM)).astype(np.float32)  # hundreds of rows tie on each score
    queries = np.stack([np.ones(DIM), rng.standard_normal(DIM)]).astype(np.float32)
    found, read = kernel.search(_matrix(vectors), queries, [3, 50], [None, None], [_NO_ROWS, _NO_ROWS], 1e-4)
    for j, query in enumerate(queries):
        assert (found[j][0].tolist(), found[j][1].tolist()) == _reference(vectors, query, [3, 50][j], None, [])
    assert read[0] == 3000  # equal norms: nothing can be ruled out


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_panels_are_cache_line_aligned_columns_of_the_rows_padded_with_zeros(dtype: type) -> None:
    vectors = np.arange(130 * 3, dtype=np.float32).reshape(130, 3)
    panels = panels_of(vectors, dtype)
    assert panels.dtype == dtype and panels.shape == (3, 3, PANEL) and panels.ctypes.data % 64 == 0
    assert np.array_equal(panels[1, :, 5], vectors[PANEL + 5])
    assert not panels[2, :, 2:].any()
    unpacked = panels.transpose(0, 2, 1).reshape(-1, 3)[:130]
    assert np.array_equal(unpacked, vectors)  # small integers: exact in float16 too


def test_float16_panels_widen_the_error_bound_and_refuse_values_beyond_their_range() -> None:
    bound = error_bound(DIM)
    assert half_relative_error(bound, DIM, 1.0) > bound + scan_kernel.HALF_ROUNDING
    assert half_relative_error(bound, DIM, 1e-6) > 100 * half_relative_error(bound, DIM, 1.0)  # subnormal rounding
    rng = np.random.default_rng(4)
    vectors = _als_like(500, rng)
    for row in range(0, 500, 7):  # each value rounded to float16 is within the bound of the exact score
        query = _als_like(1, rng)[0]
        exact = float(query.astype(np.float64) @ vectors[row].astype(np.float64))
        rounded = float(query.astype(np.float64) @ vectors[row].astype(np.float16).astype(np.float64))
        norms = float(np.linalg.norm(query.astype(np.float64)) * np.linalg.norm(vectors[row].astype(np.float64)))
        assert abs(exact - rounded) <= scan_kernel.HALF_ROUNDING * norms
    huge = vectors.copy()
    huge[3, 1] = 70_000.0
    with pytest.raises(ValueError, match="float16"):
        panels_of(huge, np.float16)
    layout = NormLayout.of(huge, for_kernel=True, panel_dtype=np.dtype(np.float16))
    assert layout.kernel is None and layout.matrix_t is not None  # numpy scans it instead


def test_inputs_of_the_wrong_kind_are_refused_before_the_call(kernel: PrunedScanKernel) -> None:
    vectors = np.ones((100, DIM), dtype=np.float32)
    matrix = _matrix(vectors)
    with pytest.raises(ValueError, match="vectors"):
        KernelMatrix(matrix.panels, vectors.astype(np.float64), matrix.norms, matrix.order, matrix.position)
    with pytest.raises(ValueError, match="panels"):
        KernelMatrix(matrix.panels[:1], vectors, matrix.norms, matrix.order, matrix.position)
    with pytest.raises(ValueError, match="panels"):
        KernelMatrix(matrix.panels.astype(np.float64), vectors, matrix.norms, matrix.order, matrix.position)
    other = np.float32 if kernel.panel_dtype == np.float16 else np.float16
    other_panels = KernelMatrix(panels_of(vectors, other), vectors, matrix.norms, matrix.order, matrix.position)
    good = {
        "matrix": matrix, "queries": np.ones((1, DIM), dtype=np.float32), "k": [5], "allowed": [None],
        "excluded": [_NO_ROWS], "relative_error": 1e-4,
    }  # fmt: skip
    assert kernel.search(**good)[0][0][0].tolist() == [0, 1, 2, 3, 4]  # 100 equal rows: ties by row
    for change, message in [
        ({"queries": np.ones((1, DIM))}, "queries"),
        ({"queries": np.ones((2, DIM), dtype=np.float32)}, "queries"),
        ({"k": [101]}, "k must be"),
        ({"allowed": [np.ones(100, dtype=np.uint8)]}, "bool"),
        ({"allowed": [None, None]}, "one entry per query"),
        ({"excluded": [np.array([100])]}, "rows of the matrix"),
        ({"matrix": other_panels}, "this kernel reads"),
    ]:
        with pytest.raises(ValueError, match=message):
            kernel.search(**{**good, **change})


def test_the_build_is_cached_by_content_and_reused(tmp_path: Path) -> None:
    first = scan_kernel.build(tmp_path)
    made = first.stat().st_mtime_ns
    assert scan_kernel.build(tmp_path) == first and first.stat().st_mtime_ns == made
    assert first.name.startswith("pruned_scan-") and [p.name for p in tmp_path.iterdir()] == [first.name]
    PrunedScanKernel(first)  # loads, and its symbol is there
    other = scan_kernel.build(tmp_path, defines=OTHER_MACHINES[-1])
    assert other != first and sorted(p.name for p in tmp_path.iterdir()) == sorted([first.name, other.name])


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
    layout = fresh._get("items").derived.layout(for_kernel=False)
    assert layout.matrix_t is not None and layout.kernel is None
