"""How our types translate to Chroma's: the HNSW configuration of a collection and the ``where`` clause of a filter.

Kept apart from the client code in :mod:`hybrec.vectors.chroma_index` so both can be read (and tested) on their
own; see that module's docstring for why the HNSW values are what they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hybrec.vectors.base import Metric
from hybrec.vectors.filters import BRAND_NORM_KEY, CATEGORY_KEY, PRICE_KEY, RATING_KEY, Filter


@dataclass(frozen=True, slots=True)
class HnswSettings:
    """HNSW parameters fixed when a collection is created (:mod:`hybrec.vectors.chroma_index` says why these)."""

    ef_search: int = 800
    ef_construction: int = 200
    max_neighbors: int = 16

    def configuration(self, metric: Metric) -> dict[str, Any]:
        return {
            "hnsw": {
                "space": metric,
                "ef_search": self.ef_search,
                "ef_construction": self.ef_construction,
                "max_neighbors": self.max_neighbors,
            }
        }


def where_clause(where: Filter | None) -> dict[str, Any] | None:
    """The Chroma ``where`` equivalent of ``where`` (the id allow-list is passed separately).

    Values go in as literals under ``$eq``/``$gte``/``$lte`` operators we choose, so a user string can never become
    an operator.
    """
    if where is None:
        return None
    conditions: list[dict[str, Any]] = []
    if where.category is not None:
        conditions.append({CATEGORY_KEY: {"$eq": where.category}})
    if where.brand_norm is not None:
        conditions.append({BRAND_NORM_KEY: {"$eq": where.brand_norm}})
    if where.min_price is not None:
        conditions.append({PRICE_KEY: {"$gte": where.min_price}})
    if where.max_price is not None:
        conditions.append({PRICE_KEY: {"$lte": where.max_price}})
    if where.min_rating is not None:
        conditions.append({RATING_KEY: {"$gte": where.min_rating}})
    if not conditions:
        return None
    return conditions[0] if len(conditions) == 1 else {"$and": conditions}
