"""Redis user-vector cache: the production backend (``HYBREC_REDIS_URL``).

Vectors are stored as raw float32 little-endian bytes (256 bytes for 64 factors), one string key per user and
version (layout in :mod:`hybrec.vectors.keys`). Bulk loads are chunked ``MSET`` commands in one non-transactional
pipeline, so 50k users load in a few round trips; a version is removed with ``SCAN`` + ``UNLINK`` in chunks (never
``KEYS``, which blocks the server). Every connection failure surfaces as :class:`VectorStoreUnavailable`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import redis
from redis import exceptions as redis_errors
from redis.backoff import NoBackoff
from redis.retry import Retry

from hybrec.vectors.base import UserVectorCache, VectorStoreUnavailable, as_matrix, validate_ids
from hybrec.vectors.keys import KeyLayout, validate_blob_name, validate_user_id, validate_version

logger = logging.getLogger(__name__)

_VECTOR_DTYPE = np.dtype("<f4")
_CHUNKS_PER_ROUND_TRIP = 8


@contextmanager
def _unavailable_on_connection_error(url: str) -> Iterator[None]:
    try:
        yield
    except (redis_errors.ConnectionError, redis_errors.TimeoutError) as exc:
        raise VectorStoreUnavailable(f"Redis at {url} is unreachable: {exc}") from exc


def _redact(url: str) -> str:
    """The URL without its password, for messages and logs."""
    if "@" not in url:
        return url
    scheme, _, rest = url.partition("://")
    return f"{scheme}://***@{rest.rpartition('@')[2]}"


class RedisUserVectorCache(UserVectorCache):
    """User vectors in Redis under ``hybrec:{namespace}:v{version}:...`` keys.

    Parameters
    ----------
    url : str
        ``redis://[:password@]host:port/db`` (or ``rediss://`` for TLS).
    namespace : str, default "default"
        Key prefix separating deployments (and test runs) that share one Redis.
    chunk_size : int, default 5000
        Users per ``MSET`` / ``MGET`` / ``UNLINK`` command.
    socket_timeout, connect_timeout : float
        Seconds before a silent server counts as unavailable.
    client : redis.Redis, optional
        An existing client (its ``decode_responses`` must be False); ``url`` is then only used in messages.
    """

    def __init__(
        self,
        url: str,
        namespace: str = "default",
        *,
        chunk_size: int = 5000,
        socket_timeout: float = 5.0,
        connect_timeout: float = 2.0,
        client: redis.Redis | None = None,
    ) -> None:
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be positive, got {chunk_size}")
        self.keys = KeyLayout(namespace)
        self.chunk_size = chunk_size
        self._url = _redact(url)
        # One immediate retry (a pooled connection gone stale across a Redis restart), never redis-py's default of
        # three with exponential backoff: a request waiting on the cache waits its socket timeout at most twice.
        self._redis = client or redis.Redis.from_url(
            url,
            socket_timeout=socket_timeout,
            socket_connect_timeout=connect_timeout,
            decode_responses=False,
            retry=Retry(NoBackoff(), 1),
        )

    def __repr__(self) -> str:
        return f"RedisUserVectorCache({self._url!r}, namespace={self.keys.namespace!r})"

    # --- vectors -----------------------------------------------------------------------------------------------------

    @staticmethod
    def _decode(data: bytes | None) -> np.ndarray | None:
        if data is None:
            return None
        return np.frombuffer(data, dtype=_VECTOR_DTYPE).astype(np.float32)

    def get(self, version: int, user_id: str) -> np.ndarray | None:
        key = self.keys.user(validate_version(version), validate_user_id(user_id))
        with _unavailable_on_connection_error(self._url):
            data = self._redis.get(key)
        return self._decode(data)  # type: ignore[arg-type]

    def get_many(self, version: int, user_ids: Sequence[str]) -> list[np.ndarray | None]:
        version = validate_version(version)
        keys = [self.keys.user(version, validate_user_id(u)) for u in user_ids]
        out: list[np.ndarray | None] = []
        with _unavailable_on_connection_error(self._url):
            for start in range(0, len(keys), self.chunk_size):
                values = self._redis.mget(keys[start : start + self.chunk_size])
                out.extend(self._decode(v) for v in values)  # type: ignore[union-attr, arg-type]
        return out

    def set(self, version: int, user_id: str, vector: np.ndarray) -> None:
        version = validate_version(version)
        row = as_matrix(vector, None, "vector")
        if row.shape[0] != 1:
            raise ValueError(f"vector must be one row, got shape {row.shape}")
        with _unavailable_on_connection_error(self._url):
            pipe = self._redis.pipeline(transaction=False)
            pipe.set(self.keys.user(version, validate_user_id(user_id)), row[0].astype(_VECTOR_DTYPE).tobytes())
            pipe.sadd(self.keys.versions, version)
            pipe.execute()

    def set_many(self, version: int, user_ids: Sequence[str], matrix: np.ndarray) -> None:
        version = validate_version(version)
        ids = validate_ids(user_ids, "user_ids")
        rows = as_matrix(matrix, None, "matrix").astype(_VECTOR_DTYPE, copy=False)
        if rows.shape[0] != len(ids):
            raise ValueError(f"matrix has {rows.shape[0]} rows for {len(ids)} user ids")
        for u in ids:
            validate_user_id(u)
        with _unavailable_on_connection_error(self._url):
            pipe = self._redis.pipeline(transaction=False)
            pipe.sadd(self.keys.versions, version)
            for n_chunk, start in enumerate(range(0, len(ids), self.chunk_size), start=1):
                chunk = ids[start : start + self.chunk_size]
                block = rows[start : start + self.chunk_size]
                pipe.mset({self.keys.user(version, u): block[i].tobytes() for i, u in enumerate(chunk)})
                if n_chunk % _CHUNKS_PER_ROUND_TRIP == 0:  # bound the client-side buffer on very large loads
                    pipe.execute()
            pipe.execute()
        logger.info("cached %d user vectors (dim %d) under version %d", len(ids), rows.shape[1], version)

    def delete_version(self, version: int) -> int:
        version = validate_version(version)
        with _unavailable_on_connection_error(self._url):
            removed = self._unlink_matching(self.keys.version_prefix(version) + "*")
            self._redis.srem(self.keys.versions, version)
        logger.info("deleted %d cache entries of version %d", removed, version)
        return removed

    def list_versions(self) -> list[int]:
        with _unavailable_on_connection_error(self._url):
            members = self._redis.smembers(self.keys.versions)
        return sorted(int(m) for m in members)  # type: ignore[union-attr]

    # --- blobs and the active pointer --------------------------------------------------------------------------------

    def set_blob(self, version: int, name: str, data: bytes) -> None:
        version = validate_version(version)
        key = self.keys.blob(version, validate_blob_name(name))
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(f"blob {name!r} must be bytes, got {type(data).__name__}")
        with _unavailable_on_connection_error(self._url):
            pipe = self._redis.pipeline(transaction=False)
            pipe.set(key, bytes(data))
            pipe.sadd(self.keys.versions, version)
            pipe.execute()

    def get_blob(self, version: int, name: str) -> bytes | None:
        key = self.keys.blob(validate_version(version), validate_blob_name(name))
        with _unavailable_on_connection_error(self._url):
            return self._redis.get(key)  # type: ignore[return-value]

    def get_active_version(self) -> int | None:
        with _unavailable_on_connection_error(self._url):
            value = self._redis.get(self.keys.active_version)
        return None if value is None else int(value)  # type: ignore[arg-type]

    def set_active_version(self, version: int) -> None:
        # One SET: readers see either the old or the new version, never a mix.
        version = validate_version(version)
        with _unavailable_on_connection_error(self._url):
            self._redis.set(self.keys.active_version, str(version))

    def ping(self) -> bool:
        with _unavailable_on_connection_error(self._url):
            return bool(self._redis.ping())

    def close(self) -> None:
        self._redis.close()

    def delete_namespace(self) -> int:
        """Remove every key of this namespace (all versions, the pointer); for tests and decommissioning."""
        with _unavailable_on_connection_error(self._url):
            return self._unlink_matching(self.keys.root + ":*")

    def _unlink_matching(self, pattern: str) -> int:
        """UNLINK every key matching ``pattern``, found by SCAN, in chunks of ``chunk_size``."""
        removed = 0
        batch: list[bytes] = []
        for key in self._redis.scan_iter(match=pattern, count=self.chunk_size):
            batch.append(key)  # type: ignore[arg-type]
            if len(batch) >= self.chunk_size:
                removed += int(self._redis.unlink(*batch))  # type: ignore[arg-type]
                batch = []
        if batch:
            removed += int(self._redis.unlink(*batch))  # type: ignore[arg-type]
        return removed
