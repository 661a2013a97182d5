"""Backends are chosen from settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from hybrec.config import Settings
from hybrec.vectors import make_user_cache, make_vector_index
from hybrec.vectors.chroma_index import ChromaVectorIndex
from hybrec.vectors.exact_index import ExactVectorIndex
from hybrec.vectors.memory_cache import MemoryUserVectorCache
from hybrec.vectors.redis_cache import RedisUserVectorCache


def _settings(tmp_path: Path, **kwargs: object) -> Settings:
    return Settings(var_dir=tmp_path, _env_file=None, **kwargs)  # type: ignore[call-arg]


def test_embedded_defaults(tmp_path: Path) -> None:
    settings = _settings(tmp_path, redis_url=None, chroma_url=None)
    assert isinstance(make_user_cache(settings), MemoryUserVectorCache)
    index = make_vector_index(settings)
    assert isinstance(index, ExactVectorIndex)
    assert index.root == tmp_path / "index"
    assert index.linger_s == 0.002  # HYBREC_EXACT_BATCH_LINGER_MS's default
    quiet = make_vector_index(_settings(tmp_path, chroma_url=None, exact_batch_linger_ms=0))
    assert isinstance(quiet, ExactVectorIndex) and quiet.linger_s == 0


@pytest.mark.integration
def test_redis_when_url_is_set(tmp_path: Path, redis_url: str, redis_namespace: str) -> None:
    cache = make_user_cache(_settings(tmp_path, redis_url=redis_url), namespace=redis_namespace)
    assert isinstance(cache, RedisUserVectorCache)
    assert cache.ping()
    assert cache.keys.namespace == redis_namespace


def test_chroma_server_or_path(tmp_path: Path) -> None:
    server = make_vector_index(_settings(tmp_path, chroma_url="http://chroma.internal:8000"))
    assert isinstance(server, ChromaVectorIndex)
    assert server.description == "Chroma server http://chroma.internal:8000"
    embedded = make_vector_index(_settings(tmp_path, chroma_url=f"file://{tmp_path}/chroma"))
    assert isinstance(embedded, ChromaVectorIndex)
    assert embedded.description == f"Chroma database at {tmp_path}/chroma"
