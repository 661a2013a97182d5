"""Choose the vector backends from settings: the one place that knows which implementation runs."""

from __future__ import annotations

import logging

from hybrec.config import Settings
from hybrec.vectors.base import UserVectorCache, VectorIndex

logger = logging.getLogger(__name__)


def make_user_cache(settings: Settings, namespace: str = "default") -> UserVectorCache:
    """Redis when ``HYBREC_REDIS_URL`` is set, else an in-process cache.

    Parameters
    ----------
    settings : Settings
        Reads ``redis_url``.
    namespace : str, default "default"
        Redis key prefix, so several deployments (or test runs) can share one server.
    """
    if settings.redis_url:
        from hybrec.vectors.redis_cache import RedisUserVectorCache

        cache: UserVectorCache = RedisUserVectorCache(settings.redis_url, namespace)
    else:
        from hybrec.vectors.memory_cache import MemoryUserVectorCache

        cache = MemoryUserVectorCache()
    logger.info("user-vector cache: %r", cache)
    return cache


def make_vector_index(settings: Settings) -> VectorIndex:
    """The item/product vector index chosen by ``HYBREC_CHROMA_URL``.

    ``http(s)://host:port`` connects to a Chroma server; any other value (a directory, optionally ``file://``) opens
    an embedded Chroma database there; unset gives the exact in-process index persisted under
    ``settings.var_dir / "index"``.
    """
    url = settings.chroma_url
    if url:
        from hybrec.vectors.chroma_index import ChromaVectorIndex

        if url.startswith(("http://", "https://")):
            index: VectorIndex = ChromaVectorIndex.from_url(url)
        else:
            index = ChromaVectorIndex.persistent(url.removeprefix("file://"))
    else:
        from hybrec.vectors.exact_index import ExactVectorIndex

        index = ExactVectorIndex(settings.var_dir / "index", linger_s=settings.exact_batch_linger_ms / 1000)
    logger.info("vector index: %r", index)
    return index
