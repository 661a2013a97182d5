"""The exact index's search: batched answers equal unbatched ones, bit for bit; the pruned scan equals a full
ranking; and the coalescing worker's life.

The equality tests compare an index that coalesces concurrent one-row queries with one that computes every query on
its caller's thread, on the same data, for queries with filters (cached masks, the selective-filter path, an id
allow-list) and exclusions; and both with a brute-force ranking of every row by its float64 dot product. They run
with each of the two scans (``scan``): the compiled kernel and the numpy one.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from hybrec.vectors import exact_batcher, exact_search
from hybrec.vectors.base import DeferredIds, read_deferred, read_now
from hybrec.vectors.exact_batcher import Coalescer, CoalescerClosed
from hybrec.vectors.exact_index import ExactVectorIndex
from hybrec.vectors.exact_search import MaskCache, plan_query
from hybrec.vectors.filters import Filter
from hybrec.vectors.scan_kernel import pruned_scan_kernel

ROWS, DIM = 20_000, 32
CATEGORIES = ("books", "games", "music", "rare")


@pytest.fixture(params=["kernel", "numpy"])
def scan(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Which pruned scan the exact index runs: the compiled kernel (it must build here) or numpy's."""
    if request.param == "kernel":
        assert pruned_scan_kernel() is not None, "the pruned-scan kernel did not build (is a C compiler installed?)"
    monkeypatch.setattr(exact_search, "use_kernel", request.param == "kernel")
    return str(request.param)


@pytest.fixture
def numpy_scan(monkeypatch: pytest.MonkeyPatch) -> None:
    """The numpy scan, whose matrix products the row-counting tests count."""
    monkeypatch.setattr(exact_search, "use_kernel", False)


def _fill(index: ExactVectorIndex) -> np.ndarray:
    rng = np.random.default_rng(7)
    vectors = rng.standard_normal((ROWS, DIM)).astype(np.float32)
    vectors[100:110] = vectors[99]  # exact score ties across rows
    metas = [
        {
            "category": "rare" if k % 97 == 0 else CATEGORIES[k % 3],
            "brand": f"Brand {k % 13}",
            "price": float(k % 250),
            "avg_rating": float(k % 50) / 10,
        }
        for k in range(ROWS)
    ]
    index.create_collection("items", DIM, "ip")
    index.upsert("items", [f"i{k}" for k in range(ROWS)], vectors, metas)
    return vectors


QUERIES: list[tuple[int, Filter | None, frozenset[str] | None]] = [
    (10, None, None),
    (5, None, frozenset({"i1", "i2", "i99", "i100", "unknown"})),
    (20, Filter(category="games"), frozenset({"i4", "i5"})),
    (7, Filter(min_price=10, max_price=40.5, brand="brand 3"), None),
    (3, Filter(category="rare"), frozenset({"i0"})),  # selective: scores only the matching rows
    (12, Filter(min_rating=4.2), frozenset({f"i{k}" for k in range(0, 400, 3)})),
    (4, Filter(ids=[f"i{k}" for k in range(50, 5000, 7)], category="books"), frozenset({"i56"})),
    (30, Filter(category="no such category"), None),
]


def _ask(index: ExactVectorIndex, vectors: np.ndarray, job: int) -> list[tuple[str, float, dict]]:
    n, where, exclude = QUERIES[job % len(QUERIES)]
    hits = index.query("items", vectors[job % 500] * (1 + job % 3), n, where=where, exclude_ids=exclude)[0]
    return [(h.id, h.score, h.metadata) for h in hits]


