"""Offline evaluation of the shopping assistant on labelled queries generated from real catalog metadata.

Queries are built from the items of the store (the catalog as ingested from ``../shared/data``): each names a
product type and some of brand / price ceiling / rating floor, phrased the way shoppers write ("Starbucks gift card
under $30", "a gift card under $50 rated 4.5 stars and up", "3M respirator rated at least 4 stars"), and carries the
ids of **every** catalog item that truly satisfies its stated constraints (an item with an unknown price or rating
never satisfies a constraint on it). Each query is one new chat session; the returned items are scored by:

* **constraint satisfaction** — share of returned items meeting every stated constraint (target ≥ 0.99);
* **Recall@5** — share of the truly matching items in the top 5, out of ``min(5, |relevant|)``;
* **NDCG@5** — binary-relevance NDCG (Järvelin & Kekäläinen, *Cumulated gain-based evaluation of IR techniques*,
  TOIS 2002) over the same labels;
* **latency per stage** — understanding, retrieval (with its rerank share), generation, total: mean and p95 (ms).
"""

from __future__ import annotations

import math
import random
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import select
from tqdm.auto import tqdm

from hybrec.chat.engine import ChatEngine
from hybrec.chat.relaxation import satisfies
from hybrec.chat.schemas import ChatItem, QueryFilters
from hybrec.store.engine import session_scope
from hybrec.store.models import Item

STAGES = ("understanding", "retrieval", "retrieval_rerank", "generation", "total")
_BRAND_OK = re.compile(r"[A-Za-z]{3,}")


@dataclass(frozen=True, slots=True)
class LabelledQuery:
    """One evaluation query: its text, the constraints it states and the items that truly satisfy them."""

    text: str
    constraints: QueryFilters
    relevant: frozenset[str]
    kind: str


@dataclass(slots=True)
class CatalogEntry:
    item_id: str
    name: str
    brand: str | None
    category: str | None
    price: float | None
    avg_rating: float | None

    def as_item(self) -> ChatItem:
        return ChatItem(self.item_id, self.name, self.brand, self.price, self.avg_rating, 0.0, self.category)


def load_catalog(database_url: str) -> list[CatalogEntry]:
    """Every item of the store, as the metadata the labels are computed from."""
    with session_scope(database_url) as db:
        return [
            CatalogEntry(r.external_id, r.name, r.brand, r.category, r.price, r.avg_rating)
            for r in db.scalars(select(Item).order_by(Item.external_id))
        ]


def _ceiling(price: float) -> float:
    """A round price ceiling just above ``price`` (the shopper's "under $X")."""
    return float(math.ceil((price + 0.01) / 5.0) * 5)


def build_queries(
    catalog: Sequence[CatalogEntry], product_type: str, *, max_queries: int = 40, seed: int = 0
) -> list[LabelledQuery]:
    """Labelled queries over ``catalog`` (see the module docstring), at most ``max_queries``, deterministic.

    Parameters
    ----------
    catalog : sequence of CatalogEntry
        The catalog the engine searches.
    product_type : str
        How shoppers name the catalog's products ("gift card", "lab supply"); brand queries use the brand's most
        common category word instead when the catalog has no single type.
    """
    by_brand: dict[str, list[CatalogEntry]] = defaultdict(list)
    for entry in catalog:
        if entry.brand and _BRAND_OK.search(entry.brand):
            by_brand[entry.brand.strip()].append(entry)
    items = [e.as_item() for e in catalog]
    candidates: list[tuple[str, QueryFilters, str]] = []
    for brand, entries in sorted(by_brand.items()):
        priced = [e.price for e in entries if e.price is not None]
        if priced:
            ceiling = _ceiling(min(priced))
            candidates.append(
                (
                    f"{brand} {product_type} under ${ceiling:g}",
                    QueryFilters(brand=brand, max_price=ceiling),
                    "brand_price",
                )
            )
        rated = [e.avg_rating for e in entries if e.avg_rating is not None]
        if rated and max(rated) >= 4.0:
            candidates.append(
                (
                    f"{brand} {product_type} rated at least 4 stars",
                    QueryFilters(brand=brand, min_rating=4.0),
                    "brand_rating",
                )
            )
    for ceiling in (15.0, 25.0, 50.0, 100.0):
        for rating in (4.0, 4.5):
            text = f"a {product_type} under ${ceiling:g} rated {rating:g} stars and up"
            candidates.append((text, QueryFilters(max_price=ceiling, min_rating=rating), "price_rating"))
    queries: list[LabelledQuery] = []
    for text, constraints, kind in candidates:
        relevant = frozenset(i.item_id for i in items if satisfies(i, constraints))
        if relevant:
            queries.append(LabelledQuery(text, constraints, relevant, kind))
    random.Random(seed).shuffle(queries)
    return sorted(queries[:max_queries], key=lambda q: (q.kind, q.text))


