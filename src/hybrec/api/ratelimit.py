"""Per-client request rate limit (``HYBREC_RATE_LIMIT_PER_MINUTE``): plain ASGI middleware and its two counters.

A client is its API key when it sends a valid one, else its address (``scope["client"]``; behind a proxy, run
uvicorn with ``--proxy-headers`` and ``--forwarded-allow-ips`` so that it is the real client's). An invalid key
counts against the address, so that inventing keys does not buy a fresh budget. Each client may make ``limit``
requests per one-minute window (fixed, starting at its first request); the next one is a 429 with ``Retry-After``
(seconds until the window ends).

Two counters, one protocol, chosen from the settings by :func:`make_rate_counter`:

* :class:`MemoryRateCounter` — in this process (embedded mode, one worker);
* :class:`RedisRateCounter` — in Redis (``HYBREC_REDIS_URL``), so that the limit holds across processes and
  replicas: one atomic Lua script (``INCR``, then ``PEXPIRE`` on the window's first request) under
  ``hybrec:ratelimit:<client>``. When Redis does not answer, requests are let through (fail open: a limiter must
  not take the API down with it), a warning is logged once per outage and each such request is counted in
  ``hybrec_fallbacks_total{reason="rate_limit_unavailable"}``; Redis is retried after :data:`RETRY_REDIS_AFTER_S`.

The middleware is installed only when the limit is non-zero, so the default costs the hot path nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import math
import time
from dataclasses import dataclass
from typing import Protocol

import redis.asyncio as aioredis
from redis import exceptions as redis_errors
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hybrec.api.deps import valid_api_key
from hybrec.api.metrics import Metrics
from hybrec.config import Settings
from hybrec.vectors.redis_cache import _redact

log = logging.getLogger(__name__)

WINDOW_S = 60
KEY_PREFIX = "hybrec:ratelimit:"
#: After Redis failed, requests skip it (and pass) for this long rather than each waiting for a timeout.
RETRY_REDIS_AFTER_S = 5.0
#: Probes and scrapes are never limited (an orchestrator polling them must not lock itself out), nor the web page's
#: own files: a page view would otherwise spend several requests of the visitor's budget before any API call.
UNLIMITED_PATHS = frozenset({"/health", "/ready", "/metrics", "/"})
UNLIMITED_PREFIXES = ("/static/",)

# INCR the window's counter; the first request of a window starts its expiry. Returns the count and the
# milliseconds left in the window. Atomic (one script), so no counter is ever left without an expiry.
_HIT_SCRIPT = """
local count = redis.call('INCR', KEYS[1])
if count == 1 or redis.call('PTTL', KEYS[1]) < 0 then
    redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
