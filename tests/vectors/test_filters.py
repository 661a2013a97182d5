"""The typed filter: validation and brand normalisation."""

from __future__ import annotations

import math

import pytest

from hybrec.vectors.chroma_translation import where_clause
from hybrec.vectors.filters import Filter, normalise_brand


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [
        ("Hewlett-Packard", "hewlett packard"),
        ("  HEWLETT   packard. ", "hewlett packard"),
        ("L'Oréal", "l oréal"),
        ("Ｓｏｎｙ", "sony"),  # full-width letters fold to ASCII (NFKC)
        ("' OR 1=1 --", "or 1 1"),
        ('{"$ne": null}', "ne null"),
        ("B&O_Play", "b o play"),
        ("***", ""),
    ],
)
def test_normalise_brand(raw: str, normalised: str) -> None:
    assert normalise_brand(raw) == normalised


def test_filter_keeps_values_and_exposes_normalised_brand() -> None:
    f = Filter(category="books", brand=" Acme-Corp ", min_price=1, max_price=2.5, min_rating=4, ids=["a", "b"])
    assert (f.category, f.brand, f.brand_norm) == ("books", " Acme-Corp ", "acme corp")
    assert (f.min_price, f.max_price, f.min_rating) == (1.0, 2.5, 4.0)
    assert f.ids == frozenset({"a", "b"})
    assert not f.is_empty
    assert Filter().is_empty
    assert not Filter(ids=[]).is_empty  # an empty allow-list matches nothing; it is not "no filter"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"min_price": 10, "max_price": 5}, "min_price .* greater than max_price"),
        ({"min_price": "10"}, "min_price must be a number"),
        ({"max_price": True}, "max_price must be a number"),
        ({"min_rating": math.nan}, "min_rating must be finite"),
        ({"max_price": math.inf}, "max_price must be finite"),
        ({"brand": {"$ne": None}}, "brand must be a string"),
        ({"category": ["a"]}, "category must be a string"),
        ({"ids": "abc"}, "not one string"),
        ({"ids": [1, 2]}, "strings"),
    ],
)
def test_invalid_filters_are_rejected(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Filter(**kwargs)


def test_filter_is_immutable() -> None:
    f = Filter(category="books")
    with pytest.raises(AttributeError):
        f.category = "games"  # type: ignore[misc]


def test_chroma_where_uses_our_operators_and_literal_values() -> None:
    assert where_clause(None) is None
    assert where_clause(Filter()) is None
    assert where_clause(Filter(ids=["a"])) is None  # the allow-list goes to Chroma's ids argument
    assert where_clause(Filter(brand='{"$ne": null}')) == {"brand_norm": {"$eq": "ne null"}}
    assert where_clause(Filter(category="$or", min_price=1, max_price=2, min_rating=3)) == {
        "$and": [
            {"category": {"$eq": "$or"}},
            {"price": {"$gte": 1.0}},
            {"price": {"$lte": 2.0}},
            {"avg_rating": {"$gte": 3.0}},
        ]
    }


@pytest.mark.parametrize(
    ("where", "item_id", "meta", "expected"),
    [
        (Filter(category="books"), "a", {"category": "books"}, True),
        (Filter(category="books"), "a", {"category": "Books"}, False),
        (Filter(category="books"), "a", {}, False),
        (Filter(brand="Hewlett Packard"), "a", {"brand": "HP", "brand_norm": "hewlett packard"}, True),
        (Filter(brand="*"), "a", {"brand": "*"}, False),  # nothing to match on: never passes
        (Filter(min_price=5), "a", {"price": 5.0}, True),
        (Filter(min_price=5), "a", {"price": 4.99}, False),
        (Filter(max_price=5), "a", {}, False),  # missing price never passes
        (Filter(max_price=5), "a", {"price": "3"}, False),
        (Filter(min_rating=4), "a", {"avg_rating": 4.0}, True),
        (Filter(min_rating=4), "a", {}, False),
        (Filter(ids=["a"]), "a", {}, True),
        (Filter(ids=["a"]), "b", {}, False),
        (Filter(), "b", {}, True),
    ],
)
def test_matches(where: Filter, item_id: str, meta: dict, expected: bool) -> None:
    assert where.matches(item_id, meta) is expected
