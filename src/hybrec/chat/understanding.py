"""Understanding one shopper message: the kind of turn (route) and the product query with its constraints.

The LLM answers one JSON-schema-constrained question, :class:`~hybrec.chat.schemas.TurnReading` (the
:class:`~hybrec.chat.schemas.RouteDecision` and the :class:`~hybrec.chat.schemas.QueryFilters` in one object: one
model call per message instead of two), and the rule-based parser (:mod:`hybrec.chat.rules`) checks what it says:

* prices and the rating floor come **only** from the rules (a number the message does not state is never applied);
* a brand or category is kept only when it is a catalog value that the message itself names;
* the product phrase may come from the model (it only steers the search text, never a filter);
* a route that needs shown products (``follow_up``, ``more_of_category``) without any becomes ``new_search``, and
  ``small_talk`` with a stated constraint becomes ``new_search``.

When the LLM is down, times out or returns invalid JSON twice (its backend retries once), the rules decide alone and
the reason is reported as degraded. The same rules serve the ``none`` backend through
:func:`register_rules`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from hybrec.chat.prompts import NO_ITEMS_SHOWN, UNDERSTAND_PROMPT, understanding_messages
from hybrec.chat.rules import CatalogVocabulary, is_bare_more_request, parse_message, route_by_rules
from hybrec.chat.schemas import QueryFilters, RouteDecision, TurnReading
from hybrec.llm import LLM, ChatMessage, LLMError
from hybrec.llm.rules import RuleBasedLLM

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class Understanding:
    """The route, the validated filters, notices for the shopper and degradation reasons."""

    mode: str
    filters: QueryFilters
    notices: list[str] = field(default_factory=list)
    degraded: list[str] = field(default_factory=list)


def _last_user(messages: Sequence[ChatMessage]) -> str:
    return next((m.content for m in reversed(messages) if m.role == "user"), "")


def register_rules(llm: RuleBasedLLM, vocabulary: Callable[[], CatalogVocabulary]) -> None:
    """Serve :class:`TurnReading`, :class:`RouteDecision` and :class:`QueryFilters` on the rule backend by
    :mod:`hybrec.chat.rules`."""

    def reading(messages: Sequence[ChatMessage]) -> TurnReading:
        message = _last_user(messages)
        shown = not any(m.role == "system" and NO_ITEMS_SHOWN in m.content for m in messages)
        parsed = parse_message(message, vocabulary()).filters
        mode = route_by_rules(message, parsed, has_shown_items=shown)
        return TurnReading(mode=mode, **parsed.model_dump())  # type: ignore[arg-type]

    def route(messages: Sequence[ChatMessage]) -> RouteDecision:
        return RouteDecision(mode=reading(messages).mode)

    def filters(messages: Sequence[ChatMessage]) -> QueryFilters:
        return reading(messages).filters()

    llm.register(TurnReading, reading)
    llm.register(RouteDecision, route)
    llm.register(QueryFilters, filters)


class Understander:
    """Route and extract with the LLM, validated by the rules.

    Parameters
    ----------
    llm : LLM
        Any backend; a :class:`~hybrec.llm.rules.RuleBasedLLM` gets the rules registered.
    vocabulary : callable
        Returns the catalog's current :class:`~hybrec.chat.rules.CatalogVocabulary`.
    """

    def __init__(self, llm: LLM, vocabulary: Callable[[], CatalogVocabulary]) -> None:
        self.llm = llm
        self.vocabulary = vocabulary
        if isinstance(llm, RuleBasedLLM):
            register_rules(llm, vocabulary)

    def understand(
        self,
        message: str,
        history: Sequence[tuple[str, str]] = (),
        summary: str | None = None,
        shown_names: Sequence[str] = (),
    ) -> Understanding:
        """Read ``message`` in the context of the session (recent turns, summary, products shown last)."""
        vocabulary = self.vocabulary()
        parsed = parse_message(message, vocabulary)
        rules = parsed.filters
        has_shown = bool(shown_names)
        result = Understanding("new_search", rules, list(parsed.notices))
        try:
            reading = self.llm.structured(
                understanding_messages(UNDERSTAND_PROMPT, message, history, summary, shown_names), TurnReading
            )
            mode: str = reading.mode
            extracted: QueryFilters | None = reading.filters()
        except LLMError as exc:
            logger.warning("understanding by rules: %s", exc)
            result.degraded.append(f"llm_understanding_failed: {type(exc).__name__}")
            mode = route_by_rules(message, rules, has_shown_items=has_shown)
            extracted = None
        if mode in ("follow_up", "more_of_category") and not has_shown:
            mode = "new_search"
        elif mode == "new_search" and has_shown and is_bare_more_request(message):
            # A small model reads "show me more" as a new search now and then (seen with the 0.5B profile); the
            # message names nothing to search for, so it continues the last search.
            mode = "more_of_category"
        # Small talk wants no product by definition; the 1.5B model still answers small_talk for "I need a cordless
        # drill from DeWalt" now and then while extracting the product correctly. (The rules' "product" is the
        # message's leftover words, so only a model's counts.)
        model_product = extracted is not None and extracted.product and not isinstance(self.llm, RuleBasedLLM)
        if mode == "small_talk" and (rules.constraints() or model_product):
            mode = "new_search"
        result.mode = mode
        if extracted is not None and mode in ("new_search", "more_of_category"):
            result.filters = merge_filters(rules, extracted, message, vocabulary)
        return result


def merge_filters(
    rules: QueryFilters, model: QueryFilters, message: str, vocabulary: CatalogVocabulary
) -> QueryFilters:
    """The model's extraction checked by the rules' (see the module docstring for which side wins where)."""
    dropped = {
        key: value
        for key in ("max_price", "min_price", "min_rating")
        if (value := getattr(model, key)) is not None and value != getattr(rules, key)
    }
    if dropped:
        logger.info("ignoring numbers the message does not state: %s", dropped)
    product = model.product.strip() if model.product and model.product.strip() else rules.product
    return QueryFilters(
        product=product[:200] if product else None,
        brand=rules.brand or vocabulary.resolve_brand(model.brand, message),
        category=rules.category or vocabulary.resolve_category(model.category, message),
        max_price=rules.max_price,
        min_price=rules.min_price,
        min_rating=rules.min_rating,
    )
