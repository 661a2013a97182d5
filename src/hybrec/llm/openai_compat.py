"""Client of the OpenAI-compatible ``/v1/chat/completions`` endpoint (Ollama /v1, vLLM, llama.cpp's server).

It is the one wire protocol all production LLM servers speak, so it is the only HTTP client hybrec needs for
generation. Structured output uses ``response_format``; two dialects exist:

* ``json_mode="json_schema"`` (OpenAI, vLLM, Ollama /v1):
  ``{"type": "json_schema", "json_schema": {"name": ..., "schema": ..., "strict": true}}``
* ``json_mode="json_object"`` (llama-cpp-python's server): ``{"type": "json_object", "schema": ...}``

Transient failures (connection refused, connect timeout, 5xx, 429) are retried with exponential backoff; a read
timeout is not retried (a slow generation retried would only double the user's wait) and, like retries running out,
raises :class:`~hybrec.llm.base.LLMUnavailable`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal

import httpx
from pydantic import BaseModel

from hybrec.llm.base import (
    DEFAULT_MAX_TOKENS,
    DEFAULT_TEMPERATURE,
    ChatMessage,
    LLMOutputError,
    LLMRequestError,
    LLMUnavailable,
    ModelT,
    completion_content,
    delta_content,
    json_schema_of,
    structured_with_retry,
    wire_messages,
)

logger = logging.getLogger(__name__)

JsonMode = Literal["json_schema", "json_object"]
_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
_MAX_RETRY_AFTER_S = 30.0


class OpenAICompatLLM:
    """LLM backend talking to an OpenAI-compatible server over HTTP.

    Parameters
    ----------
    base_url : str
        Server root including the ``/v1`` suffix, e.g. ``http://ollama:11434/v1``.
    model : str
        Model name as the server knows it.
    api_key : str, optional
        Sent as ``Authorization: Bearer <key>`` when given.
    timeout_s : float, default 60
        Read timeout of one request; connecting gets ``min(timeout_s, 10)``.
    max_retries : int, default 2
        Extra attempts after a transient failure (so at most ``max_retries + 1`` requests).
    backoff_s : float, default 0.5
        First retry delay; doubles each retry. A 429's ``Retry-After`` (capped at 30 s) wins when larger.
    json_mode : {"json_schema", "json_object"}, default "json_schema"
        The ``response_format`` dialect of the server, see the module docstring.
    name : str, optional
        Backend name in logs and errors; defaults to ``openai:<model>``.
    transport : httpx.BaseTransport, optional
        Custom transport (proxies, unix sockets).
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        timeout_s: float = 60.0,
        max_retries: int = 2,
        backoff_s: float = 0.5,
        json_mode: JsonMode = "json_schema",
        name: str | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {base_url!r}")
        if not model:
            raise ValueError("model must be a non-empty model name")
        if json_mode not in ("json_schema", "json_object"):
            raise ValueError(f"json_mode must be 'json_schema' or 'json_object', not {json_mode!r}")
        if timeout_s <= 0 or max_retries < 0 or backoff_s < 0:
            raise ValueError("timeout_s must be > 0, max_retries and backoff_s >= 0")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.json_mode: JsonMode = json_mode
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.name = name or f"openai:{model}"
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(
            base_url=self.base_url,
            headers=headers,
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 10.0)),
            transport=transport,
        )

    # --- protocol ----------------------------------------------------------------------------------------------
    def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        temperature: float = DEFAULT_TEMPERATURE,
        stop: Sequence[str] | None = None,
    ) -> str:
        """The assistant's reply as one string (see :class:`~hybrec.llm.base.LLM`)."""
        payload = self._payload(messages, max_tokens=max_tokens, temperature=temperature, stop=stop)
        return completion_content(self._post_json(payload), self.name)

    def stream(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        temperature: float = DEFAULT_TEMPERATURE,
        stop: Sequence[str] | None = None,
    ) -> Iterator[str]:
        """The reply as server-sent-event chunks (``stream: true``; ``data:`` lines until ``[DONE]``)."""
        payload = self._payload(messages, max_tokens=max_tokens, temperature=temperature, stop=stop)
        payload["stream"] = True
        return self._stream_chunks(payload)

    def structured(
        self,
        messages: Sequence[ChatMessage],
        schema: type[ModelT],
        *,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        temperature: float = 0.0,
    ) -> ModelT:
        """A ``schema`` instance decoded under the server's JSON-schema constraint, retried once if invalid."""
        response_format = self.response_format(schema)

        def generate(conversation: list[ChatMessage]) -> str:
            payload = self._payload(conversation, max_tokens=max_tokens, temperature=temperature, stop=None)
            payload["response_format"] = response_format
            return completion_content(self._post_json(payload), self.name)

        return structured_with_retry(generate, messages, schema, backend=self.name)

    def health(self) -> bool:
        """True when ``GET /models`` answers 200 within 5 s."""
        try:
            return self._client.get("/models", timeout=5.0).status_code == 200
        except httpx.HTTPError:
            return False

    # --- helpers -----------------------------------------------------------------------------------------------
    def response_format(self, schema: type[BaseModel]) -> dict[str, Any]:
        """The ``response_format`` field for ``schema`` in this client's dialect."""
        json_schema = json_schema_of(schema)
        if self.json_mode == "json_object":
            return {"type": "json_object", "schema": json_schema}
        return {"type": "json_schema", "json_schema": {"name": schema.__name__, "schema": json_schema, "strict": True}}

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()

    def __enter__(self) -> OpenAICompatLLM:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _payload(
        self, messages: Sequence[ChatMessage], *, max_tokens: int, temperature: float, stop: Sequence[str] | None
    ) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "model": self.model,
            "messages": wire_messages(messages, max_tokens=max_tokens, temperature=temperature),
            "max_tokens": max_tokens,
            "temperature": temperature,
        }
        if stop:
            payload["stop"] = list(stop)
        return payload

    def _post_json(self, payload: dict[str, Any]) -> dict[str, Any]:
        response = self._send(lambda: self._client.post("/chat/completions", json=payload))
        try:
            body = response.json()
        except ValueError as exc:
            raise LLMOutputError(f"{self.name}: response is not JSON: {response.text[:200]!r}") from exc
        if not isinstance(body, dict):
            raise LLMOutputError(f"{self.name}: response is not a JSON object: {str(body)[:200]}")
        return body

    def _stream_chunks(self, payload: dict[str, Any]) -> Iterator[str]:
        request = self._client.build_request("POST", "/chat/completions", json=payload)
        response = self._send(lambda: self._client.send(request, stream=True))
        try:
            for line in response.iter_lines():
                if not line.startswith("data:"):
                    continue  # SSE comments (": ping"), event names and blank separators
                data = line[len("data:") :].strip()
                if data == "[DONE]":
                    return
                try:
                    event = json.loads(data)
                except ValueError as exc:
                    raise LLMOutputError(f"{self.name}: bad stream event {data[:200]!r}") from exc
                if "error" in event:
                    raise LLMUnavailable(f"{self.name}: server error mid-stream: {event['error']}")
                content = delta_content(event)
                if content:
                    yield content
        except httpx.HTTPError as exc:
            raise LLMUnavailable(f"{self.name}: stream interrupted: {exc!r}") from exc
        finally:
            response.close()

    def _send(self, send: Callable[[], httpx.Response]) -> httpx.Response:
        """Run one request with retries on transient failures; returns a 2xx response or raises an LLMError."""
        delay = self.backoff_s
        for attempt in range(self.max_retries + 1):
            last = attempt == self.max_retries
            try:
                response: httpx.Response = send()
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError) as exc:
                if last:
                    raise LLMUnavailable(f"{self.name}: cannot reach {self.base_url}: {exc!r}") from exc
                logger.warning("%s: %r; retry %d/%d in %.1fs", self.name, exc, attempt + 1, self.max_retries, delay)
            except httpx.TimeoutException as exc:
                raise LLMUnavailable(f"{self.name}: no answer from {self.base_url} in time: {exc!r}") from exc
            except httpx.HTTPError as exc:
                raise LLMUnavailable(f"{self.name}: request to {self.base_url} failed: {exc!r}") from exc
            else:
                if response.status_code < 400:
                    return response
                detail = _error_detail(response)
                if response.status_code not in _RETRY_STATUS:
                    raise LLMRequestError(f"{self.name}: HTTP {response.status_code}: {detail}")
                if last:
                    raise LLMUnavailable(
                        f"{self.name}: HTTP {response.status_code} after {self.max_retries + 1} attempts: {detail}"
                    )
                delay = max(delay, _retry_after(response))
                logger.warning(
                    "%s: HTTP %d; retry %d/%d in %.1fs",
                    self.name,
                    response.status_code,
                    attempt + 1,
                    self.max_retries,
                    delay,
                )
            time.sleep(delay)
            delay *= 2
        raise AssertionError("unreachable")  # the loop returns or raises on its last attempt


def _error_detail(response: httpx.Response) -> str:
    try:
        response.read()
        return response.text[:300]
    except httpx.HTTPError:
        return "<unreadable body>"
    finally:
        response.close()


def _retry_after(response: httpx.Response) -> float:
    value = response.headers.get("Retry-After", "")
    try:
        return min(max(float(value), 0.0), _MAX_RETRY_AFTER_S)
    except ValueError:
        return 0.0