return {count, redis.call('PTTL', KEYS[1])}
"""


@dataclass(frozen=True)
class Hit:
    """One request counted: how many the client has made in the current window and when that window ends."""

    count: int
    retry_after_s: int


class RateCounter(Protocol):
    """Counts requests per client in fixed windows of :data:`WINDOW_S` seconds."""

    async def hit(self, client: str) -> Hit | None:
        """Count one request of ``client``; None when the counter is unavailable (the request is let through)."""
        ...

    async def aclose(self) -> None: ...


class MemoryRateCounter:
    """Counts in this process. A client's window starts at its first request, as in Redis.

    No lock: the middleware runs on the event loop's one thread and nothing here awaits.
    """

    #: Above this many clients, windows that ended are dropped (at most once per window length).
    SWEEP_ABOVE = 10_000

    def __init__(self, window_s: float = WINDOW_S) -> None:
        self.window_s = window_s
        self._windows: dict[str, list[float]] = {}  # client -> [window end (monotonic), count]
        self._next_sweep = 0.0

    async def hit(self, client: str) -> Hit:
        now = time.monotonic()
        window = self._windows.get(client)
        if window is None or window[0] <= now:
            if len(self._windows) > self.SWEEP_ABOVE and now >= self._next_sweep:
                self._windows = {c: w for c, w in self._windows.items() if w[0] > now}
                self._next_sweep = now + self.window_s
            window = self._windows[client] = [now + self.window_s, 0]
        window[1] += 1
        return Hit(int(window[1]), max(1, math.ceil(window[0] - now)))

    async def aclose(self) -> None:
        self._windows = {}


class RedisRateCounter:
    """Counts in Redis, shared by every process of a deployment; ``None`` from :meth:`hit` while Redis is down.

    Parameters
    ----------
    url : str
        ``redis://[:password@]host:port/db``.
    metrics : Metrics, optional
        Where requests let through unchecked are counted.
    prefix : str
        Key prefix; tests use their own.
    window_s : int
        Window length; a client's window starts at its first request (the key's expiry).
    timeout_s : float
        Connect and read timeout: the limiter sits on the recommendation path (p99 target 25 ms).
    """

    def __init__(
        self,
        url: str,
        metrics: Metrics | None = None,
        *,
        prefix: str = KEY_PREFIX,
        window_s: int = WINDOW_S,
        timeout_s: float = 0.1,
    ) -> None:
        self.url = url
        self.prefix = prefix
        self.window_ms = window_s * 1000
        self._metrics = metrics
        self._timeout_s = timeout_s
        self._client: aioredis.Redis | None = None
        self._script: AsyncScript | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._down_until = 0.0

    def _hit_script(self) -> AsyncScript:
        # An asyncio client belongs to the event loop it first ran on; a new loop (tests, a restarted server)
        # gets a new client rather than a pool of connections bound to a dead loop.
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            self._client = aioredis.Redis.from_url(
                self.url,
                socket_timeout=self._timeout_s,
                socket_connect_timeout=self._timeout_s,
                # One attempt: redis-py's default retries 10 times with backoff, seconds on a request path.
                retry=Retry(NoBackoff(), 0),
            )
            self._script = self._client.register_script(_HIT_SCRIPT)  # EVALSHA, loading the script when missing
            self._loop = loop
        assert self._script is not None
        return self._script

    async def hit(self, client: str) -> Hit | None:
        if time.monotonic() < self._down_until:
            self._unchecked()
            return None
        try:
            count, pttl = await self._hit_script()(keys=[self.prefix + client], args=[self.window_ms])
        except (redis_errors.RedisError, OSError) as exc:
            if self._down_until == 0.0:  # once per outage, not once per request
                log.warning("rate limit not enforced: Redis at %s is unavailable (%s)", _redact(self.url), exc)
            self._down_until = time.monotonic() + RETRY_REDIS_AFTER_S
            self._unchecked()
            return None
        if self._down_until:
            log.warning("rate limit enforced again: Redis at %s answers", _redact(self.url))
            self._down_until = 0.0
        return Hit(int(count), max(1, math.ceil(int(pttl) / 1000)))

    def _unchecked(self) -> None:
        if self._metrics is not None:
            self._metrics.fallback("rate_limit_unavailable")

    async def aclose(self) -> None:
        if self._client is not None:
            with contextlib.suppress(redis_errors.RedisError, OSError, RuntimeError):  # e.g. its loop is gone
                await self._client.aclose()
            self._client = self._script = None


def make_rate_counter(settings: Settings, metrics: Metrics | None = None) -> RateCounter:
    """Redis when ``settings.redis_url`` is set (the limit then holds across processes), else in-process."""
    if settings.redis_url:
        return RedisRateCounter(settings.redis_url, metrics)
    return MemoryRateCounter()


def client_identity(scope: Scope, api_key: str | None) -> str:
    """``key:<sha256 prefix>`` for a valid API key (keys never reach Redis in clear), else ``addr:<host>``."""
    if api_key is not None:
        return "key:" + hashlib.sha256(api_key.encode()).hexdigest()[:32]
    client = scope.get("client")
    return f"addr:{client[0] if client else 'unknown'}"


class RateLimitMiddleware:
    """429 with ``Retry-After`` once a client passed ``limit`` requests in the current window.

    Plain ASGI, not ``BaseHTTPMiddleware``: that one costs every request a task and a response copy.
    """

    def __init__(self, app: ASGIApp, limit: int, counter: RateCounter, api_keys: list[str]) -> None:
        self.app = app
        self.limit = limit
        self.counter = counter
        self._api_keys = api_keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, self._closing_on_shutdown(send))
            return
        if scope["type"] != "http" or scope["path"] in UNLIMITED_PATHS or scope["path"].startswith(UNLIMITED_PREFIXES):
            await self.app(scope, receive, send)
            return
        key = None
        for name, value in scope["headers"]:
            if name == b"x-api-key":
                key = value.decode("latin-1")
                break
        hit = await self.counter.hit(client_identity(scope, key if valid_api_key(key, self._api_keys) else None))
        if hit is None or hit.count <= self.limit:
            await self.app(scope, receive, send)
            return
        body = json.dumps(
            {
                "detail": f"rate limit exceeded: {self.limit} requests per minute "
                f"(HYBREC_RATE_LIMIT_PER_MINUTE); retry in {hit.retry_after_s} s"
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 429,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"retry-after", str(hit.retry_after_s).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    def _closing_on_shutdown(self, send: Send) -> Send:
        # The app's shutdown is the one moment the counter's connections can be closed on their own loop.
        async def wrapped(message: Message) -> None:
            if message["type"] in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
                await self.counter.aclose()
            await send(message)

        return wrapped
