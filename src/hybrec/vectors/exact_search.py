"""Search over one immutable collection snapshot of the exact index: plans, masks, scoring, exact top-k.

Everything here is written so that a query's answer does not depend on which other queries it was computed with,
which is what lets :mod:`hybrec.vectors.exact_batcher` coalesce concurrent requests into one matrix product:

- :func:`score_rows` always runs a matrix-matrix product (GEMM) on at least two query rows. With the inner dimension
  (the vector size) inside one GEMM block, every score is one fused multiply-add chain over that dimension in the
  same order, whichever row of the batch the query sits in; a lone row would go to the matrix-vector kernel, whose
  rounding differs in the last bit. ``tests/vectors/test_exact_batching.py`` checks this on the machine at hand.
- :func:`top_k` breaks ties by row number, so equal scores come back in the same order every time.

Top-k selection is exact and uses block maxima (the pruning step of blocked top-k search): split the scores into
blocks of :data:`BLOCK`, keep every block whose maximum reaches the ``k``-th largest block maximum, and sort those.
Any row outside the kept blocks has ``k`` rows in other blocks with strictly larger scores, so it cannot be in the
top ``k``. On 100k scores this reads the array once and sorts about ``k * BLOCK`` values: 4-5x cheaper than a partial
sort of all of them (``np.argpartition``, ``torch.topk``; 2-core development machine).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from hybrec.vectors.base import CollectionInfo, Hit, Metadata, public_metadata
from hybrec.vectors.filters import BRAND_NORM_KEY, CATEGORY_KEY, PRICE_KEY, RATING_KEY, Filter

#: Scores per block of the block-max top-k.
BLOCK = 128
#: Filter masks kept per collection (each costs 5 bytes per row: a float32 penalty and a bool).
MASK_CACHE_SIZE = 32


def score_rows(queries: np.ndarray, matrix_t: torch.Tensor) -> np.ndarray:
    """``queries @ matrix_t`` as a float32 ``[q, n]`` array, computed by GEMM even for one query.

    ``matrix_t`` is the ``[dim, n]`` transpose of the item matrix (contiguous, or a transposed view of a gathered
    subset); torch runs the product on the calling thread's OpenMP setting and releases the GIL meanwhile.
    """
    rows = queries.shape[0]
    if rows == 1:
        padded = np.zeros((2, queries.shape[1]), dtype=np.float32)
        padded[0] = queries[0]
        return torch.mm(torch.from_numpy(padded), matrix_t).numpy()[:1]
    return torch.mm(torch.from_numpy(np.ascontiguousarray(queries, dtype=np.float32)), matrix_t).numpy()


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions and values of the ``k`` largest ``scores``, best first, ties by lower position.

    ``scores`` is one 1-D float32 row; rows knocked out by a filter hold ``-inf``. ``1 <= k <= len(scores)``.
    """
    size = scores.shape[0]
    blocks = size // BLOCK  # block j holds positions j, j + blocks, j + 2 * blocks ... (a column of the reshape)
    if blocks >= 4 * k:
        maxima = scores[: blocks * BLOCK].reshape(BLOCK, blocks).max(axis=0)  # contiguous rows: a SIMD reduction
        threshold = np.partition(maxima, blocks - k)[blocks - k]
        kept = np.flatnonzero(maxima >= threshold)
        positions = (kept[None, :] + blocks * np.arange(BLOCK)[:, None]).ravel()
        if blocks * BLOCK < size:  # the tail outside the blocks: always a candidate
            positions = np.concatenate((positions, np.arange(blocks * BLOCK, size)))
    else:
        positions = np.arange(size)
    values = scores[positions]
    if positions.size > k:
        # Every candidate tied with the k-th best value stays in, so the tie-break below sees all of them.
        kth = np.partition(values, values.size - k)[values.size - k]
        keep = values >= kth
        positions, values = positions[keep], values[keep]
    order = np.lexsort((positions, -values))[:k]
    return positions[order], values[order]


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


class Derived:
    """Search data derived from one snapshot's matrix, built on first use and shared by its ``replace`` copies."""

    def __init__(self, vectors: np.ndarray) -> None:
        self._vectors = vectors
        self._transposed: torch.Tensor | None = None
        self._lock = threading.Lock()
        self.masks = MaskCache()

    def transposed(self) -> torch.Tensor:
        """The ``[dim, N]`` contiguous transpose: the layout the batched product reads fastest."""
        if self._transposed is None:
            with self._lock:
                if self._transposed is None:
                    self._transposed = torch.from_numpy(np.ascontiguousarray(self._vectors.T))
        return self._transposed


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


def plan_query(col: Snapshot, where: Filter | None, exclude_ids: set[str] | frozenset[str] | None) -> Plan:
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


def _hits(col: Snapshot, rows: np.ndarray, scores: np.ndarray) -> list[Hit]:
    return [
        Hit(col.ids[r], s, public_metadata(col.metadatas[r]))
        for r, s in zip(rows.tolist(), scores.tolist(), strict=True)
    ]


def select(col: Snapshot, scores: np.ndarray, k: int, plan: Plan) -> list[Hit]:
    """The top ``k`` rows ``plan`` allows, from one query's scores of every row of ``col`` (modified in place)."""
    if plan.mask is not None:
        scores += plan.mask.penalty
    if plan.excluded.size:
        scores[plan.excluded] = -np.inf
    return _hits(col, *top_k(scores, k))


def search(col: Snapshot, queries: np.ndarray, k: int, plan: Plan) -> list[list[Hit]]:
    """The top ``k`` rows ``plan`` allows for each query row, computed on the calling thread."""
    if plan.candidates is not None:
        # A few rows: numpy's einsum runs its own SIMD loop on this thread. A torch product here would wake an
        # OpenMP team on a request thread, which costs 20x the product itself on a small machine.
        scores = np.einsum("qd,nd->qn", queries, col.vectors[plan.candidates])
        return [_hits(col, plan.candidates[rows], values) for rows, values in (top_k(row, k) for row in scores)]
    return [select(col, row, k, plan) for row in score_rows(queries, col.derived.transposed())]


def score_batch(requests: Sequence[tuple[Snapshot, np.ndarray]]) -> list[np.ndarray]:
    """The coalescer's work: each one-row query's scores of every row of its collection, one product per snapshot.

    Only the product runs here (it releases the GIL); each caller then runs :func:`select` on its own row, so the
    worker thread needs the GIL, which a busy event loop holds, as little as possible.
    """
    rows: list[np.ndarray] = [np.empty(0, np.float32)] * len(requests)
    groups: dict[int, list[int]] = {}
    for i, (col, _) in enumerate(requests):
        groups.setdefault(id(col), []).append(i)
    for members in groups.values():
        col = requests[members[0]][0]
        scores = score_rows(np.stack([requests[i][1] for i in members]), col.derived.transposed())
        for i, row in zip(members, scores, strict=True):
            rows[i] = row
    return rows
