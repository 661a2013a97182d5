"""The two vector-backend protocols, their shared value types and errors.

* :class:`UserVectorCache` — user vectors (and small per-version extras) keyed by model version, with an atomic
  active-version pointer. Implementations: :mod:`hybrec.vectors.memory_cache` (embedded) and
  :mod:`hybrec.vectors.redis_cache` (production).
* :class:`VectorIndex` — named collections of item vectors with metadata, queried by inner product or cosine
  similarity with typed filters (:class:`hybrec.vectors.filters.Filter`). Implementations:
  :mod:`hybrec.vectors.exact_index` (embedded, exact) and :mod:`hybrec.vectors.chroma_index` (production, HNSW).

Every backend signals an unreachable server with :class:`VectorStoreUnavailable`, so the serving layer can degrade
(fold a user in from the store, or fall back to an exact index) without knowing which client library failed.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

import numpy as np

from hybrec.vectors.filters import BRAND_KEY, BRAND_NORM_KEY, NUMERIC_KEYS, Filter, normalise_brand

Metric = Literal["ip", "cosine"]
METRICS: tuple[str, ...] = ("ip", "cosine")
MetadataValue = str | int | float | bool
Metadata = dict[str, MetadataValue]

# Chroma's rule for collection names; applied to every backend so a name valid embedded is valid in production
# (and safe as a directory name for the exact index).
_COLLECTION_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,510}[A-Za-z0-9]$")


class VectorStoreError(Exception):
    """Base class of every error raised by a vector backend."""


class VectorStoreUnavailable(VectorStoreError):
    """The backing server (Redis, Chroma) cannot be reached; callers may degrade instead of failing."""


class CollectionNotFound(VectorStoreError, KeyError):
    """A vector-index collection that does not exist was named."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else "collection not found"


class CollectionExists(VectorStoreError, ValueError):
    """``create_collection`` was asked for a name that already holds a collection with other settings."""


class DimensionMismatch(VectorStoreError, ValueError):
    """Vectors whose width differs from the collection's (or the query's) dimension."""


class UnknownIds(VectorStoreError, KeyError):
    """Ids that are not in the collection were asked for."""

    def __init__(self, collection: str, missing: Sequence[str]) -> None:
        self.collection = collection
        self.missing = list(missing)
        shown = ", ".join(repr(m) for m in self.missing[:10])
        more = f" and {len(self.missing) - 10} more" if len(self.missing) > 10 else ""
        super().__init__(f"collection {collection!r} has no id(s) {shown}{more}")

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass(slots=True)
class Hit:
    """One search result: the item id, its similarity (higher is better) and its stored metadata.

    Not frozen, for the cost of building one: a frozen dataclass sets each field through ``object.__setattr__``
    (three times the time, per hit of every query). Nothing changes one after it is built.
    """

    id: str
    score: float
    metadata: Metadata = field(default_factory=dict)


IdSet: TypeAlias = set[str] | frozenset[str]


class DeferredIds:
    """Ids to exclude from a search, read only where the search runs: :meth:`VectorIndex.query_async` takes them.

    The items a user has seen, read from the store, for instance. The exact index reads a whole batch's at once,
    one statement instead of one per request (on the benchmark's embedded server, ``bench/reco_api.py``, the
    per-request read was about a quarter of the event loop's CPU per request): on the loop, once per turn, before the
    batch goes to the kernel's scan worker (:mod:`hybrec.vectors.scan_worker`), or on its coalescing thread.

    Parameters
    ----------
    key : str
        Whose ids (a user id).
    read_many : callable
        ``read_many(keys)`` returns the ids of each key, in order. Deferred ids that share one ``read_many`` are read
        in one call (:func:`read_deferred`); an exception it raises fails the searches that needed those keys.
    """

    __slots__ = ("key", "read_many")

    def __init__(self, key: str, read_many: Callable[[Sequence[str]], Sequence[IdSet]]) -> None:
        self.key = key
        self.read_many = read_many

    def read(self) -> IdSet:
        """The ids, read now."""
        return self.read_many([self.key])[0]

    def __repr__(self) -> str:
        return f"DeferredIds({self.key!r})"


#: What a search may be told to leave out: ids, ids to read where it runs, or nothing.
Exclusion: TypeAlias = IdSet | DeferredIds | None


def read_now(exclude: Exclusion) -> IdSet | None:
    """``exclude`` as ids: deferred ones are read on the calling thread."""
    return exclude.read() if isinstance(exclude, DeferredIds) else exclude


