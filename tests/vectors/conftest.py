"""Fixtures of the vector-backend tests: each protocol on its embedded backend and on the real server.

The Redis cache runs against the Redis on the machine (``HYBREC_TEST_REDIS_URL``) under a namespace unique to the
test, deleted afterwards; the Chroma index runs against the session's ``chroma_server`` with collection names unique
to the test, dropped afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hybrec.vectors.base import UserVectorCache, VectorIndex
from hybrec.vectors.exact_index import ExactVectorIndex
from hybrec.vectors.memory_cache import MemoryUserVectorCache

REDIS_URL = os.environ.get("HYBREC_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")

CACHE_BACKENDS = [pytest.param("memory"), pytest.param("redis", marks=pytest.mark.integration)]
INDEX_BACKENDS = [pytest.param("exact"), pytest.param("chroma", marks=pytest.mark.integration)]


@pytest.fixture
def redis_url() -> str:
    return REDIS_URL


@pytest.fixture
def redis_namespace() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture(params=CACHE_BACKENDS)
def user_cache(request: pytest.FixtureRequest, redis_namespace: str) -> Iterator[UserVectorCache]:
    if request.param == "memory":
        yield MemoryUserVectorCache()
        return
    from hybrec.vectors.redis_cache import RedisUserVectorCache

    cache = RedisUserVectorCache(REDIS_URL, redis_namespace)
    cache.ping()
    try:
        yield cache
    finally:
        cache.delete_namespace()
        cache.close()


def make_index(kind: str, request: pytest.FixtureRequest, root: Path) -> VectorIndex:
    if kind == "exact":
        return ExactVectorIndex(root)
    from hybrec.vectors.chroma_index import ChromaVectorIndex

    return ChromaVectorIndex.from_url(request.getfixturevalue("chroma_server"))


@pytest.fixture(params=INDEX_BACKENDS)
def vector_index(request: pytest.FixtureRequest, tmp_path: Path) -> VectorIndex:
    return make_index(request.param, request, tmp_path / "index")


@pytest.fixture
def collection_name(vector_index: VectorIndex) -> Iterator[str]:
    """A collection name unique to this test; the collection is dropped afterwards if it was created."""
    name = f"t-{uuid.uuid4().hex[:12]}"
    yield name
    if vector_index.has_collection(name):
        vector_index.delete_collection(name)


@pytest.fixture
def new_name(vector_index: VectorIndex) -> Iterator[Callable[[], str]]:
    """A factory of further unique collection names, all dropped afterwards."""
    made: list[str] = []

    def make() -> str:
        made.append(f"t-{uuid.uuid4().hex[:12]}")
        return made[-1]

    yield make
    existing = set(vector_index.list_collections())
    for name in made:
        if name in existing:
            vector_index.delete_collection(name)
