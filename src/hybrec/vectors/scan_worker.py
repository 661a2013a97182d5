"""The exact index's searches from an event loop: batched per turn of the loop, scanned by a compiled worker thread.

A coroutine's one-row query joins the loop's pending batch; the first one of a turn schedules the batch's start
(``call_soon``), so the batch holds every query the loop took during that turn. On the loop, the batch's deferred
exclusions are read (one call per reader, :func:`~hybrec.vectors.base.read_deferred`) and its queries planned; the
few-candidate queries of a selective filter are answered right there, the others go to the kernel's worker
(``hybrec_worker`` in ``csrc/pruned_scan.c``) as one job. The worker is a thread that entered the kernel once and
stays in C: it takes jobs from a queue, scans, and writes each job's end to the loop's eventfd, which the loop
watches (``add_reader``) to hand the results to the awaiting coroutines.

Why not a Python thread, as :class:`~hybrec.vectors.exact_batcher.Coalescer` runs it: a Python thread needs the GIL
to wake and again after each kernel call, and an event loop busy answering requests holds it until it has nothing
left to do. So the loop and the scan took turns rather than running together: with 16 requests in flight, every
one of them sat in the search thread's batch while the loop idled, then the loop answered them while the search
thread idled (``bench/reco_api.py``, 2-core EPYC: 40% of the CPU idle, 7,130 req/s). With this worker the scan runs
while the loop works: 8,310 req/s at 16 in flight and 10,030 at 64, against 7,130 and 8,490 (interleaved runs).

Jobs and their arrays are held in a module registry until the loop has seen them done, so no array the worker
writes into is freed under it, even when the loop or the index went away meanwhile; an eventfd is closed only with
no job of its own in flight. Linux only (``os.eventfd``), and only where the kernel built; elsewhere the coalescing
thread serves.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from hybrec.vectors.base import DeferredIds, read_deferred
from hybrec.vectors.exact_search import DeferredRequest, Plan, Request, Snapshot, error_bound, top_rows
from hybrec.vectors.filters import Filter
from hybrec.vectors.scan_kernel import KernelCall, PrunedScanKernel

logger = logging.getLogger(__name__)

Found = tuple[np.ndarray, np.ndarray]

_P, _I64 = ctypes.c_void_p, ctypes.c_int64


class _Job(ctypes.Structure):
    """``Job`` of ``csrc/pruned_scan.c``: hybrec_exact_search's arguments, the eventfd to write, status and flag."""

    _fields_ = [
        ("panels", _P), ("vectors", _P), ("dim", _I64), ("n", _I64), ("norms", _P), ("order", _P),
        ("position", _P), ("relative_error", ctypes.c_double), ("queries", _P), ("n_queries", _I64), ("k", _P),
        ("allowed", _P), ("excluded_start", _P), ("excluded_rows", _P), ("k_max", _I64), ("out_rows", _P),
        ("out_scores", _P), ("out_count", _P), ("out_read", _P), ("fd", _I64), ("status", ctypes.c_int32),
        ("done", ctypes.c_int32), ("written", ctypes.c_int32), ("next", _P),
    ]  # fmt: skip


@dataclass(eq=False)
class _Running:
    """A job in the worker's hands, with everything its addresses point into."""

    job: _Job
    call: KernelCall
    futures: list[asyncio.Future[Found]]
    batcher: LoopBatcher
    settled: bool = False  # its answers were handed to its futures


#: Jobs submitted and not yet seen written (the worker's last touch), by address: they keep their arrays, and their
#: batcher's eventfd, alive.
_RUNNING: dict[int, _Running] = {}
_worker_lock = threading.Lock()
#: How long releasing the eventfd of a loop that is closed waits for the worker to be through with its jobs; after
#: that the eventfd stays open (never closed under a write).
CLOSED_LOOP_WAIT_S = 1.0
_workers: set[tuple[int, int]] = set()  # (kernel id, process id) of each worker thread started


def available(kernel: PrunedScanKernel | None) -> bool:
    """Whether searches from an event loop can go to ``kernel``'s worker here (Linux's eventfd, the kernel built)."""
    return kernel is not None and hasattr(os, "eventfd")


def _start_worker(kernel: PrunedScanKernel) -> None:
    started = (id(kernel), os.getpid())  # a forked child has none of its parent's threads: it starts its own
    with _worker_lock:
        if started in _workers:
            return
        library = kernel.library
        library.hybrec_submit.argtypes = [_P]
        library.hybrec_submit.restype = None
        library.hybrec_worker.restype = None
        # A daemon thread inside one ctypes call (which released the GIL) for the life of the process.
        threading.Thread(target=library.hybrec_worker, name="exact-scan-worker", daemon=True).start()
        _workers.add(started)


@dataclass(eq=False)
class _Query:
    col: Snapshot
    query: np.ndarray
    k: int
    plan: Plan
    where: Filter | None
    exclude: DeferredIds | None
    future: asyncio.Future[Found]


