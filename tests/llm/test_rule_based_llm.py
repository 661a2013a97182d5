"""RuleBasedLLM: schema-keyed rules, templated free text, and LLMUnavailable where it has neither."""

from __future__ import annotations

import re
from collections.abc import Sequence

import pytest
from pydantic import BaseModel

from hybrec.llm.base import LLM, ChatMessage, LLMOutputError, LLMUnavailable
from hybrec.llm.rules import RuleBasedLLM


class PriceCap(BaseModel):
    max_price: float | None


class StrictPriceCap(PriceCap):
    currency: str = "USD"


class Greeting(BaseModel):
    text: str


def price_rule(messages: Sequence[ChatMessage]) -> dict[str, float | None]:
    match = re.search(r"under \$?(\d+(?:\.\d+)?)", messages[-1].content)
    return {"max_price": float(match.group(1)) if match else None}


def test_structured_is_served_by_the_registered_rule() -> None:
    llm = RuleBasedLLM({PriceCap: price_rule})
    assert isinstance(llm, LLM)
    assert llm.structured([ChatMessage("user", "a mug under $12.50")], PriceCap) == PriceCap(max_price=12.5)
    assert llm.structured([ChatMessage("user", "a mug")], PriceCap) == PriceCap(max_price=None)


def test_subclass_falls_back_to_the_base_rule_and_own_rule_wins() -> None:
    llm = RuleBasedLLM()
    llm.register(PriceCap, price_rule)
    assert llm.structured([ChatMessage("user", "under 5")], StrictPriceCap) == StrictPriceCap(max_price=5)
    llm.register(StrictPriceCap, lambda m: StrictPriceCap(max_price=1, currency="EUR"))
    assert llm.structured([ChatMessage("user", "under 5")], StrictPriceCap).currency == "EUR"


def test_schema_without_rule_is_unavailable() -> None:
    with pytest.raises(LLMUnavailable, match="no rule registered for Greeting"):
        RuleBasedLLM({PriceCap: price_rule}).structured([ChatMessage("user", "hi")], Greeting)


def test_rule_returning_an_invalid_value_is_an_output_error() -> None:
    llm = RuleBasedLLM({PriceCap: lambda m: {"max_price": "cheap"}})
    with pytest.raises(LLMOutputError, match="PriceCap"):
        llm.structured([ChatMessage("user", "cheap stuff")], PriceCap)


def test_free_text_needs_a_template() -> None:
    messages = [ChatMessage("user", "hello")]
    with pytest.raises(LLMUnavailable, match="no answer template"):
        RuleBasedLLM().complete(messages)
    templated = RuleBasedLLM(template=lambda m: f"You said:  {m[-1].content}\nBye.")
    assert templated.complete(messages) == "You said:  hello\nBye."
    chunks = list(templated.stream(messages))
    assert chunks == ["You ", "said:  ", "hello\n", "Bye."]
    assert "".join(chunks) == templated.complete(messages)
    assert templated.health() is True


def test_bad_registration_and_messages_are_rejected() -> None:
    llm = RuleBasedLLM()
    with pytest.raises(TypeError, match="BaseModel"):
        llm.register(dict, price_rule)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="non-empty"):
        llm.structured([], PriceCap)
    with pytest.raises(ValueError, match="role"):
        ChatMessage("robot", "hi")  # type: ignore[arg-type]
