"""What a product search returns: scored products and the timings of its stages."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class ScoredProduct:
    """One search result, with every score that went into its rank.

    Attributes
    ----------
    item_id, name, brand, category, price, avg_rating, num_ratings
        From the product index (``price``/``avg_rating`` None when unknown).
    score : float
        Final ranking score in [0, 1] (relevance blended with the ALS score; higher is better).
    relevance : float
        Cross-encoder score when reranked, else the fused dense + lexical score.
    dense : float
        Cosine similarity of the query and product embeddings.
    lexical : float
        Normalised BM25 score in [0, 1].
    rerank : float or None
        Cross-encoder score (None when no cross-encoder is loaded).
    als : float or None
        The user's ALS score of the product (None for a new user or a product the model does not know).
    """

    item_id: str
    name: str
    brand: str | None
    category: str | None
    price: float | None
    avg_rating: float | None
    num_ratings: int
    score: float
    relevance: float
    dense: float
    lexical: float
    rerank: float | None = None
    als: float | None = None


@dataclass(frozen=True, slots=True)
class SearchResult:
    """Products best first, and the milliseconds spent in each stage (embed, dense, lexical, rerank, personalise).

    ``candidates`` is how many products were ranked (and reranked) before the top ``n`` were kept;
    ``rerank_threads`` the threads the rerank ran on (None: not reranked, or the runtime's setting).
    """

    products: list[ScoredProduct]
    timings_ms: dict[str, float] = field(default_factory=dict)
    reranked: bool = False
    personalised: bool = False
    candidates: int = 0
    rerank_threads: int | None = None