def test_concurrent_batched_queries_return_exactly_the_unbatched_answers(scan: str) -> None:
    batched, direct = ExactVectorIndex(), ExactVectorIndex(coalesce=False)
    vectors = _fill(batched)
    _fill(direct)
    jobs = range(400)
    expected = [_ask(direct, vectors, job) for job in jobs]
    with ThreadPoolExecutor(16) as pool:
        got = list(pool.map(lambda job: _ask(batched, vectors, job), jobs))
    assert got == expected
    assert [len(hits) for hits in expected[: len(QUERIES)]] == [10, 5, 20, 7, 3, 12, 4, 0]
    coalescer = batched._coalescer  # the full scans went through it; selective filters ran on their threads
    assert coalescer is not None and 0 < coalescer.requests < len(jobs)
    batched.close()
    assert not coalescer.running


def test_queries_awaited_on_an_event_loop_are_batched_and_equal_the_unbatched_answers(scan: str) -> None:
    # The API's embedded path: one event loop awaits every request's search at once, so they join batches.
    batched, direct = ExactVectorIndex(), ExactVectorIndex(coalesce=False)
    vectors = _fill(batched)
    _fill(direct)
    jobs = range(200)

    async def ask(job: int) -> list[tuple[str, float, dict]]:
        n, where, exclude = QUERIES[job % len(QUERIES)]
        query = vectors[job % 500] * (1 + job % 3)
        hits = (await batched.query_async("items", query, n, where=where, exclude_ids=exclude))[0]
        return [(h.id, h.score, h.metadata) for h in hits]

    async def ask_all() -> list[list[tuple[str, float, dict]]]:
        return list(await asyncio.gather(*(ask(job) for job in jobs)))

    assert asyncio.run(ask_all()) == [_ask(direct, vectors, job) for job in jobs]
    batches, requests = _batching(batched)
    assert 0 < batches < requests  # several requests per batch
    batched.close()


def _batching(index: ExactVectorIndex) -> tuple[int, int]:
    """The batches an event loop's searches ran in, and the requests they held: the scan worker's with the compiled
    kernel (hybrec.vectors.scan_worker), the coalescing thread's with the numpy scan."""
    if exact_search.use_kernel:
        batchers = list(index._loop_batchers.values())
        return sum(b.jobs for b in batchers), sum(b.queries for b in batchers)
    coalescer = index._coalescer
    assert coalescer is not None
    return coalescer.batches, coalescer.requests


class SeenReader:
    """A :class:`DeferredIds` reader standing in for the store: each key's ids from a table, and a record of which
    thread read which keys."""

    def __init__(self, table: dict[str, frozenset[str] | None], fail: Exception | None = None) -> None:
        self.table = table
        self.fail = fail
        self.calls: list[tuple[str, list[str]]] = []

    def __call__(self, keys: Sequence[str]) -> list[frozenset[str]]:
        self.calls.append((threading.current_thread().name, list(keys)))
        if self.fail is not None:
            raise self.fail
        return [self.table[key] or frozenset() for key in keys]


def test_deferred_exclusions_are_read_a_batch_at_a_time(scan: str) -> None:
    # The embedded server's seen items: read once per batch (on the search thread with the numpy scan, on the loop
    # before the batch goes to the kernel's worker), and the answers are those of the same exclusions given as sets.
    batched, direct = ExactVectorIndex(), ExactVectorIndex(coalesce=False)
    vectors = _fill(batched)
    _fill(direct)
    reader = SeenReader({f"user{job}": QUERIES[job % len(QUERIES)][2] for job in range(200)})

    async def ask(job: int) -> list[tuple[str, float, dict]]:
        n, where, _ = QUERIES[job % len(QUERIES)]
        query = vectors[job % 500] * (1 + job % 3)
        hits = (await batched.query_async("items", query, n, where, DeferredIds(f"user{job}", reader)))[0]
        return [(h.id, h.score, h.metadata) for h in hits]

    async def ask_all() -> list[list[tuple[str, float, dict]]]:
        return list(await asyncio.gather(*(ask(job) for job in range(200))))

    assert asyncio.run(ask_all()) == [_ask(direct, vectors, job) for job in range(200)]
    assert sum(len(keys) for _, keys in reader.calls) == 200 - 200 // len(QUERIES)  # no read where no row matches
    if scan == "kernel":  # all on the loop: one read per batch, and one per selective query (answered on the loop)
        batches, requests = _batching(batched)
        assert {thread for thread, _ in reader.calls} == {threading.current_thread().name}
        assert 0 < batches < requests and len(reader.calls) < 200 - 200 // len(QUERIES)
        batched.close()
        return
    coalescer = batched._coalescer
    assert coalescer is not None
    on_thread = [keys for thread, keys in reader.calls if thread.startswith("exact-index")]
    on_loop = [keys for thread, keys in reader.calls if not thread.startswith("exact-index")]
    assert sum(map(len, on_thread)) == coalescer.requests  # every coalesced query's ids were read by its batch
    assert len(on_thread) <= coalescer.batches < coalescer.requests  # at most one read per batch
    # The selective filters' queries are computed on the caller's thread, which reads their ids itself.
    assert on_loop and all(len(keys) == 1 for keys in on_loop)
    batched.close()


