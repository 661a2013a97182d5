"""In-process user-vector cache: the embedded default (one process, no server)."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np

from hybrec.vectors.base import UserVectorCache, as_matrix, validate_ids
from hybrec.vectors.keys import validate_blob_name, validate_user_id, validate_version


class MemoryUserVectorCache(UserVectorCache):
    """User vectors in a dict per version, guarded by a lock; same semantics as the Redis cache.

    Vectors are copied in and out, so a caller mutating an array never changes what is cached.
    """

    in_process = True

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._vectors: dict[int, dict[str, np.ndarray]] = {}
        self._blobs: dict[int, dict[str, bytes]] = {}
        self._active: int | None = None

    def get(self, version: int, user_id: str) -> np.ndarray | None:
        version = validate_version(version)
        user_id = validate_user_id(user_id)
        with self._lock:
            vector = self._vectors.get(version, {}).get(user_id)
        return None if vector is None else vector.copy()

    def get_many(self, version: int, user_ids: Sequence[str]) -> list[np.ndarray | None]:
        version = validate_version(version)
        ids = [validate_user_id(u) for u in user_ids]
        with self._lock:
            table = self._vectors.get(version, {})
            found = [table.get(u) for u in ids]
        return [None if v is None else v.copy() for v in found]

    def set(self, version: int, user_id: str, vector: np.ndarray) -> None:
        self.set_many(version, [user_id], as_matrix(vector, None, "vector"))

    def set_many(self, version: int, user_ids: Sequence[str], matrix: np.ndarray) -> None:
        version = validate_version(version)
        ids = validate_ids(user_ids, "user_ids")
        rows = as_matrix(matrix, None, "matrix")
        if rows.shape[0] != len(ids):
            raise ValueError(f"matrix has {rows.shape[0]} rows for {len(ids)} user ids")
        for u in ids:
            validate_user_id(u)
        with self._lock:
            table = self._vectors.setdefault(version, {})
            for u, row in zip(ids, rows, strict=True):
                table[u] = row.copy()

    def delete_version(self, version: int) -> int:
        version = validate_version(version)
        with self._lock:
            removed = len(self._vectors.pop(version, {})) + len(self._blobs.pop(version, {}))
        return removed

    def list_versions(self) -> list[int]:
        with self._lock:
            return sorted(set(self._vectors) | set(self._blobs))

    def set_blob(self, version: int, name: str, data: bytes) -> None:
        version = validate_version(version)
        name = validate_blob_name(name)
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(f"blob {name!r} must be bytes, got {type(data).__name__}")
        with self._lock:
            self._blobs.setdefault(version, {})[name] = bytes(data)

    def get_blob(self, version: int, name: str) -> bytes | None:
        version = validate_version(version)
        name = validate_blob_name(name)
        with self._lock:
            return self._blobs.get(version, {}).get(name)

    def get_active_version(self) -> int | None:
        return self._active

    def set_active_version(self, version: int) -> None:
        version = validate_version(version)
        with self._lock:
            self._active = version

    def ping(self) -> bool:
        return True
