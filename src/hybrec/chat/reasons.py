"""Why each product of a turn was chosen, in a few words the shopper can read on the product card.

A reason is built only from what the engine knows: the constraints the search applied (each one the product met,
with the product's own value: "under $30 · brand Acme · rated 4.5"), and how the product ranked on the two signals
the score blends (:func:`hybrec.retrieval.personalise.blend`): relevance to the request and, when the ranking was
personalised, the shopper's ALS score (Hu, Koren & Volinsky 2008). The two signals are compared among the products
shown, which is what the shopper sees side by side.
"""

from __future__ import annotations

from collections.abc import Sequence

from hybrec.chat.schemas import ChatItem, QueryFilters
from hybrec.retrieval.results import ScoredProduct

SEPARATOR = " · "


def money(value: float) -> str:
    """``$30`` for whole dollars, ``$29.99`` otherwise."""
    return f"${value:,.0f}" if float(value).is_integer() else f"${value:,.2f}"


def constraint_reasons(
    filters: QueryFilters,
    *,
    price: float | None,
    brand: str | None,
    category: str | None,
    avg_rating: float | None,
) -> list[str]:
    """One short phrase per constraint of ``filters`` the product meets (a constraint it does not meet, which a
    relaxed search never applies, is left out rather than claimed)."""
    parts: list[str] = []
    if price is not None:
        low, high = filters.min_price, filters.max_price
        if low is not None and high is not None and low <= price <= high:
            parts.append(f"{money(low)}–{money(high)}")
        elif high is not None and low is None and price <= high:
            parts.append(f"under {money(high)}")
        elif low is not None and high is None and price >= low:
            parts.append(f"over {money(low)}")
    if filters.category and category and _same(filters.category, category):
        parts.append(f"in {category}")
    if filters.brand and brand and _same(filters.brand, brand):
        parts.append(f"brand {brand}")
    if filters.min_rating is not None and avg_rating is not None and avg_rating >= filters.min_rating:
        parts.append(f"rated {avg_rating:.1f}")
    return parts


def _same(stated: str, value: str) -> bool:
    """Whether a product's brand/category is the one the shopper stated (case and spacing aside, as the search's
    filters compare them)."""
    return " ".join(stated.casefold().split()) == " ".join(value.casefold().split())


def _upper_half(values: Sequence[float], value: float) -> bool:
    """Whether ``value`` lies in the upper half of the range of ``values`` (all equal counts as upper)."""
    lo, hi = min(values), max(values)
    return hi - lo <= 1e-12 or value >= lo + (hi - lo) / 2


def ranking_reasons(products: Sequence[ScoredProduct]) -> list[str]:
    """For each product, how relevance and taste placed it among ``products`` (one phrase each).

    Without personalisation the phrase is about the request alone; with it, a product whose ALS score is in the
    upper half of those shown "fits your taste", and one in the upper half of relevance is a "close match" to the
    request. A product the model has no vector for (newer than the last training) is ranked on relevance only.
    """
    if not products:
        return []
    relevance = [p.relevance for p in products]
    known = [p.als for p in products if p.als is not None]
    reasons: list[str] = []
    for rank, product in enumerate(products):
        close = _upper_half(relevance, product.relevance)
        if not known:
            reasons.append("best match for your request" if rank == 0 else "matches your request")
        elif product.als is None:
            reasons.append("new to your taste profile: ranked on your request")
        elif _upper_half(known, product.als):
            reasons.append("close match, and fits your taste" if close else "picked for your taste")
        else:
            reasons.append("close match to your request" if close else "matches your request")
    return reasons


def search_reasons(products: Sequence[ScoredProduct], applied: QueryFilters) -> list[str]:
    """The reason of each searched product: the constraints it met, then how it ranked."""
    return [
        SEPARATOR.join(
            [
                *constraint_reasons(
                    applied, price=p.price, brand=p.brand, category=p.category, avg_rating=p.avg_rating
                ),
                ranking,
            ]
        )
        for p, ranking in zip(products, ranking_reasons(products), strict=True)
    ]


def follow_up_reason(item: ChatItem, constraints: QueryFilters) -> str:
    """The reason of a product shown again to answer a question about the last results."""
    met = constraint_reasons(
        constraints, price=item.price, brand=item.brand, category=item.category, avg_rating=item.avg_rating
    )
    return SEPARATOR.join([*met, "from your last results"])
