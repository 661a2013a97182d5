"""Model administration: list versions, activate one (rollback), train on demand."""

from __future__ import annotations

import threading
from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request

from hybrec.api.deps import RecommenderDep, SettingsDep, require_admin_key
from hybrec.api.schemas import ModelListResponse, ModelVersionOut, TrainingAccepted
from hybrec.training.versions import VersionInfo, activate_version, list_versions

router = APIRouter(tags=["models"], dependencies=[Depends(require_admin_key)])  # admin: listing versions too


# Version numbers are the store's INTEGER ids: a larger number names no version (a 422, not a database error).
VersionPath = Annotated[int, Path(ge=1, le=2**31 - 1, description="A model version number.")]


def _out(info: VersionInfo) -> ModelVersionOut:
    return ModelVersionOut(**asdict(info))


@router.get("/v1/models", response_model=ModelListResponse)
def models(settings: SettingsDep) -> ModelListResponse:
    """Every model version the store knows, newest first, with its status and metrics."""
    rows = list_versions(settings)
    return ModelListResponse(
        active_version=next((r.version for r in rows if r.is_active), None),
        models=[_out(r) for r in rows],
    )


@router.post("/v1/models/{version}/activate", response_model=ModelVersionOut)
def activate(version: VersionPath, settings: SettingsDep, recommender: RecommenderDep) -> ModelVersionOut:
    """Make a published (or kept N-1) version the active one; servers pick it up on their next reload check."""
    row = activate_version(settings, version)
    recommender.refresh(force=True)
    return _out(row)


@router.post("/v1/train", response_model=TrainingAccepted, status_code=202)
def train_now(request: Request, settings: SettingsDep) -> TrainingAccepted:
    """Start a training run in the background (this process); the outcome shows in ``/ready`` and ``/v1/models``."""
    scheduler = getattr(request.app.state, "scheduler", None)
    if scheduler is not None:
        scheduler.trigger()
        return TrainingAccepted(started=True, detail="the scheduler of this process will train now")
    from hybrec.training.scheduler import TrainingScheduler

    recommender = getattr(request.app.state, "recommender", None)
    scheduler = TrainingScheduler(  # publish into this process's backends (an in-process cache is shared then)
        settings,
        user_cache=None if recommender is None else recommender.user_cache,
        item_index=None if recommender is None else recommender.item_index,
    )
    thread = threading.Thread(target=scheduler.run_once, name="hybrec-train-now", daemon=True)
    thread.start()
    return TrainingAccepted(started=True, detail="training started in the background")