def read_deferred(deferred: Sequence[DeferredIds]) -> list[IdSet | BaseException]:
    """The ids of each of ``deferred``, in order, with one call of each distinct ``read_many``; where that call
    raised, its exception in place of the ids (for the caller to raise for those searches only)."""
    out: list[IdSet | BaseException] = [frozenset()] * len(deferred)
    groups: dict[Callable[[Sequence[str]], Sequence[IdSet]], list[int]] = {}
    for i, d in enumerate(deferred):
        groups.setdefault(d.read_many, []).append(i)
    for read_many, members in groups.items():
        try:
            found = read_many([deferred[i].key for i in members])
            if len(found) != len(members):
                raise RuntimeError(f"{read_many!r} returned {len(found)} id sets for {len(members)} keys")
        except Exception as exc:
            for i in members:
                out[i] = exc
            continue
        for i, ids in zip(members, found, strict=True):
            out[i] = ids
    return out


@dataclass(frozen=True, slots=True)
class CollectionInfo:
    """What a collection was created with."""

    name: str
    dim: int
    metric: Metric


# --------------------------------------------------------------------------------------------------------------------
# validation shared by the implementations
# --------------------------------------------------------------------------------------------------------------------


def validate_collection_name(name: str) -> str:
    """Return ``name`` if it is a valid collection name, else raise ``ValueError`` saying why."""
    if not isinstance(name, str) or not _COLLECTION_NAME.match(name) or ".." in name:
        raise ValueError(
            f"invalid collection name {name!r}: expected 3-512 characters from [A-Za-z0-9._-], "
            "starting and ending with a letter or digit, without '..'"
        )
    return name


def validate_metric(metric: str) -> Metric:
    if metric not in METRICS:
        raise ValueError(f"invalid metric {metric!r}: expected one of {METRICS}")
    return metric  # type: ignore[return-value]


def validate_dim(dim: int) -> int:
    if isinstance(dim, bool) or not isinstance(dim, int | np.integer) or dim < 1:
        raise ValueError(f"invalid dimension {dim!r}: expected a positive integer")
    return int(dim)


def validate_ids(ids: Sequence[str], what: str = "ids") -> list[str]:
    """A list of non-empty, unique string ids."""
    if isinstance(ids, str):
        raise TypeError(f"{what} must be a sequence of strings, not one string")
    out = list(ids)
    for i in out:
        if not isinstance(i, str) or not i:
            raise ValueError(f"{what} must be non-empty strings; got {i!r}")
    if len(set(out)) != len(out):
        seen: set[str] = set()
        dup = next(i for i in out if i in seen or seen.add(i))  # type: ignore[func-returns-value]
        raise ValueError(f"{what} contain a duplicate: {dup!r}")
    return out


def as_matrix(vectors: Any, dim: int | None, what: str = "vectors") -> np.ndarray:
    """``vectors`` as a C-contiguous float32 ``[rows, dim]`` matrix of finite values (a 1-D vector is one row)."""
    matrix = np.asarray(vectors, dtype=np.float32)
    if matrix.ndim == 1:
        matrix = matrix[None, :]
    if matrix.ndim != 2:
        raise ValueError(f"{what} must be a 2-D array [rows, dim]; got shape {matrix.shape}")
    if dim is not None and matrix.shape[1] != dim:
        raise DimensionMismatch(f"{what} have dimension {matrix.shape[1]}, expected {dim}")
    if not np.isfinite(matrix).all():
        raise ValueError(f"{what} contain NaN or infinite values")
    return np.ascontiguousarray(matrix)


