"""Talk to hybrec's shopping assistant, streaming the reply as it is written.

Run against a running hybrec (``make run``, ``hybrec serve`` or the production ``chat_reco_engine``)::

    python examples/chat.py --user 42 "a gift card for a coffee lover under $30"
    python examples/chat.py --user 42            # interactive: one message per line, the session is kept

Only ``httpx`` is needed (installed with hybrec).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from typing import Any

import httpx


def stream_turn(
    client: httpx.Client, user: str, message: str, session_id: str | None
) -> Iterator[tuple[str, dict[str, Any]]]:
    """``POST /v1/chat/stream``: the server-sent events as ``(name, payload)``: ``items``, ``token``…, ``done``."""
    body = {"user_id": user, "message": message, "session_id": session_id}
    with client.stream("POST", "/v1/chat/stream", json=body) as response:
        if response.status_code != 200:
            response.read()
            raise httpx.HTTPStatusError(f"{response.status_code}", request=response.request, response=response)
        event = "message"
        for line in response.iter_lines():
            if line.startswith("event:"):
                event = line.removeprefix("event:").strip()
            elif line.startswith("data:"):
                yield event, json.loads(line.removeprefix("data:"))


def chat_once(client: httpx.Client, user: str, message: str, session_id: str | None) -> str | None:
    """Print one streamed answer and the products it is about; return the session id to continue in."""
    for event, payload in stream_turn(client, user, message, session_id):
        if event == "token":
            print(payload["text"], end="", flush=True)
        elif event == "done":
            print()
            for item in payload["items"]:
                price = f"${item['price']:.2f}" if item.get("price") is not None else "-"
                rating = f"{item['avg_rating']:.1f}★" if item.get("avg_rating") is not None else ""
                print(f"  • {item['name'][:70]} ({item.get('brand') or 'no brand'}) {price} {rating}")
            if payload.get("degraded"):
                print(f"  (degraded: {', '.join(payload['degraded'])})")
            return str(payload["session_id"])
    return session_id


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("message", nargs="?", help="One message; without it, read messages from standard input.")
    parser.add_argument("--base-url", default="http://127.0.0.1:8000")
    parser.add_argument("--api-key", default=None, help="X-API-Key, when the server requires one.")
    parser.add_argument("--user", required=True)
    args = parser.parse_args(argv)

    headers = {"X-API-Key": args.api_key} if args.api_key else {}
    # An LLM answer on a CPU can take tens of seconds: generous read timeout, short connect timeout.
    timeout = httpx.Timeout(120.0, connect=5.0)
    with httpx.Client(base_url=args.base_url, headers=headers, timeout=timeout) as client:
        try:
            if args.message:
                chat_once(client, args.user, args.message, None)
                return 0
            session_id = None
            for line in sys.stdin:
                if line.strip():
                    session_id = chat_once(client, args.user, line.strip(), session_id)
        except httpx.HTTPStatusError as exc:
            print(f"error: {exc.response.status_code} {exc.response.text}", file=sys.stderr)
            return 1
        except httpx.HTTPError as exc:
            print(f"error: cannot reach {args.base_url}: {exc}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
