"""Exact in-process vector index: the embedded default for item vectors and product texts.

Each collection is a float32 matrix plus metadata columns as numpy arrays (category and normalised brand as integer
codes, price and rating as float64 with NaN for "missing"). A query turns its :class:`Filter` into a boolean mask,
scores every allowed row by one matrix product on the calling thread only, and selects the top ``n`` with a partial
sort (``torch.topk`` on a zero-copy view). Because filtering happens before selection, a query returns ``n`` hits
whenever ``n`` items match — unlike post-filtering an approximate index.

Collections live in memory as immutable snapshots replaced on every write (copy-on-write), so queries never lock.
With a ``root`` directory, each collection is also one ``<root>/<name>.npz`` file (vectors, ids and metadata as
JSON), written to a temporary file and renamed into place, and reloaded whenever the file changes on disk (another
process, e.g. the trainer, published a new version).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hybrec.vectors.base import (
    CollectionInfo,
    CollectionNotFound,
    Hit,
    Metadata,
    Metric,
    UnknownIds,
    VectorIndex,
    check_existing_collection,
    prepare_queries,
    prepare_upsert,
    public_metadata,
    validate_collection_name,
    validate_dim,
    validate_ids,
    validate_metric,
    validate_n,
)
from hybrec.vectors.filters import BRAND_NORM_KEY, CATEGORY_KEY, PRICE_KEY, RATING_KEY, Filter

logger = logging.getLogger(__name__)

_FORMAT_VERSION = 1
# Below this share of allowed rows, scoring only the allowed rows beats scoring all and masking.
_SUBSET_SHARE = 0.05
# Up to this many query rows, score with einsum (one thread, no shared BLAS pool); larger batches are offline work
# (evaluation, bulk similar-items) and use BLAS matmul with its usual threads.
_SINGLE_THREAD_MAX_QUERIES = 8


def _scores(queries: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """``queries @ matrix.T`` as float32; on the serving path without BLAS threads.

    numpy's einsum (without ``optimize``) runs its own SIMD loops on the calling thread, so concurrent requests on
    a small machine do not fight over OpenBLAS's process-wide pool; thread-pool limits (threadpoolctl) are
    process-wide and may only be changed by one Python thread, so they cannot give a per-request limit.
    """
    if queries.shape[0] <= _SINGLE_THREAD_MAX_QUERIES:
        return np.einsum("qd,nd->qn", queries, matrix)
    return queries @ matrix.T


@dataclass(frozen=True, slots=True)
class _Collection:
    """One immutable snapshot of a collection."""

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
    mtime_ns: int | None = None

    @classmethod
    def empty(cls, info: CollectionInfo) -> _Collection:
        return cls.build(info, np.zeros((0, info.dim), np.float32), [], [])

    @classmethod
    def build(
        cls, info: CollectionInfo, vectors: np.ndarray, ids: Sequence[str], metas: Sequence[Metadata]
    ) -> _Collection:
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


class ExactVectorIndex(VectorIndex):
    """Exact top-n search over in-memory matrices, optionally persisted under ``root``.

    Parameters
    ----------
    root : path, optional
        Directory holding one ``<name>.npz`` per collection; ``None`` keeps everything in memory only.
    """

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root) if root is not None else None
        if self.root is not None:
            self.root.mkdir(parents=True, exist_ok=True)
        self._collections: dict[str, _Collection] = {}
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        return f"ExactVectorIndex(root={str(self.root) if self.root else None!r})"

    # --- persistence ------------------------------------------------------------------------------------------------

    def _path(self, name: str) -> Path:
        assert self.root is not None
        return self.root / f"{name}.npz"

    def _save(self, col: _Collection) -> _Collection:
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

    def _load(self, path: Path, mtime_ns: int) -> _Collection:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(data["header"].tobytes())
            vectors = np.ascontiguousarray(data["vectors"], dtype=np.float32)
        if meta.get("format") != _FORMAT_VERSION:
            raise ValueError(f"{path}: unsupported index format {meta.get('format')!r}")
        info = CollectionInfo(meta["name"], int(meta["dim"]), validate_metric(meta["metric"]))
        if vectors.shape != (len(meta["ids"]), info.dim):
            raise ValueError(f"{path}: vectors of shape {vectors.shape} do not match {len(meta['ids'])} ids")
        logger.debug("loaded collection %s (%d vectors) from %s", info.name, len(meta["ids"]), path)
        return replace(_Collection.build(info, vectors, meta["ids"], meta["metadatas"]), mtime_ns=mtime_ns)

    def _get(self, name: str) -> _Collection:
        """The current snapshot of ``name``, reloaded if its file changed on disk."""
        col = self._collections.get(name)
        if self.root is None:
            if col is None:
                raise CollectionNotFound(f"vector collection {name!r} does not exist")
            return col
        validate_collection_name(name)
        try:
            mtime = self._path(name).stat().st_mtime_ns
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

    def _put(self, col: _Collection) -> None:
        self._collections[col.info.name] = self._save(col)

    # --- collections ------------------------------------------------------------------------------------------------

    def create_collection(self, name: str, dim: int, metric: Metric = "ip", *, exist_ok: bool = True) -> None:
        info = CollectionInfo(validate_collection_name(name), validate_dim(dim), validate_metric(metric))
        with self._lock:
            try:
                existing = self._get(name).info
            except CollectionNotFound:
                self._put(_Collection.empty(info))
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
            self._put(_Collection.build(col.info, matrix, all_ids, all_metas))

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
                _Collection.build(
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

    @staticmethod
    def _mask(
        col: _Collection, where: Filter | None, exclude_ids: set[str] | frozenset[str] | None
    ) -> np.ndarray | None:
        """Boolean mask of the rows a query may return; ``None`` means every row."""
        size = len(col.ids)
        mask: np.ndarray | None = None

        def narrow(condition: np.ndarray) -> None:
            nonlocal mask
            mask = condition if mask is None else mask & condition

        if where is not None:
            if where.ids is not None:
                allowed = np.zeros(size, dtype=bool)
                allowed[[col.row_of[i] for i in where.ids if i in col.row_of]] = True
                narrow(allowed)
            if where.category is not None:
                narrow(col.category == col.category_codes.get(where.category, -2))
            if where.brand is not None:
                narrow(col.brand == col.brand_codes.get(where.brand_norm or "", -2))
            # NaN (missing) compares False, so an item without a price/rating never passes these.
            if where.min_price is not None:
                narrow(col.price >= where.min_price)
            if where.max_price is not None:
                narrow(col.price <= where.max_price)
            if where.min_rating is not None:
                narrow(col.rating >= where.min_rating)
        if exclude_ids:
            rows = [col.row_of[i] for i in exclude_ids if i in col.row_of]
            if rows:
                mask = np.ones(size, dtype=bool) if mask is None else mask.copy()
                mask[rows] = False
        return mask

    @staticmethod
    def _excluded_rows(col: _Collection, exclude_ids: set[str] | frozenset[str] | None) -> list[int]:
        """Distinct row numbers of the ``exclude_ids`` this collection holds (unknown ids are ignored)."""
        if not exclude_ids:
            return []
        return sorted({col.row_of[i] for i in exclude_ids if i in col.row_of})

    def query(
        self,
        name: str,
        vectors: np.ndarray,
        n: int,
        where: Filter | None = None,
        exclude_ids: set[str] | frozenset[str] | None = None,
    ) -> list[list[Hit]]:
        n = validate_n(n)
        col = self._get(name)
        queries = prepare_queries(col.info, vectors)
        mask = self._mask(col, where, None)
        # Without filters, a few excluded rows (the user's seen items) are knocked out of the scores directly, which
        # spares building and applying a full-length mask on every request.
        excluded = self._excluded_rows(col, exclude_ids)
        if mask is not None and excluded:
            mask = mask.copy()
            mask[excluded] = False
            excluded = []
        candidates: np.ndarray | None = None  # row numbers when only a subset is scored
        allowed = len(col.ids) - len(excluded) if mask is None else int(np.count_nonzero(mask))
        k = min(n, allowed)
        if k == 0:
            return [[] for _ in range(queries.shape[0])]
        if mask is not None and allowed <= _SUBSET_SHARE * len(col.ids):
            candidates = np.flatnonzero(mask)
            scores = _scores(queries, col.vectors[candidates])
        else:
            scores = _scores(queries, col.vectors)
            if mask is not None:
                scores = np.where(mask, scores, np.float32(-np.inf))  # 10x faster than boolean-index assignment
            elif excluded:
                scores[:, excluded] = -np.inf  # a fresh array of this call's own
        results: list[list[Hit]] = []
        for row_scores in scores:
            # 1-D topk runs on one thread; from_numpy shares memory (no copy).
            top = torch.topk(torch.from_numpy(row_scores), k, sorted=True)
            picked = top.indices.numpy()
            rows = picked if candidates is None else candidates[picked]
            results.append(
                [
                    Hit(col.ids[r], float(s), public_metadata(col.metadatas[r]))
                    for r, s in zip(rows.tolist(), top.values.tolist(), strict=True)
                ]
            )
        return results
