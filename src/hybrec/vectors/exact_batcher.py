"""Request coalescing: run the queries that arrive while one batch is computing as the next batch, on one thread.

Scoring one query against 100k x 64 item factors reads 25.6 MB for 12.8 MFLOP: memory-bound. Scoring 16 queries in
one matrix product reads the factors once, several times cheaper per query. A :class:`Coalescer` gathers them: a
request that finds the worker idle starts at once (no added latency when alone); requests that arrive while a batch
runs wait for it to finish and then run together (group commit). Under load, batches grow to the number of requests
in flight, up to ``max_batch``; and when requests kept arriving during the last batch, the worker may linger a moment
(``linger_s``) for the next batch to fill, since a search thread as fast as the code that feeds it would otherwise
run one query at a time.

The worker is one thread started on the first request and ended after ``idle_s`` without one (or by :meth:`close`),
so an index that is not queried holds no thread.

Requests come from threads (:meth:`Coalescer.submit`, a :class:`concurrent.futures.Future` each) or from coroutines
(:meth:`Coalescer.submit_async`, an :class:`asyncio.Future` of the caller's loop). A batch's loop futures are
resolved by one callback per loop: chaining a thread future to the loop per request
(:func:`asyncio.wrap_future`) cost each request a lock, a condition and a wake-up of the loop of its own.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any, Generic, TypeAlias, TypeVar

logger = logging.getLogger(__name__)

Request = TypeVar("Request")
Result = TypeVar("Result")

#: Most requests computed in one batch (the score matrix of a batch holds ``max_batch x items`` float32).
MAX_BATCH = 32
#: Seconds without a request after which the worker thread ends (a later request starts a new one).
IDLE_S = 10.0
#: Seconds a worker counts as under load after a batch during which requests arrived. Remembered, not judged batch
#: by batch: a short batch during which nothing happened to arrive would otherwise end the lingering, and batches of
#: one query are short enough that this kept the benchmark's server in batches of one in some runs.
LOAD_MEMORY_S = 0.1
#: Requests a lingering worker waits for (see :class:`Coalescer`'s ``linger_s``): a batch of 8 queries costs the exact
#: index's compiled search 0.10 ms per query against 0.28 ms for one query alone; larger batches gain nothing more.
LINGER_BATCH = 8


class CoalescerClosed(RuntimeError):
    """A request was submitted to a coalescer after :meth:`Coalescer.close`."""


#: Where a request's result goes: a thread's future, or a loop's future (set on that loop).
Waiter: TypeAlias = Future[Any] | tuple[asyncio.AbstractEventLoop, asyncio.Future[Any]]


def _resolve(outcomes: list[tuple[asyncio.Future[Any], object]]) -> None:
    """On the loop: hand each awaiting coroutine its result (or exception), unless it stopped waiting."""
    for future, outcome in outcomes:
        if future.cancelled():
            continue
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)


class Coalescer(Generic[Request, Result]):
    """Run ``run_batch`` on lists of requests submitted concurrently from many threads.

    Parameters
    ----------
    run_batch : callable
        Computes a list of requests; returns one result (or the exception to raise for that request) per request,
        in order. If it raises, every request of the batch gets that exception.
    name : str
        The worker thread's name (shows in thread dumps and profilers).
    max_batch : int
        Most requests per call of ``run_batch``.
    idle_s : float
        The worker thread ends after this many seconds without a request.
    linger_s : float
        Under load, how long the worker may wait for a batch to grow to ``linger_batch`` requests before running it
        (Kafka's ``linger.ms``, TF Serving's batch timeout). It waits only within ``LOAD_MEMORY_S`` of a batch during
        which requests arrived, so a lone caller, or a quiet service, never waits. Without it, a search thread that
        computes a query about as fast as the event loop prepares the next one settles into batches of one: the
        benchmark's server ran 1.3 queries per batch, and 5.5-6.3 with 1 ms. Servers wait 2 ms by default
        (``HYBREC_EXACT_BATCH_LINGER_MS``): on a 2-core Zen 3 the benchmark answered 1,480-1,550 req/s with 1 ms and
        1,545-1,862 with 2, at no higher latency, since fewer, larger batches read the matrix fewer times.
    linger_batch : int
        The batch size that ends a linger early.
    """

    def __init__(
        self,
        run_batch: Callable[[Sequence[Request]], Sequence[Result | BaseException]],
        *,
        name: str = "coalescer",
        max_batch: int = MAX_BATCH,
        idle_s: float = IDLE_S,
        linger_s: float = 0.0,
        linger_batch: int = LINGER_BATCH,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        if linger_s < 0:
            raise ValueError(f"linger_s must not be negative, got {linger_s}")
        self._run_batch = run_batch
        self._name = name
        self._max_batch = max_batch
        self._idle_s = idle_s
        self._pending: list[tuple[Request, Waiter]] = []
        self._cond = threading.Condition()
        self._worker: threading.Thread | None = None
        self._closed = False
        self._linger_s = linger_s
        self._linger_batch = min(linger_batch, max_batch)
        self._loaded_until = 0.0  # monotonic time until which the worker counts as under load
        self._lingering = False
        #: Batches run, requests answered, and batches that waited for more requests, so far (what the tests and a
        #: curious operator look at).
        self.batches = 0
        self.requests = 0
        self.lingered = 0

    # --- submitting ---------------------------------------------------------------------------------------------
    def run(self, request: Request) -> Result:
        """Queue ``request`` and wait for its result (the calling thread blocks, releasing the GIL).

        Raises :class:`CoalescerClosed` after :meth:`close`, and whatever the batch raised for this request.
        """
        return self.submit(request).result()

    def submit(self, request: Request) -> Future[Result]:
        """Queue ``request`` and return the future of its result, without waiting. Raises :class:`CoalescerClosed`
        after :meth:`close`."""
        future: Future[Result] = Future()
        self._enqueue(request, future)
        return future

    def submit_async(self, request: Request) -> asyncio.Future[Result]:
        """Queue ``request`` from a coroutine and return a future of the running loop, set on that loop when the
        batch is done. Raises :class:`CoalescerClosed` after :meth:`close`."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Result] = loop.create_future()
        self._enqueue(request, (loop, future))
        return future

    def _enqueue(self, request: Request, waiter: Waiter) -> None:
        with self._cond:
            if self._closed:
                raise CoalescerClosed(f"{self._name} is closed")
            self._pending.append((request, waiter))
            if self._worker is None:
                self._worker = threading.Thread(target=self._work, name=self._name, daemon=True)
                self._worker.start()
            elif len(self._pending) == 1 or (self._lingering and len(self._pending) == self._linger_batch):
                self._cond.notify()  # the worker may be waiting for a first request, or for a full batch

    # --- the worker ---------------------------------------------------------------------------------------------
    def _next_batch(self) -> list[tuple[Request, Waiter]] | None:
        """The next requests to run, or None when the worker should end (idle, or closed with nothing left)."""
        with self._cond:
            while not self._pending:
                if self._closed or (not self._cond.wait(self._idle_s) and not self._pending):
                    # Cleared under the lock, so a concurrent submit sees no worker and starts a new one.
                    self._worker = None
                    self._cond.notify_all()
                    return None
            if self._linger_s > 0 and len(self._pending) < self._linger_batch and time.monotonic() < self._loaded_until:
                self._linger()
            batch = self._pending[: self._max_batch]
            del self._pending[: self._max_batch]
            return batch

    def _linger(self) -> None:
        """Wait (holding nothing: the condition releases its lock) until ``linger_batch`` requests are pending, the
        linger time is up, or the coalescer closes."""
        self.lingered += 1
        deadline = time.monotonic() + self._linger_s
        self._lingering = True
        try:
            while len(self._pending) < self._linger_batch and not self._closed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
        finally:
            self._lingering = False

    def _work(self) -> None:
        while (batch := self._next_batch()) is not None:
            try:
                results = self._run_batch([request for request, _ in batch])
                if len(results) != len(batch):
                    raise RuntimeError(f"{self._name}: {len(results)} results for {len(batch)} requests")
            except BaseException as exc:  # every waiter must wake up, whatever went wrong
                logger.exception("%s: a batch of %d requests failed", self._name, len(batch))
                results = [exc] * len(batch)
            with self._cond:
                if self._pending:  # requests arrived while this batch ran: under load for a while
                    self._loaded_until = time.monotonic() + LOAD_MEMORY_S
            self.batches += 1
            self.requests += len(batch)
            on_loops: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], object]]] = {}
            for (_, waiter), result in zip(batch, results, strict=True):
                if isinstance(waiter, tuple):
                    on_loops.setdefault(waiter[0], []).append((waiter[1], result))
                elif isinstance(result, BaseException):
                    waiter.set_exception(result)
                else:
                    waiter.set_result(result)
            for loop, outcomes in on_loops.items():
                try:
                    loop.call_soon_threadsafe(_resolve, outcomes)
                except RuntimeError:  # the loop closed meanwhile: nobody awaits these any more
                    logger.debug("%s: %d results for a closed event loop dropped", self._name, len(outcomes))

    # --- lifecycle ----------------------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        """Whether a worker thread is alive now."""
        with self._cond:
            return self._worker is not None

    def close(self, timeout: float | None = 10.0) -> None:
        """Refuse new requests, let the worker finish the queued ones, and wait for it to end."""
        with self._cond:
            self._closed = True
            worker = self._worker
            self._cond.notify_all()
        if worker is not None and worker is not threading.current_thread():
            worker.join(timeout)
