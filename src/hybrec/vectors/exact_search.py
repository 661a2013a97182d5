"""Search over one immutable collection snapshot of the exact index: plans, masks, pruned scoring, exact top-k.

A query's answer is its ``k`` best allowed rows by dot product, ties by lower row, exactly as a full scan would rank
them, and it does not depend on which other queries it was computed with (which lets
:mod:`hybrec.vectors.exact_batcher` coalesce concurrent requests into one matrix product). Two steps get there:

1. **Pruned scan.** The matrix is kept sorted by row norm, largest first (:class:`NormLayout`). Queries are scored in
   chunks by a float32 matrix product, each chunk reaching the position where the farthest query can stop; after each
   chunk a query stops once its ``k``-th best score beats what any row not scanned yet could reach: by
   Cauchy-Schwarz, ``q . v <= |q| |v|``, and the sorted norms say how large ``|v|`` still is. On ALS factors, whose
   norms vary widely (popular items have long vectors), a top-10 query can stop after 30-45% of the rows (measured on
   ALS factors of ml-latest-small and Amazon Industrial, and on the benchmark's 100k synthetic ones); with equal norms
   (a cosine collection) it reads all of them. The scan keeps every row whose float32 score is within twice the
   product's error bound (:func:`error_bound`) of the ``k``-th best, so no row that could be in the exact top ``k``
   is dropped.
2. **Exact ranking.** Those few candidates are scored again in float64 (every product of two float32 values is exact
   there; the sum over the vector has a fixed order) and rounded to float32, then ranked by score, ties by row.

The float32 product only decides what to keep, with margins wide enough for any BLAS kernel, and the reported scores
come from step 2; so an answer is the same, bit for bit, whatever batch, chunk boundary or matrix-product kernel
(which differs between CPUs, and with the number of query rows) computed it.

Both steps run in one compiled call where the machine has a C compiler (:mod:`hybrec.vectors.scan_kernel`: it stops
each query by its running ``k``-th best, and ranks with the same float64 arithmetic), and as numpy calls
(:class:`_BatchScan`) where it has none. The answers are the same.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from threadpoolctl import threadpool_limits

from hybrec.vectors.base import CollectionInfo, DeferredIds, Hit, IdSet, Metadata, public_metadata, read_deferred
from hybrec.vectors.filters import BRAND_NORM_KEY, CATEGORY_KEY, PRICE_KEY, RATING_KEY, Filter
from hybrec.vectors.scan_kernel import KernelMatrix, fits_half, panels_of, pruned_scan_kernel

logger = logging.getLogger(__name__)

#: Rows (by decreasing norm) every query of a pruned scan scores first, to learn where it can stop; each later
#: segment (:meth:`_BatchScan._segments`) is at least ``MIN_CHUNK`` rows long.
FIRST_CHUNK = 2048
MIN_CHUNK = 1024
#: Filter masks kept per collection (each costs 5 bytes per row: a float32 penalty and a bool).
MASK_CACHE_SIZE = 32
#: Whether batches scan with the compiled kernel where it builds (:mod:`hybrec.vectors.scan_kernel`); off, or where it
#: does not build, with numpy. Answers are the same either way (the tests run both).
use_kernel = True
#: Lowest finite float32: a candidate threshold below every real score and above a masked row's ``-inf``.
_LOWEST = float(np.finfo(np.float32).min)


def error_bound(dim: int) -> float:
    """A bound, relative to ``|q| |v|``, on how far a float32 dot product of ``dim`` terms is from the exact one.

    Accumulating ``dim`` products in float32 errs by at most about ``dim * 2**-24 * sum |q_j v_j|``, and
    ``sum |q_j v_j| <= |q| |v|``; blocked BLAS kernels do better. Eight times that (and never under 1e-4) leaves room
    for any kernel's order of operations and for the norms' own rounding.
    """
    return max(1e-4, 8.0 * dim * 2.0**-24)


def score_rows(queries: np.ndarray, matrix_t: np.ndarray) -> np.ndarray:
    """``queries @ matrix_t`` as a float32 ``[q, n]`` array (``matrix_t``: ``[dim, n]``, possibly a column slice).

    numpy's product (OpenBLAS in numpy's wheels) releases the GIL and runs on one thread (:func:`single_threaded_blas`).
    It is not torch's: torch's
    CPU wheels multiply through MKL, which on AMD processors takes a generic code path; one query against 32k x 64
    sorted rows took 270 us there against 110 us in OpenBLAS, on one thread of an AMD EPYC (and a batch of 16,
    1.24 ms against 0.85 ms). The scores only steer the pruned scan: the reported ones come from
    :func:`exact_scores`, so the kernel's rounding never shows in an answer.
    """
    return np.ascontiguousarray(queries, dtype=np.float32) @ matrix_t


_blas_limited = False


def single_threaded_blas() -> None:
    """Run numpy's BLAS (OpenBLAS, or MKL in some builds) on one thread in this process, once.

    Requests, not one product's inner parallelism, keep a serving machine's cores busy: BLAS threads woken per product
    spin on cores that the event loop and other requests need (two OpenBLAS threads doubled the CPU time of a query
    for a quarter off its wall time), and products started from several request threads at once, each fanning out to
    every core, ran 40x slower than on one thread each. OpenBLAS keeps one thread count per process, so this applies
    to every numpy product of a process that searches an exact index (the first scan layout sets it); torch's kernels,
    an in-process trainer's, keep their own threads.
    """
    global _blas_limited
    if _blas_limited:
        return
    _blas_limited = True
    try:
        threadpool_limits(limits=1, user_api="blas")
    except Exception:  # an unknown BLAS build: products keep its default threads, answers are the same
        logger.debug("could not limit numpy's BLAS threads", exc_info=True)


def exact_scores(query: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """``vectors @ query`` accumulated in float64 in a fixed order, rounded to float32: the same bits every time.

    ``query`` is one ``[dim]`` vector, or one ``[n, dim]`` row per row of ``vectors`` (a batch's candidates, each
    scored with its own query): each row's sum is the same either way.

    Each product of two float32 values is exact in float64, and each row's products are added in order of the
    dimensions (a cumulative sum is sequential, where ``sum`` adds pairwise in an order of numpy's choosing), so the
    result depends on nothing but the two operands, and the compiled kernel (:mod:`hybrec.vectors.scan_kernel`)
    computes the same bits.
    """
    products = vectors.astype(np.float64) * query.astype(np.float64)
    return np.cumsum(products, axis=1)[:, -1].astype(np.float32)


def rank(rows: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best of ``rows`` by ``scores``, best first, ties by lower row."""
    order = np.lexsort((rows, -scores))[:k]
    return rows[order], scores[order]


@dataclass(frozen=True, slots=True)
class FilterMask:
    """The rows one filter lets through, in the forms the search needs.

    Attributes
    ----------
    allowed : np.ndarray
        ``[n]`` bool, True where the row passes.
    penalty : np.ndarray
        ``[n]`` float32, 0 where the row passes and ``-inf`` where not: added to a score row it knocks out the
        rejected rows without a branch per row (a boolean ``where`` on a scattered mask mispredicts often).
    count : int
        Rows that pass.
    """

    allowed: np.ndarray
    penalty: np.ndarray
    count: int

    @classmethod
    def of(cls, allowed: np.ndarray) -> FilterMask:
        penalty = np.zeros(allowed.shape[0], dtype=np.float32)
        penalty[~allowed] = -np.inf
        for array in (allowed, penalty):
            array.flags.writeable = False  # shared by concurrent queries through the cache
        return cls(allowed, penalty, int(np.count_nonzero(allowed)))


class MaskCache:
    """Bounded LRU of :class:`FilterMask` by filter key, for one immutable collection snapshot.

    Requests with the same filter (a category page, a price band) reuse one mask instead of rebuilding it from the
    metadata columns on every query.
    """

    def __init__(self, size: int = MASK_CACHE_SIZE) -> None:
        self._size = size
        self._masks: OrderedDict[object, FilterMask] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: object, build: Callable[[], np.ndarray]) -> FilterMask:
        with self._lock:
            mask = self._masks.get(key)
            if mask is not None:
                self._masks.move_to_end(key)
                return mask
        mask = FilterMask.of(build())  # outside the lock: building reads 100k-row columns
        with self._lock:
            self._masks[key] = mask
            self._masks.move_to_end(key)
            while len(self._masks) > self._size:
                self._masks.popitem(last=False)
        return mask

    def __len__(self) -> int:
        return len(self._masks)


