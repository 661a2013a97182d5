"""Helpers for the LLM tests: a scripted real HTTP server on loopback, a free-port finder, the filter schema."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

import pytest
from pydantic import BaseModel


@dataclass
class Reply:
    """One scripted HTTP answer."""

    status: int = 200
    body: Any = None  # dict/list -> JSON; str -> sent as-is
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


def chat_reply(content: str) -> Reply:
    """A minimal OpenAI chat.completion answer carrying ``content``."""
    return Reply(
        body={
            "object": "chat.completion",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}}],
        }
    )


class ScriptedServer:
    """A real HTTP server on loopback that answers POSTs/GETs from a script and records what it received."""

    def __init__(self) -> None:
        self.script: list[Reply] = []
        self.requests: list[dict[str, Any]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                owner.requests.append(
                    {
                        "method": self.command,
                        "path": self.path,
                        "headers": dict(self.headers),
                        "json": json.loads(raw) if raw else None,
                    }
                )
                reply = owner.script.pop(0) if owner.script else Reply(status=500, body={"error": "script empty"})
                if reply.delay_s:
                    time.sleep(reply.delay_s)
                data = reply.body if isinstance(reply.body, str) else json.dumps(reply.body)
                encoded = data.encode()
                self.send_response(reply.status)
                for key, value in reply.headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(encoded)))
                self.end_headers()
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client gave up (timeouts)
                    self.wfile.write(encoded)

            do_GET = _answer
            do_POST = _answer

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class ShoppingFilter(BaseModel):
    """The kind of schema the chat engine asks for: what a shopper wants, with optional filters."""

    intent: Literal["search", "small_talk"]
    product: str | None
    brand: str | None
    max_price: float | None
    min_rating: float | None


#: A few-shot system prompt small models need to fill the filter schema reliably.
FILTER_SYSTEM_PROMPT = (
    "Extract the shopper's request as JSON with keys intent (search or small_talk), product, brand, max_price, "
    "min_rating. Use null for anything not stated. Prices are numbers without currency signs.\n"
    'Example: "Sony headphones under $80" -> {"intent": "search", "product": "headphones", "brand": "Sony", '
    '"max_price": 80, "min_rating": null}\n'
    'Example: "hi there!" -> {"intent": "small_talk", "product": null, "brand": null, "max_price": null, '
    '"min_rating": null}'
)


def require_llama_cpp() -> None:
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        pytest.skip("llama-cpp-python is not installed (pip install 'hybrec[llm]')")
