"""Field-by-field JSON decoding for the embedded model: the object's keys are read, only its values are generated.

Structured output under a grammar compiled from the whole JSON schema (llama-cpp-python's ``response_format``)
still runs one forward pass of the model per output token, and most tokens of a small flat object are forced by the
grammar: in ``{"mode": "new_search", "product": null, "brand": null, ...}`` the keys, quotes and separators leave
the model no choice. On a CPU each pass of the 1.5B model costs 75-130 ms, so the chat's routing object (seven keys,
about 45 tokens) took 5-8 s, two thirds of it spent writing text known in advance.

Here the known text is appended to the prompt instead: for each property in schema order, ``"key":`` is tokenised
and read in one batch with the rest of the pending tokens (llama.cpp evaluates a batch of a few tokens in about the
time of one pass), then only the value and its closing separator are generated, under a grammar compiled from that
property's schema alone. Measured on the 2-core development machine with Qwen2.5-1.5B: 16-28 generated tokens
instead of ~45, and 3-5.5 s per routing call instead of 6-8 s, with the same values. (The same idea is the
"fast-forward" of guidance/outlines-style constrained decoders.)

Only flat schemas are decoded this way (every property's schema self-contained: no ``$ref`` into ``$defs``); others
keep the whole-schema grammar. Every key is written, in schema order, so optional properties come out as ``null``
when the model has nothing for them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

#: Separator the value grammar of each property ends with: "," between properties, "}" after the last.
_NEXT, _LAST = ",", "}"


@dataclass(frozen=True, slots=True)
class FieldPlan:
    """How to decode one flat object schema: its keys in order and the GBNF grammar of each value."""

    keys: tuple[str, ...]
    grammars: tuple[str, ...]

    def forced_text(self, index: int) -> str:
        """The text written for property ``index`` before its value is generated (the key and its colon)."""
        return ("{" if index == 0 else " ") + json.dumps(self.keys[index]) + ":"

    def closing(self, index: int) -> str:
        return _LAST if index == len(self.keys) - 1 else _NEXT


def field_plan(schema: dict[str, Any]) -> FieldPlan | None:
    """The decoding plan of ``schema``, or None when it is not a flat object this module decodes.

    A flat object here is ``{"type": "object", "properties": {...}}`` whose property schemas do not refer to shared
    definitions (``$ref``): each value grammar is compiled from its property schema alone.
    """
    properties = schema.get("properties")
    if schema.get("type") != "object" or not isinstance(properties, dict) or not properties:
        return None
    if "$ref" in json.dumps(properties):
        return None
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    keys = tuple(properties)
    grammars = []
    for index, key in enumerate(keys):
        closing = _LAST if index == len(keys) - 1 else _NEXT
        grammars.append(value_grammar(json_schema_to_gbnf(json.dumps(properties[key])), closing))
    return FieldPlan(keys, tuple(grammars))


def value_grammar(gbnf: str, closing: str) -> str:
    """``gbnf`` (a grammar whose ``root`` is one JSON value) made to read a space, the value, then ``closing``.

    The space before the value keeps the tokenisation the model knows (``":`` then `` "text"`` or `` null``); the
    closing separator is generated with the value (it often shares a token with a closing quote), so generation
    stops on it without spending a pass on an end-of-text token.
    """
    lines = gbnf.strip().splitlines()
    for i, line in enumerate(lines):
        if line.startswith("root ::= "):
            lines[i] = f'root ::= " " ({line[len("root ::= ") :]}) {json.dumps(closing)}'
            return "\n".join(lines)
    raise ValueError("the grammar has no root rule")


def value_complete(text: str, closing: str) -> bool:
    """Whether ``text`` (generated for one property) is a whole JSON value followed by ``closing``.

    The grammar only lets the separator through after a whole value, but a string value may itself contain a comma
    or a brace, so the value before the separator must also parse.
    """
    stripped = text.strip()
    if not stripped.endswith(closing):
        return False
    try:
        json.loads(stripped[: -len(closing)])
    except ValueError:
        return False
    return True


class TokenBudgetExceeded(Exception):
    """Generation used up ``max_tokens`` before the object was complete (the partial text is in ``args[0]``)."""


def decode_fields(
    plan: FieldPlan,
    prompt_tokens: Sequence[int],
    *,
    tokenize: Callable[[str], list[int]],
    detokenize: Callable[[list[int], list[int]], bytes],
    generate: Callable[[list[int], str], Any],
    max_tokens: int,
) -> str:
    """Decode one object of ``plan`` after ``prompt_tokens``; returns its JSON text.

    Parameters
    ----------
    tokenize : callable
        Text to tokens (no BOS, special tokens not parsed).
    detokenize : callable
        ``(tokens, previous tokens)`` to bytes.
    generate : callable
        ``(all tokens so far, value grammar)`` to an iterator of generated tokens; it evaluates only what the model's
        context does not hold yet (llama-cpp-python's prefix match) and is closed when the value is complete.
    max_tokens : int
        Generated tokens allowed for the whole object.

    Raises
    ------
    TokenBudgetExceeded
        With the partial text, when ``max_tokens`` ran out first.
    """
    tokens = list(prompt_tokens)
    text = ""
    generated = 0
    for index in range(len(plan.keys)):
        forced = plan.forced_text(index)
        text += forced
        tokens += tokenize(forced)
        closing = plan.closing(index)
        value = b""
        stream = generate(list(tokens), plan.grammars[index])
        try:
            for token in stream:
                generated += 1
                value += detokenize([token], tokens)
                tokens.append(token)
                if value_complete(value.decode("utf-8", errors="ignore"), closing):
                    break
                if generated >= max_tokens:
                    raise TokenBudgetExceeded(text + value.decode("utf-8", errors="replace"))
        finally:
            stream.close()
        text += value.decode("utf-8", errors="replace")
    return text
