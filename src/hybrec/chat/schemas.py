"""Data shapes of the conversational engine: what the LLM may return (route, filters) and what a turn produces.

:class:`RouteDecision` and :class:`QueryFilters` are the JSON schemas the LLM's constrained decoding is held to.
What the LLM returns is never trusted as is: :mod:`hybrec.chat.understanding` keeps prices and ratings only when the
rule-based parser finds them in the message, and brands/categories only when they are catalog values the message
names.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

Mode = Literal["small_talk", "new_search", "more_of_category", "follow_up"]
MODES: tuple[str, ...] = ("small_talk", "new_search", "more_of_category", "follow_up")


class RouteDecision(BaseModel):
    """Which kind of turn the shopper's message is.

    * ``small_talk`` — greetings, thanks, questions about the assistant: no product search;
    * ``new_search`` — a request for a (new) kind of product;
    * ``more_of_category`` — more products like the last ones shown ("show me more", "any others?");
    * ``follow_up`` — a question about the products already shown ("which of those is cheapest?").
    """

    model_config = ConfigDict(extra="ignore")

    mode: Mode


class QueryFilters(BaseModel):
    """The product query and its constraints, as extracted from one message (every field optional)."""

    model_config = ConfigDict(extra="ignore")

    product: str | None = Field(default=None, description="What kind of product is wanted, in a few words.")
    brand: str | None = Field(default=None, description="A brand the shopper named.")
    category: str | None = Field(default=None, description="A catalog category the shopper named.")
    max_price: float | None = Field(default=None, ge=0, description="Price ceiling in dollars.")
    min_price: float | None = Field(default=None, ge=0, description="Price floor in dollars.")
    min_rating: float | None = Field(default=None, ge=0, le=5, description="Minimum average rating (stars).")

    def constraints(self) -> dict[str, Any]:
        """The set constraints (everything but ``product``), for storing and showing."""
        return {k: v for k, v in self.model_dump(exclude={"product"}).items() if v is not None}


class TurnReading(QueryFilters, RouteDecision):
    """Route and extraction in one constrained generation (one model call per message instead of two).

    The bases are listed so that ``mode`` is the first field (pydantic orders fields from the last base on): the
    model writes the keys in field order, and the routing prompt's examples start with ``mode``.
    """

    def filters(self) -> QueryFilters:
        return QueryFilters.model_validate(self.model_dump(exclude={"mode"}))


@dataclass(frozen=True, slots=True)
class ChatItem:
    """One product shown in a turn (the API's ``items`` entries)."""

    item_id: str
    name: str
    brand: str | None
    price: float | None
    avg_rating: float | None
    score: float
    category: str | None = None
    reason: str = ""  # why it was chosen, for the shopper (hybrec.chat.reasons); empty when nothing to say

    def as_dict(self) -> dict[str, Any]:
        return {
            "item_id": self.item_id,
            "name": self.name,
            "brand": self.brand,
            "price": self.price,
            "avg_rating": self.avg_rating,
            "score": self.score,
            "reason": self.reason,
        }


@dataclass(slots=True)
class ChatTurn:
    """The outcome of one :meth:`hybrec.chat.engine.ChatEngine.turn`.

    Attributes
    ----------
    session_id : str
    reply : str
        The assistant's answer; names only products in ``items``.
    mode : str
        One of :data:`MODES`.
    filters : dict
        The constraints applied to the search (after relaxation), e.g. ``{"max_price": 30.0}``.
    items : list of ChatItem
        The products shown, best first.
    relaxed : list of str
        Constraints dropped or widened because nothing satisfied them, in the order they were relaxed.
    notices : list of str
        Things the shopper should know about how the message was read (truncation, ignored values).
    degraded : list of str
        Why the answer came from rules/templates instead of the LLM (empty when the LLM answered).
    timings_ms : dict
        Milliseconds per stage: history, understanding, retrieval (and its sub-stages), generation, store, total.
    """

    session_id: str
    reply: str
    mode: str
    filters: dict[str, Any]
    items: list[ChatItem]
    relaxed: list[str] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    degraded: list[str] = field(default_factory=list)
    timings_ms: dict[str, float] = field(default_factory=dict)


@runtime_checkable
class Personaliser(Protocol):
    """What the chat needs from the collaborative engine to personalise the ranking (Hu, Koren & Volinsky 2008):
    the shopper's ALS vector (cache → fold-in → None for a new user) and the ALS scores of candidate items."""

    def user_vector(self, user_id: str) -> np.ndarray | None: ...

    def score_items(self, vector: np.ndarray, item_ids: Sequence[str]) -> Mapping[str, float]: ...