def normalise_rows(matrix: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero), for the cosine metric."""
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms > 0, norms, 1.0).astype(np.float32)


def clean_metadata(metadatas: Sequence[Mapping[str, Any] | None] | None, count: int) -> list[Metadata]:
    """Validate user metadata and add the derived keys every backend stores.

    ``None`` values are dropped (a missing price is absent, so it never passes a price filter), price and rating
    become floats, and the brand gets a normalised copy under :data:`BRAND_NORM_KEY` for the brand filter.
    """
    if metadatas is None:
        return [{} for _ in range(count)]
    if len(metadatas) != count:
        raise ValueError(f"got {len(metadatas)} metadatas for {count} ids")
    out: list[Metadata] = []
    for row, meta in enumerate(metadatas):
        clean: Metadata = {}
        for key, value in (meta or {}).items():
            if not isinstance(key, str) or not key or key == BRAND_NORM_KEY:
                raise ValueError(f"metadata row {row}: invalid or reserved key {key!r}")
            if value is None:
                continue
            if key in NUMERIC_KEYS:
                if isinstance(value, bool) or not isinstance(value, int | float | np.number):
                    raise ValueError(f"metadata row {row}: {key!r} must be a number, got {value!r}")
                value = float(value)
                if not math.isfinite(value):
                    continue
            elif isinstance(value, np.generic):
                value = value.item()
            if not isinstance(value, str | int | float | bool):
                raise ValueError(f"metadata row {row}: {key!r} must be str, int, float or bool, got {type(value)}")
            clean[key] = value
        brand = clean.get(BRAND_KEY)
        if isinstance(brand, str) and normalise_brand(brand):
            clean[BRAND_NORM_KEY] = normalise_brand(brand)
        out.append(clean)
    return out


def public_metadata(meta: Mapping[str, Any]) -> Metadata:
    """Stored metadata without the keys the backend derived for itself."""
    return {k: v for k, v in meta.items() if k != BRAND_NORM_KEY}


def validate_n(n: int) -> int:
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    return int(n)


def check_existing_collection(existing: CollectionInfo, wanted: CollectionInfo, exist_ok: bool) -> None:
    """``create_collection`` on a name that exists: fine only with ``exist_ok`` and the same dim and metric.

    Raises
    ------
    CollectionExists
        ``exist_ok`` is false, or the stored collection has another dim or metric.
    """
    if not exist_ok or existing != wanted:
        raise CollectionExists(
            f"vector collection {existing.name!r} already exists with dim {existing.dim} and metric {existing.metric}"
        )


def prepare_upsert(
    info: CollectionInfo,
    ids: list[str],
    vectors: Any,
    metadatas: Sequence[Mapping[str, Any] | None] | None,
) -> tuple[np.ndarray, list[Metadata]]:
    """The checked rows of an upsert into the collection ``info``: its float32 matrix (unit rows for the cosine
    metric) and the cleaned metadata of each id (``ids`` already passed :func:`validate_ids`)."""
    matrix = as_matrix(vectors, info.dim)
    if matrix.shape[0] != len(ids):
        raise ValueError(f"got {matrix.shape[0]} vectors for {len(ids)} ids")
    metas = clean_metadata(metadatas, len(ids))
    if info.metric == "cosine":
        matrix = normalise_rows(matrix)
    return matrix, metas


def prepare_queries(info: CollectionInfo, vectors: Any) -> np.ndarray:
    """Query rows for the collection ``info`` as a float32 matrix (unit rows for the cosine metric)."""
    queries = as_matrix(vectors, info.dim, "query vectors")
    return normalise_rows(queries) if info.metric == "cosine" else queries


# --------------------------------------------------------------------------------------------------------------------
# protocols
# --------------------------------------------------------------------------------------------------------------------


class UserVectorCache(ABC):
    """User vectors per model version, small per-version extras, and the active-version pointer.

    Versions are non-negative integers. A vector is returned as a fresh float32 array; an unknown user gives
    ``None`` (the caller then folds the user in or falls back to cold start).
    """

    #: Whether calls are answered from this process's memory, with no round trip to a server (an event loop may then
    #: call them directly instead of from a worker thread).
    in_process: bool = False

    @abstractmethod
    def get(self, version: int, user_id: str) -> np.ndarray | None: ...

    @abstractmethod
    def get_many(self, version: int, user_ids: Sequence[str]) -> list[np.ndarray | None]:
        """Vectors aligned with ``user_ids``; ``None`` where a user has none."""

    @abstractmethod
    def set(self, version: int, user_id: str, vector: np.ndarray) -> None: ...

    @abstractmethod
    def set_many(self, version: int, user_ids: Sequence[str], matrix: np.ndarray) -> None:
        """Store row ``i`` of ``matrix`` as the vector of ``user_ids[i]``."""

    @abstractmethod
    def delete_version(self, version: int) -> int:
        """Remove every key of ``version`` (vectors and blobs); returns how many entries were removed."""

    @abstractmethod
    def list_versions(self) -> list[int]:
        """Versions that hold vectors or blobs, ascending."""

    @abstractmethod
    def set_blob(self, version: int, name: str, data: bytes) -> None: ...

    @abstractmethod
    def get_blob(self, version: int, name: str) -> bytes | None: ...

    @abstractmethod
    def get_active_version(self) -> int | None: ...

    @abstractmethod
    def set_active_version(self, version: int) -> None:
        """Point readers at ``version`` in one atomic step."""

    @abstractmethod
    def ping(self) -> bool:
        """True when the backend answers; raises :class:`VectorStoreUnavailable` when it does not."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections (no-op by default)."""

    def set_json(self, version: int, name: str, value: Any) -> None:
        """Store a JSON-serialisable per-version extra (e.g. the popularity list)."""
        self.set_blob(version, name, json.dumps(value, separators=(",", ":")).encode())

    def get_json(self, version: int, name: str) -> Any | None:
        data = self.get_blob(version, name)
        return None if data is None else json.loads(data)

    def set_array(self, version: int, name: str, array: np.ndarray) -> None:
        """Store a float32 vector extra (e.g. the mean user vector) as little-endian bytes."""
        row = as_matrix(array, None, name)
        if row.shape[0] != 1:
            raise ValueError(f"{name} must be one vector, got shape {np.shape(array)}")
        self.set_blob(version, name, row[0].astype("<f4").tobytes())

    def get_array(self, version: int, name: str) -> np.ndarray | None:
        data = self.get_blob(version, name)
        return None if data is None else np.frombuffer(data, dtype="<f4").astype(np.float32)


