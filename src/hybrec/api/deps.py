"""FastAPI dependencies: the settings, the recommender and the metrics of the running app.

They are ``async def`` on purpose: FastAPI runs a plain ``def`` dependency in the thread pool, one thread hop per
dependency per request (several on the recommendation endpoint), while these only read attributes and never block.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import APIKeyHeader

from hybrec.api.metrics import Metrics
from hybrec.config import Settings
from hybrec.recommend.service import Recommender

_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False)


async def get_app_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_recommender(request: Request) -> Recommender:
    recommender: Recommender | None = getattr(request.app.state, "recommender", None)
    if recommender is None:
        raise HTTPException(status_code=503, detail="the recommender is not running in this process")
    return recommender


async def get_metrics(request: Request) -> Metrics:
    metrics: Metrics = request.app.state.metrics
    return metrics


async def require_api_key(request: Request, api_key: Annotated[str | None, Depends(_api_key_header)] = None) -> None:
    """Accept any request when ``settings.api_keys`` is empty; otherwise an ``X-API-Key`` header must match one."""
    keys = request.app.state.settings.api_keys
    if keys and api_key not in keys:
        raise HTTPException(status_code=401, detail="missing or invalid X-API-Key")


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
RecommenderDep = Annotated[Recommender, Depends(get_recommender)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