@dataclass(eq=False)
class LoopBatcher:
    """The batches of one event loop's searches on one index (module docstring). Create it on its loop."""

    kernel: PrunedScanKernel
    loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.get_running_loop)
    pending: list[_Query] = field(default_factory=list)
    fd: int = -1
    closed: bool = False
    #: Batches sent to the worker and queries answered, so far (what the tests look at).
    jobs: int = 0
    queries: int = 0

    def __post_init__(self) -> None:
        _start_worker(self.kernel)
        self.fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self.loop.add_reader(self.fd, self._on_done)

    def submit(
        self, col: Snapshot, query: np.ndarray, k: int, plan: Plan, where: Filter | None, exclude: DeferredIds | None
    ) -> asyncio.Future[Found]:
        """Queue one query (``plan`` made without ``exclude``, which is read with the batch) for this turn's batch."""
        future: asyncio.Future[Found] = self.loop.create_future()
        if not self.pending:
            self.loop.call_soon(self._flush)
        self.pending.append(_Query(col, query, k, plan, where, exclude, future))
        return future

    def _flush(self) -> None:
        pending, self.pending = self.pending, []
        deferred = [(q, q.exclude) for q in pending if q.exclude is not None]
        read = read_deferred([exclude for _, exclude in deferred])
        exclusions = {id(q): ids for (q, _), ids in zip(deferred, read, strict=True)}
        scans: dict[int, tuple[Snapshot, list[Request], list[asyncio.Future[Found]]]] = {}
        for q in pending:
            try:
                request = Request(q.query, q.k, q.plan)
                if q.exclude is not None:
                    ids = exclusions[id(q)]
                    if isinstance(ids, BaseException):
                        raise ids
                    request = DeferredRequest(q.query, q.k, q.where, q.exclude).planned(q.col, ids)
                if request.k <= 0 or request.plan.candidates is not None:  # nothing to scan: answered here
                    _settle(q.future, top_rows(q.col, [request])[0])
                    continue
            except Exception as exc:  # this query's own failure (its read, its plan)
                _settle(q.future, exc)
                continue
            _, requests, futures = scans.setdefault(id(q.col), (q.col, [], []))
            requests.append(request)
            futures.append(q.future)
        for col, requests, futures in scans.values():
            try:
                self._send(col, requests, futures)
            except Exception as exc:
                for future in futures:
                    _settle(future, exc)
        if self.closed:
            self._release()

    def _send(self, col: Snapshot, requests: Sequence[Request], futures: list[asyncio.Future[Found]]) -> None:
        layout = col.derived.layout(for_kernel=True)
        if layout.kernel is None:  # values float16 cannot hold: this collection is scanned by numpy
            for future, found in zip(futures, top_rows(col, requests), strict=True):
                _settle(future, found)
            return
        call = self.kernel.prepare(
            layout.kernel,
            np.stack([r.query for r in requests]).astype(np.float32, copy=False),
            [r.k for r in requests],
            [None if r.plan.mask is None else r.plan.mask.allowed for r in requests],
            [r.plan.excluded for r in requests],
            error_bound(col.info.dim),
        )
        job = _Job(*call.arguments, self.fd, 0, 0, 0, None)
        address = ctypes.addressof(job)
        # Jobs whose loop went away before the worker's last touch were left here: forget those it is through with.
        for other, running in list(_RUNNING.items()):
            if running.job.written and (running.settled or running.batcher.loop.is_closed()):
                _RUNNING.pop(other, None)
        _RUNNING[address] = _Running(job, call, futures, self)
        self.jobs += 1
        self.queries += len(requests)
        self.kernel.library.hybrec_submit(address)

    def _on_done(self) -> None:
        try:
            os.eventfd_read(self.fd)
        except BlockingIOError:
            return
        for address, running in list(_RUNNING.items()):
            if running.batcher is not self:
                continue
            if not running.settled and running.job.done:
                running.settled = True
                self.answered(running)
            if running.settled and running.job.written:
                _RUNNING.pop(address, None)
        if self.closed:
            self._release()

    @staticmethod
    def answered(running: _Running) -> None:
        """Hand a finished job's answers to its futures."""
        if running.job.status != 0:
            error = MemoryError("the exact-search kernel ran out of memory")
            for future in running.futures:
                _settle(future, error)
            return
        for future, found in zip(running.futures, running.call.results(), strict=True):
            _settle(future, found)

    def close(self) -> None:
        """Stop watching the eventfd; it is closed once the worker is done writing to it for this batcher's jobs."""
        self.closed = True
        self._release()

    def _forget_written(self) -> None:
        for address, running in list(_RUNNING.items()):
            if running.batcher is self and running.settled and running.job.written:
                _RUNNING.pop(address, None)
        self._release()

    def _release(self) -> None:
        if self.fd < 0:
            return
        if self.loop.is_closed():  # nobody awaits its jobs' answers, and no wake-up will come: wait for the worker
            deadline = time.monotonic() + CLOSED_LOOP_WAIT_S  # a scan, then the store after its write: microseconds
            while True:
                for address, running in list(_RUNNING.items()):
                    if running.batcher is self and running.job.written:
                        _RUNNING.pop(address, None)
                if not any(r.batcher is self for r in _RUNNING.values()) or time.monotonic() > deadline:
                    break
                time.sleep(0.0005)
        mine = [r for r in _RUNNING.values() if r.batcher is self]
        if self.pending or mine:  # the worker may still write to it
            if mine and all(r.settled for r in mine) and not self.loop.is_closed():
                # Answered, their write just over: no wake-up will come for the flag that says so.
                self.loop.call_later(0.001, self._forget_written)
            return
        with contextlib.suppress(RuntimeError):  # the loop is closed: nothing watches it any more
            self.loop.remove_reader(self.fd)
        os.close(self.fd)
        self.fd = -1


def _settle(future: asyncio.Future[Found], outcome: Found | BaseException) -> None:
    if future.done():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)