def recall_at(returned: Sequence[str], relevant: frozenset[str], k: int = 5) -> float:
    """``|top-k ∩ relevant| / min(k, |relevant|)``."""
    if not relevant:
        return 0.0
    return len(set(returned[:k]) & relevant) / min(k, len(relevant))


def ndcg_at(returned: Sequence[str], relevant: frozenset[str], k: int = 5) -> float:
    """Binary-relevance NDCG@k."""
    dcg = sum(1.0 / math.log2(rank + 2) for rank, item in enumerate(returned[:k]) if item in relevant)
    ideal = sum(1.0 / math.log2(rank + 2) for rank in range(min(k, len(relevant))))
    return dcg / ideal if ideal else 0.0


@dataclass(slots=True)
class ChatEvaluation:
    """The metrics of one run (``as_dict`` is what ``hybrec evaluate-chat --json`` prints)."""

    queries: int
    returned_items: int
    satisfied_items: int
    queries_with_results: int
    recall_at_5: float
    ndcg_at_5: float
    relaxed_queries: int
    degraded_queries: int
    latency_ms: dict[str, dict[str, float]] = field(default_factory=dict)
    failures: list[dict[str, Any]] = field(default_factory=list)
    #: The untimed warm-up before the queries (the start-up cost a server pays once), milliseconds.
    warm_up_ms: float = 0.0
    #: Each query with the reply and its total time, when asked for (to read the answers, not only time them).
    replies: list[dict[str, Any]] = field(default_factory=list)

    @property
    def constraint_satisfaction(self) -> float:
        return self.satisfied_items / self.returned_items if self.returned_items else 1.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "queries": self.queries,
            "queries_with_results": self.queries_with_results,
            "returned_items": self.returned_items,
            "constraint_satisfaction": round(self.constraint_satisfaction, 4),
            "recall_at_5": round(self.recall_at_5, 4),
            "ndcg_at_5": round(self.ndcg_at_5, 4),
            "relaxed_queries": self.relaxed_queries,
            "degraded_queries": self.degraded_queries,
            "latency_ms": self.latency_ms,
            "warm_up_ms": round(self.warm_up_ms, 2),
            "violations": self.failures[:20],
            **({"replies": self.replies} if self.replies else {}),
        }


def evaluate_chat(
    engine: ChatEngine,
    queries: Sequence[LabelledQuery],
    *,
    user_id: str = "eval-user",
    progress: bool | None = None,
    warm_up: bool = True,
    keep_replies: bool = False,
) -> ChatEvaluation:
    """Run every query as a new session of ``user_id`` and score the returned items.

    With ``warm_up``, :meth:`ChatEngine.warm_up` runs first, untimed (reported as ``warm_up_ms``), so the latencies
    are those of a running server rather than of its first turn. With ``keep_replies`` the report lists every
    query with its mode, reply and total milliseconds.
    """
    warm_up_ms = engine.warm_up() * 1000 if warm_up else 0.0
    returned_total = satisfied_total = with_results = relaxed = degraded = 0
    recalls: list[float] = []
    ndcgs: list[float] = []
    stage_ms: dict[str, list[float]] = defaultdict(list)
    failures: list[dict[str, Any]] = []
    replies: list[dict[str, Any]] = []
    disable = None if progress is None else not progress
    for query in tqdm(queries, desc="evaluating chat", unit="queries", disable=disable, leave=False):
        turn = engine.turn(user_id, query.text)
        ids = [i.item_id for i in turn.items]
        ok = [satisfies(i, query.constraints) for i in turn.items]
        returned_total += len(ok)
        satisfied_total += sum(ok)
        with_results += bool(ids)
        relaxed += bool(turn.relaxed)
        degraded += bool(turn.degraded)
        recalls.append(recall_at(ids, query.relevant))
        ndcgs.append(ndcg_at(ids, query.relevant))
        for stage in STAGES:
            stage_ms[stage].append(turn.timings_ms.get(stage, 0.0))
        if not all(ok):
            failures.append({"query": query.text, "parsed": turn.filters, "relaxed": turn.relaxed})
        if keep_replies:
            total = round(turn.timings_ms.get("total", 0.0), 1)
            replies.append({"query": query.text, "mode": turn.mode, "reply": turn.reply, "total_ms": total})
    latency = {
        stage: {"mean": round(float(np.mean(v)), 2), "p95": round(float(np.percentile(v, 95)), 2)}
        for stage, v in stage_ms.items()
        if v
    }
    n = max(len(queries), 1)
    return ChatEvaluation(
        queries=len(queries),
        returned_items=returned_total,
        satisfied_items=satisfied_total,
        queries_with_results=with_results,
        recall_at_5=sum(recalls) / n,
        ndcg_at_5=sum(ndcgs) / n,
        relaxed_queries=relaxed,
        warm_up_ms=warm_up_ms,
        degraded_queries=degraded,
        latency_ms=latency,
        failures=failures,
        replies=replies,
    )
