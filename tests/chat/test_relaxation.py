from __future__ import annotations

from hybrec.chat.relaxation import relaxation_steps, satisfies, search_with_relaxation, to_filter
from hybrec.chat.schemas import ChatItem, QueryFilters
from hybrec.retrieval.search import ScoredProduct
from hybrec.vectors.filters import Filter


def _product(price: float) -> ScoredProduct:
    return ScoredProduct("X", "Thing", "Acme", None, price, 4.0, 3, 1.0, 1.0, 1.0, 0.0)


def test_steps_follow_the_stated_order() -> None:
    filters = QueryFilters(brand="Acme", category="Tools", max_price=10, min_price=5, min_rating=4.5)
    steps = [description for description, _ in relaxation_steps(filters)]
    assert steps == [
        "the minimum rating of 4.5 stars",
        "the brand Acme",
        "the category Tools",
        "the price ceiling to $12",
        "the price ceiling to $14.4",
        "the minimum price of $5",
        "the price limit",
    ]


def test_search_relaxes_until_something_matches_and_says_what() -> None:
    seen: list[Filter | None] = []

    def search(where: Filter | None) -> list[ScoredProduct]:
        seen.append(where)
        # Only products up to $11.5 exist, and none by Acme or rated 4.5+.
        ok = where is not None and where.brand is None and where.min_rating is None and (where.max_price or 0) >= 11.5
        return [_product(11.5)] if ok else []

    found = search_with_relaxation(search, QueryFilters(brand="Acme", max_price=10, min_rating=4.5))
    assert found.relaxed == ["the minimum rating of 4.5 stars", "the brand Acme", "the price ceiling to $12"]
    assert found.applied.max_price == 12 and found.applied.brand is None
    assert seen[0] == Filter(brand="Acme", max_price=10, min_rating=4.5)


def test_nothing_at_all_relaxes_nothing() -> None:
    found = search_with_relaxation(lambda _w: [], QueryFilters(max_price=3))
    assert found.products == [] and found.relaxed == []
    assert to_filter(QueryFilters(product="x")) is None


def test_unknown_price_or_rating_never_satisfies_a_constraint() -> None:
    item = ChatItem("A", "Card", "Acme", None, None, 1.0)
    assert not satisfies(item, QueryFilters(max_price=30))
    assert not satisfies(item, QueryFilters(min_rating=1))
    assert satisfies(item, QueryFilters(brand=" acme "))
    assert not satisfies(ChatItem("B", "Card", "Acme", 31.0, 5.0, 1.0), QueryFilters(max_price=30))
