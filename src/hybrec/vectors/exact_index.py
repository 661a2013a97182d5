"""Exact in-process vector index: the embedded default for item vectors and product texts.

Each collection is a float32 matrix plus metadata columns as numpy arrays (category and normalised brand as integer
codes, price and rating as float64 with NaN for "missing"). A query turns its :class:`Filter` into a boolean mask
(cached per filter value, :class:`~hybrec.vectors.exact_search.MaskCache`) and selects the top ``n`` allowed rows
exactly by a pruned scan of the matrix sorted by row norm (:func:`~hybrec.vectors.exact_search.top_rows`: it stops
once no unread row can reach the top ``n``, and ranks the survivors by scores computed in float64). Because filtering
happens before selection, a query returns ``n`` hits whenever ``n`` items match — unlike post-filtering an
approximate index.

One-row queries (the serving path: one user per request) from concurrent callers are coalesced into one scan per
batch, so the matrix chunks are read once per batch rather than once per request; a query's answer is the same, bit
for bit, whether it ran alone or in a batch. From threads, the batches run on a coalescing thread
(:mod:`~hybrec.vectors.exact_batcher`); from an event loop, with the compiled kernel, a batch is what the loop took in
one turn and runs on the kernel's own worker thread (:mod:`~hybrec.vectors.scan_worker`), which needs no GIL. The
scan reads a norm-sorted, transposed copy of the matrix, built on first use: it doubles the memory of a collection
queried that way (25.6 MB more for 100k x 64).

Collections live in memory as immutable snapshots replaced on every write (copy-on-write), so queries never lock.
With a ``root`` directory, each collection is also one ``<root>/<name>.npz`` file (vectors, ids and metadata as
JSON), written to a temporary file and renamed into place, and reloaded whenever the file changes on disk (another
process, e.g. the trainer, published a new version).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import tempfile
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from hybrec.vectors import exact_search, scan_worker
from hybrec.vectors.base import (
    CollectionInfo,
    CollectionNotFound,
    DeferredIds,
    Exclusion,
    Hit,
    IdSet,
    Metadata,
    Metric,
    UnknownIds,
    VectorIndex,
    check_existing_collection,
    prepare_queries,
    prepare_upsert,
    public_metadata,
    read_now,
    validate_collection_name,
    validate_dim,
    validate_ids,
    validate_metric,
    validate_n,
)
from hybrec.vectors.exact_batcher import Coalescer, CoalescerClosed
from hybrec.vectors.exact_search import (
    DeferredRequest,
    Plan,
    Request,
    Snapshot,
    hits,
    plan_query,
    search,
    search_batch,
)
from hybrec.vectors.filters import Filter
from hybrec.vectors.scan_kernel import pruned_scan_kernel
from hybrec.vectors.scan_worker import LoopBatcher

#: One query's answer from the search thread: its rows and their scores, best first.
Found = tuple[np.ndarray, np.ndarray]

logger = logging.getLogger(__name__)

_FORMAT_VERSION = 1


class ExactVectorIndex(VectorIndex):
    """Exact top-n search over in-memory matrices, optionally persisted under ``root``.

    Parameters
    ----------
    root : path, optional
        Directory holding one ``<name>.npz`` per collection; ``None`` keeps everything in memory only.
    coalesce : bool
        Coalesce concurrent one-row queries into batches on a worker thread (see the module docstring); off, every
        query is computed on its caller's thread. Answers are the same either way.
    linger_s : float
        Under concurrent load, how long the worker thread may wait for more queries to join a batch
        (:class:`~hybrec.vectors.exact_batcher.Coalescer`); 0 never waits. Servers take it from
        ``HYBREC_EXACT_BATCH_LINGER_MS``.
    """

    in_process = True

    def __init__(self, root: str | Path | None = None, *, coalesce: bool = True, linger_s: float = 0.0) -> None:
        self.root = Path(root) if root is not None else None
        if self.root is not None:
            self.root.mkdir(parents=True, exist_ok=True)
        self._collections: dict[str, Snapshot] = {}
        self._paths: dict[str, str] = {}  # collection name -> its file, for the per-query change check
        self._lock = threading.RLock()
        self.coalesce = coalesce
        self.linger_s = linger_s
        self._coalescer: Coalescer[tuple[Snapshot, Request | DeferredRequest], Found] | None = None
        self._loop_batchers: dict[asyncio.AbstractEventLoop, LoopBatcher] = {}

    def __repr__(self) -> str:
        return f"ExactVectorIndex(root={str(self.root) if self.root else None!r})"

    # --- persistence ------------------------------------------------------------------------------------------------

    def _path(self, name: str) -> Path:
        assert self.root is not None
        return self.root / f"{name}.npz"

    def _save(self, col: Snapshot) -> Snapshot:
        if self.root is None:
            return col
        meta = {
            "format": _FORMAT_VERSION,
            "name": col.info.name,
            "dim": col.info.dim,
            "metric": col.info.metric,
            "ids": list(col.ids),
            "metadatas": list(col.metadatas),
        }
        header = np.frombuffer(json.dumps(meta, separators=(",", ":")).encode(), dtype=np.uint8)
        path = self._path(col.info.name)
        fd, tmp = tempfile.mkstemp(prefix=f".{col.info.name}.", suffix=".tmp", dir=self.root)
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, vectors=col.vectors, header=header)
            os.replace(tmp, path)  # atomic: readers see the old file or the new one
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return replace(col, mtime_ns=path.stat().st_mtime_ns)

    def _load(self, path: Path, mtime_ns: int) -> Snapshot:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(data["header"].tobytes())
            vectors = np.ascontiguousarray(data["vectors"], dtype=np.float32)
        if meta.get("format") != _FORMAT_VERSION:
            raise ValueError(f"{path}: unsupported index format {meta.get('format')!r}")
        info = CollectionInfo(meta["name"], int(meta["dim"]), validate_metric(meta["metric"]))
        if vectors.shape != (len(meta["ids"]), info.dim):
            raise ValueError(f"{path}: vectors of shape {vectors.shape} do not match {len(meta['ids'])} ids")
        logger.debug("loaded collection %s (%d vectors) from %s", info.name, len(meta["ids"]), path)
        return replace(Snapshot.build(info, vectors, meta["ids"], meta["metadatas"]), mtime_ns=mtime_ns)

    def _get(self, name: str) -> Snapshot:
        """The current snapshot of ``name``, reloaded if its file changed on disk."""
        col = self._collections.get(name)
        if self.root is None:
            if col is None:
                raise CollectionNotFound(f"vector collection {name!r} does not exist")
            return col
        path = self._paths.get(name)
        if path is None:  # validated and built once per name: this runs on every query
            path = self._paths[name] = os.fspath(self._path(validate_collection_name(name)))
        try:
            mtime = os.stat(path).st_mtime_ns
        except FileNotFoundError:
            with self._lock:
                self._collections.pop(name, None)
            raise CollectionNotFound(f"vector collection {name!r} does not exist") from None
        if col is not None and col.mtime_ns == mtime:
            return col
        with self._lock:
            col = self._collections.get(name)
            if col is None or col.mtime_ns != mtime:
                col = self._load(self._path(name), mtime)
                self._collections[name] = col
            return col

    def _put(self, col: Snapshot) -> None:
        self._collections[col.info.name] = self._save(col)

    # --- collections ------------------------------------------------------------------------------------------------

    def create_collection(self, name: str, dim: int, metric: Metric = "ip", *, exist_ok: bool = True) -> None:
        info = CollectionInfo(validate_collection_name(name), validate_dim(dim), validate_metric(metric))
        with self._lock:
            try:
                existing = self._get(name).info
            except CollectionNotFound:
                self._put(Snapshot.empty(info))
                logger.info("created exact collection %s (dim %d, %s)", name, info.dim, info.metric)
                return
            check_existing_collection(existing, info, exist_ok)

    def collection_info(self, name: str) -> CollectionInfo:
        return self._get(name).info

    def delete_collection(self, name: str) -> None:
        with self._lock:
            self._get(name)
            self._collections.pop(name, None)
            if self.root is not None:
                self._path(name).unlink(missing_ok=True)

    def list_collections(self) -> list[str]:
        if self.root is None:
            return sorted(self._collections)
        return sorted(p.stem for p in self.root.glob("*.npz") if not p.name.startswith("."))

    # --- items ------------------------------------------------------------------------------------------------------

    def upsert(
        self,
        name: str,
        ids: Sequence[str],
        vectors: np.ndarray,
        metadatas: Sequence[Mapping[str, Any] | None] | None = None,
    ) -> None:
        ids = validate_ids(ids)
        with self._lock:
            col = self._get(name)
            batch, metas = prepare_upsert(col.info, ids, vectors, metadatas)
            all_ids = list(col.ids)
            all_metas = list(col.metadatas)
            rows = np.empty(len(ids), dtype=np.int64)
            for j, item_id in enumerate(ids):
                row = col.row_of.get(item_id)
                if row is None:
                    row = len(all_ids)
                    all_ids.append(item_id)
                    all_metas.append(metas[j])
                else:
                    all_metas[row] = metas[j]
                rows[j] = row
            matrix = np.empty((len(all_ids), col.info.dim), dtype=np.float32)
            matrix[: len(col.ids)] = col.vectors
            matrix[rows] = batch
            self._put(Snapshot.build(col.info, matrix, all_ids, all_metas))

    def delete(self, name: str, ids: Sequence[str]) -> None:
        with self._lock:
            col = self._get(name)
            rows = [col.row_of[i] for i in set(ids) if i in col.row_of]
            if not rows:
                return
            keep = np.ones(len(col.ids), dtype=bool)
            keep[rows] = False
            kept = np.flatnonzero(keep)
            self._put(
                Snapshot.build(
                    col.info,
                    np.ascontiguousarray(col.vectors[kept]),
                    [col.ids[r] for r in kept],
                    [col.metadatas[r] for r in kept],
                )
            )

    def count(self, name: str) -> int:
        return len(self._get(name).ids)

    def ids(self, name: str) -> list[str]:
        return list(self._get(name).ids)

    def get_vectors(self, name: str, ids: Sequence[str]) -> np.ndarray:
        col = self._get(name)
        missing = [i for i in ids if i not in col.row_of]
        if missing:
            raise UnknownIds(name, missing)
        return col.vectors[[col.row_of[i] for i in ids]].copy()

    def get_metadata(self, name: str, ids: Sequence[str]) -> dict[str, Metadata]:
        col = self._get(name)
        return {i: public_metadata(col.metadatas[col.row_of[i]]) for i in ids if i in col.row_of}

    # --- search -----------------------------------------------------------------------------------------------------

    def query(
        self,
        name: str,
        vectors: np.ndarray,
        n: int,
        where: Filter | None = None,
        exclude_ids: set[str] | frozenset[str] | None = None,
        *,
        with_metadata: bool = True,
    ) -> list[list[Hit]]:
        started = self._start(name, vectors, n, where, exclude_ids, with_metadata, on_loop=False)
        if isinstance(started, list):
            return started
        col, future = started
        assert isinstance(future, Future)
        return [hits(col, future.result(), with_metadata)]

    async def query_async(
        self,
        name: str,
        vectors: np.ndarray,
        n: int,
        where: Filter | None = None,
        exclude_ids: Exclusion = None,
        *,
        with_metadata: bool = True,
    ) -> list[list[Hit]]:
        """:meth:`query` from an event loop: a one-row query joins this turn's batch of the scan worker (or, without
        the compiled kernel, the coalescing thread's next batch) and is awaited, so the loop takes more requests
        while the matrix is read; the few-candidate queries of a selective filter, and multi-row ones, are computed
        on the loop. :class:`DeferredIds` are read for the whole batch at once (on the loop for the scan worker, on
        the coalescing thread for its batches, and on the loop where the query is computed there)."""
        started = self._start(name, vectors, n, where, exclude_ids, with_metadata, on_loop=True)
        if isinstance(started, list):
            return started
        col, future = started
        assert isinstance(future, asyncio.Future)
        return [hits(col, await future, with_metadata)]

    def _start(
        self,
        name: str,
        vectors: np.ndarray,
        n: int,
        where: Filter | None,
        exclude_ids: Exclusion,
        with_metadata: bool,
        *,
        on_loop: bool,
    ) -> list[list[Hit]] | tuple[Snapshot, Future[Found] | asyncio.Future[Found]]:
        """The answer computed on this thread, or, for a one-row scan, its snapshot and the future of its rows and
        scores from the coalescing thread's next batch (a future of the running loop when ``on_loop``)."""
        deferred = exclude_ids if isinstance(exclude_ids, DeferredIds) else None
        col, queries, k, plan = self._plan(
            name, vectors, n, where, None if deferred is not None else read_now(exclude_ids)
        )
        if k == 0:
            return [[] for _ in range(queries.shape[0])]
        if queries.shape[0] == 1 and plan.candidates is None and self.coalesce:
            # With deferred exclusions, the plan is made on the search thread once they are read; leaving rows out
            # of a scan's plan leaves it a scan (top_rows ranks a plan that came down to a few candidates too).
            request = (
                col,
                Request(queries[0], k, plan) if deferred is None else DeferredRequest(queries[0], k, where, deferred),
            )
            if on_loop and (loop_batcher := self._loop_batcher()) is not None:
                return col, loop_batcher.submit(col, queries[0], k, plan, where, deferred)
            try:
                batcher = self._batcher()
                return col, batcher.submit_async(request) if on_loop else batcher.submit(request)
            except CoalescerClosed:  # closed while this query came in: answer it here
                pass
        if deferred is not None:  # computed here: its ids are read here
            plan = plan_query(col, where, deferred.read())
            k = min(k, plan.allowed)
        return search(col, queries, k, plan, with_metadata)

    def _plan(
        self,
        name: str,
        vectors: np.ndarray,
        n: int,
        where: Filter | None,
        exclude_ids: IdSet | None,
    ) -> tuple[Snapshot, np.ndarray, int, Plan]:
        """The snapshot, the query rows, how many hits each gets, and which rows they may be."""
        n = validate_n(n)
        col = self._get(name)
        queries = prepare_queries(col.info, vectors)
        plan = plan_query(col, where, exclude_ids)
        return col, queries, min(n, plan.allowed), plan

    def _loop_batcher(self) -> LoopBatcher | None:
        """The running loop's batcher of searches for the kernel's worker (:mod:`hybrec.vectors.scan_worker`), or
        None where that worker cannot serve (no kernel, the numpy scan chosen, no eventfd)."""
        kernel = pruned_scan_kernel() if exact_search.use_kernel else None
        if kernel is None or not scan_worker.available(kernel):
            return None
        loop = asyncio.get_running_loop()
        batcher = self._loop_batchers.get(loop)
        if batcher is None:
            with self._lock:
                for old in [b for b in self._loop_batchers.values() if b.loop.is_closed()]:
                    old.close()  # a finished loop's (asyncio.run in tests, a restarted server)
                    del self._loop_batchers[old.loop]
                batcher = self._loop_batchers[loop] = LoopBatcher(kernel)
        return batcher

    def _batcher(self) -> Coalescer[tuple[Snapshot, Request | DeferredRequest], Found]:
        coalescer = self._coalescer
        if coalescer is None:
            with self._lock:
                if self._coalescer is None:
                    self._coalescer = Coalescer(search_batch, name=f"exact-index-{id(self):x}", linger_s=self.linger_s)
                coalescer = self._coalescer
        return coalescer

    def close(self) -> None:
        """Stop the coalescing worker (after it answers what it holds); a later query starts a new one."""
        with self._lock:
            coalescer, self._coalescer = self._coalescer, None
            batchers, self._loop_batchers = list(self._loop_batchers.values()), {}
        if coalescer is not None:
            coalescer.close()
        for batcher in batchers:
            batcher.close()
