"""The API's HTTP hardening, installed by ``create_app`` through :func:`install_security`.

* :class:`BodyLimitMiddleware` — 413 for a body over ``HYBREC_MAX_REQUEST_BYTES`` on every endpoint: on its
  ``Content-Length`` before anything is read, or, for a chunked body without one, as soon as what was read
  passes the limit (the body is never buffered here);
* CORS (Starlette's ``CORSMiddleware``) for ``HYBREC_CORS_ORIGINS``, none when the list is empty;
* the per-client rate limit of :mod:`hybrec.api.ratelimit` when ``HYBREC_RATE_LIMIT_PER_MINUTE`` is non-zero;
* :class:`SecurityHeadersMiddleware` — ``X-Content-Type-Options: nosniff`` on every response.

API keys are checked per route (:func:`hybrec.api.deps.require_write_key`, ``require_read_key``): which endpoints
need one is a property of the route, not of the path.

Every middleware here is plain ASGI rather than Starlette's ``BaseHTTPMiddleware``, which costs each request a
task and a copy of the response: the recommendation endpoint's p99 target is 25 ms.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI, HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hybrec.api.deps import ADMIN_KEY_SCHEME, API_KEY_SCHEME, READ_KEY_SCHEME, admin_keys
from hybrec.api.metrics import Metrics
from hybrec.api.ratelimit import RateLimitMiddleware, make_rate_counter
from hybrec.config import Settings

NOSNIFF = (b"x-content-type-options", b"nosniff")


def install_security(app: FastAPI, settings: Settings, metrics: Metrics) -> None:
    """Add the middleware above to ``app``; call it after any middleware that must run inside them.

    Starlette runs the middleware added last first, so the order of the calls below is innermost first: body limit,
    rate limit, CORS (so that a 413 or a 429 carries CORS headers a browser can read), security headers.
    """
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_request_bytes)
    if settings.rate_limit_per_minute > 0:
        app.add_middleware(
            RateLimitMiddleware,
            limit=settings.rate_limit_per_minute,
            counter=make_rate_counter(settings, metrics),
            api_keys=settings.api_keys,
        )
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Content-Type", "X-API-Key"],
            expose_headers=["Retry-After"],
        )
    app.add_middleware(SecurityHeadersMiddleware)
    document_api_keys(app, settings)


def document_api_keys(app: FastAPI, settings: Settings) -> None:
    """Make the OpenAPI document say which operations of *this* deployment need the ``X-API-Key``.

    Writes, reads and admin name different schemes (:data:`~hybrec.api.deps.API_KEY_SCHEME`, ``READ_KEY_SCHEME``,
    ``ADMIN_KEY_SCHEME``) for the same header; here they become one scheme, required where the settings require a
    key and optional (OpenAPI's ``[{}, {"APIKey": []}]``) where they do not: no keys at all, or a read without
    ``api_keys_on_reads``.
    """
    generate = app.openapi
    folded: list[dict[str, Any]] = []  # the schema last folded: FastAPI caches it, and rebuilds it when routes change

    def openapi() -> dict[str, Any]:
        schema = generate()
        if folded and folded[0] is schema:
            return schema
        folded[:] = [schema]
        schemes = schema.get("components", {}).get("securitySchemes", {})
        for variant in (READ_KEY_SCHEME, ADMIN_KEY_SCHEME):
            if variant in schemes:
                schemes.setdefault(API_KEY_SCHEME, schemes[variant])
                del schemes[variant]
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                if not isinstance(operation, dict):  # a path-level "parameters" list
                    continue
                names = {name for requirement in operation.get("security", ()) for name in requirement}
                if API_KEY_SCHEME in names:
                    required = bool(settings.api_keys)
                elif ADMIN_KEY_SCHEME in names:
                    required = bool(admin_keys(settings))
                elif READ_KEY_SCHEME in names:
                    required = bool(settings.api_keys) and settings.api_keys_on_reads
                else:
                    continue
                operation["security"] = [{API_KEY_SCHEME: []}] if required else [{}, {API_KEY_SCHEME: []}]
        return schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to customise the schema


class BodyTooLarge(HTTPException):
    """Raised by the wrapped ``receive`` when a body without ``Content-Length`` passes the limit while read.

    An ``HTTPException`` so that FastAPI, which reads the body inside the route, lets it through to the app's
    exception handling (a 413 like any other); :class:`BodyLimitMiddleware` also answers it should it arrive there.
    """

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, f"request body over {max_bytes} bytes (HYBREC_MAX_REQUEST_BYTES)")


class BodyLimitMiddleware:
    """413 for request bodies over ``max_bytes``, judged on Content-Length first, then on the bytes read."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = None
        for name, value in scope["headers"]:
            if name == b"content-length":
                length = value
                break
        if length is not None:
            # The server enforces the declared length, so a body within it needs no counting here.
            if length.isdigit() and int(length) > self.max_bytes:
                await _send_json(send, 413, BodyTooLarge(self.max_bytes).detail)
            else:
                await self.app(scope, receive, send)
            return

        received = 0
        started = False

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        async def watched_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, watched_send)
        except BodyTooLarge as exc:
            if started:  # the app answered before reading on; nothing more can be said
                raise
            await _send_json(send, 413, exc.detail)


class SecurityHeadersMiddleware:
    """``X-Content-Type-Options: nosniff`` on every response: browsers must not guess a JSON answer is HTML."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                headers.append(NOSNIFF)
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)


async def _send_json(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
