"""A fast lane for the busiest endpoint: its requests answered from the top of the app, past the middleware stack.

Each request of the app goes through Starlette's and FastAPI's layers before its handler: the server-error wrapper,
FastAPI's telemetry and body-limit wrappers, this app's own middleware (:mod:`hybrec.api.security`, request timing),
the exception middleware, the exit-stack middleware and the router, and its answer through a ``send`` wrapper per
layer. On ``GET /v1/users/{user_id}/recommendations`` that was 0.3 ms of the event loop's 0.85 ms per request
(``bench/reco_api.py``, 2-core Zen 3): as much as the whole of a trivial endpoint.

:class:`FastLane` answers such a request itself, doing what those layers would have done to it and nothing else:

* the ``X-Content-Type-Options: nosniff`` header (:class:`~hybrec.api.security.SecurityHeadersMiddleware`) and the
  request-latency metric under the route's template (:meth:`~hybrec.api.metrics.Metrics.middleware`);
* errors answered by the app's own exception handlers, chosen as Starlette chooses them (by status code for an
  ``HTTPException``, else by the exception's class, most derived first), so a 422, 404, 503 or 500 is the same
  answer on both paths.

It takes a request only where skipping the rest changes nothing else; anything else goes down the whole stack:

* only ``GET`` with no request body (no ``Content-Length`` above 0, no ``Transfer-Encoding``: the body limit has
  nothing to judge), a path the route's pattern matches, and no ``root_path``;
* only while the app's middleware is exactly this app's defaults (no CORS, no rate limit, nothing a component
  added) and FastAPI's native OpenTelemetry is off (checked per request, as FastAPI checks it).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from hybrec.api.metrics import Metrics
from hybrec.api.security import NOSNIFF

if TYPE_CHECKING:
    from fastapi import FastAPI

log = logging.getLogger(__name__)

#: A lane's handler: the request (``path_params`` filled in) to the JSON body of a 200 answer; errors are raised.
Handler = Callable[[Request], Awaitable[bytes]]

_JSON_HEADERS = ((b"content-type", b"application/json"), NOSNIFF)


class FastLane:
    """Answer ``GET prefix{param}suffix`` (one path parameter, a whole segment) with ``handler``, past the stack.

    Parameters
    ----------
    app : FastAPI
        The app whose exception handlers answer errors; its ``state`` and settings reach the handler through
        ``request.app`` as usual.
    route : Route
        The app's route for the same path, recorded in the scope as the router would (request metrics, handlers).
    handler : Handler
        Returns the body of a 200 ``application/json`` answer.
    metrics : Metrics
        Receives the request's latency under ``route.path``.
    default_middleware : frozenset of type
        The middleware classes the app installs by default; with any other, the lane stays shut.
    """

    def __init__(
        self,
        app: FastAPI,
        route: Route,
        param: str,
        handler: Handler,
        metrics: Metrics,
        default_middleware: frozenset[type],
    ) -> None:
        path = route.path
        prefix, marker, suffix = path.partition("{" + param + "}")
        if not marker or "{" in prefix + suffix:
            raise ValueError(f"{path!r}: a fast lane needs exactly one path parameter, {param!r}")
        self.app = app
        self.route = route
        self.param = param
        self.template = path
        self.prefix, self.suffix = prefix, suffix
        self.handler = handler
        self.metrics = metrics
        self.default_middleware = default_middleware
        self.served = 0  # requests answered here (tests and benchmarks read it)
        self._default_stack: bool | None = None  # the middleware is fixed once the app serves: judged once

    def open(self) -> bool:
        """Whether the app's configuration lets the lane take requests now (see the module docstring)."""
        default_stack = self._default_stack
        if default_stack is None:
            default_stack = all(m.cls in self.default_middleware for m in self.app.user_middleware)
            if self.app.middleware_stack is not None:  # built: Starlette refuses middleware added from now on
                self._default_stack = default_stack
        if not default_stack:
            return False
        telemetry = getattr(self.app, "_native_telemetry", None)  # FastAPI >= 0.160's OpenTelemetry
        return telemetry is None or not telemetry.enabled()

    def takes(self, scope: Scope) -> bool:
        """Whether this request is the lane's: the route's path, GET, no body, no root path, and the lane open."""
        if scope["type"] != "http" or scope["method"] != "GET" or scope.get("root_path") or self.app.root_path:
            return False
        path: str = scope["path"]
        prefix, suffix = self.prefix, self.suffix
        if not path.startswith(prefix) or not path.endswith(suffix) or len(path) <= len(prefix) + len(suffix):
            return False
        if "/" in path[len(prefix) : len(path) - len(suffix)]:
            return False
        for name, value in scope["headers"]:
            if (name == b"content-length" and value not in (b"0", b"")) or name == b"transfer-encoding":
                return False
        return self.open()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer a request :meth:`takes`."""
        start = time.perf_counter()
        path: str = scope["path"]
        scope["app"] = self.app
        scope["route"] = self.route
        scope["path_params"] = {self.param: path[len(self.prefix) : len(path) - len(self.suffix)]}
        request = Request(scope, receive)
        status = 500
        try:
            try:
                body = await self.handler(request)
            except Exception as exc:
                response = await self._error_response(request, exc)
                status = response.status_code
                headers = response.raw_headers
                if NOSNIFF not in headers:
                    headers = [*headers, NOSNIFF]
                await send({"type": "http.response.start", "status": status, "headers": headers})
                await send({"type": "http.response.body", "body": response.body})
                return
            status = 200
            headers = [*_JSON_HEADERS, (b"content-length", str(len(body)).encode())]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            self.served += 1
        finally:
            self.metrics.observe_request(self.template, "GET", str(status), time.perf_counter() - start)

    async def _error_response(self, request: Request, exc: Exception) -> Response:
        """The app's answer to ``exc``: its handler for the status code (an ``HTTPException``), else for the nearest
        class of ``exc``; re-raised when there is none (the server's own 500, as with no lane)."""
        handlers: dict[Any, Callable[..., Any]] = self.app.exception_handlers
        handler = handlers.get(exc.status_code) if isinstance(exc, HTTPException) else None
        if handler is None:
            handler = next((handlers[cls] for cls in type(exc).__mro__ if cls in handlers), None)
        if handler is None:
            raise exc
        response = await handler(request, exc)
        if not isinstance(response, Response):
            raise TypeError(f"the exception handler for {type(exc).__name__} returned {type(response).__name__}")
        return response
