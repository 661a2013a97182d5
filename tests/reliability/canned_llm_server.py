"""A minimal OpenAI-compatible LLM server with canned answers: ``python canned_llm_server.py PORT``.

A real HTTP server in its own process (so a fault test can stop it and start it again on the same port) speaking
the part of the OpenAI API hybrec's client uses: ``GET /v1/models`` and ``POST /v1/chat/completions``. Structured
requests (``response_format`` with a JSON schema) get the smallest valid object for the schema hybrec asks for — a
``mode`` of ``new_search`` for the router, no constraints for the filters — and free-text requests get one generic
sentence. It stands in for a real model where llama.cpp is too slow (a 0.5B model needs seconds per answer on a
busy CPU) or cannot run; what the fault tests check is hybrec's behaviour when the server goes away, not the
model's words.
"""

from __future__ import annotations

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MODEL = "canned"
ANSWER = "Here are a few products that match what you asked for."


def _structured(response_format: dict[str, Any]) -> dict[str, Any]:
    """The smallest object hybrec's schemas accept: the router's mode, or no filters at all."""
    schema = response_format.get("json_schema", {}).get("schema") or response_format.get("schema") or {}
    return {"mode": "new_search"} if "mode" in schema.get("properties", {}) else {}


class Handler(BaseHTTPRequestHandler):
    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path.rstrip("/") == "/v1/models":
            self._send(200, {"object": "list", "data": [{"id": MODEL, "object": "model"}]})
        else:
            self._send(404, {"error": {"message": f"no route {self.path}"}})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        request = json.loads(self.rfile.read(length) or b"{}")
        if self.path.rstrip("/") != "/v1/chat/completions":
            self._send(404, {"error": {"message": f"no route {self.path}"}})
            return
        response_format = request.get("response_format")
        content = json.dumps(_structured(response_format)) if response_format else ANSWER
        self._send(
            200,
            {
                "id": "canned",
                "object": "chat.completion",
                "model": MODEL,
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
                ],
            },
        )

    def log_message(self, format: str, *args: Any) -> None:  # quiet: the fault tests read hybrec's logs
        pass


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
