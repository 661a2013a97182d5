"""Prometheus metrics of the API: request latency per endpoint, stage timings, cache hits, fallbacks, training.

Each app gets its own :class:`~prometheus_client.CollectorRegistry`, so several apps (tests, embedded mode) never
collide on metric names. Training runs in another process in production, so its duration is read from the store's
``model_versions`` rows when the serving side reloads, and exposed here as gauges.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """The metric families of one app; also the :class:`hybrec.recommend.telemetry.Telemetry` of its recommender."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.request_latency = Histogram(
            "hybrec_request_duration_seconds",
            "HTTP request latency per endpoint (route template), method and status code.",
            ["endpoint", "method", "status"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.stage_latency = Histogram(
            "hybrec_stage_duration_seconds",
            "Time spent in one stage of serving (user_vector, fold_in, index_query, store_write, reload).",
            ["stage"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.user_vectors = Counter(
            "hybrec_user_vector_lookups_total",
            "User-vector cache lookups by outcome (cache_hit, cache_miss, cache_down).",
            ["source"],
            registry=self.registry,
        )
        self.fallbacks = Counter(
            "hybrec_fallbacks_total", "Degraded answers by reason.", ["reason"], registry=self.registry
        )
        self.training_duration = Gauge(
            "hybrec_last_training_duration_seconds",
            "Duration of the latest finished training run (from the store).",
            registry=self.registry,
        )
        self.training_runs = Counter(
            "hybrec_training_runs_total",
            "Training runs in this process by outcome.",
            ["outcome"],
            registry=self.registry,
        )
        self.active_version = Gauge(
            "hybrec_active_model_version", "Model version this server answers with (0 = none).", registry=self.registry
        )

        # Labelled children by label values: ``labels()`` validates and locks on every call, several times a request.
        self._stage_children: dict[str, Any] = {}
        self._source_children: dict[str, Any] = {}
        self._request_children: dict[tuple[str, str, str], Any] = {}

    # --- Telemetry protocol ------------------------------------------------------------------------------------
    def observe_stage(self, stage: str, seconds: float) -> None:
        child = self._stage_children.get(stage)
        if child is None:
            child = self._stage_children[stage] = self.stage_latency.labels(stage)
        child.observe(seconds)

    def user_vector(self, source: str) -> None:
        child = self._source_children.get(source)
        if child is None:
            child = self._source_children[source] = self.user_vectors.labels(source)
        child.inc()

    def fallback(self, reason: str) -> None:
        self.fallbacks.labels(reason).inc()

    def observe_request(self, endpoint: str, method: str, status: str, seconds: float) -> None:
        """One HTTP request's latency under its route template, method and status code."""
        key = (endpoint, method, status)
        child = self._request_children.get(key)
        if child is None:
            child = self._request_children[key] = self.request_latency.labels(*key)
        child.observe(seconds)

    # --- exposition ---------------------------------------------------------------------------------------------
    def render(self) -> Response:
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)

    def middleware(self, app: ASGIApp) -> ASGIApp:
        """Wrap ``app`` so that every HTTP request is timed under its route template (``/v1/users/{user_id}/...``).

        A plain ASGI wrapper rather than Starlette's ``BaseHTTPMiddleware``, which costs a task and a stream copy
        per request — a visible share of a millisecond-scale endpoint.
        """
        observe = self.observe_request

        async def timed_app(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            start = time.perf_counter()
            status = 500

            async def capture(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                await send(message)

            try:
                await app(scope, receive, capture)
            finally:
                observe(_endpoint(scope), scope["method"], str(status), time.perf_counter() - start)

        return timed_app


def _endpoint(scope: Scope) -> str:
    # The route template, not the raw path: one series per endpoint, not one per user id. The router records the
    # matched route in the (shared) scope; requests that matched none are counted together.
    route = scope.get("route")
    if route is not None and hasattr(route, "path"):
        return str(route.path)
    return "unmatched"
