"""The LLM protocol every backend implements, its message type, errors and the shared structured-output loop.

A backend turns chat messages into text (:meth:`LLM.complete`), a token stream (:meth:`LLM.stream`) or a
pydantic-validated object (:meth:`LLM.structured`). Callers (the chat engine) only ever catch :class:`LLMError`
subclasses: :class:`LLMUnavailable` means "no model answer now, degrade to rules", :class:`LLMOutputError` means
"the model answered, twice, with something that does not fit the schema".
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel, ValidationError

logger = logging.getLogger(__name__)

Role = Literal["system", "user", "assistant"]
ModelT = TypeVar("ModelT", bound=BaseModel)

#: Defaults shared by every backend, so a call means the same thing whatever serves it.
DEFAULT_MAX_TOKENS = 256
DEFAULT_TEMPERATURE = 0.2


class LLMError(Exception):
    """Base class of every error an LLM backend raises; the chat engine degrades to rules on any of them."""


class LLMUnavailable(LLMError):
    """No answer could be obtained: connection refused, timeout, 5xx/429 after retries, model not loadable."""


class LLMOutputError(LLMError):
    """The model answered but its output did not validate against the requested schema, even after one retry."""


class LLMRequestError(LLMError):
    """The server rejected the request itself (a 4xx other than 429): wrong model name, unsupported option."""


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One chat turn.

    Parameters
    ----------
    role : {"system", "user", "assistant"}
        Who speaks.
    content : str
        What is said.
    """

    role: Role
    content: str

    def __post_init__(self) -> None:
        if self.role not in ("system", "user", "assistant"):
            raise ValueError(f"ChatMessage.role must be system, user or assistant, not {self.role!r}")
        if not isinstance(self.content, str):
            raise TypeError(f"ChatMessage.content must be a str, not {type(self.content).__name__}")

    def as_dict(self) -> dict[str, str]:
        """The OpenAI wire form ``{"role": ..., "content": ...}``."""
        return {"role": self.role, "content": self.content}


@runtime_checkable
class LLM(Protocol):
    """What the chat engine needs from a language model.

    Every method takes the whole conversation as a sequence of :class:`ChatMessage` and is synchronous;
    implementations are safe to call from several threads (they serialise internally where the model is not).
    """

    name: str

    def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        temperature: float = DEFAULT_TEMPERATURE,
        stop: Sequence[str] | None = None,
    ) -> str:
        """The assistant's reply to ``messages`` as one string."""
        ...

    def stream(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        temperature: float = DEFAULT_TEMPERATURE,
        stop: Sequence[str] | None = None,
    ) -> Iterator[str]:
        """The assistant's reply as text chunks, in order; joined they equal the full reply."""
        ...

    def structured(
        self,
        messages: Sequence[ChatMessage],
        schema: type[ModelT],
        *,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        temperature: float = 0.0,
    ) -> ModelT:
        """The reply constrained to ``schema``'s JSON schema and validated by it.

        Raises
        ------
        LLMOutputError
            When the output does not validate, after one retry that shows the model its error.
        LLMUnavailable
            When the backend cannot answer at all.
        """
        ...

    def health(self) -> bool:
        """Whether the backend can answer now (cheap; never raises)."""
        ...


def json_schema_of(schema: type[BaseModel]) -> dict[str, Any]:
    """The JSON schema of a pydantic model, as sent to constrained decoders.

    Parameters
    ----------
    schema : type[pydantic.BaseModel]
        The model class.

    Returns
    -------
    dict
        ``schema.model_json_schema()``; raises ``TypeError`` for anything that is not a pydantic model class.
    """
    if not (isinstance(schema, type) and issubclass(schema, BaseModel)):
        raise TypeError(f"schema must be a pydantic BaseModel subclass, not {schema!r}")
    return schema.model_json_schema()


