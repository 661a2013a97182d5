"""The typed search filter every vector index understands.

A :class:`Filter` is built by our own code from validated request fields — never from a raw dict a user sent — and
every value in it is a literal: a brand named ``' OR 1=1 --`` or ``{"$ne": null}`` is just a string to compare
with. Each backend translates it (a boolean mask in :mod:`~hybrec.vectors.exact_index`, a Chroma ``where`` clause in
:mod:`~hybrec.vectors.chroma_index`).

Metadata keys the filter reads: ``category`` (exact match), ``brand`` (compared after :func:`normalise_brand`,
through the derived key ``brand_norm`` that the index stores at upsert), ``price`` and ``avg_rating`` (numbers; an
item without one never passes a filter on it).
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

CATEGORY_KEY = "category"
BRAND_KEY = "brand"
BRAND_NORM_KEY = "brand_norm"
PRICE_KEY = "price"
RATING_KEY = "avg_rating"
NUMERIC_KEYS: frozenset[str] = frozenset({PRICE_KEY, RATING_KEY})

_NON_WORD = re.compile(r"[\W_]+", re.UNICODE)


def normalise_brand(brand: str) -> str:
    """Lower-case, Unicode-compatibility-folded brand with every run of spaces/punctuation collapsed to one space.

    ``"  Hewlett-Packard "`` and ``"hewlett packard"`` both give ``"hewlett packard"``.
    """
    folded = unicodedata.normalize("NFKC", brand).casefold()
    return _NON_WORD.sub(" ", folded).strip()


def _number(value: float | int | None, what: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{what} must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{what} must be finite, got {value!r}")
    return number


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _text(value: str | None, what: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a string, got {type(value).__name__}")
    return value


@dataclass(frozen=True, slots=True, init=False)
class Filter:
    """Conditions an item must all meet to be returned by a search.

    Parameters
    ----------
    category : str, optional
        Exact category.
    brand : str, optional
        Brand, compared after :func:`normalise_brand` on both sides (one without letters or digits, such as
        ``"*"``, matches nothing: items whose brand normalises to nothing store no normalised brand).
    min_price, max_price : float, optional
        Inclusive price bounds; ``min_price <= max_price``.
    min_rating : float, optional
        Inclusive lower bound on ``avg_rating``.
    ids : iterable of str, optional
        Allow-list: only these ids may be returned (an empty allow-list matches nothing).
    """

    category: str | None
    brand: str | None
    min_price: float | None
    max_price: float | None
    min_rating: float | None
    ids: frozenset[str] | None

    def __init__(
        self,
        *,
        category: str | None = None,
        brand: str | None = None,
        min_price: float | None = None,
        max_price: float | None = None,
        min_rating: float | None = None,
        ids: Iterable[str] | None = None,
    ) -> None:
        category = _text(category, "category")
        brand = _text(brand, "brand")
        lo = _number(min_price, "min_price")
        hi = _number(max_price, "max_price")
        if lo is not None and hi is not None and lo > hi:
            raise ValueError(f"min_price ({lo}) is greater than max_price ({hi})")
        rating = _number(min_rating, "min_rating")
        allow: frozenset[str] | None = None
        if ids is not None:
            if isinstance(ids, str):
                raise ValueError("ids must be a collection of strings, not one string")
            allow = frozenset(ids)
            if not all(isinstance(i, str) for i in allow):
                raise ValueError("ids must all be strings")
        object.__setattr__(self, "category", category)
        object.__setattr__(self, "brand", brand)
        object.__setattr__(self, "min_price", lo)
        object.__setattr__(self, "max_price", hi)
        object.__setattr__(self, "min_rating", rating)
        object.__setattr__(self, "ids", allow)

    @property
    def brand_norm(self) -> str | None:
        return None if self.brand is None else normalise_brand(self.brand)

    def matches(self, item_id: str, metadata: Mapping[str, Any]) -> bool:
        """Whether an item with this id and stored metadata passes (the same rules every index applies)."""
        if self.ids is not None and item_id not in self.ids:
            return False
        if self.category is not None and metadata.get(CATEGORY_KEY) != self.category:
            return False
        if self.brand is not None and metadata.get(BRAND_NORM_KEY) != self.brand_norm:
            return False
        price, rating = metadata.get(PRICE_KEY), metadata.get(RATING_KEY)
        if (self.min_price is not None or self.max_price is not None) and not _is_number(price):
            return False
        if self.min_price is not None and price < self.min_price:  # type: ignore[operator]
            return False
        if self.max_price is not None and price > self.max_price:  # type: ignore[operator]
            return False
        return self.min_rating is None or (_is_number(rating) and rating >= self.min_rating)  # type: ignore[operator]

    @property
    def is_empty(self) -> bool:
        """True when the filter lets every item through."""
        return all(
            v is None for v in (self.category, self.brand, self.min_price, self.max_price, self.min_rating, self.ids)
        )
