"""The text a product is embedded and matched by, and the hash that tells the indexer it changed.

A product's text is its name, brand, category, description and features, in that order: the bi-encoder truncates
long inputs (256 word pieces for MiniLM), so the most identifying fields come first. Descriptions scraped from shops
often carry HTML; tags and entities are removed so they neither waste the model's window nor match a query word.
"""

from __future__ import annotations

import hashlib
import html
import json
import re
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

_TAG = re.compile(r"<[^>]+>")
_SPACE = re.compile(r"\s+")


@runtime_checkable
class CatalogItem(Protocol):
    """What the retrieval layer reads from an item: the store's ``Item`` row and ``ItemRecord`` both fit."""

    external_id: str
    name: str
    category: str | None
    brand: str | None
    description: str | None
    features: list[str]
    price: float | None
    avg_rating: float | None
    num_ratings: int


def clean_text(value: str | None) -> str:
    """``value`` without HTML tags or entities, whitespace collapsed; ``""`` for None."""
    if not value:
        return ""
    return _SPACE.sub(" ", html.unescape(_TAG.sub(" ", value))).strip()


def _unique_features(features: Sequence[str] | None) -> list[str]:
    seen: set[str] = set()
    kept: list[str] = []
    for feature in features or ():
        text = clean_text(feature)
        if text and text.lower() not in seen:
            seen.add(text.lower())
            kept.append(text)
    return kept


def product_text(item: CatalogItem) -> str:
    """One line of text describing ``item``: name, brand, category, description, features.

    Examples
    --------
    >>> from hybrec.data.records import ItemRecord
    >>> product_text(ItemRecord("X1", "Cordless Drill DCD771C2", category="Tools", brand="DEWALT",
    ...                         description="<b>20V</b> drill", features=["2 batteries", "2 batteries"]))
    'Cordless Drill DCD771C2. Brand: DEWALT. Category: Tools. 20V drill. 2 batteries.'
    """
    name = clean_text(item.name)
    if not name:
        raise ValueError(f"item {item.external_id!r} has no name; every indexed product needs one")
    parts = [name]
    brand = clean_text(item.brand)
    if brand:
        parts.append(f"Brand: {brand}")
    category = clean_text(item.category)
    if category:
        parts.append(f"Category: {category}")
    description = clean_text(item.description)
    if description:
        parts.append(description)
    parts.extend(_unique_features(item.features))
    return " ".join(part if part.endswith((".", "!", "?")) else part + "." for part in parts)


def rerank_text(name: str | None, brand: str | None = None, category: str | None = None) -> str:
    """The short text the cross-encoder reads for a product: name, brand and category, as they lead
    :func:`product_text`.

    A few dozen word pieces instead of the ~100 of the full text: the rerank's cost is proportional to the tokens
    it reads, and the identifying fields are the ones a shopping query names.

    Examples
    --------
    >>> rerank_text("Cordless Drill DCD771C2", "DEWALT", "Tools")
    'Cordless Drill DCD771C2. Brand: DEWALT. Category: Tools.'
    """
    parts = [clean_text(name)]
    brand_text = clean_text(brand)
    if brand_text:
        parts.append(f"Brand: {brand_text}")
    category_text = clean_text(category)
    if category_text:
        parts.append(f"Category: {category_text}")
    return " ".join(part if part.endswith((".", "!", "?")) else part + "." for part in parts if part)


def content_hash(item: CatalogItem, text: str | None = None, *, model: str = "") -> str:
    """A SHA-256 over everything the product index stores for ``item``: its text and its filterable metadata.

    Two items with equal hashes have identical index entries, so the indexer skips them; a changed price or rating
    changes the hash too, because the metadata the filters read must be rewritten. ``model`` (the embedding model's
    name) is part of the hash, so switching models re-embeds everything.
    """
    payload = {
        "model": model,
        "text": product_text(item) if text is None else text,
        "name": item.name,
        "brand": item.brand,
        "category": item.category,
        "price": item.price,
        "avg_rating": item.avg_rating,
        "num_ratings": item.num_ratings,
    }
    encoded = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return hashlib.sha256(encoded).hexdigest()