# --- collection snapshots ------------------------------------------------------------------------------------------

#: Below this share of allowed rows, scoring only the allowed rows beats scoring all and masking.
SUBSET_SHARE = 0.05


@dataclass(frozen=True, slots=True)
class NormLayout:
    """A snapshot's matrix sorted by row norm, largest first: what the pruned scan reads.

    The sorted matrix is held in one of two forms: the numpy scan reads ``matrix_t``, the compiled kernel ``kernel``.

    Attributes
    ----------
    matrix_t : np.ndarray or None
        ``[dim, N]`` float32, the contiguous transpose of the sorted matrix (sorted position ``p`` is column ``p``): a
        chunk of positions is a column slice, which the batched product reads fastest.
    kernel : KernelMatrix or None
        The kernel's form (:class:`~hybrec.vectors.scan_kernel.KernelMatrix`): the sorted rows in 64-row panels.
    order : np.ndarray
        ``[N]`` int64, the row at each sorted position.
    position : np.ndarray
        ``[N]`` int64, the sorted position of each row (the inverse of ``order``).
    norms : np.ndarray
        ``[N + 1]`` float64, the norm at each sorted position, then 0: ``norms[p]`` bounds the norm of every row at
        position ``p`` or later.
    descending_norms : np.ndarray
        ``-norms``, ascending: where :func:`numpy.searchsorted` looks a threshold up.
    """

    matrix_t: np.ndarray | None
    kernel: KernelMatrix | None
    order: np.ndarray
    position: np.ndarray
    norms: np.ndarray
    descending_norms: np.ndarray

    @classmethod
    def of(cls, vectors: np.ndarray, *, for_kernel: bool, panel_dtype: np.dtype | None = None) -> NormLayout:
        """The layout of ``vectors``: the kernel's form when ``for_kernel`` (panels of ``panel_dtype``, by default
        the loaded kernel's), unless its panels cannot hold the values (float16 ones beyond its range): numpy's."""
        norms = np.sqrt(np.einsum("ij,ij->i", vectors, vectors, dtype=np.float64))
        order = np.argsort(-norms, kind="stable")
        position = np.empty_like(order)
        position[order] = np.arange(order.size)
        sorted_norms = np.append(norms[order], 0.0)
        kernel = None
        if for_kernel:
            if panel_dtype is None:
                loaded = pruned_scan_kernel()
                panel_dtype = np.dtype(np.float32) if loaded is None else loaded.panel_dtype
            if panel_dtype == np.float16 and not fits_half(vectors):
                logger.warning("vectors too large for float16 panels: this collection is scanned with numpy")
            else:
                panels = panels_of(vectors[order], panel_dtype)
                kernel = KernelMatrix(panels, np.ascontiguousarray(vectors), sorted_norms, order, position)
        return cls(
            matrix_t=None if kernel is not None else np.ascontiguousarray(vectors[order].T),
            kernel=kernel,
            order=order,
            position=position,
            norms=sorted_norms,
            descending_norms=-sorted_norms,
        )

    @property
    def max_norm(self) -> float:
        return float(self.norms[0])


