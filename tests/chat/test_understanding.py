from __future__ import annotations

import pytest

from hybrec.chat.rules import CatalogVocabulary
from hybrec.chat.schemas import QueryFilters
from hybrec.chat.understanding import Understander, merge_filters
from hybrec.llm import LLMUnavailable
from hybrec.llm.rules import RuleBasedLLM

VOCAB = CatalogVocabulary.build(["Starbucks", "Amazon"], {"Restaurants": 10, "Gift Cards": 90})


@pytest.mark.parametrize(
    ("script", "message", "shown", "mode"),
    [
        ('{"mode": "follow_up"}', "which is best?", [], "new_search"),  # nothing shown yet
        ('{"mode": "more_of_category"}', "more please", ["Starbucks Card"], "more_of_category"),
        ('{"mode": "small_talk"}', "hi, anything under $20?", [], "new_search"),  # a stated constraint
        ('{"mode": "follow_up"}', "is the first one good?", ["Starbucks Card"], "follow_up"),
        # "show me more" names nothing new: a model's new_search is overruled, unless nothing was shown yet.
        ('{"mode": "new_search"}', "show me more", ["Starbucks Card"], "more_of_category"),
        ('{"mode": "new_search"}', "Any others, please?", ["Starbucks Card"], "more_of_category"),
        ('{"mode": "new_search"}', "show me more", [], "new_search"),
        ('{"mode": "new_search"}', "show me more headphones", ["Starbucks Card"], "new_search"),
    ],
)
def test_the_model_routes_and_the_rules_correct_it(scripted, script, message, shown, mode) -> None:  # type: ignore[no-untyped-def]
    llm = scripted({"TurnReading": [script]})
    assert Understander(llm, lambda: VOCAB).understand(message, shown_names=shown).mode == mode


def test_llm_down_falls_back_to_rules(scripted) -> None:  # type: ignore[no-untyped-def]
    llm = scripted({"TurnReading": [LLMUnavailable("connection refused")]})
    result = Understander(llm, lambda: VOCAB).understand("Starbucks card under $25")
    assert result.mode == "new_search" and result.filters.brand == "Starbucks" and result.filters.max_price == 25
    assert result.degraded == ["llm_understanding_failed: LLMUnavailable"]


def test_merge_keeps_only_what_the_message_states() -> None:
    rules = QueryFilters(product="card", max_price=30)
    model = QueryFilters(product="coffee gift card", brand="Starbucks", max_price=0, min_rating=5, category="Toys")
    merged = merge_filters(rules, model, "a coffee card under $30", VOCAB)
    # The model's numbers are never used; its brand only when it is a catalog brand the message names.
    assert merged == QueryFilters(product="coffee gift card", max_price=30)
    named = merge_filters(rules, model, "a starbucks card under $30", VOCAB)
    assert named.brand == "Starbucks" and named.category is None


def test_the_none_backend_serves_the_rules() -> None:
    result = Understander(RuleBasedLLM(), lambda: VOCAB).understand("amazon card rated 4 stars and up")
    assert result.degraded == [] and result.filters.brand == "Amazon" and result.filters.min_rating == 4
