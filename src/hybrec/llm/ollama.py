"""Ollama's native ``/api/pull``: the only Ollama-specific call hybrec makes.

Generation with Ollama goes through its OpenAI-compatible ``/v1`` endpoint (:mod:`hybrec.llm.openai_compat`); the
native API is used only to make sure the configured model is on the server. ``/api/pull`` streams newline-delimited
JSON progress objects (``{"status": "pulling <digest>", "total": N, "completed": M}``) and ends with
``{"status": "success"}``; a failure arrives as ``{"error": "..."}``.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx
from tqdm import tqdm

from hybrec.llm.base import LLMError, LLMRequestError, LLMUnavailable

logger = logging.getLogger(__name__)


def native_root(base_url: str) -> str:
    """The server root of an Ollama URL: ``http://ollama:11434/v1`` -> ``http://ollama:11434``."""
    root = base_url.rstrip("/")
    return root[: -len("/v1")] if root.endswith("/v1") else root


def pull_model(base_url: str, model: str, *, timeout_s: float = 3600.0, progress: bool = True) -> None:
    """Make Ollama download ``model`` (a no-op download when it is already present).

    Parameters
    ----------
    base_url : str
        The server's URL, with or without the ``/v1`` suffix.
    model : str
        Model tag, e.g. ``mistral:7b``.
    timeout_s : float, default 3600
        Longest silence allowed between two progress lines (a multi-GB pull is slow, but never silent).
    progress : bool, default True
        Show a tqdm bar per layer on the terminal; progress is logged either way.

    Raises
    ------
    LLMUnavailable
        When the server cannot be reached or answers 5xx.
    LLMRequestError
        When the server rejects the pull (unknown model, 4xx) or reports an error in the stream.
    """
    if not model:
        raise ValueError("model must be a non-empty Ollama model tag")
    url = native_root(base_url) + "/api/pull"
    bars: dict[str, tqdm[Any]] = {}
    last_status = ""
    try:
        with (
            httpx.Client(timeout=httpx.Timeout(timeout_s, connect=10.0)) as client,
            client.stream("POST", url, json={"model": model, "stream": True}) as response,
        ):
            if response.status_code >= 400:
                response.read()
                kind = LLMUnavailable if response.status_code >= 500 else LLMRequestError
                raise kind(f"ollama pull {model}: HTTP {response.status_code}: {response.text[:300]}")
            for line in response.iter_lines():
                if not line.strip():
                    continue
                try:
                    event = json.loads(line)
                except ValueError as exc:
                    raise LLMRequestError(f"ollama pull {model}: bad progress line {line[:200]!r}") from exc
                if "error" in event:
                    raise LLMRequestError(f"ollama pull {model}: {event['error']}")
                last_status = str(event.get("status", ""))
                if last_status != "success" and event.get("total"):
                    _advance(bars, event, progress)
                elif last_status:
                    logger.info("ollama pull %s: %s", model, last_status)
    except httpx.HTTPError as exc:
        raise LLMUnavailable(f"ollama pull {model}: cannot reach {url}: {exc!r}") from exc
    finally:
        for bar in bars.values():
            bar.close()
    if last_status != "success":
        raise LLMError(f"ollama pull {model}: stream ended without success (last status {last_status!r})")
    logger.info("ollama pull %s: done", model)


def _advance(bars: dict[str, tqdm[Any]], event: dict[str, Any], show: bool) -> None:
    key = str(event.get("digest") or event.get("status"))
    bar = bars.get(key)
    if bar is None:
        bar = tqdm(total=int(event["total"]), unit="B", unit_scale=True, desc=key[:24], disable=not show, leave=False)
        bars[key] = bar
    completed = int(event.get("completed") or 0)
    bar.update(max(completed - bar.n, 0))
