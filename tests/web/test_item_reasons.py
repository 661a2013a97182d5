"""Why a chat item was chosen (hybrec.chat.reasons): the constraints it met and how relevance and taste ranked it."""

from __future__ import annotations

from hybrec.chat.reasons import (
    constraint_reasons,
    follow_up_reason,
    money,
    ranking_reasons,
    search_reasons,
)
from hybrec.chat.schemas import ChatItem, QueryFilters
from hybrec.retrieval.results import ScoredProduct


def product(item_id: str, relevance: float, als: float | None, price: float | None = 20.0) -> ScoredProduct:
    return ScoredProduct(
        item_id=item_id,
        name=f"Product {item_id}",
        brand="Acme",
        category="Coffee",
        price=price,
        avg_rating=4.5,
        num_ratings=3,
        score=0.5,
        relevance=relevance,
        dense=0.5,
        lexical=0.1,
        als=als,
    )


def test_money_drops_cents_only_for_whole_dollars() -> None:
    assert money(30) == "$30" and money(29.99) == "$29.99" and money(1250.0) == "$1,250"


def test_each_met_constraint_is_named_with_the_products_own_value() -> None:
    filters = QueryFilters(max_price=30, brand="acme", category="Coffee", min_rating=4)
    parts = constraint_reasons(filters, price=24.0, brand="Acme", category="Coffee", avg_rating=4.54)
    assert parts == ["under $30", "in Coffee", "brand Acme", "rated 4.5"]
    assert constraint_reasons(QueryFilters(min_price=10), price=12, brand=None, category=None, avg_rating=None) == [
        "over $10"
    ]
    both = QueryFilters(min_price=10, max_price=25.5)
    assert constraint_reasons(both, price=12, brand=None, category=None, avg_rating=None) == ["$10–$25.50"]


def test_no_constraint_means_no_constraint_phrase_and_unmet_ones_are_never_claimed() -> None:
    assert constraint_reasons(QueryFilters(), price=5, brand="Acme", category="Coffee", avg_rating=5) == []
    unmet = QueryFilters(max_price=10, min_rating=4.8)
    assert constraint_reasons(unmet, price=12, brand="Acme", category=None, avg_rating=4.1) == []
    unknown = QueryFilters(max_price=10, min_rating=4)
    assert constraint_reasons(unknown, price=None, brand=None, category=None, avg_rating=None) == []
    other = QueryFilters(brand="Bosch", category="Tea")  # a product of another brand/category is not claimed
    assert constraint_reasons(other, price=None, brand="Acme", category="Coffee", avg_rating=None) == []
    spaced = QueryFilters(brand="sonic  wave")
    assert constraint_reasons(spaced, price=None, brand="Sonic Wave", category=None, avg_rating=None) == [
        "brand Sonic Wave"
    ]


def test_without_personalisation_the_ranking_is_about_the_request() -> None:
    reasons = ranking_reasons([product("a", 3.0, None), product("b", 2.0, None)])
    assert reasons == ["best match for your request", "matches your request"]
    assert ranking_reasons([]) == []


def test_with_personalisation_taste_and_relevance_are_compared_among_the_products_shown() -> None:
    products = [
        product("relevant-and-liked", 3.0, 0.9),
        product("liked", 1.0, 0.8),
        product("relevant", 2.9, 0.1),
        product("neither", 1.0, 0.0),
        product("unknown-to-the-model", 2.0, None),
    ]
    assert ranking_reasons(products) == [
        "close match, and fits your taste",
        "picked for your taste",
        "close match to your request",
        "matches your request",
        "new to your taste profile: ranked on your request",
    ]


def test_search_reasons_join_constraints_and_ranking() -> None:
    products = [product("a", 3.0, 0.5, price=25.0), product("b", 1.0, 0.1, price=9.99)]
    reasons = search_reasons(products, QueryFilters(product="coffee", max_price=30))
    assert reasons == ["under $30 · close match, and fits your taste", "under $30 · matches your request"]


def test_follow_up_items_say_they_come_from_the_last_results() -> None:
    item = ChatItem("a", "Card", "Acme", 12.0, 4.0, 1.0, "Gift Cards")
    assert follow_up_reason(item, QueryFilters(max_price=15)) == "under $15 · from your last results"
    assert follow_up_reason(item, QueryFilters()) == "from your last results"
    assert item.reason == "" and item.as_dict()["reason"] == ""  # old constructors keep working