def validate_messages(messages: Sequence[ChatMessage]) -> list[ChatMessage]:
    """Check ``messages`` is a non-empty sequence of :class:`ChatMessage`; returns it as a list."""
    if isinstance(messages, str | bytes) or not messages:
        raise ValueError("messages must be a non-empty sequence of ChatMessage")
    out = list(messages)
    for i, message in enumerate(out):
        if not isinstance(message, ChatMessage):
            raise TypeError(f"messages[{i}] must be a ChatMessage, not {type(message).__name__}")
    return out


def wire_messages(messages: Sequence[ChatMessage], *, max_tokens: int, temperature: float) -> list[dict[str, str]]:
    """Check the sampling arguments every backend takes; ``messages`` in the OpenAI wire form.

    Raises
    ------
    ValueError
        ``max_tokens`` below 1, a negative ``temperature`` or no messages.
    TypeError
        An element of ``messages`` is not a :class:`ChatMessage`.
    """
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    return [m.as_dict() for m in validate_messages(messages)]


def completion_content(body: Any, backend: str) -> str:
    """``choices[0].message.content`` of an OpenAI-style chat completion (``""`` when null).

    Raises
    ------
    LLMOutputError
        When the completion does not have that field.
    """
    try:
        content = body["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError) as exc:
        raise LLMOutputError(f"{backend}: response has no choices[0].message.content: {str(body)[:200]}") from exc
    return content or ""


def delta_content(chunk: Mapping[str, Any]) -> str:
    """The text of one OpenAI-style streaming chunk, ``choices[0].delta.content`` (``""`` when there is none)."""
    choices = chunk.get("choices") or []
    return (choices[0].get("delta") or {}).get("content") or "" if choices else ""


def _strip_code_fence(text: str) -> str:
    """Models without constrained decoding often wrap JSON in a Markdown fence; take what is inside."""
    stripped = text.strip()
    if stripped.startswith("```"):
        stripped = stripped.split("\n", 1)[1] if "\n" in stripped else ""
        if stripped.rstrip().endswith("```"):
            stripped = stripped.rstrip()[:-3]
    return stripped.strip()


def parse_structured(text: str, schema: type[ModelT]) -> ModelT:
    """Validate a model's JSON text against ``schema``; raises ``ValueError`` (incl. ValidationError) if it fails."""
    return schema.model_validate_json(_strip_code_fence(text))


def structured_with_retry(
    generate: Callable[[list[ChatMessage]], str],
    messages: Sequence[ChatMessage],
    schema: type[ModelT],
    *,
    backend: str,
) -> ModelT:
    """Run ``generate`` and validate its JSON against ``schema``; on failure retry once showing the error.

    The retry appends the invalid reply as an assistant turn and a user turn naming the validation error, the usual
    self-correction prompt: the model sees exactly what was wrong.

    Parameters
    ----------
    generate : callable
        Maps messages to the raw JSON text of one constrained generation.
    messages : sequence of ChatMessage
        The conversation.
    schema : type[pydantic.BaseModel]
        The expected shape.
    backend : str
        Backend name, for error messages.

    Raises
    ------
    LLMOutputError
        When both attempts fail validation.
    """
    conversation = validate_messages(messages)
    text = generate(conversation)
    try:
        return parse_structured(text, schema)
    except (ValidationError, ValueError) as first:
        error = _short_error(first)
        logger.warning("%s: output did not validate as %s (%s); retrying once", backend, schema.__name__, error)
        retry = [
            *conversation,
            ChatMessage("assistant", text),
            ChatMessage(
                "user",
                f"That reply is not valid: {error}. Reply again with only one JSON object that matches this "
                f"schema: {json.dumps(json_schema_of(schema))}",
            ),
        ]
        text = generate(retry)
        try:
            return parse_structured(text, schema)
        except (ValidationError, ValueError) as second:
            raise LLMOutputError(
                f"{backend}: output is not a valid {schema.__name__} after one retry: {_short_error(second)}; "
                f"last output: {text[:200]!r}"
            ) from second


def _short_error(error: Exception, limit: int = 400) -> str:
    message = str(error).replace("\n", " ")
    return message if len(message) <= limit else message[:limit] + "..."
