"""The scan worker: an event loop's searches batched per turn and scanned by the kernel's C thread.

Its answers are the direct scan's (the equality tests of test_exact_batching run through it with the kernel); these
tests cover its life: eventfds, loops that end, cancelled waiters, several loops at once, collections the kernel
cannot hold.
"""

from __future__ import annotations

import asyncio
import os
import threading

import numpy as np
import pytest

from hybrec.vectors import scan_worker
from hybrec.vectors.exact_index import ExactVectorIndex
from hybrec.vectors.scan_kernel import pruned_scan_kernel

pytestmark = pytest.mark.skipif(
    not scan_worker.available(pruned_scan_kernel()), reason="the scan worker needs the kernel and Linux's eventfd"
)

ROWS, DIM = 5_000, 16


def _index(scale: float = 1.0) -> tuple[ExactVectorIndex, ExactVectorIndex, np.ndarray]:
    rng = np.random.default_rng(3)
    vectors = (rng.standard_normal((ROWS, DIM)) * scale).astype(np.float32)
    ids = [f"i{k}" for k in range(ROWS)]
    indexes = ExactVectorIndex(), ExactVectorIndex(coalesce=False)
    for index in indexes:
        index.create_collection("items", DIM, "ip")
        index.upsert("items", ids, vectors, [{} for _ in ids])
    return indexes[0], indexes[1], vectors


def _ids(hits: list) -> list[tuple[str, float]]:
    return [(h.id, h.score) for h in hits]


async def _ask_all(index: ExactVectorIndex, vectors: np.ndarray, jobs: range) -> list[list[tuple[str, float]]]:
    found = await asyncio.gather(*(index.query_async("items", vectors[j], 7, exclude_ids={"i1"}) for j in jobs))
    return [_ids(f[0]) for f in found]


def test_a_loop_that_ended_gives_its_eventfd_back_and_the_next_loop_gets_a_batcher() -> None:
    index, direct, vectors = _index()
    expected = [_ids(direct.query("items", vectors[j], 7, exclude_ids={"i1"})[0]) for j in range(40)]
    assert asyncio.run(_ask_all(index, vectors, range(40))) == expected
    (first,) = index._loop_batchers.values()
    assert first.jobs >= 1 and first.queries == 40 and first.fd >= 0
    assert asyncio.run(_ask_all(index, vectors, range(40))) == expected  # a new loop: a new batcher
    (second,) = index._loop_batchers.values()
    assert second is not first and first.fd == -1  # the ended loop's eventfd is closed
    fd = second.fd
    index.close()
    assert second.fd == -1 and not index._loop_batchers
    with pytest.raises(OSError):
        os.fstat(fd)
    assert not [r for r in scan_worker._RUNNING.values() if r.batcher in (first, second)]


def test_a_waiter_that_gave_up_is_skipped_and_the_others_get_their_answers() -> None:
    index, direct, vectors = _index()

    async def run() -> list[object]:
        tasks = [asyncio.create_task(index.query_async("items", vectors[j], 5)) for j in range(12)]
        await asyncio.sleep(0)  # each task queued its query
        tasks[3].cancel()
        return list(await asyncio.gather(*tasks, return_exceptions=True))

    results = asyncio.run(run())
    assert isinstance(results[3], asyncio.CancelledError)
    for j, result in enumerate(results):
        if j != 3:
            assert isinstance(result, list) and _ids(result[0]) == _ids(direct.query("items", vectors[j], 5)[0])
    index.close()


def test_loops_on_two_threads_each_get_their_own_batcher_and_answers() -> None:
    index, direct, vectors = _index()
    expected = [_ids(direct.query("items", vectors[j], 7, exclude_ids={"i1"})[0]) for j in range(60)]
    got: dict[int, list[list[tuple[str, float]]]] = {}

    def serve(part: int) -> None:
        got[part] = asyncio.run(_ask_all(index, vectors, range(part * 30, part * 30 + 30)))

    threads = [threading.Thread(target=serve, args=(part,)) for part in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert got[0] + got[1] == expected
    assert len(index._loop_batchers) == 2
    index.close()


def test_a_collection_float16_cannot_hold_is_scanned_by_numpy_with_the_same_answers() -> None:
    kernel = pruned_scan_kernel()
    if kernel is None or kernel.panel_dtype != np.float16:
        pytest.skip("this machine's kernel reads float32 panels, which hold these values")
    index, direct, vectors = _index(scale=1e5)  # beyond float16's 65504: no half-precision panels
    expected = [_ids(direct.query("items", vectors[j], 7, exclude_ids={"i1"})[0]) for j in range(20)]
    assert asyncio.run(_ask_all(index, vectors, range(20))) == expected
    (batcher,) = index._loop_batchers.values()
    assert batcher.jobs == 0  # nothing went to the kernel's worker
    index.close()


def test_closing_the_index_with_a_turn_of_queries_pending_still_answers_them() -> None:
    index, direct, vectors = _index()

    async def run() -> list[list[tuple[str, float]]]:
        asks = [asyncio.ensure_future(index.query_async("items", vectors[j], 5)) for j in range(10)]
        await asyncio.sleep(0)  # the queries are in this turn's batch, not sent yet
        (batcher,) = index._loop_batchers.values()
        index.close()
        found = [_ids(f[0]) for f in await asyncio.gather(*asks)]
        for _ in range(100):  # the worker's last touch (after its eventfd write) may come a moment after the answers
            if batcher.fd == -1:
                break
            await asyncio.sleep(0.01)
        assert batcher.fd == -1 and batcher.jobs == 1
        return found

    assert asyncio.run(run()) == [_ids(direct.query("items", vectors[j], 5)[0]) for j in range(10)]
