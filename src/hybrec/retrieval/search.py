"""Product search for the shopping assistant: hybrid candidates → cross-encoder rerank → ALS personalisation.

One :meth:`ProductSearch.search` call runs, with the caller's :class:`~hybrec.vectors.filters.Filter` applied
inside every retrieval step (a returned product always satisfies it):

1. **embed** the query with the bi-encoder;
2. **dense**: the ``candidates`` (50) nearest products by cosine in the product index, filtered by the index;
3. **lexical**: the ``candidates`` best BM25 matches that pass the same filter — the filter is checked by the
   vector index itself (the lexical hits are passed as an id allow-list together with the filter), so the BM25
   side applies exactly the semantics of the dense side on either backend, and returns their cosine as well;
4. **fuse** dense and lexical scores (:func:`~hybrec.retrieval.lexical.fuse_scores`) and keep the ``candidates``
   best of the union;
5. **rerank** them with the cross-encoder, or keep the fused score when no cross-encoder is available;
6. **personalise**: blend with the user's ALS scores (:func:`~hybrec.retrieval.personalise.blend`).

The lexical index is built from the product texts stored in the index metadata, so a search needs only the vector
index; it is rebuilt when the number of products changes (checked every few seconds), when older than
``lexical_ttl_s`` (another process may have re-indexed changed texts), or by :meth:`ProductSearch.refresh`.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from hybrec.llm.cpu_threads import cpu_times, threads_for
from hybrec.retrieval.catalog_index import (
    NAME_KEY,
    NUM_RATINGS_KEY,
    PRODUCTS_COLLECTION,
    TEXT_KEY,
)
from hybrec.retrieval.embedder import TextEmbedder, get_embedder
from hybrec.retrieval.lexical import BM25Index, fuse_scores
from hybrec.retrieval.personalise import blend
from hybrec.retrieval.product_text import rerank_text
from hybrec.retrieval.reranker import Reranker, get_reranker
from hybrec.retrieval.results import ScoredProduct, SearchResult
from hybrec.retrieval.torch_threads import torch_threads
from hybrec.vectors.base import CollectionNotFound, Hit, VectorIndex
from hybrec.vectors.filters import BRAND_KEY, CATEGORY_KEY, PRICE_KEY, RATING_KEY, Filter

if TYPE_CHECKING:
    from hybrec.config import Settings

logger = logging.getLogger(__name__)

__all__ = ["ItemScorer", "ProductSearch", "ScoredProduct", "SearchResult"]

# (user vector, candidate item ids) -> ALS score of each candidate the model knows (others left out).
ItemScorer = Callable[[np.ndarray, Sequence[str]], Mapping[str, float]]

_LEXICAL_ROUNDS = 4  # allow-list queries spent finding lexical matches that pass a selective filter
_FETCH_CHUNK = 2000
_COUNT_CHECK_S = 5.0  # how often the lexical index compares its size with the product index
_MAX_AUTO_THREADS = 4  # rerank threads "auto" may choose
_MIN_SAMPLE_JIFFIES = 4  # CPU ticks (all CPUs together, 10 ms each) a thread choice needs; else keep the last one


def _cpu_times() -> tuple[int, int] | None:
    """``(idle, total)`` jiffies of all CPUs from ``/proc/stat``; None where it cannot be read."""
    try:
        return cpu_times()
    except (OSError, ValueError, IndexError):
        return None


@dataclass(slots=True)
class _Candidate:
    hit_id: str
    metadata: Mapping[str, Any]
    dense: float
    lexical: float = 0.0
    fused: float = 0.0


def _with_ids(where: Filter | None, ids: Sequence[str]) -> Filter:
    """``where`` narrowed to the allow-list ``ids`` (intersected with its own allow-list, if any)."""
    if where is None:
        return Filter(ids=ids)
    allowed = ids if where.ids is None else [i for i in ids if i in where.ids]
    return Filter(
        category=where.category,
        brand=where.brand,
        min_price=where.min_price,
        max_price=where.max_price,
        min_rating=where.min_rating,
        ids=allowed,
    )


def _optional_float(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _optional_str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


class ProductSearch:
    """Hybrid product search with reranking and personalisation over the product collection of a vector index.

    Parameters
    ----------
    index : VectorIndex
        Holds the product collection written by :class:`~hybrec.retrieval.catalog_index.CatalogIndex`.
    embedder : TextEmbedder
        The same bi-encoder the catalog was indexed with.
    reranker : Reranker or None
        Cross-encoder; None ranks by the fused dense + lexical score (see :func:`~hybrec.retrieval.reranker
        .reranker_status`).
    item_scorer : callable, optional
        ``item_scorer(user_vector, item_ids) -> {item_id: als_score}`` from the collaborative engine; without it
        (or without a user vector) ranking is pure relevance.
    personalisation_weight : float, default 0.3
        Share of the ALS score in the final score (``settings.personalisation_weight``).
    candidates : int, default 50
        Products taken from each retrieval side and reranked.
    lexical_weight : float, default 0.3
        Share of the normalised BM25 score in the fused score.
    collection : str, default "products"
    lexical_ttl_s : float, default 300
        Rebuild the BM25 index from the product index when it is older than this.
    inference_threads : int or None, default 1
        torch threads for the query embedding (see :mod:`hybrec.retrieval.torch_threads` for why one); None keeps
        torch's setting.
    rerank_threads : int, "auto" or None, default 1
        Threads for the rerank (torch's, or ONNX Runtime's for the ``onnx`` reranker); None keeps the current
        setting. ``"auto"``: for the ONNX reranker every CPU (at most 4); for torch one per CPU left idle while
        this search embedded and retrieved (read from ``/proc/stat`` at its start and before the rerank, so no extra
        wait; the CPU the search itself kept busy counts as free). Measured on the shared 2-core machine
        (``bench/retrieval.py``, int8, 50 candidates): torch on 2 threads took 1.04 s against 0.57 s on 1 when a
        spinning process held a core, but ONNX Runtime's threads sleep instead of spinning and 2 of them were never
        slower than 1: p50 303 ms against 440 ms at load 1.4, 327 against 419 ms next to a spinning process, 615
        against 674 ms next to two.
    rerank_full_text : bool, default False
        Rerank on the stored full product text instead of the short name + brand + category
        (:func:`~hybrec.retrieval.product_text.rerank_text`); about 3 times the tokens, so about 3 times the time.
    """

    def __init__(
        self,
        index: VectorIndex,
        embedder: TextEmbedder,
        reranker: Reranker | None = None,
        *,
        item_scorer: ItemScorer | None = None,
        personalisation_weight: float = 0.3,
        candidates: int = 50,
        lexical_weight: float = 0.3,
        collection: str = PRODUCTS_COLLECTION,
        lexical_ttl_s: float = 300.0,
        inference_threads: int | None = 1,
        rerank_threads: int | Literal["auto"] | None = 1,
        rerank_full_text: bool = False,
    ) -> None:
        if candidates < 1:
            raise ValueError(f"candidates must be >= 1, got {candidates}")
        if not 0 <= personalisation_weight <= 1:
            raise ValueError(f"personalisation_weight must be in [0, 1], got {personalisation_weight}")
        if not 0 <= lexical_weight <= 1:
            raise ValueError(f"lexical_weight must be in [0, 1], got {lexical_weight}")
        if rerank_threads != "auto" and rerank_threads is not None and rerank_threads < 1:
            raise ValueError(f"rerank_threads must be >= 1, 'auto' or None, got {rerank_threads!r}")
        self.index = index
        self.embedder = embedder
        self.reranker = reranker
        self.item_scorer = item_scorer
        self.personalisation_weight = personalisation_weight
        self.candidates = candidates
        self.lexical_weight = lexical_weight
        self.collection = collection
        self.lexical_ttl_s = lexical_ttl_s
        self.inference_threads = inference_threads
        self.rerank_threads = rerank_threads
        self.rerank_full_text = rerank_full_text
        self._bm25: BM25Index | None = None
        self._bm25_built_at = -float("inf")
        self._count_checked_at = -float("inf")
        self._bm25_lock = threading.Lock()
        self._auto_threads = 1

    @classmethod
    def from_settings(
        cls, settings: Settings, index: VectorIndex | None = None, *, item_scorer: ItemScorer | None = None
    ) -> ProductSearch:
        """A search over ``settings``' vector index with the process-wide embedder and reranker."""
        if index is None:
            from hybrec.vectors import make_vector_index

            index = make_vector_index(settings)
        return cls(
            index,
            get_embedder(settings),
            get_reranker(settings),
            item_scorer=item_scorer,
            personalisation_weight=settings.personalisation_weight,
            candidates=settings.rerank_candidates,
            rerank_threads="auto" if settings.reranker_threads is None else settings.reranker_threads,
        )

    # --- lexical index -------------------------------------------------------------------------------------------
    def refresh(self) -> int:
        """Rebuild the BM25 index from the product texts in the index; returns the number of products."""
        try:
            ids = self.index.ids(self.collection)
        except CollectionNotFound:
            ids = []
        texts: dict[str, str] = {}
        for start in range(0, len(ids), _FETCH_CHUNK):
            for item_id, meta in self.index.get_metadata(self.collection, ids[start : start + _FETCH_CHUNK]).items():
                text = meta.get(TEXT_KEY)
                texts[item_id] = text if isinstance(text, str) else str(meta.get(NAME_KEY, ""))
        bm25 = BM25Index()
        bm25.set_documents(texts)
        with self._bm25_lock:
            self._bm25 = bm25
            self._bm25_built_at = time.monotonic()
        logger.info("lexical index rebuilt over %d products", len(bm25))
        return len(bm25)

    def _lexical(self) -> BM25Index:
        """The BM25 index, rebuilt when older than the TTL or when the product count changed (checked every few
        seconds: items added or removed by an indexer in another process are matched lexically soon after)."""
        bm25 = self._bm25
        now = time.monotonic()
        stale = bm25 is None or now - self._bm25_built_at > self.lexical_ttl_s
        if not stale and bm25 is not None and now - self._count_checked_at > _COUNT_CHECK_S:
            self._count_checked_at = now
            stale = self.index.count(self.collection) != len(bm25)
        if stale:
            self.refresh()
            bm25 = self._bm25
        assert bm25 is not None
        return bm25

    def rerank_text(self, metadata: Mapping[str, Any]) -> str:
        """What the cross-encoder reads for a product: the short name + brand + category text, or the stored full
        text with ``rerank_full_text`` (or when the product has no stored name)."""
        name = _optional_str(metadata.get(NAME_KEY))
        if self.rerank_full_text or not name:
            return str(metadata.get(TEXT_KEY, "") or name or "")
        return rerank_text(name, _optional_str(metadata.get(BRAND_KEY)), _optional_str(metadata.get(CATEGORY_KEY)))

    # --- search --------------------------------------------------------------------------------------------------
    def search(
        self,
        query_text: str,
        filters: Filter | None = None,
        n: int = 10,
        user_vector: np.ndarray | None = None,
        *,
        exclude_ids: set[str] | frozenset[str] | None = None,
    ) -> list[ScoredProduct]:
        """The ``n`` best products for ``query_text`` that satisfy ``filters``, best first.

        See :meth:`search_with_timings` for the parameters; this returns only the products.
        """
        return self.search_with_timings(query_text, filters, n, user_vector, exclude_ids=exclude_ids).products

    def search_with_timings(
        self,
        query_text: str,
        filters: Filter | None = None,
        n: int = 10,
        user_vector: np.ndarray | None = None,
        *,
        exclude_ids: set[str] | frozenset[str] | None = None,
    ) -> SearchResult:
        """Search, reporting the time of each stage.

        Parameters
        ----------
        query_text : str
            What the shopper asked for (non-empty).
        filters : Filter, optional
            Constraints every returned product satisfies (category, brand, price range, minimum rating, ids).
        n : int, default 10
            Products to return, 1 ≤ n ≤ ``candidates``; fewer when fewer products match.
        user_vector : numpy.ndarray, optional
            The user's ALS vector; None (a new user) ranks by relevance alone.
        exclude_ids : set of str, optional
            Products never to return (e.g. the ones already shown).

        Raises
        ------
        ValueError
            For an empty query or ``n`` outside [1, candidates].
        """
        if not isinstance(query_text, str) or not query_text.strip():
            raise ValueError("query_text must be a non-empty string")
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= self.candidates:
            raise ValueError(f"n must be an integer between 1 and {self.candidates}, got {n!r}")
        query = query_text.strip()
        timings: dict[str, float] = {}
        clock = time.perf_counter()

        def lap(stage: str) -> None:
            nonlocal clock
            now = time.perf_counter()
            timings[stage] = (now - clock) * 1000.0
            clock = now

        started = clock
        cpu_before = _cpu_times() if self.rerank_threads == "auto" and self.reranker is not None else None
        with torch_threads(self.inference_threads):
            query_vector = self.embedder.encode_one(query)
        lap("embed")
        try:
            dense_hits = self.index.query(self.collection, query_vector, self.candidates, filters, exclude_ids)[0]
        except CollectionNotFound as exc:
            raise CollectionNotFound(
                f"the product index {self.collection!r} does not exist; build it with `hybrec index catalog`"
            ) from exc
        lap("dense")
        pool = self._fuse(query, query_vector, dense_hits, filters, exclude_ids)
        lap("lexical")
        rerank_scores: np.ndarray | None = None
        rerank_threads: int | None = None
        if self.reranker is not None and pool:
            rerank_threads = self._threads_for_rerank(cpu_before)
            rerank_scores = self.reranker.score(
                query, [self.rerank_text(c.metadata) for c in pool], threads=rerank_threads
            )
            relevance = rerank_scores
        else:
            relevance = np.array([c.fused for c in pool], dtype=np.float64)
        lap("rerank")
        als: list[float | None] | None = None
        if user_vector is not None and self.item_scorer is not None and pool:
            known = self.item_scorer(np.asarray(user_vector, dtype=np.float32), [c.hit_id for c in pool])
            als = [known.get(c.hit_id) for c in pool]
        final = blend(relevance, als, self.personalisation_weight)
        # Ties (e.g. equal scores after min-max) keep the relevance order.
        order = sorted(range(len(pool)), key=lambda i: (-final[i], -relevance[i]))[:n]
        products = [
            self._product(
                pool[i],
                float(final[i]),
                float(relevance[i]),
                None if rerank_scores is None else float(rerank_scores[i]),
                None if als is None else als[i],
            )
            for i in order
        ]
        lap("personalise")
        timings["total"] = (time.perf_counter() - started) * 1000.0
        return SearchResult(
            products,
            timings,
            reranked=rerank_scores is not None,
            personalised=als is not None,
            candidates=len(pool),
            rerank_threads=rerank_threads,
        )

    def _threads_for_rerank(self, cpu_before: tuple[int, int] | None) -> int | None:
        """``rerank_threads``, or with ``"auto"``: every CPU for the ONNX reranker, one per CPU idle since
        ``cpu_before`` (plus the one this search kept busy) for torch, at most :data:`_MAX_AUTO_THREADS`; the
        previous choice when the sample is too short to tell."""
        if self.rerank_threads != "auto":
            return self.rerank_threads
        n_cpus = os.cpu_count() or 1
        if self.reranker is not None and self.reranker.backend == "onnx":
            return min(n_cpus, _MAX_AUTO_THREADS)
        cpu_after = _cpu_times()
        if cpu_before is None or cpu_after is None or cpu_after[1] - cpu_before[1] < _MIN_SAMPLE_JIFFIES:
            return self._auto_threads
        idle = n_cpus * (cpu_after[0] - cpu_before[0]) / (cpu_after[1] - cpu_before[1])
        self._auto_threads = threads_for(idle + 1.0, min(n_cpus, _MAX_AUTO_THREADS))
        return self._auto_threads

    def _fuse(
        self,
        query: str,
        query_vector: np.ndarray,
        dense_hits: list[Hit],
        filters: Filter | None,
        exclude_ids: set[str] | frozenset[str] | None,
    ) -> list[_Candidate]:
        """The ``candidates`` best products, by fused score, of the union of the dense and filtered lexical hits."""
        pool: dict[str, _Candidate] = {h.id: _Candidate(h.id, h.metadata, h.score) for h in dense_hits}
        bm25 = self._lexical()
        budget = self.candidates * 4
        matches = bm25.search(query, budget * _LEXICAL_ROUNDS)
        taken = 0
        for start in range(0, len(matches), budget):
            chunk = matches[start : start + budget]
            where = _with_ids(filters, [m.id for m in chunk])
            if where.ids is not None and not where.ids:
                continue
            passing = {
                h.id: h
                for h in self.index.query(self.collection, query_vector, len(where.ids or chunk), where, exclude_ids)[0]
            }
            for match in chunk:
                hit = passing.get(match.id)
                if hit is None:
                    continue
                candidate = pool.setdefault(hit.id, _Candidate(hit.id, hit.metadata, hit.score))
                candidate.lexical = match.score
                taken += 1
                if taken == self.candidates:
                    break
            if taken == self.candidates:
                break
        # Dense hits beyond the lexical candidates may still match some query terms.
        missing = [cid for cid, c in pool.items() if c.lexical == 0.0]
        for cid, score in bm25.scores_for(query, missing).items():
            pool[cid].lexical = score
        for candidate in pool.values():
            candidate.fused = fuse_scores(candidate.dense, candidate.lexical, self.lexical_weight)
        ranked = sorted(pool.values(), key=lambda c: (-c.fused, -c.dense, c.hit_id))
        return ranked[: self.candidates]

    @staticmethod
    def _product(
        candidate: _Candidate, score: float, relevance: float, rerank: float | None, als: float | None
    ) -> ScoredProduct:
        meta = candidate.metadata
        num_ratings = meta.get(NUM_RATINGS_KEY)
        return ScoredProduct(
            item_id=candidate.hit_id,
            name=str(meta.get(NAME_KEY, candidate.hit_id)),
            brand=_optional_str(meta.get(BRAND_KEY)),
            category=_optional_str(meta.get(CATEGORY_KEY)),
            price=_optional_float(meta.get(PRICE_KEY)),
            avg_rating=_optional_float(meta.get(RATING_KEY)),
            num_ratings=int(num_ratings) if isinstance(num_ratings, int | float) else 0,
            score=score,
            relevance=relevance,
            dense=candidate.dense,
            lexical=candidate.lexical,
            rerank=rerank,
            als=als,
        )