class VectorIndex(ABC):
    """Named collections of vectors with metadata, searched by ``ip`` (dot product) or ``cosine`` similarity.

    Scores are always "higher is better": the dot product for ``ip``, the cosine for ``cosine`` (vectors of a cosine
    collection are stored unit-normalised, so :meth:`get_vectors` returns them normalised). Filters are applied
    inside the search: a query returns ``n`` hits whenever ``n`` items match.
    """

    #: Whether searches run in this process, with no round trip to a server (see :meth:`query_async`).
    in_process: bool = False

    @abstractmethod
    def create_collection(self, name: str, dim: int, metric: Metric = "ip", *, exist_ok: bool = True) -> None:
        """Create ``name``; an existing collection with the same dim and metric is fine when ``exist_ok``."""

    @abstractmethod
    def collection_info(self, name: str) -> CollectionInfo: ...

    @abstractmethod
    def delete_collection(self, name: str) -> None:
        """Drop ``name``; raises :class:`CollectionNotFound` if it does not exist."""

    @abstractmethod
    def list_collections(self) -> list[str]: ...

    def has_collection(self, name: str) -> bool:
        return name in self.list_collections()

    @abstractmethod
    def upsert(
        self,
        name: str,
        ids: Sequence[str],
        vectors: np.ndarray,
        metadatas: Sequence[Mapping[str, Any] | None] | None = None,
    ) -> None:
        """Insert or replace ``ids`` with their vectors and metadata (batched internally)."""

    @abstractmethod
    def delete(self, name: str, ids: Sequence[str]) -> None:
        """Remove ``ids`` (unknown ids are ignored)."""

    @abstractmethod
    def count(self, name: str) -> int: ...

    @abstractmethod
    def ids(self, name: str) -> list[str]: ...

    @abstractmethod
    def get_vectors(self, name: str, ids: Sequence[str]) -> np.ndarray:
        """``[len(ids), dim]`` float32 rows in the order asked; raises :class:`UnknownIds` for absent ids."""

    @abstractmethod
    def get_metadata(self, name: str, ids: Sequence[str]) -> dict[str, Metadata]:
        """Stored metadata of the ids that exist (absent ids are left out), e.g. a content hash for re-indexing."""

    @abstractmethod
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
        """The ``n`` best hits for each query row (fewer only when fewer items match), best first.

        ``with_metadata=False``: hits carry no metadata (``{}``), for a caller that shows items from its own catalog
        data; copying each hit's stored metadata was a tenth of a recommendation's CPU.
        """

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
        """:meth:`query` for a caller on an event loop, which keeps serving while the search runs.

        By default :meth:`query` runs in a worker thread, which reads ``exclude_ids`` first when they are
        :class:`DeferredIds`; an in-process index may do better (the exact index hands a one-row query to its
        coalescing thread and awaits the batch, deferred ids read there with the batch's others).
        """

        def run() -> list[list[Hit]]:
            return self.query(name, vectors, n, where, read_now(exclude_ids), with_metadata=with_metadata)

        return await asyncio.to_thread(run)

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (no-op by default)."""
