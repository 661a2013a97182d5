"""The FastAPI application factory.

``create_app(settings, components=("reco",))`` assembles the app from components: ``reco`` (the collaborative
engine: recommendations, interactions, model admin), ``trainer`` (the training scheduler inside this process, for
embedded mode) and any other name ``X`` whose module ``hybrec.api.routes.X`` exposes a ``router`` (and optionally
``setup(app, settings)``), which is how the chat engine plugs in. ``/health``, ``/ready`` and ``/metrics`` are always
there.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import InterfaceError, OperationalError
from starlette.types import ASGIApp, Receive, Scope, Send

from hybrec.api.lane import FastLane
from hybrec.api.metrics import Metrics
from hybrec.api.routes import admin, health, reco
from hybrec.api.security import BodyLimitMiddleware, SecurityHeadersMiddleware, install_security
from hybrec.config import Settings, get_settings
from hybrec.recommend.errors import (
    DependencyUnavailable,
    InvalidRequest,
    ItemNotInModel,
    ModelNotReady,
    ModelVersionUnusable,
    UnknownItems,
    UnknownModelVersion,
)
from hybrec.recommend.service import Recommender
from hybrec.store.engine import public_error_name
from hybrec.vectors.base import VectorStoreUnavailable

log = logging.getLogger(__name__)

_MAX_ECHOED_INPUT = 200
BUILTIN_COMPONENTS = ("reco", "trainer")


def _component_module(name: str) -> Any:
    """``hybrec.api.routes.<name>``, which must expose a ``router``; ValueError naming the component otherwise."""
    if name in ("health", "admin"):
        raise ValueError(f"API component {name!r} is always included (health) or part of 'reco' (admin)")
    try:
        module = importlib.import_module(f"hybrec.api.routes.{name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"hybrec.api.routes.{name}":
            raise
        raise ValueError(
            f"unknown API component {name!r}: expected {BUILTIN_COMPONENTS} or a module hybrec.api.routes.{name}"
        ) from exc
    if not hasattr(module, "router"):
        raise ValueError(f"API component {name!r}: hybrec.api.routes.{name} has no `router`")
    return module


def create_app(
    settings: Settings | None = None,
    components: Sequence[str] = ("reco",),
    *,
    recommender: Recommender | None = None,
    warm_up: bool = False,
    freeze_gc: bool = False,
) -> FastAPI:
    """Build the API.

    Parameters
    ----------
    settings : Settings, optional
        Defaults to the process settings (:func:`hybrec.config.get_settings`).
    components : sequence of str
        ``reco``, ``trainer`` and/or the names of route modules under ``hybrec.api.routes`` (e.g. ``chat``).
    recommender : Recommender, optional
        An already built recommender (tests, benchmarks); by default one is built from ``settings`` at startup.
    warm_up : bool, default False
        At startup, call each component module's ``warm_up(app)`` (chat: load the models and read the routing
        instruction in the background). ``hybrec serve`` turns it on; tests building many apps leave it off.
    freeze_gc : bool, default False
        The recommender built here freezes each loaded model out of the garbage collector's sight (see
        :class:`~hybrec.recommend.service.Recommender`); ``hybrec serve`` turns it on.
    """
    settings = settings or get_settings()
    metrics = Metrics()
    extra_modules = [_component_module(c) for c in components if c not in BUILTIN_COMPONENTS]

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # The chat engine alone (production's chat service) still personalises: it reads the live model's vectors
        # from the shared stores through a recommender of its own, as the reco service does.
        if ("reco" in components or "chat" in components) and app.state.recommender is None:
            app.state.recommender = Recommender(settings, telemetry=metrics, freeze_gc=freeze_gc)
        if app.state.recommender is not None:
            app.state.recommender.refresh(force=True)
        if "trainer" in components:
            from hybrec.training.scheduler import TrainingScheduler

            recommender = app.state.recommender
            app.state.scheduler = TrainingScheduler(
                settings,
                run_first=False,  # `hybrec train` ran before `hybrec serve`; retrain on the interval
                on_outcome=lambda outcome: metrics.training_runs.labels(outcome.status).inc(),
                user_cache=None if recommender is None else recommender.user_cache,
                item_index=None if recommender is None else recommender.item_index,
            )
            app.state.scheduler.start()
        if warm_up:
            for module in extra_modules:
                if hasattr(module, "warm_up"):
                    module.warm_up(app)
        try:
            yield
        finally:
            if app.state.scheduler is not None:
                app.state.scheduler.stop()
            if app.state.recommender is not None:
                app.state.recommender.close()

    app = HybrecAPI(title="hybrec", version="0.1.0", lifespan=lifespan)
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.recommender = recommender
    app.state.scheduler = None
    app.add_middleware(_TimingMiddleware, metrics=metrics)
    _install_error_handlers(app)

    app.include_router(health.router)
    if "reco" in components:
        route = reco.route_first(app)
        app.lane = FastLane(app, route, "user_id", reco.recommendation_body, metrics, DEFAULT_MIDDLEWARE)
        app.include_router(reco.router)
        app.include_router(admin.router)
    for module in extra_modules:
        app.include_router(module.router)
        setup = getattr(module, "setup", None)
        if setup is not None:
            setup(app, settings)
    # Last, so that they run first (outermost), before any middleware a component's setup added.
    install_security(app, settings, metrics)
    return app


class HybrecAPI(FastAPI):
    """The app: FastAPI, with a fast lane (:mod:`hybrec.api.lane`) for the busiest endpoint when it has one."""

    lane: FastLane | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        lane = self.lane
        if lane is not None and lane.takes(scope):
            await lane(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


class _TimingMiddleware:
    """ASGI middleware class (what ``add_middleware`` expects) around :meth:`Metrics.middleware`."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self._app = metrics.middleware(app)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._app(scope, receive, send)


