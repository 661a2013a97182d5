"""Model versions: the ``model_versions`` rows, the active pointer, and what each version owns outside the store.

Version ``N`` owns three things besides its row: the artifact folder ``<var_dir>/models/vN``, the item-index
collection ``als_items_vN`` and the user-cache keys under ``N``. The row is the source of truth for which version is
active; the cache's active-version key mirrors it for readers that only talk to the cache.

Lifecycle of a row: ``training`` → ``published`` (complete, may be activated) or ``failed`` (with ``error``);
``published`` → ``retired`` when it falls out of the rollback window and its data is deleted.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from hybrec.config import Settings
from hybrec.recommend.errors import ModelVersionUnusable, UnknownModelVersion
from hybrec.recommend.state import artifact_dir, collection_name
from hybrec.store import model_versions as mv
from hybrec.store.engine import session_scope
from hybrec.store.models import ModelVersion
from hybrec.vectors.base import CollectionNotFound, UserVectorCache, VectorIndex, VectorStoreUnavailable

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class VersionInfo:
    version: int
    status: str
    is_active: bool
    created_at: datetime
    metrics: dict[str, Any]
    params: dict[str, Any]
    n_users: int
    n_items: int
    n_interactions: int
    error: str | None


def _info(row: ModelVersion) -> VersionInfo:
    return VersionInfo(
        row.id,
        row.status,
        row.is_active,
        row.created_at,
        dict(row.metrics or {}),
        dict(row.params or {}),
        row.n_users,
        row.n_items,
        row.n_interactions,
        row.error,
    )


def list_versions(settings: Settings) -> list[VersionInfo]:
    """Every version, newest first."""
    with session_scope(settings.database_url) as session:
        return [_info(r) for r in mv.list_model_versions(session)]


def active_version(settings: Settings) -> VersionInfo | None:
    with session_scope(settings.database_url) as session:
        row = mv.active_model_version(session)
        return None if row is None else _info(row)


def start_version(settings: Settings, params: dict[str, Any]) -> int:
    """A new ``training`` row; its id is the new version number."""
    with session_scope(settings.database_url) as session:
        return mv.create_model_version(session, params).id


def update_version(settings: Settings, version: int, **fields: Any) -> None:
    """Set columns of one row (counts, metrics) without changing its status."""
    with session_scope(settings.database_url) as session:
        row = mv.get_model_version(session, version)
        for name, value in fields.items():
            setattr(row, name, value)


def mark_failed(settings: Settings, version: int, error: str) -> None:
    with session_scope(settings.database_url) as session:
        mv.mark_failed(session, version, error[:2000])


def publish_and_activate(
    settings: Settings, version: int, *, metrics: dict[str, Any], artifact_path: str, cache: UserVectorCache | None
) -> None:
    """Mark ``version`` published and make it the active one in ONE transaction, then mirror it in the cache.

    The commit is the flip: readers of the store see either the old or the new version, never none. A cache that is
    down only delays the mirror (servers read the store).
    """
    with session_scope(settings.database_url) as session:
        row = mv.get_model_version(session, version)
        mv.mark_published(
            session,
            version,
            metrics=metrics,
            artifact_path=artifact_path,
            n_users=row.n_users,
            n_items=row.n_items,
            n_interactions=row.n_interactions,
        )
        mv.set_active(session, version)
    _mirror_pointer(version, cache)


def _mirror_pointer(version: int, cache: UserVectorCache | None) -> None:
    if cache is None:
        return
    try:
        cache.set_active_version(version)
    except VectorStoreUnavailable as exc:
        log.warning("version %d is active in the store; the cache pointer was not updated: %s", version, exc)


def activate_version(settings: Settings, version: int, cache: UserVectorCache | None = None) -> VersionInfo:
    """Roll back (or forward) to a kept, complete version.

    Raises
    ------
    UnknownModelVersion
        No such version (HTTP 404).
    ModelVersionUnusable
        Failed, still training, or retired (its data deleted) (HTTP 409).
    """
    with session_scope(settings.database_url) as session:
        try:
            row = mv.get_model_version(session, version)
        except LookupError as exc:
            raise UnknownModelVersion(str(exc)) from exc
        if row.status != "published":
            raise ModelVersionUnusable(
                f"model version {version} is {row.status!r}; only a published version that is still kept "
                "(the active one or its predecessor) can be activated"
            )
        info = _info(mv.set_active(session, version))
    _mirror_pointer(version, cache)
    return info


def delete_version_data(
    settings: Settings, version: int, index: VectorIndex | None, cache: UserVectorCache | None
) -> None:
    """Remove what ``version`` owns outside the store (best effort: a server that is down is logged)."""
    if index is not None:
        try:
            index.delete_collection(collection_name(version))
        except CollectionNotFound:
            pass
        except VectorStoreUnavailable as exc:
            log.warning("could not delete collection of version %d: %s", version, exc)
    if cache is not None:
        try:
            cache.delete_version(version)
        except VectorStoreUnavailable as exc:
            log.warning("could not delete cached vectors of version %d: %s", version, exc)
    shutil.rmtree(artifact_dir(settings, version), ignore_errors=True)


def fail_interrupted(settings: Settings, index: VectorIndex | None, cache: UserVectorCache | None) -> list[int]:
    """Mark rows left in ``training`` by a trainer that died as failed and delete their partial data.

    Only call while holding the trainer lock: then no live trainer owns a ``training`` row.
    """
    with session_scope(settings.database_url) as session:
        stale = [r.id for r in mv.list_model_versions(session, status="training")]
    for version in stale:
        mark_failed(settings, version, "interrupted: the trainer stopped before publishing")
        delete_version_data(settings, version, index, cache)
    return stale


def retire_old_versions(
    settings: Settings, keep: set[int], index: VectorIndex | None, cache: UserVectorCache | None
) -> list[int]:
    """Delete the data of every version not in ``keep`` (the active one and its predecessor)."""
    with session_scope(settings.database_url) as session:
        rows = [r for r in mv.list_model_versions(session) if r.id not in keep]
        for row in rows:
            if row.status == "published":
                mv.set_status(session, row.id, "retired")
        others = [r.id for r in rows]
    # Also whatever exists outside the store without a row (a crash between writes), found by name.
    leftover: set[int] = set(others)
    if index is not None:
        try:
            for name in index.list_collections():
                if name.startswith("als_items_v") and name[11:].isdigit():
                    leftover.add(int(name[11:]))
        except VectorStoreUnavailable as exc:
            log.warning("could not list index collections: %s", exc)
    if cache is not None:
        try:
            leftover.update(cache.list_versions())
        except VectorStoreUnavailable as exc:
            log.warning("could not list cached versions: %s", exc)
    models = Path(settings.var_dir) / "models"
    if models.is_dir():
        leftover.update(int(p.name[1:]) for p in models.iterdir() if p.name.startswith("v") and p.name[1:].isdigit())
    removed = sorted(leftover - keep)
    for version in removed:
        delete_version_data(settings, version, index, cache)
    return removed