def test_a_failed_deferred_read_fails_only_the_searches_that_needed_it() -> None:
    index = ExactVectorIndex()
    vectors = _fill(index)
    good = SeenReader({"u": frozenset({"i1"})})
    bad = SeenReader({}, fail=ConnectionError("the store is down"))

    async def ask_all() -> list[object]:
        asks = [
            index.query_async("items", vectors[k], 5, exclude_ids=DeferredIds("u", good if k % 2 else bad))
            for k in range(40)
        ]
        return list(await asyncio.gather(*asks, return_exceptions=True))

    results = asyncio.run(ask_all())
    assert all(isinstance(r, ConnectionError) for r in results[0::2])
    assert all(isinstance(r, list) and len(r[0]) == 5 for r in results[1::2])
    # A query computed on the caller's thread raises the reader's error there.
    with pytest.raises(ConnectionError, match="down"):
        index.query("items", vectors[0], 5, where=Filter(category="rare"), exclude_ids=DeferredIds("u", bad))
    index.close()


def test_read_deferred_calls_each_reader_once_in_order_of_the_keys() -> None:
    first, second = SeenReader({"a": frozenset({"x"}), "b": None}), SeenReader({"c": frozenset({"y"})})
    broken = SeenReader({}, fail=KeyError("gone"))
    asked = [DeferredIds("a", first), DeferredIds("c", second), DeferredIds("z", broken), DeferredIds("b", first)]
    got = read_deferred(asked)
    assert got[:2] == [frozenset({"x"}), frozenset({"y"})] and got[3] == frozenset()
    assert isinstance(got[2], KeyError)
    assert [keys for _, keys in first.calls] == [["a", "b"]] and len(second.calls) == len(broken.calls) == 1
    assert (
        read_now(DeferredIds("c", second)) == frozenset({"y"}) and read_now({"q"}) == {"q"} and read_now(None) is None
    )


def test_a_multi_row_query_equals_its_rows_asked_one_by_one(scan: str) -> None:
    index = ExactVectorIndex()
    vectors = _fill(index)
    where, exclude = Filter(category="games", max_price=200), frozenset({"i3", "i30"})
    together = index.query("items", vectors[:9], 8, where=where, exclude_ids=exclude)
    assert together == [index.query("items", v, 8, where=where, exclude_ids=exclude)[0] for v in vectors[:9]]
    index.close()


def _brute_force(
    index: ExactVectorIndex, query: np.ndarray, n: int, where: Filter | None, exclude: frozenset[str] | None
) -> list[tuple[str, float]]:
    """Every allowed row ranked by its float64 dot product rounded to float32, ties by row: the reference answer."""
    col = index._get("items")
    plan = plan_query(col, where, exclude)
    allowed = np.ones(len(col.ids), dtype=bool) if plan.mask is None else plan.mask.allowed.copy()
    allowed[plan.excluded] = False
    rows = np.flatnonzero(allowed)
    scores = (col.vectors[rows].astype(np.float64) @ query.astype(np.float64)).astype(np.float32)
    best = np.lexsort((rows, -scores))[:n]
    return [(col.ids[r], float(s)) for r, s in zip(rows[best], scores[best], strict=True)]