#: The middleware ``create_app`` installs with the default settings; the fast lane does their part itself, and stays
#: shut when the app has any other (CORS, a rate limit, a component's own).
DEFAULT_MIDDLEWARE = frozenset({_TimingMiddleware, BodyLimitMiddleware, SecurityHeadersMiddleware})


def _error(status: int, detail: Any) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status)


#: The collaborative engine's errors and the HTTP status each becomes (its message is the ``detail``).
SERVICE_ERROR_STATUS: dict[type[Exception], int] = {
    ItemNotInModel: 404,
    UnknownItems: 422,
    InvalidRequest: 422,
    UnknownModelVersion: 404,
    ModelVersionUnusable: 409,
    ModelNotReady: 503,
    DependencyUnavailable: 503,
    # Redis or Chroma down where no degraded answer exists (e.g. chat's product search): a 503 naming the server.
    VectorStoreUnavailable: 503,
}


def add_error_statuses(app: FastAPI, statuses: Mapping[type[Exception], int]) -> None:
    """Answer each exception type of ``statuses`` (and its subclasses) with that status and ``{"detail": message}``.

    Route modules plugged in as components call it from their ``setup`` for their own errors, so that no handler
    needs a ``try``/``except`` to turn a domain error into an HTTP one.
    """
    for error, status in statuses.items():
        app.add_exception_handler(error, _status_handler(status))


def _status_handler(status: int) -> Callable[[Request, Exception], Awaitable[JSONResponse]]:
    async def handler(_request: Request, exc: Exception) -> JSONResponse:
        return _error(status, str(exc))

    return handler


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's shape ({"detail": [{"loc", "msg", "type"}]}), with huge inputs (a 10 KB id) cut short.
        errors = []
        for error in exc.errors():
            error = dict(error)
            value = error.get("input")
            if isinstance(value, str | bytes) and len(value) > _MAX_ECHOED_INPUT:
                error["input"] = f"{value[:_MAX_ECHOED_INPUT]!s}... ({len(value)} characters)"
            elif isinstance(value, dict | list) and len(str(value)) > _MAX_ECHOED_INPUT:
                error.pop("input")
            error.pop("url", None)
            errors.append(error)
        return JSONResponse({"detail": jsonable_encoder(errors)}, status_code=422)

    add_error_statuses(app, SERVICE_ERROR_STATUS)

    async def store_unavailable(_request: Request, exc: Exception) -> JSONResponse:
        # The relational store down (refused, restarting, connection lost) under a route with no degraded answer
        # (chat history, model admin): a 503 naming the error class only; the driver's text goes to the log.
        return _error(503, f"the relational store is unavailable ({public_error_name(exc)})")

    for error in (OperationalError, InterfaceError):
        app.add_exception_handler(error, store_unavailable)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Logged with its traceback here; the client gets no stack trace.
        # It answers from outside every middleware (Starlette's ServerErrorMiddleware), so it sets nosniff itself.
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        response = _error(500, "internal server error")
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response
