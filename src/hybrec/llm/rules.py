"""The ``none`` backend: deterministic, no model, same protocol.

Contract (kept deliberately small):

* :meth:`RuleBasedLLM.structured` looks ``schema`` up in a registry of rule functions (``schema class -> rule``) and
  returns the rule's result validated as ``schema``. The owners of the schemas (the chat engine) register their
  rules; this module knows nothing about shopping. A schema without a rule raises
  :class:`~hybrec.llm.base.LLMUnavailable`, exactly like a model that is down, so callers have one degrade path.
* :meth:`RuleBasedLLM.complete` / :meth:`RuleBasedLLM.stream` return the text of a template function when one is
  given and raise :class:`~hybrec.llm.base.LLMUnavailable` otherwise: free text without a model is the caller's
  templated answer, never invented here.
* :meth:`RuleBasedLLM.health` is always True: rules cannot be down.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from pydantic import BaseModel

from hybrec.llm.base import (
    DEFAULT_MAX_TOKENS,
    DEFAULT_TEMPERATURE,
    ChatMessage,
    LLMOutputError,
    LLMUnavailable,
    ModelT,
    validate_messages,
)

logger = logging.getLogger(__name__)

#: A rule maps the conversation to an instance of its schema (or to a dict the schema validates).
Rule = Callable[[Sequence[ChatMessage]], "BaseModel | Mapping[str, Any]"]
#: A template maps the conversation to the reply text.
Template = Callable[[Sequence[ChatMessage]], str]


class RuleBasedLLM:
    """The no-model backend (``HYBREC_LLM_BACKEND=none``), also usable as the degraded path of the chat engine.

    Parameters
    ----------
    rules : mapping of schema class to rule, optional
        Initial registry; more can be added with :meth:`register`.
    template : callable, optional
        Produces the reply of :meth:`complete` / :meth:`stream` from the conversation.
    name : str, default "none"
        Backend name.
    """

    def __init__(
        self,
        rules: Mapping[type[BaseModel], Rule] | None = None,
        template: Template | None = None,
        *,
        name: str = "none",
    ) -> None:
        self.name = name
        self.template = template
        self._rules: dict[type[BaseModel], Rule] = {}
        for schema, rule in (rules or {}).items():
            self.register(schema, rule)

    def register(self, schema: type[BaseModel], rule: Rule) -> None:
        """Serve :meth:`structured` calls for ``schema`` (and its subclasses without their own rule) by ``rule``."""
        if not (isinstance(schema, type) and issubclass(schema, BaseModel)):
            raise TypeError(f"schema must be a pydantic BaseModel subclass, not {schema!r}")
        if not callable(rule):
            raise TypeError(f"rule for {schema.__name__} must be callable")
        self._rules[schema] = rule

    def rule_for(self, schema: type[BaseModel]) -> Rule | None:
        """The rule serving ``schema``: its own, else the nearest registered base class's, else None."""
        for klass in schema.__mro__:
            if klass in self._rules:
                return self._rules[klass]
        return None

    def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        temperature: float = DEFAULT_TEMPERATURE,
        stop: Sequence[str] | None = None,
    ) -> str:
        """The template's reply; ``LLMUnavailable`` when no template is set. Sampling arguments are ignored."""
        conversation = validate_messages(messages)
        if self.template is None:
            raise LLMUnavailable(f"{self.name}: no language model configured and no answer template given")
        return self.template(conversation)

    def stream(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        temperature: float = DEFAULT_TEMPERATURE,
        stop: Sequence[str] | None = None,
    ) -> Iterator[str]:
        """The template's reply, word by word (whitespace kept), so streaming clients see the same shape."""
        text = self.complete(messages)
        return iter(_words(text))

    def structured(
        self,
        messages: Sequence[ChatMessage],
        schema: type[ModelT],
        *,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        temperature: float = 0.0,
    ) -> ModelT:
        """The registered rule's result for ``schema``, validated; ``LLMUnavailable`` when no rule serves it."""
        conversation = validate_messages(messages)
        rule = self.rule_for(schema)
        if rule is None:
            raise LLMUnavailable(f"{self.name}: no rule registered for {schema.__name__}")
        result = rule(conversation)
        try:
            if isinstance(result, schema):
                return result
            if isinstance(result, BaseModel):
                return schema.model_validate(result.model_dump())
            return schema.model_validate(result)
        except ValueError as exc:
            raise LLMOutputError(f"{self.name}: rule for {schema.__name__} returned an invalid value: {exc}") from exc

    def health(self) -> bool:
        """Always True."""
        return True


def _words(text: str) -> list[str]:
    """Split ``text`` into chunks that each end after a run of whitespace; ``"".join`` restores it."""
    chunks: list[str] = []
    start = 0
    i = 0
    while i < len(text):
        if text[i].isspace():
            while i < len(text) and text[i].isspace():
                i += 1
            chunks.append(text[start:i])
            start = i
        else:
            i += 1
    if start < len(text):
        chunks.append(text[start:])
    return chunks