def _als_like(rows: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    """ALS-shaped factors: a few directions dominate and norms vary widely (what lets the scan stop early)."""
    mix = rng.standard_normal((rows, dim // 4)) @ rng.standard_normal((dim // 4, dim))
    scale = rng.lognormal(0.0, 0.5, size=(rows, 1))
    return ((mix + 0.5 * rng.standard_normal((rows, dim))) * scale / np.sqrt(dim)).astype(np.float32)


@pytest.mark.parametrize("shape", ["als", "ties"])
def test_the_pruned_scan_returns_exactly_the_full_ranking(
    shape: str, scan: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(11)
    index = ExactVectorIndex(coalesce=False)
    if shape == "als":
        vectors = _als_like(ROWS, DIM, rng)
        queries = vectors[rng.choice(ROWS, 40)] * 1.5  # item-like queries: long, aligned with the dominant directions
    else:
        vectors = rng.integers(-2, 3, (ROWS, DIM)).astype(np.float32)  # many equal scores and equal norms
        queries = rng.integers(-2, 3, (40, DIM)).astype(np.float32)
    index.create_collection("items", DIM, "ip")
    metas = [{"category": CATEGORIES[k % 3], "price": float(k % 250)} for k in range(ROWS)]
    index.upsert("items", [f"i{k}" for k in range(ROWS)], vectors, metas)
    scanned: list[int] = []
    score_rows = exact_search.score_rows
    monkeypatch.setattr(
        exact_search, "score_rows", lambda q, m: scanned.append(q.shape[0] * m.shape[1]) or score_rows(q, m)
    )
    cases = [
        (10, None, None),
        (25, Filter(category="games"), frozenset({"i7", "i8"})),
        (3, Filter(max_price=180), None),
    ]
    for j, query in enumerate(queries):
        n, where, exclude = cases[j % len(cases)]
        got = [(h.id, h.score) for h in index.query("items", query, n, where=where, exclude_ids=exclude)[0]]
        assert got == _brute_force(index, query, n, where, exclude)
    together = index.query("items", queries, 10)  # one multi-row scan, each row leaving it on its own
    assert [[(h.id, h.score) for h in hits] for hits in together] == [
        _brute_force(index, q, 10, None, None) for q in queries
    ]
    if shape == "als" and scan == "numpy":  # the norm bound stops the scan well before the end of the matrix
        assert sum(scanned) < 0.5 * ROWS * 2 * len(queries)


def test_masks_are_cached_per_filter_value_within_a_bound() -> None:
    cache = MaskCache(size=2)
    built: list[str] = []

    def build(name: str) -> np.ndarray:
        built.append(name)
        return np.array([True, False, name == "b"])

    first = cache.get("a", lambda: build("a"))
    assert cache.get("a", lambda: build("a")) is first and first.count == 1
    assert first.penalty.tolist() == [0.0, -np.inf, -np.inf]
    cache.get("b", lambda: build("b"))
    cache.get("c", lambda: build("c"))  # evicts "a", the least recently used
    cache.get("a", lambda: build("a"))
    assert built == ["a", "b", "c", "a"] and len(cache) == 2


def _gated(calls: list[list[int]], gate: threading.Event) -> Callable[[Sequence[int]], list[int | BaseException]]:
    """A batch function that records each batch and holds it until ``gate`` opens."""

    def run_batch(requests: Sequence[int]) -> list[int | BaseException]:
        calls.append(list(requests))
        gate.wait()
        return [ValueError(f"bad {r}") if r < 0 else r * 10 for r in requests]

    return run_batch


def test_requests_arriving_during_a_batch_run_together_as_the_next_one() -> None:
    calls: list[list[int]] = []
    gate = threading.Event()
    coalescer = Coalescer(_gated(calls, gate), name="test-coalescer", max_batch=4)
    with ThreadPoolExecutor(7) as pool:
        first = pool.submit(coalescer.run, 0)
        while not calls:  # the worker holds request 0 until the gate opens
            threading.Event().wait(0.001)
        rest = [pool.submit(coalescer.run, r) for r in (1, 2, -3, 4, 5, 6)]
        while len(coalescer._pending) < 6:
            threading.Event().wait(0.001)
        gate.set()
        assert first.result() == 0
        with pytest.raises(ValueError, match="bad -3"):
            rest[2].result()
        assert [f.result() for i, f in enumerate(rest) if i != 2] == [10, 20, 40, 50, 60]
    assert calls[0] == [0] and sorted(calls[1]) == [-3, 1, 2, 4] and sorted(calls[2]) == [5, 6]
    assert (coalescer.batches, coalescer.requests) == (3, 7)
    coalescer.close()
    assert not coalescer.running


def _wait_for(condition: Callable[[], bool]) -> None:
    while not condition():
        threading.Event().wait(0.001)


def _loaded(linger_s: float, linger_batch: int) -> tuple[Coalescer[int, int], list[list[int]], ThreadPoolExecutor]:
    """A coalescer whose first batch, ``[0]``, ended while request 1 waited: the state of a worker under load.

    Request 1's future is the pool's first.
    """
    calls: list[list[int]] = []
    gate = threading.Event()
    coalescer = Coalescer(
        _gated(calls, gate), name="test-linger", max_batch=16, linger_s=linger_s, linger_batch=linger_batch
    )
    pool = ThreadPoolExecutor(8)
    pool.submit(coalescer.run, 0)
    _wait_for(lambda: bool(calls))
    pool.submit(coalescer.run, 1)
    _wait_for(lambda: len(coalescer._pending) == 1)
    gate.set()
    return coalescer, calls, pool


def test_under_load_the_worker_lingers_until_the_batch_fills() -> None:
    coalescer, calls, pool = _loaded(linger_s=600.0, linger_batch=4)
    with pool:
        _wait_for(lambda: coalescer.lingered == 1)
        waiting = [pool.submit(coalescer.run, r) for r in (2, 3)]
        _wait_for(lambda: len(coalescer._pending) == 3)
        assert calls == [[0]]  # three of four: still lingering
        waiting.append(pool.submit(coalescer.run, 4))
        assert [f.result() for f in waiting] == [20, 30, 40]
    assert calls[0] == [0] and sorted(calls[1]) == [1, 2, 3, 4]
    assert (coalescer.batches, coalescer.lingered) == (2, 1)
    coalescer.close()


def test_a_linger_ends_at_its_deadline_with_what_arrived() -> None:
    coalescer, calls, pool = _loaded(linger_s=0.05, linger_batch=8)
    with pool:
        later = pool.submit(coalescer.run, 2)
        assert later.result() == 20
    assert calls[0] == [0] and sorted(calls[1]) in ([1, 2], [1])
    assert coalescer.lingered >= 1
    coalescer.close()


def test_close_ends_a_linger_and_answers_the_waiting_requests() -> None:
    coalescer, calls, pool = _loaded(linger_s=600.0, linger_batch=8)
    with pool:
        _wait_for(lambda: coalescer.lingered == 1)
        coalescer.close()
        assert calls == [[0], [1]]
    assert not coalescer.running


def test_the_load_is_remembered_for_a_moment_after_a_quiet_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(exact_batcher, "LOAD_MEMORY_S", 600.0)
    coalescer, calls, pool = _loaded(linger_s=0.01, linger_batch=2)
    with pool:
        assert pool.submit(coalescer.run, 2).result() == 20  # with request 1, or just after it
        _wait_for(lambda: coalescer.batches == len(calls) and not coalescer._pending)  # quiet now
        before = coalescer.lingered
        assert coalescer.run(3) == 30  # alone, but within the memory of the load: it lingered, then ran
    assert calls[-1] == [3] and coalescer.lingered == before + 1
    coalescer.close()


def test_a_lone_caller_never_waits_for_a_batch_to_fill() -> None:
    coalescer: Coalescer[int, int] = Coalescer(lambda batch: [r * 10 for r in batch], linger_s=600.0)
    assert [coalescer.run(r) for r in range(20)] == [r * 10 for r in range(20)]
    assert (coalescer.batches, coalescer.lingered) == (20, 0)
    coalescer.close()


def test_coroutines_get_their_results_on_their_loop_one_callback_per_batch() -> None:
    calls: list[list[int]] = []
    gate = threading.Event()
    coalescer = Coalescer(_gated(calls, gate), name="test-coalescer")
    handed: list[int] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        call_soon_threadsafe = loop.call_soon_threadsafe
        loop.call_soon_threadsafe = lambda *a: handed.append(1) or call_soon_threadsafe(*a)  # type: ignore[method-assign]
        blocker = coalescer.submit(0)  # a thread's request: the worker holds it until the gate opens
        while not calls:
            await asyncio.sleep(0.001)
        futures = [coalescer.submit_async(r) for r in (1, -2, 3, 4)]
        futures[3].cancel()  # its caller stopped waiting (a client hung up): the others are still answered
        gate.set()
        assert await futures[0] == 10 and await futures[2] == 30
        with pytest.raises(ValueError, match="bad -2"):
            await futures[1]
        assert futures[3].cancelled() and blocker.result() == 0

    asyncio.run(main())
    assert calls == [[0], [1, -2, 3, 4]] and handed == [1]  # one hand-over to the loop for the batch
    coalescer.close()


def test_a_request_whose_loop_closed_is_dropped_and_the_worker_goes_on() -> None:
    calls: list[list[int]] = []
    gate = threading.Event()
    coalescer = Coalescer(_gated(calls, gate), name="test-coalescer")

    async def leave() -> None:
        coalescer.submit_async(5)  # never awaited: asyncio.run closes the loop before the batch is done

    asyncio.run(leave())
    gate.set()
    assert coalescer.run(3) == 30
    coalescer.close()


def test_a_failing_batch_fails_each_of_its_requests_and_the_worker_goes_on() -> None:
    def run_batch(requests: Sequence[int]) -> list[int]:
        if 13 in requests:
            raise RuntimeError("unlucky batch")
        return list(requests)

    coalescer = Coalescer(run_batch)
    with pytest.raises(RuntimeError, match="unlucky batch"):
        coalescer.run(13)
    assert coalescer.run(14) == 14
    coalescer.close()


def test_close_answers_what_is_queued_then_refuses_new_requests() -> None:
    calls: list[list[int]] = []
    gate = threading.Event()
    coalescer = Coalescer(_gated(calls, gate))
    with ThreadPoolExecutor(3) as pool:
        queued = [pool.submit(coalescer.run, r) for r in (1, 2, 3)]
        while sum(len(c) for c in calls) + len(coalescer._pending) < 3:
            threading.Event().wait(0.001)
        closing = threading.Thread(target=coalescer.close)
        closing.start()
        gate.set()
        closing.join()
        assert sorted(f.result() for f in queued) == [10, 20, 30]
    assert not coalescer.running
    with pytest.raises(CoalescerClosed):
        coalescer.run(4)


def test_an_idle_worker_ends_and_a_new_request_starts_another() -> None:
    coalescer: Coalescer[int, int] = Coalescer(lambda requests: list(requests), idle_s=0.01)
    assert coalescer.run(1) == 1
    for _ in range(2000):  # the worker ends after 10 ms without requests
        if not coalescer.running:
            break
        threading.Event().wait(0.005)
    assert not coalescer.running
    assert coalescer.run(2) == 2 and coalescer.batches == 2
    coalescer.close()


def test_an_index_answers_after_close_and_its_worker_thread_is_gone() -> None:
    index = ExactVectorIndex()
    vectors = _fill(index)
    before = index.query("items", vectors[1], 5)
    names = {t.name for t in threading.enumerate()}
    assert any(name.startswith("exact-index-") for name in names)
    index.close()
    assert not any(t.name.startswith(f"exact-index-{id(index):x}") for t in threading.enumerate())
    assert index.query("items", vectors[1], 5) == before  # a later query starts a new worker
    index.close()


def _als_index(rows: int, seed: int, queries: int) -> tuple[ExactVectorIndex, np.ndarray, np.ndarray]:
    """An index computing on its caller's thread over ``rows`` ALS-shaped vectors, and ``queries`` ALS-shaped
    queries."""
    vectors = _als_like(rows, DIM, np.random.default_rng(seed))
    index = ExactVectorIndex(coalesce=False)
    index.create_collection("items", DIM, "ip")
    index.upsert("items", [f"i{k}" for k in range(rows)], vectors, [{} for _ in range(rows)])
    return index, vectors, _als_like(queries, DIM, np.random.default_rng(seed + 1))


def test_the_scan_reads_hardly_more_rows_than_the_norm_bound_needs(
    numpy_scan: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A query reads its first chunk, then up to where its k-th best score so far lets it stop: about the rows
    Cauchy-Schwarz cannot rule out for its exact k-th best score (doubling chunks read up to twice that: 46% of 100k
    rows for 32% needed)."""
    rows, n = 20_000, 10
    index, vectors, queries = _als_index(rows, 5, 24)
    scanned: list[int] = []
    score_rows = exact_search.score_rows
    monkeypatch.setattr(exact_search, "score_rows", lambda q, m: scanned.append(m.shape[1]) or score_rows(q, m))
    norms = np.linalg.norm(vectors.astype(np.float64), axis=1)
    for query in queries:
        scanned.clear()
        index.query("items", query, n)
        kth = np.sort(vectors.astype(np.float64) @ query)[-n]
        needed = int((np.linalg.norm(query) * norms >= kth).sum())  # rows no norm bound can skip
        assert needed <= sum(scanned) <= max(needed, exact_search.FIRST_CHUNK) * 1.1 + exact_search.MIN_CHUNK


def test_in_a_batch_each_query_reads_about_its_own_rows_not_the_farthest_querys(
    numpy_scan: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch cuts the rows into a few segments at its queries' stops: the rows read per query stay near what each
    needs (a batch read up to its farthest query's stop before: 59% of 100k rows per query for 42% needed)."""
    rows, n = 20_000, 10
    index, vectors, queries = _als_index(rows, 8, 16)
    read: list[int] = []
    products: list[int] = []
    score_rows = exact_search.score_rows

    def counted(q: np.ndarray, m: np.ndarray) -> np.ndarray:
        read.append(q.shape[0] * m.shape[1])
        products.append(1)
        return score_rows(q, m)

    monkeypatch.setattr(exact_search, "score_rows", counted)
    together = index.query("items", queries, n)  # one batch of 16 rows
    assert [[(h.id, h.score) for h in hits] for hits in together] == [
        _brute_force(index, q, n, None, None) for q in queries
    ]
    norms = np.linalg.norm(vectors.astype(np.float64), axis=1)
    scores = queries.astype(np.float64) @ vectors.astype(np.float64).T
    kth = np.sort(scores, axis=1)[:, -n]
    needed = [
        max(int((np.linalg.norm(q) * norms >= t).sum()), exact_search.FIRST_CHUNK)
        for q, t in zip(queries, kth, strict=True)
    ]
    farthest = max(needed) * len(queries)
    # Here: 1.43 times the rows needed, 0.60 of the farthest-stop cost (reading up to it: 2.15 and 0.89).
    assert sum(needed) <= sum(read) <= 1.6 * sum(needed)
    assert sum(read) < 0.75 * farthest
    assert len(products) <= 1 + int(np.log2(rows)) + 2  # a few products, not one per query
