"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from hybrec.api.deps import MetricsDep
from hybrec.api.schemas import CheckOut, HealthResponse, LastTraining, ReadyResponse

router = APIRouter(tags=["health"])


@router.get("/health", response_model=HealthResponse)
async def health() -> HealthResponse:
    """Liveness: the process answers. Says nothing about the model or the stores (that is ``/ready``).

    A coroutine, so it answers on the event loop itself: a plain function would wait for a thread of the pool that
    blocking handlers may all be holding, and a liveness probe must not fail because the process is busy.
    """
    return HealthResponse()


@router.get("/ready", response_model=ReadyResponse, responses={503: {"model": ReadyResponse}})
def ready(request: Request) -> Response:
    """Readiness: 200 once a model is loaded and the stores answer, else 503 with the failing checks."""
    # Components report what they depend on (the chat: which reranker ranks); a failed one makes the app unready.
    component_checks = {
        name: CheckOut(ok=ok, detail=detail)
        for check in getattr(request.app.state, "readiness_checks", ())
        for name, (ok, detail) in check().items()
    }
    components_ok = all(check.ok for check in component_checks.values())
    recommender = getattr(request.app.state, "recommender", None)
    if recommender is None:
        body = ReadyResponse(ready=components_ok, model_version=None, checks=component_checks, last_training=None)
        return JSONResponse(body.model_dump(mode="json"), status_code=200 if components_ok else 503)
    state = recommender.readiness()
    last = state.last_training
    ready = state.ready and components_ok
    body = ReadyResponse(
        ready=ready,
        model_version=state.model_version,
        checks={name: CheckOut(ok=ok, detail=detail) for name, (ok, detail) in state.checks.items()} | component_checks,
        last_training=LastTraining(version=last.version, status=last.status, at=last.at, error=last.error)
        if last is not None
        else None,
    )
    return JSONResponse(body.model_dump(mode="json"), status_code=200 if ready else 503)


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request, metrics: MetricsDep) -> Response:
    """Prometheus exposition; the model gauges are refreshed from the recommender at scrape time."""
    recommender = getattr(request.app.state, "recommender", None)
    if recommender is not None:
        metrics.active_version.set(recommender.model_version or 0)
        metrics.training_duration.set(recommender.training_duration_s)
    return metrics.render()