class Derived:
    """Search data derived from one snapshot's matrix, built on first use and shared by its ``replace`` copies."""

    def __init__(self, vectors: np.ndarray) -> None:
        self._vectors = vectors
        self._layouts: dict[bool, NormLayout] = {}  # by for_kernel
        self._lock = threading.Lock()
        self.masks = MaskCache()

    def layout(self, *, for_kernel: bool) -> NormLayout:
        """The norm-sorted layout, in the kernel's form or numpy's: a second copy of the matrix (25.6 MB for
        100k x 64)."""
        layout = self._layouts.get(for_kernel)
        if layout is None:
            with self._lock:
                layout = self._layouts.get(for_kernel)
                if layout is None:
                    single_threaded_blas()
                    layout = self._layouts[for_kernel] = NormLayout.of(self._vectors, for_kernel=for_kernel)
        return layout


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One immutable snapshot of a collection: vectors, ids, metadata, and metadata columns for filters."""

    info: CollectionInfo
    vectors: np.ndarray  # [N, dim] float32
    ids: tuple[str, ...]
    row_of: Mapping[str, int]
    metadatas: tuple[Metadata, ...]
    category: np.ndarray  # [N] int32 code, -1 = missing
    brand: np.ndarray  # [N] int32 code of the normalised brand, -1 = missing
    price: np.ndarray  # [N] float64, NaN = missing
    rating: np.ndarray  # [N] float64, NaN = missing
    category_codes: Mapping[str, int]
    brand_codes: Mapping[str, int]
    derived: Derived = field(compare=False, repr=False)
    mtime_ns: int | None = None

    @classmethod
    def empty(cls, info: CollectionInfo) -> Snapshot:
        return cls.build(info, np.zeros((0, info.dim), np.float32), [], [])

    @classmethod
    def build(
        cls, info: CollectionInfo, vectors: np.ndarray, ids: Sequence[str], metas: Sequence[Metadata]
    ) -> Snapshot:
        category_codes: dict[str, int] = {}
        brand_codes: dict[str, int] = {}
        return cls(
            info=info,
            vectors=vectors,
            ids=tuple(ids),
            row_of={i: r for r, i in enumerate(ids)},
            metadatas=tuple(metas),
            category=_codes(metas, CATEGORY_KEY, category_codes),
            brand=_codes(metas, BRAND_NORM_KEY, brand_codes),
            price=_floats(metas, PRICE_KEY),
            rating=_floats(metas, RATING_KEY),
            category_codes=category_codes,
            brand_codes=brand_codes,
            derived=Derived(vectors),
        )


def _codes(metas: Sequence[Metadata], key: str, codes: dict[str, int]) -> np.ndarray:
    """Integer codes of a string column, extending ``codes`` in place; -1 where the value is missing."""
    out = np.full(len(metas), -1, dtype=np.int32)
    for row, meta in enumerate(metas):
        value = meta.get(key)
        if isinstance(value, str):
            out[row] = codes.setdefault(value, len(codes))
    return out


def _floats(metas: Sequence[Metadata], key: str) -> np.ndarray:
    return np.array([float(m[key]) if key in m else np.nan for m in metas], dtype=np.float64)


# --- planning and running queries -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Plan:
    """Which rows one query may return, worked out once from its filter and exclusions."""

    mask: FilterMask | None  # the filter's rows; None = every row
    excluded: np.ndarray  # rows knocked out on top of the mask (excluded ids that the mask allows)
    allowed: int  # rows left to return
    candidates: np.ndarray | None  # when few rows are left: exactly those, sorted; None = score every row


def _filter_rows(col: Snapshot, where: Filter) -> np.ndarray:
    """Boolean mask of the rows passing ``where``'s metadata conditions (not its ``ids``)."""
    mask = np.ones(len(col.ids), dtype=bool)
    if where.category is not None:
        mask &= col.category == col.category_codes.get(where.category, -2)
    if where.brand is not None:
        mask &= col.brand == col.brand_codes.get(where.brand_norm or "", -2)
    # NaN (missing) compares False, so an item without a price/rating never passes these.
    if where.min_price is not None:
        mask &= col.price >= where.min_price
    if where.max_price is not None:
        mask &= col.price <= where.max_price
    if where.min_rating is not None:
        mask &= col.rating >= where.min_rating
    return mask


