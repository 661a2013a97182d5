"""Product text (what is embedded and matched) and the content hash that drives incremental re-indexing."""

from __future__ import annotations

import dataclasses

import pytest

from hybrec.data.records import ItemRecord
from hybrec.retrieval.product_text import CatalogItem, clean_text, content_hash, product_text, rerank_text


def _item(**changes: object) -> ItemRecord:
    item = ItemRecord(
        "B001",
        "Starbucks Gift Card",
        category="Gift Cards",
        brand="Starbucks",
        description="<div>Enjoy <b>coffee</b> &amp; tea.<br/></div>",
        features=["No fees", "no fees", "Never expires"],
        price=25.0,
        avg_rating=4.8,
        num_ratings=12,
    )
    return dataclasses.replace(item, **changes)  # type: ignore[arg-type]


def test_text_has_name_brand_category_description_features_in_order_without_html() -> None:
    assert product_text(_item()) == (
        "Starbucks Gift Card. Brand: Starbucks. Category: Gift Cards. Enjoy coffee & tea. No fees. Never expires."
    )


def test_missing_fields_are_left_out() -> None:
    text = product_text(_item(brand=None, category="  ", description=None, features=[]))
    assert text == "Starbucks Gift Card."


def test_an_item_without_a_name_cannot_be_indexed() -> None:
    with pytest.raises(ValueError, match="B001"):
        product_text(_item(name=" <br/> "))


def test_clean_text() -> None:
    assert clean_text("<p>a&nbsp;b</p>\n\n c") == "a b c"  # entities decoded, all whitespace collapsed
    assert clean_text(None) == ""


def test_store_items_and_records_both_fit_the_protocol() -> None:
    from hybrec.store.models import Item

    assert isinstance(_item(), CatalogItem)
    assert isinstance(Item(external_id="x", name="n", features=[], num_ratings=0), CatalogItem)


def test_hash_is_stable_and_changes_with_every_stored_field() -> None:
    base = content_hash(_item())
    assert base == content_hash(_item()) and len(base) == 64
    for change in (
        {"name": "Starbucks eGift"},
        {"brand": "STARBUCKS"},
        {"category": "Coffee"},
        {"description": "Other"},
        {"features": ["Other"]},
        {"price": 30.0},
        {"price": None},
        {"avg_rating": 4.0},
        {"num_ratings": 13},
    ):
        assert content_hash(_item(**change)) != base, change
    assert content_hash(_item(), model="other-model") != base
    # Fields outside the index entry do not matter.
    assert content_hash(_item(attributes={"colour": "green"})) == base


def test_rerank_text_is_the_leading_name_brand_category_of_the_product_text() -> None:
    item = _item()
    short = rerank_text(item.name, item.brand, item.category)
    assert short == "Starbucks Gift Card. Brand: Starbucks. Category: Gift Cards."
    assert product_text(item).startswith(short)
    assert rerank_text(" <b>Gift   Box</b> ", None, "  ") == "Gift Box."
