"""Field-by-field JSON decoding (hybrec.llm.guided_json): the plan, the value grammars, the stop rule and the budget.

The decoding loop is driven here by a scripted "model" whose tokens are characters, so every step is visible; the
real model runs through it in tests/llm/test_llama_cpp_local.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Literal

import pytest
from pydantic import BaseModel

from hybrec.llm.base import json_schema_of
from hybrec.llm.guided_json import TokenBudgetExceeded, decode_fields, field_plan, value_complete, value_grammar


class Reading(BaseModel):
    mode: Literal["search", "chat"]
    product: str | None = None
    max_price: float | None = None


class Nested(BaseModel):
    reading: Reading


def test_plan_of_a_flat_schema_keeps_the_field_order_and_closes_the_last_value_with_a_brace() -> None:
    plan = field_plan(json_schema_of(Reading))
    assert plan is not None
    assert plan.keys == ("mode", "product", "max_price")
    assert [plan.forced_text(i) for i in range(3)] == ['{"mode":', ' "product":', ' "max_price":']
    assert [plan.closing(i) for i in range(3)] == [",", ",", "}"]
    roots = [[line for line in g.splitlines() if line.startswith("root ::=")] for g in plan.grammars]
    assert roots[0] == ['root ::= " " ("\\"search\\"" | "\\"chat\\"") ","']
    assert roots[2][0].startswith('root ::= " " (') and roots[2][0].endswith(') "}"')


def test_schemas_with_shared_definitions_keep_the_whole_schema_grammar() -> None:
    assert field_plan(json_schema_of(Nested)) is None  # the nested model is a $ref into $defs
    assert field_plan({"type": "array", "items": {"type": "string"}}) is None
    assert field_plan({"type": "object", "properties": {}}) is None


def test_value_grammar_needs_a_root_rule() -> None:
    with pytest.raises(ValueError, match="root"):
        value_grammar('value ::= "x"', ",")


@pytest.mark.parametrize(
    ("text", "closing", "complete"),
    [
        (' "drill",', ",", True),
        (' "drill, cordless",', ",", True),
        (' "drill,', ",", False),  # a comma inside the string, not the separator
        (' "a \\",', ",", False),  # an escaped quote does not close the string
        (" null,", ",", True),
        (" 25", "}", False),  # a number may go on: only the separator ends it
        (" 25}", "}", True),
        (' "{x}', "}", False),
    ],
)
def test_a_value_is_complete_only_when_it_parses_before_the_separator(text: str, closing: str, complete: bool) -> None:
    assert value_complete(text, closing) is complete


class ScriptedModel:
    """Answers each value from a script, one character per token; records what it was asked to read."""

    def __init__(self, values: list[str]) -> None:
        self.values = values
        self.calls: list[tuple[str, str]] = []  # (text of all tokens so far, grammar)
        self.generated = 0

    @staticmethod
    def tokenize(text: str) -> list[int]:
        return [ord(c) for c in text]

    @staticmethod
    def detokenize(tokens: list[int], _previous: list[int]) -> bytes:
        return "".join(chr(t) for t in tokens).encode()

    def generate(self, tokens: list[int], grammar: str) -> Iterator[int]:
        self.calls.append(("".join(chr(t) for t in tokens), grammar))
        value = self.values[len(self.calls) - 1]
        for char in value + "<junk after the value>":
            self.generated += 1
            yield ord(char)


def decode(model: ScriptedModel, max_tokens: int = 200) -> str:
    plan = field_plan(json_schema_of(Reading))
    assert plan is not None
    return decode_fields(
        plan,
        model.tokenize("PROMPT"),
        tokenize=model.tokenize,
        detokenize=model.detokenize,
        generate=model.generate,
        max_tokens=max_tokens,
    )


def test_keys_are_read_and_only_values_are_generated() -> None:
    model = ScriptedModel([' "search",', ' "drill, cordless",', " 150}"])
    text = decode(model)
    assert json.loads(text) == {"mode": "search", "product": "drill, cordless", "max_price": 150}
    assert Reading.model_validate_json(text).max_price == 150.0
    # Each value call sees the prompt, every earlier value and its own key, and stops at its separator: the junk the
    # model would have produced next is never read.
    assert [seen for seen, _ in model.calls] == [
        'PROMPT{"mode":',
        'PROMPT{"mode": "search", "product":',
        'PROMPT{"mode": "search", "product": "drill, cordless", "max_price":',
    ]
    assert model.generated == len(' "search",') + len(' "drill, cordless",') + len(" 150}")
    assert '"\\"search\\""' in model.calls[0][1]


def test_running_out_of_tokens_returns_the_partial_text() -> None:
    model = ScriptedModel([' "search",', ' "a very long product name that never ends', " 1}"])
    with pytest.raises(TokenBudgetExceeded) as caught:
        decode(model, max_tokens=20)
    partial = caught.value.args[0]
    assert partial.startswith('{"mode": "search", "product": "a very')
    with pytest.raises(ValueError):
        json.loads(partial)
