"""Relaxing a shopper's constraints, in a stated order, when no product satisfies all of them.

Order (the least important constraint first, the budget last because going over it is what a shopper minds most):

1. ``min_rating`` dropped;
2. ``brand`` dropped;
3. ``category`` dropped;
4. ``max_price`` raised by 20 %, then by 20 % again (``+20 %``, ``+44 %`` of the original);
5. ``min_price`` dropped;
6. ``max_price`` dropped.

Each step keeps the earlier relaxations; the first step that finds products wins, and the reply names every step
taken. A search with no constraint left that still finds nothing returns nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field

from hybrec.chat.schemas import ChatItem, QueryFilters
from hybrec.retrieval.search import ScoredProduct
from hybrec.vectors.filters import Filter, normalise_brand

PRICE_STEP = 1.2
PRICE_STEPS = 2

Search = Callable[[Filter | None], list[ScoredProduct]]


def to_filter(filters: QueryFilters) -> Filter | None:
    """The index :class:`Filter` of the constraints (None when there are none). Values are literals."""
    constraints = filters.constraints()
    if not constraints:
        return None
    return Filter(
        brand=filters.brand,
        category=filters.category,
        min_price=filters.min_price,
        max_price=filters.max_price,
        min_rating=filters.min_rating,
    )


# (field, how the reply names dropping it): dropped in this order before the budget is touched, then after it.
_DROPPED_BEFORE_PRICE = (
    ("min_rating", "the minimum rating of {:g} stars"),
    ("brand", "the brand {}"),
    ("category", "the category {}"),
)
_DROPPED_AFTER_PRICE = (
    ("min_price", "the minimum price of ${:g}"),
    ("max_price", "the price limit"),
)


def relaxation_steps(filters: QueryFilters) -> Iterator[tuple[str, QueryFilters]]:
    """Each relaxed version of ``filters``, with the sentence describing the step, in :mod:`relaxation` order."""
    current = yield from _drop_each(filters.model_copy(), _DROPPED_BEFORE_PRICE)
    if current.max_price is not None:
        ceiling = current.max_price
        for _ in range(PRICE_STEPS):
            ceiling = round(ceiling * PRICE_STEP, 2)
            if current.min_price is not None and ceiling < current.min_price:
                continue
            current = current.model_copy(update={"max_price": ceiling})
            yield f"the price ceiling to ${ceiling:g}", current
    yield from _drop_each(current, _DROPPED_AFTER_PRICE)


def _drop_each(
    current: QueryFilters, steps: tuple[tuple[str, str], ...]
) -> Generator[tuple[str, QueryFilters], None, QueryFilters]:
    """Drop each set constraint of ``steps`` in turn, yielding a step per drop; returns the filters left."""
    for name, description in steps:
        value = getattr(current, name)
        if value is not None:
            current = current.model_copy(update={name: None})
            yield description.format(value), current
    return current


@dataclass(slots=True)
class RelaxedSearch:
    """The products found, the constraints that were finally applied and the relaxations it took."""

    products: list[ScoredProduct]
    applied: QueryFilters
    relaxed: list[str] = field(default_factory=list)


def search_with_relaxation(search: Search, filters: QueryFilters) -> RelaxedSearch:
    """Search with ``filters``; when nothing matches, relax them step by step until something does.

    Parameters
    ----------
    search : callable
        ``search(filter_or_none) -> products`` (the query text and size are bound by the caller).
    filters : QueryFilters
        The shopper's constraints.
    """
    products = search(to_filter(filters))
    if products:
        return RelaxedSearch(products, filters)
    relaxed: list[str] = []
    for description, looser in relaxation_steps(filters):
        relaxed.append(description)
        products = search(to_filter(looser))
        if products:
            return RelaxedSearch(products, looser, relaxed)
    return RelaxedSearch([], filters, [])


def satisfies(item: ChatItem, filters: QueryFilters) -> bool:
    """Whether ``item`` meets every constraint (an unknown price or rating never meets a constraint on it)."""
    if filters.brand and (not item.brand or normalise_brand(item.brand) != normalise_brand(filters.brand)):
        return False
    if filters.category and item.category != filters.category:
        return False
    if (filters.max_price is not None or filters.min_price is not None) and item.price is None:
        return False
    if filters.max_price is not None and item.price is not None and item.price > filters.max_price:
        return False
    if filters.min_price is not None and item.price is not None and item.price < filters.min_price:
        return False
    return filters.min_rating is None or (item.avg_rating is not None and item.avg_rating >= filters.min_rating)
