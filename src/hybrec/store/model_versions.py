"""The ``model_versions`` table: one row per ALS training run, its status and the active pointer.

``id`` is the version number. Status moves ``training`` -> ``published`` | ``failed``, and later ``retired``; at most
one published version is active, and :func:`set_active` flips it in a single UPDATE so readers never see zero or two
active versions.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import case, select, update
from sqlalchemy.orm import Session

from hybrec.store.models import MODEL_STATUSES, ModelVersion, utcnow


def create_model_version(session: Session, params: dict[str, Any] | None = None) -> ModelVersion:
    """A new version in status ``training``; its ``id`` (the version number) is assigned on flush."""
    version = ModelVersion(status="training", is_active=False, params=dict(params or {}), metrics={},
                           created_at=utcnow())
    session.add(version)
    session.flush()
    return version


def get_model_version(session: Session, version: int) -> ModelVersion:
    """The version numbered ``version``; :class:`LookupError` when there is none."""
    row = session.get(ModelVersion, version)
    if row is None:
        raise LookupError(f"model version {version} does not exist")
    return row


def mark_published(
    session: Session,
    version: int,
    *,
    metrics: dict[str, Any],
    artifact_path: str,
    n_users: int,
    n_items: int,
    n_interactions: int,
) -> ModelVersion:
    """Record a finished, usable version (not yet active: see :func:`set_active`)."""
    row = get_model_version(session, version)
    row.status = "published"
    row.metrics = dict(metrics)
    row.artifact_path = artifact_path
    row.n_users, row.n_items, row.n_interactions = n_users, n_items, n_interactions
    row.error = None
    session.flush()
    return row


def mark_failed(session: Session, version: int, error: str) -> ModelVersion:
    """Record that training ``version`` failed; a failed version is never active."""
    row = get_model_version(session, version)
    row.status = "failed"
    row.error = error
    row.is_active = False
    session.flush()
    return row


def set_status(session: Session, version: int, status: str) -> None:
    if status not in MODEL_STATUSES:
        raise ValueError(f"status must be one of {MODEL_STATUSES}, not {status!r}")
    get_model_version(session, version).status = status
    session.flush()


def set_active(session: Session, version: int) -> ModelVersion:
    """Make ``version`` (which must be published) the only active version, atomically (one UPDATE statement)."""
    row = get_model_version(session, version)
    if row.status != "published":
        raise ValueError(f"model version {version} is {row.status}, only a published version can be active")
    session.execute(
        update(ModelVersion)
        .where((ModelVersion.is_active.is_(True)) | (ModelVersion.id == version))
        .values(is_active=case((ModelVersion.id == version, True), else_=False))
        .execution_options(synchronize_session="fetch")
    )
    session.flush()
    session.refresh(row)
    return row


def active_model_version(session: Session) -> ModelVersion | None:
    return session.scalars(select(ModelVersion).where(ModelVersion.is_active.is_(True))).first()


def list_model_versions(session: Session, status: str | None = None) -> list[ModelVersion]:
    """All versions, newest first (only those in ``status`` when given)."""
    query = select(ModelVersion).order_by(ModelVersion.id.desc())
    if status is not None:
        query = query.where(ModelVersion.status == status)
    return list(session.scalars(query))