def plan_query(col: Snapshot, where: Filter | None, exclude_ids: IdSet | None) -> Plan:
    size = len(col.ids)
    mask: FilterMask | None = None
    if where is not None:
        key = (where.category, where.brand_norm, where.min_price, where.max_price, where.min_rating)
        if any(v is not None for v in key):
            mask = col.derived.masks.get(key, lambda: _filter_rows(col, where))
        if where.ids is not None:
            # An allow-list is rarely repeated (it is the caller's own list): built per query, not cached.
            allowed = np.zeros(size, dtype=bool)
            allowed[[col.row_of[i] for i in where.ids if i in col.row_of]] = True
            mask = FilterMask.of(allowed if mask is None else allowed & mask.allowed)
    rows = sorted({col.row_of[i] for i in exclude_ids if i in col.row_of}) if exclude_ids else []
    excluded = np.asarray(rows, dtype=np.int64)
    if mask is None:
        return Plan(None, excluded, size - excluded.size, None)
    excluded = excluded[mask.allowed[excluded]]
    allowed = mask.count - excluded.size
    if allowed > SUBSET_SHARE * size:
        return Plan(mask, excluded, allowed, None)
    candidates = np.flatnonzero(mask.allowed)
    if excluded.size:
        candidates = np.setdiff1d(candidates, excluded, assume_unique=True)
    return Plan(mask, excluded, allowed, candidates)


