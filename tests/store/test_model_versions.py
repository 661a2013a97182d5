"""model_versions: lifecycle and the atomic active pointer, on both backends."""

from __future__ import annotations

import pytest

from hybrec.store.engine import session_scope
from hybrec.store.model_versions import (
    active_model_version,
    create_model_version,
    list_model_versions,
    mark_failed,
    mark_published,
    set_active,
    set_status,
)


def _publish(url: str, metrics: dict[str, float]) -> int:
    with session_scope(url) as session:
        version = create_model_version(session, {"factors": 64})
        assert version.status == "training" and not version.is_active
        mark_published(session, version.id, metrics=metrics, artifact_path=f"models/{version.id}", n_users=3,
                       n_items=4, n_interactions=5)
        return version.id


def test_versions_are_numbered_and_exactly_one_is_active(store_url: str) -> None:
    first = _publish(store_url, {"ndcg@10": 0.1})
    second = _publish(store_url, {"ndcg@10": 0.2})
    assert second > first

    with session_scope(store_url) as session:
        set_active(session, first)
    with session_scope(store_url) as session:
        set_active(session, second)
    with session_scope(store_url) as session:
        active = active_model_version(session)
        assert active is not None and active.id == second and active.metrics == {"ndcg@10": 0.2}
        assert [v.id for v in list_model_versions(session) if v.is_active] == [second]
        assert [v.id for v in list_model_versions(session)] == [second, first]


def test_failed_versions_cannot_become_active(store_url: str) -> None:
    with session_scope(store_url) as session:
        version = create_model_version(session)
        mark_failed(session, version.id, "loss diverged")
        assert list_model_versions(session, status="failed")[0].error == "loss diverged"
        with pytest.raises(ValueError, match="only a published version"):
            set_active(session, version.id)
        with pytest.raises(LookupError):
            set_active(session, 999)
        with pytest.raises(ValueError, match="status must be one of"):
            set_status(session, version.id, "weird")
        assert active_model_version(session) is None
