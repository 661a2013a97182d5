"""ChromaDB vector index: the production backend (``HYBREC_CHROMA_URL``), HNSW approximate search.

HNSW (Malkov & Yashunin, "Efficient and robust approximate nearest neighbor search using Hierarchical Navigable
Small World graphs", 2018) trades recall for speed through ``ef_search``. Measured recall@10 against exact search
(``bench/vector_index.py``, i.i.d. Gaussian 64-d vectors, the hard case): Chroma's defaults (``ef_search`` 100) give
0.86 on 20k items (issue 4 measured 0.82 on 100k ALS vectors); ``ef_search`` 400 gives 0.946 on 100k, ``ef_search``
800 gives 0.986 on 100k for ~1 ms more per query. Chroma 1.5.9 only honours ``ef_search`` given in the collection
``configuration`` at creation (changing it later with ``modify`` left recall unchanged), so it is fixed here.

Details that matter:

* We always pass our own vectors and ``embedding_function=None``: Chroma's default embedding function downloads a
  model (and fails offline).
* Chroma returns distances; for ``ip`` the distance is ``1 - dot`` and for ``cosine`` it is ``1 - cos``, so the
  score is ``1 - distance`` in both cases (higher is better).
* Cosine collections store unit-normalised vectors, as the exact index does, so both return the same vectors.
* Chroma's upsert *merges* metadata; to replace it, keys an item no longer has are sent as ``None``.
* Excluded ids are handled by over-fetching ``n + len(exclude)`` and dropping them; an allow-list is passed as
  Chroma's ``ids`` argument (minus the excluded ids).
* Chroma's filtered search (``where``) costs 0.2-0.6 s per query on 100k items, against ~6 ms unfiltered, so a
  filtered query first filters the unfiltered top candidates client-side (:meth:`Filter.matches`) and only rows
  with too few matches among them go to Chroma's ``where`` search; either way the answer holds ``n`` hits whenever
  ``n`` items match.
* Every transport failure surfaces as :class:`VectorStoreUnavailable`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import numpy as np

from hybrec.vectors.base import (
    CollectionInfo,
    CollectionNotFound,
    Hit,
    Metadata,
    Metric,
    UnknownIds,
    VectorIndex,
    VectorStoreUnavailable,
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
from hybrec.vectors.chroma_translation import HnswSettings, where_clause
from hybrec.vectors.filters import Filter

logger = logging.getLogger(__name__)

_DIM_KEY = "hybrec_dim"
_METRIC_KEY = "hybrec_metric"


class ChromaVectorIndex(VectorIndex):
    """Vector collections in ChromaDB, through any ``chromadb`` client.

    Parameters
    ----------
    client_factory : callable
        Builds the chromadb client; called lazily (and again after a connection failure), so a Chroma server that
        is down at start-up does not prevent the process from starting. Use :meth:`from_url` or :meth:`persistent`.
    hnsw : HnswSettings
        Index parameters for collections this object creates.
    batch_size : int, default 2000
        Upper bound on items per write request (also bounded by the server's max batch size).
    prefilter_candidates : int, default 200
        Unfiltered candidates fetched for a filtered query and filtered client-side before falling back to
        Chroma's (slow) filtered search; see :meth:`query`.
    description : str
        Where the data lives, for messages.
    """

    def __init__(
        self,
        client_factory: Callable[[], Any],
        *,
        hnsw: HnswSettings | None = None,
        batch_size: int = 2000,
        prefilter_candidates: int = 200,
        description: str = "chroma",
    ) -> None:
        self._factory = client_factory
        self.hnsw = hnsw or HnswSettings()
        self.batch_size = batch_size
        self.prefilter_candidates = prefilter_candidates
        self.description = description
        self._client: Any = None
        self._handles: dict[str, Any] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> ChromaVectorIndex:
        """Connect to a Chroma server at ``http(s)://host:port``."""
        parts = urlsplit(url)
        host = parts.hostname
        if parts.scheme not in ("http", "https") or not host:
            raise ValueError(f"invalid Chroma URL {url!r}: expected http://host:port")
        ssl = parts.scheme == "https"
        port = parts.port or (443 if ssl else 8000)

        def connect() -> Any:
            import chromadb
            from chromadb.config import Settings as ChromaSettings

            return chromadb.HttpClient(
                host=host, port=port, ssl=ssl, settings=ChromaSettings(anonymized_telemetry=False)
            )

        return cls(connect, description=f"Chroma server {parts.scheme}://{host}:{port}", **kwargs)

    @classmethod
    def persistent(cls, path: str | Path, **kwargs: Any) -> ChromaVectorIndex:
        """An embedded Chroma database in directory ``path``."""

        def connect() -> Any:
            import chromadb
            from chromadb.config import Settings as ChromaSettings

            return chromadb.PersistentClient(path=str(path), settings=ChromaSettings(anonymized_telemetry=False))

        return cls(connect, description=f"Chroma database at {path}", **kwargs)

    def __repr__(self) -> str:
        return f"ChromaVectorIndex({self.description!r})"

    # --- plumbing ---------------------------------------------------------------------------------------------------

    @contextmanager
    def _translate_errors(self, name: str | None = None) -> Iterator[None]:
        from chromadb.errors import NotFoundError

        try:
            yield
        except httpx.TransportError as exc:
            with self._lock:
                self._client = None
                self._handles.clear()
            raise VectorStoreUnavailable(f"{self.description} is unreachable: {exc}") from exc
        except NotFoundError as exc:
            if name is not None:
                self._handles.pop(name, None)
            raise CollectionNotFound(f"vector collection {name!r} does not exist") from exc

    def _get_client(self) -> Any:
        with self._lock:
            if self._client is None:
                try:
                    self._client = self._factory()
                except (ValueError, httpx.TransportError) as exc:  # chromadb raises ValueError when it cannot connect
                    raise VectorStoreUnavailable(f"{self.description} is unreachable: {exc}") from exc
            return self._client

    def _handle(self, name: str) -> Any:
        handle = self._handles.get(name)
        if handle is None:
            validate_collection_name(name)
            client = self._get_client()
            with self._translate_errors(name):
                handle = client.get_collection(name, embedding_function=None)
            self._handles[name] = handle
        return handle

    def _call(self, name: str, method: str, **kwargs: Any) -> Any:
        """Call ``collection.method(**kwargs)``, refreshing a stale handle once (the collection may be re-created)."""
        try:
            with self._translate_errors(name):
                return getattr(self._handle(name), method)(**kwargs)
        except CollectionNotFound:
            with self._translate_errors(name):
                return getattr(self._handle(name), method)(**kwargs)

    def _batch(self) -> int:
        client = self._get_client()
        with self._translate_errors():
            server_max = int(client.get_max_batch_size())
        return max(1, min(self.batch_size, server_max)) if server_max > 0 else self.batch_size

    # --- collections ------------------------------------------------------------------------------------------------

    def create_collection(self, name: str, dim: int, metric: Metric = "ip", *, exist_ok: bool = True) -> None:
        info = CollectionInfo(validate_collection_name(name), validate_dim(dim), validate_metric(metric))
        try:
            existing = self.collection_info(name)
        except CollectionNotFound:
            client = self._get_client()
            with self._translate_errors(name):
                handle = client.create_collection(
                    name,
                    configuration=self.hnsw.configuration(info.metric),
                    metadata={_DIM_KEY: info.dim, _METRIC_KEY: info.metric},
                    embedding_function=None,
                )
            self._handles[name] = handle
            logger.info("created Chroma collection %s (dim %d, %s, %s)", name, info.dim, info.metric, self.hnsw)
            return
        check_existing_collection(existing, info, exist_ok)

    def collection_info(self, name: str) -> CollectionInfo:
        handle = self._handle(name)
        meta = handle.metadata or {}
        if _DIM_KEY not in meta or meta.get(_METRIC_KEY) not in ("ip", "cosine"):
            raise CollectionNotFound(f"Chroma collection {name!r} was not created by hybrec (no dim/metric metadata)")
        return CollectionInfo(name, int(meta[_DIM_KEY]), meta[_METRIC_KEY])

    def delete_collection(self, name: str) -> None:
        validate_collection_name(name)
        client = self._get_client()
        with self._translate_errors(name):
            client.delete_collection(name)
        self._handles.pop(name, None)

    def list_collections(self) -> list[str]:
        client = self._get_client()
        with self._translate_errors():
            return sorted(c.name for c in client.list_collections())

    # --- items ------------------------------------------------------------------------------------------------------

    def upsert(
        self,
        name: str,
        ids: Sequence[str],
        vectors: np.ndarray,
        metadatas: Sequence[Mapping[str, Any] | None] | None = None,
    ) -> None:
        ids = validate_ids(ids)
        matrix, metas = prepare_upsert(self.collection_info(name), ids, vectors, metadatas)
        batch = self._batch()
        was_empty = self.count(name) == 0
        for start in range(0, len(ids), batch):
            chunk_ids = ids[start : start + batch]
            chunk_metas: list[dict[str, Any]] = [dict(m) for m in metas[start : start + batch]]
            if not was_empty:
                # Chroma merges metadata on upsert: blank out the keys an item no longer has.
                old = self._call(name, "get", ids=chunk_ids, include=["metadatas"])
                old_keys = {i: set(m or {}) for i, m in zip(old["ids"], old["metadatas"] or [], strict=False)}
                for i, meta in zip(chunk_ids, chunk_metas, strict=True):
                    for key in old_keys.get(i, set()) - set(meta):
                        meta[key] = None
            payload = [m or None for m in chunk_metas]
            self._call(
                name,
                "upsert",
                ids=chunk_ids,
                embeddings=matrix[start : start + batch],
                metadatas=payload if any(p is not None for p in payload) else None,
            )
        logger.debug("upserted %d vectors into Chroma collection %s", len(ids), name)

    def delete(self, name: str, ids: Sequence[str]) -> None:
        ids = list(ids)
        batch = self._batch()
        for start in range(0, len(ids), batch):
            chunk = ids[start : start + batch]
            self._call(name, "delete", ids=chunk)

    def count(self, name: str) -> int:
        return int(self._call(name, "count"))

    def ids(self, name: str) -> list[str]:
        out: list[str] = []
        page = self._batch()
        while True:
            got = self._call(name, "get", include=[], limit=page, offset=len(out))
            out.extend(got["ids"])
            if len(got["ids"]) < page:
                return out

    def _get_records(self, name: str, ids: Sequence[str], include: list[str]) -> dict[str, Any]:
        found: dict[str, Any] = {}
        ids = list(ids)
        batch = self._batch()
        key = "embeddings" if "embeddings" in include else "metadatas"
        for start in range(0, len(ids), batch):
            chunk = ids[start : start + batch]
            got = self._call(name, "get", ids=chunk, include=include)
            values = got[key] if got[key] is not None else [None] * len(got["ids"])
            found.update(zip(got["ids"], values, strict=True))
        return found

    def _existing_ids(self, name: str, ids: Sequence[str]) -> list[str]:
        found: list[str] = []
        batch = self._batch()
        for start in range(0, len(ids), batch):
            found.extend(self._call(name, "get", ids=list(ids[start : start + batch]), include=[])["ids"])
        return found

    def get_vectors(self, name: str, ids: Sequence[str]) -> np.ndarray:
        dim = self.collection_info(name).dim
        found = self._get_records(name, ids, ["embeddings"])
        missing = [i for i in ids if i not in found]
        if missing:
            raise UnknownIds(name, missing)
        if not ids:
            return np.zeros((0, dim), np.float32)
        return np.asarray([found[i] for i in ids], dtype=np.float32).reshape(len(ids), dim)

    def get_metadata(self, name: str, ids: Sequence[str]) -> dict[str, Metadata]:
        found = self._get_records(name, ids, ["metadatas"])
        return {i: public_metadata(found[i] or {}) for i in ids if i in found}

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
        n = validate_n(n)
        info = self.collection_info(name)
        queries = prepare_queries(info, vectors)
        exclude = set(exclude_ids or ())
        allow: list[str] | None = None
        if where is not None and where.ids is not None:
            wanted = sorted(where.ids - exclude)
            # Chroma fails the whole query on an allow-list id it does not hold, so keep the ones it has.
            allow = self._existing_ids(name, wanted) if wanted else []
            if not allow:
                return [[] for _ in range(queries.shape[0])]
        server_where = where_clause(where)
        if where is None or server_where is None or allow is not None:
            raw = self._search(name, queries, n + len(exclude), allow, server_where)
            return [_keep(row, n, exclude, None, with_metadata) for row in raw]

        # Chroma's filtered search is slow (hundreds of ms on 100k items), so first filter here the unfiltered top
        # candidates: the first n matches among the top-K are the top n matches (any match outside the top-K scores
        # lower than all of it). Rows with too few matches among the candidates go to Chroma's filtered search.
        fetch = max(self.prefilter_candidates, 5 * n + len(exclude))
        raw = self._search(name, queries, fetch, None, None)
        out = [_keep(row, n, exclude, where, with_metadata) for row in raw]
        retry = [r for r, row in enumerate(raw) if len(out[r]) < n and len(row) == fetch]
        if retry:
            slow = self._search(name, queries[retry], n + len(exclude), None, server_where)
            for r, row in zip(retry, slow, strict=True):
                out[r] = _keep(row, n, exclude, None, with_metadata)
        return out

    def _search(
        self, name: str, queries: np.ndarray, fetch: int, allow: list[str] | None, where: dict[str, Any] | None
    ) -> list[list[tuple[str, float, Metadata]]]:
        """One Chroma query: per row, ``(id, score, stored metadata)`` best first."""
        result = self._call(
            name,
            "query",
            query_embeddings=queries,
            n_results=fetch,
            ids=allow,
            where=where,
            include=["metadatas", "distances"],
        )
        metadatas = result["metadatas"] or [None] * len(result["ids"])
        return [
            [(i, 1.0 - float(d), m or {}) for i, d, m in zip(ids, dists, metas or [None] * len(ids), strict=True)]
            for ids, dists, metas in zip(result["ids"], result["distances"], metadatas, strict=True)
        ]


def _keep(
    row: list[tuple[str, float, Metadata]], n: int, exclude: set[str], where: Filter | None, with_metadata: bool
) -> list[Hit]:
    """The first ``n`` candidates that are not excluded and (given ``where``) match it, as hits."""
    hits: list[Hit] = []
    for item_id, score, meta in row:
        if item_id in exclude or (where is not None and not where.matches(item_id, meta)):
            continue
        hits.append(Hit(item_id, score, public_metadata(meta)) if with_metadata else Hit(item_id, score))
        if len(hits) == n:
            break
    return hits