def _hits(col: Snapshot, rows: np.ndarray, scores: np.ndarray, with_metadata: bool = True) -> list[Hit]:
    if not with_metadata:
        ids = col.ids
        return [Hit(ids[r], s) for r, s in zip(rows.tolist(), scores.tolist(), strict=True)]
    return [
        Hit(col.ids[r], s, public_metadata(col.metadatas[r]))
        for r, s in zip(rows.tolist(), scores.tolist(), strict=True)
    ]


@dataclass(frozen=True, slots=True)
class Request:
    """One query row of a search: its vector, how many hits it wants and which rows it may return."""

    query: np.ndarray  # [dim] float32
    k: int
    plan: Plan


class _BatchScan:
    """The pruned scan of a batch of queries over one norm-sorted layout (:func:`top_rows`).

    The matrix products release the GIL; what runs between them holds it, and a search thread serving an event loop
    shares the GIL with that loop. So the bookkeeping is a fixed number of whole-batch numpy calls per product, not a
    few per query and chunk: on the benchmark's 100k x 64 items, a batch of 16 now holds the GIL for 0.05 ms per
    query against 0.08-0.11 ms, and the event-loop server (``bench/reco_api.py``) answered 1300-1400 requests per
    second against 1000-1070, in back-to-back runs. Three stages:

    1. **Settle.** Every query scores the first ``FIRST_CHUNK`` rows. Its ``k``-th best score there bounds its final
       one from below, so with the sorted norms it says where the query can stop (:meth:`_stops`). A query with fewer
       than ``k`` allowed rows so far (a narrow filter) scores chunks twice as long until it has them.
    2. **Segments.** From there, each query reads up to its own stop. The rows are cut into a few segments at the
       queries' stops (each at least half of what is left to read), each scored for the queries still reading: a
       batch that read up to its farthest query's stop read 59% of the benchmark's rows per query at 8 queries,
       where 42% were needed.
    3. **Rank.** Candidates are the rows scoring within ``2 * slack`` of the settle-time ``k``-th best; rows a filter
       rejects or the request excludes are knocked out in stage 1 (they must not count towards the ``k``-th best)
       and dropped from the candidates before ranking. The rows within ``2 * slack`` of each query's ``k``-th best
       candidate are scored again exactly (:func:`exact_scores`'s arithmetic) and ranked, ties by row.
    """

    def __init__(self, layout: NormLayout, requests: Sequence[Request], relative_error: float) -> None:
        self.layout = layout
        self.requests = requests
        self.relative_error = relative_error
        self.queries = np.stack([r.query for r in requests]).astype(np.float32, copy=False)
        q64 = self.queries.astype(np.float64)
        self.norm = np.sqrt(np.einsum("ij,ij->i", q64, q64))
        #: Bound on |float32 score - exact score| of any row, per query (relative error times the largest |q| |v|).
        self.slack = relative_error * self.norm * layout.max_norm
        self.k = np.array([r.k for r in requests], dtype=np.int64)
        self.kth = np.full(len(requests), -np.inf)
        excluded = [(j, layout.position[r.plan.excluded]) for j, r in enumerate(requests) if r.plan.excluded.size]
        self.excluded_query = np.concatenate([np.full(p.size, j, np.int64) for j, p in excluded] or [_NO_ROWS])
        self.excluded_position = np.concatenate([p for _, p in excluded] or [_NO_ROWS])
        self.found: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (query, position, float32 score) runs

    def run(self, col: Snapshot) -> list[tuple[np.ndarray, np.ndarray]]:
        reached = self._settle()
        self._segments(reached, self._stops())
        return self._rank(col)

    def _score(self, which: np.ndarray, start: int, end: int) -> np.ndarray:
        assert self.layout.matrix_t is not None
        return score_rows(self.queries[which], self.layout.matrix_t[:, start:end])

    def _keep(self, which: np.ndarray, start: int, scores: np.ndarray) -> None:
        """Record the rows of ``scores`` (``which`` queries, positions ``start ...``) that may be in a top ``k``."""
        lower = np.maximum(self.kth[which] - 2 * self.slack[which], _LOWEST)
        lower32 = lower.astype(np.float32)  # compared in float32 (no float64 copy of scores), never rounded up
        lower32 = np.where(lower32 > lower, np.nextafter(lower32, np.float32(-np.inf)), lower32)
        flat = np.flatnonzero(scores >= lower32[:, None])  # 1-D: several times faster than a 2-D nonzero
        if flat.size:
            at_query, at = np.divmod(flat, scores.shape[1])
            self.found.append((which[at_query], at + start, scores.ravel()[flat]))

    def _settle(self) -> np.ndarray:
        """Stage 1: each query's ``k``-th best score so far; returns the position each query has read up to."""
        size = self.layout.norms.size - 1
        reached = np.zeros(len(self.requests), dtype=np.int64)
        pending = np.arange(len(self.requests))
        start, chunk = 0, FIRST_CHUNK
        while pending.size and start < size:
            end = min(size, start + chunk)
            scores = self._score(pending, start, end)
            self._forbid(pending, start, scores)
            if start == 0:  # nothing read before: the k-th best of the chunk, one partition per distinct k
                for k in np.unique(self.k[pending]).tolist():
                    rows = np.flatnonzero(self.k[pending] == k)
                    if k <= scores.shape[1]:
                        self.kth[pending[rows]] = np.partition(scores[rows], -k, axis=1)[:, -k]
            else:  # the few queries of a narrow filter: with what they kept before
                for row, j in enumerate(pending.tolist()):
                    before = [s[q == j] for q, _, s in self.found]
                    both = np.concatenate([*before, scores[row]])
                    if both.size >= self.k[j]:
                        self.kth[j] = np.partition(both, -self.k[j])[-self.k[j]]
            self._keep(pending, start, scores)
            reached[pending] = end
            pending = pending[self.kth[pending] == -np.inf]
            start, chunk = end, 2 * chunk
        return reached

    def _forbid(self, which: np.ndarray, start: int, scores: np.ndarray) -> None:
        """Knock out (``-inf``) the rows each query's plan forbids in ``scores`` (positions ``start ...``)."""
        end = start + scores.shape[1]
        order = self.layout.order[start:end]
        for row, j in enumerate(which.tolist()):
            mask = self.requests[j].plan.mask
            if mask is not None:
                scores[row] += mask.penalty[order]
        if self.excluded_position.size:
            row_of = np.full(len(self.requests), -1, dtype=np.int64)
            row_of[which] = np.arange(which.size)
            rows = row_of[self.excluded_query]
            inside = (rows >= 0) & (self.excluded_position >= start) & (self.excluded_position < end)
            scores[rows[inside], self.excluded_position[inside] - start] = -np.inf

    def _stops(self) -> np.ndarray:
        """The first sorted position from which no row can reach each query's top ``k``, by its ``k``-th best so far.

        A row at position ``p`` scores at most ``|q| * norms[p]`` (Cauchy-Schwarz, widened by the norms' rounding);
        the ``k`` best so far score at least ``kth - slack`` exactly, and ``kth`` only grows as rows are read.
        """
        size = self.layout.norms.size - 1
        settled = self.kth - self.slack
        scale = self.norm * (1 + self.relative_error)
        zero = scale == 0
        threshold = settled / np.where(zero, 1.0, scale)
        # norms descends (its last entry, 0, stands for "past the end"): the first entry below the threshold.
        stops = np.minimum(np.searchsorted(self.layout.descending_norms, -threshold, side="right"), size)
        stops[zero] = np.where(settled[zero] > 0, 0, size)
        return stops

    def _segments(self, reached: np.ndarray, stop: np.ndarray) -> None:
        """Stage 2: every query reads on up to its stop, the queries still reading sharing each product."""
        size = self.layout.norms.size - 1
        todo = np.flatnonzero(stop > reached)
        while todo.size:
            start = int(reached[todo].min())
            reading = todo[reached[todo] == start]
            later = reached[todo][reached[todo] > start]
            farthest = int(stop[reading].max())
            end = max(start + MIN_CHUNK, int(stop[reading].min()), start + (farthest - start) // 2)
            end = min(end, farthest, size)
            if later.size:  # queries that settled further on join from where they are
                end = min(end, int(later.min()))
            self._keep(reading, start, self._score(reading, start, end))
            reached[reading] = end
            todo = todo[stop[todo] > reached[todo]]

    def _rank(self, col: Snapshot) -> list[tuple[np.ndarray, np.ndarray]]:
        """Stage 3: each query's allowed candidates ranked exactly, for the whole batch at once."""
        query = np.concatenate([q for q, _, _ in self.found] or [_NO_ROWS])
        position = np.concatenate([p for _, p, _ in self.found] or [_NO_ROWS])
        approx = np.concatenate([s for _, _, s in self.found] or [np.empty(0, np.float32)])
        rows = self.layout.order[position]
        size = self.layout.norms.size - 1
        allowed = ~np.isin(query * size + position, self.excluded_query * size + self.excluded_position)
        for j, request in enumerate(self.requests):
            if request.plan.mask is not None:
                mine = np.flatnonzero(query == j)
                allowed[mine] &= request.plan.mask.allowed[rows[mine]]
        query, rows, approx = query[allowed], rows[allowed], approx[allowed]
        # Each query's k-th best float32 score among its candidates; rows within 2 * slack of it are rescored.
        order = np.lexsort((-approx, query))
        query, rows, approx = query[order], rows[order], approx[order]
        first = np.searchsorted(query, np.arange(len(self.requests)))
        kth = approx[first + self.k - 1]
        close = approx >= (kth - 2 * self.slack)[query]
        query, rows = query[close], rows[close]
        exact = exact_scores(self.queries[query], col.vectors[rows])  # row by row, each with its own query
        order = np.lexsort((rows, -exact, query))
        query, rows, exact = query[order], rows[order], exact[order]
        first = np.searchsorted(query, np.arange(len(self.requests)))
        return [(rows[f : f + k], exact[f : f + k]) for f, k in zip(first.tolist(), self.k.tolist(), strict=True)]


_NO_ROWS = np.empty(0, dtype=np.int64)


def top_rows(col: Snapshot, requests: Sequence[Request]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each request's top ``k`` allowed rows and their scores, best first, ties by lower row (module docstring).

    Requests whose plan lists its few ``candidates`` score exactly those; the others share one pruned scan of the
    norm-sorted matrix (the compiled kernel's, else :class:`_BatchScan`), each reading only as far as its top ``k``
    needs.
    """
    out: list[tuple[np.ndarray, np.ndarray]] = [(np.empty(0, np.int64), np.empty(0, np.float32))] * len(requests)
    relative_error = error_bound(col.info.dim)
    scanned: list[int] = []
    for i, request in enumerate(requests):
        if request.k <= 0:
            continue
        if request.plan.candidates is not None:
            out[i] = _top_candidates(col, request, relative_error)
        else:
            scanned.append(i)
    if scanned:
        kernel = pruned_scan_kernel() if use_kernel else None
        layout = col.derived.layout(for_kernel=kernel is not None)
        batch = [requests[i] for i in scanned]
        if kernel is not None and layout.kernel is not None:
            results, _ = kernel.search(
                layout.kernel,
                np.stack([r.query for r in batch]).astype(np.float32, copy=False),
                [r.k for r in batch],
                [None if r.plan.mask is None else r.plan.mask.allowed for r in batch],
                [r.plan.excluded for r in batch],
                relative_error,
            )
        else:
            results = _BatchScan(layout, batch, relative_error).run(col)
        for i, found in zip(scanned, results, strict=True):
            out[i] = found
    return out


def _top_candidates(col: Snapshot, request: Request, relative_error: float) -> tuple[np.ndarray, np.ndarray]:
    """The top ``k`` of a plan's few candidate rows. numpy's einsum runs its own SIMD loop on this thread: a torch
    product here would wake an OpenMP team on a request thread, which costs 20x the product itself on a small
    machine."""
    rows = request.plan.candidates
    assert rows is not None
    approx = np.einsum("nd,d->n", col.vectors[rows], request.query)
    norm = float(np.linalg.norm(request.query.astype(np.float64)))
    max_norm = float(np.sqrt(np.einsum("ij,ij->i", col.vectors[rows], col.vectors[rows], dtype=np.float64).max()))
    return _exact_top(col, request, rows, approx, relative_error * norm * max_norm)


def _exact_top(
    col: Snapshot, request: Request, rows: np.ndarray, approx: np.ndarray, slack: float
) -> tuple[np.ndarray, np.ndarray]:
    """Rank ``rows`` (every allowed row that may be in the top ``k``, with float32 scores ``approx`` within
    ``slack`` of the exact ones) by exact score: only rows within ``2 * slack`` of the ``k``-th best are rescored."""
    k = request.k
    if approx.size > k:
        kth = np.partition(approx, approx.size - k)[approx.size - k]
        keep = approx >= kth - 2 * slack
        rows = rows[keep]
    return rank(rows, exact_scores(request.query, col.vectors[rows]), k)


def search(col: Snapshot, queries: np.ndarray, k: int, plan: Plan, with_metadata: bool = True) -> list[list[Hit]]:
    """The top ``k`` rows ``plan`` allows for each query row, computed on the calling thread."""
    return [_hits(col, *found, with_metadata) for found in top_rows(col, [Request(q, k, plan) for q in queries])]


@dataclass(frozen=True, slots=True)
class DeferredRequest:
    """A query whose exclusions are read on the search thread, with its batch's (:class:`DeferredIds`): planned
    there, once they are known."""

    query: np.ndarray  # [dim] float32
    n: int  # hits wanted (validated); fewer when fewer rows are allowed
    where: Filter | None
    exclude: DeferredIds

    def planned(self, col: Snapshot, exclude: IdSet) -> Request:
        plan = plan_query(col, self.where, exclude)
        return Request(self.query, min(self.n, plan.allowed), plan)


def search_batch(
    requests: Sequence[tuple[Snapshot, Request | DeferredRequest]],
) -> list[tuple[np.ndarray, np.ndarray] | BaseException]:
    """The coalescer's work: each request's top rows and scores, one pruned scan per snapshot in the batch.

    The deferred exclusions of the batch are read first, one call per reader (:func:`read_deferred`): a request
    whose read failed gets that exception. The matrix products release the GIL; the bookkeeping between them is a
    few numpy calls per query and chunk.
    """
    results: list[tuple[np.ndarray, np.ndarray] | BaseException] = [
        (np.empty(0, np.int64), np.empty(0, np.float32))
    ] * len(requests)
    scans: dict[int, tuple[Snapshot, list[int], list[Request]]] = {}  # by snapshot: positions and requests

    def scan(i: int, col: Snapshot, request: Request) -> None:
        _, positions, batch = scans.setdefault(id(col), (col, [], []))
        positions.append(i)
        batch.append(request)

    deferred: list[tuple[int, Snapshot, DeferredRequest]] = []
    for i, (col, request) in enumerate(requests):
        if isinstance(request, DeferredRequest):
            deferred.append((i, col, request))
        else:
            scan(i, col, request)
    if deferred:
        exclusions = read_deferred([request.exclude for _, _, request in deferred])
        for (i, col, request), exclude in zip(deferred, exclusions, strict=True):
            if isinstance(exclude, BaseException):
                results[i] = exclude
            else:
                scan(i, col, request.planned(col, exclude))
    for col, positions, batch in scans.values():
        for i, found in zip(positions, top_rows(col, batch), strict=True):
            results[i] = found
    return results


def hits(col: Snapshot, found: tuple[np.ndarray, np.ndarray], with_metadata: bool = True) -> list[Hit]:
    """The hits of one request's ``(rows, scores)``."""
    return _hits(col, *found, with_metadata)
