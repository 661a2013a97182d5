"""User-vector cache and vector index: protocols, an embedded and a production backend each, one factory.

>>> from hybrec.vectors import make_user_cache, make_vector_index, Filter
"""

from hybrec.vectors.base import (
    CollectionExists,
    CollectionInfo,
    CollectionNotFound,
    DimensionMismatch,
    Hit,
    Metadata,
    Metric,
    UnknownIds,
    UserVectorCache,
    VectorIndex,
    VectorStoreError,
    VectorStoreUnavailable,
)
from hybrec.vectors.factory import make_user_cache, make_vector_index
from hybrec.vectors.filters import Filter, normalise_brand

__all__ = [
    "CollectionExists",
    "CollectionInfo",
    "CollectionNotFound",
    "DimensionMismatch",
    "Filter",
    "Hit",
    "Metadata",
    "Metric",
    "UnknownIds",
    "UserVectorCache",
    "VectorIndex",
    "VectorStoreError",
    "VectorStoreUnavailable",
    "make_user_cache",
    "make_vector_index",
    "normalise_brand",
]
