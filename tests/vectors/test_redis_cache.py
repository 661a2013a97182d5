"""Redis-specific behaviour: the key layout, bulk loads, and an unreachable server."""

from __future__ import annotations

import socket

import numpy as np
import pytest
import redis

from hybrec.vectors.base import VectorStoreUnavailable
from hybrec.vectors.redis_cache import RedisUserVectorCache

pytestmark = pytest.mark.integration


@pytest.fixture
def cache(redis_url: str, redis_namespace: str):  # type: ignore[no-untyped-def]
    c = RedisUserVectorCache(redis_url, redis_namespace, chunk_size=1000)
    yield c
    c.delete_namespace()
    c.close()


def test_keys_are_namespaced_and_hold_float32_little_endian(
    cache: RedisUserVectorCache, redis_url: str, redis_namespace: str
) -> None:
    vector = np.array([1.5, -2.0, 3.25], np.float32)
    cache.set(9, "user-1", vector)
    raw = redis.Redis.from_url(redis_url).get(f"hybrec:{redis_namespace}:v9:user:user-1")
    assert raw == vector.astype("<f4").tobytes()


def test_bulk_load_of_50k_users_in_chunks(cache: RedisUserVectorCache) -> None:
    ids = [f"user-{i}" for i in range(50_000)]
    matrix = np.random.default_rng(0).standard_normal((50_000, 64)).astype(np.float32)
    cache.set_many(2, ids, matrix)
    sample = [0, 999, 1000, 25_000, 49_999]
    got = cache.get_many(2, [ids[i] for i in sample])
    for row, vector in zip(sample, got, strict=True):
        np.testing.assert_array_equal(vector, matrix[row])
    assert cache.delete_version(2) == 50_000
    assert cache.get(2, "user-0") is None


def test_namespaces_do_not_see_each_other(cache: RedisUserVectorCache, redis_url: str, redis_namespace: str) -> None:
    other = RedisUserVectorCache(redis_url, redis_namespace + "-other")
    try:
        cache.set(1, "alice", np.ones(3, np.float32))
        cache.set_active_version(1)
        assert other.get(1, "alice") is None
        assert other.get_active_version() is None
        other.set(1, "alice", np.zeros(3, np.float32))
        other.delete_version(1)
        np.testing.assert_array_equal(cache.get(1, "alice"), np.ones(3, np.float32))
    finally:
        other.delete_namespace()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # closed again when the block ends: nothing listens there


def test_unreachable_redis_raises_vector_store_unavailable() -> None:
    down = RedisUserVectorCache(f"redis://127.0.0.1:{_closed_port()}/0", "down", connect_timeout=0.5)
    for call in (
        lambda: down.ping(),
        lambda: down.get(1, "alice"),
        lambda: down.get_many(1, ["alice"]),
        lambda: down.set(1, "alice", np.ones(3, np.float32)),
        lambda: down.set_many(1, ["alice"], np.ones((1, 3), np.float32)),
        lambda: down.get_active_version(),
        lambda: down.set_active_version(1),
        lambda: down.delete_version(1),
        lambda: down.get_blob(1, "popular"),
    ):
        with pytest.raises(VectorStoreUnavailable, match="unreachable"):
            call()


def test_password_is_not_shown_in_messages() -> None:
    down = RedisUserVectorCache(f"redis://:s3cret@127.0.0.1:{_closed_port()}/0", "down", connect_timeout=0.5)
    with pytest.raises(VectorStoreUnavailable) as info:
        down.ping()
    assert "s3cret" not in str(info.value)
    assert "s3cret" not in repr(down)
