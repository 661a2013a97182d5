"""The training job on the embedded backends: publish, retention, gate, faults mid-publish, lock, scheduler."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from hybrec.als.tuning import DEFAULT_PARAMS, load_params
from hybrec.config import Settings
from hybrec.recommend.service import Recommender
from hybrec.store import migrate
from hybrec.store.engine import session_scope
from hybrec.store.models import ModelVersion
from hybrec.training import versions
from hybrec.training.job import run_training
from hybrec.training.lock import TrainerBusy, trainer_lock
from hybrec.training.scheduler import TrainingScheduler
from hybrec.vectors.exact_index import ExactVectorIndex
from hybrec.vectors.memory_cache import MemoryUserVectorCache
from reco_support import TEST_ALS_PARAMS, clone_store, demo_template, make_settings


class Crash(RuntimeError):
    """Stands for the trainer dying at a given publish step."""


def crash_at(step: str):  # type: ignore[no-untyped-def]
    def hook(name: str) -> None:
        if name == step:
            raise Crash(f"killed after {name}")

    return hook


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return demo_template(tmp_path_factory.mktemp("template"))


@pytest.fixture
def settings(template: Settings, tmp_path: Path) -> Settings:
    return clone_store(template, tmp_path)


@pytest.fixture
def backends(settings: Settings) -> tuple[MemoryUserVectorCache, ExactVectorIndex]:
    return MemoryUserVectorCache(), ExactVectorIndex(Path(settings.var_dir) / "index")


def _rows(settings: Settings) -> dict[int, ModelVersion]:
    with session_scope(settings.database_url) as session:
        return {r.id: r for r in session.scalars(select(ModelVersion))}


def test_publish_writes_every_part_and_activates(settings: Settings, backends) -> None:  # type: ignore[no-untyped-def]
    cache, index = backends
    outcome = run_training(settings, user_cache=cache, item_index=index)
    assert outcome.status == "published" and outcome.version == 1
    assert outcome.metrics["ndcg@10"] > 0 and outcome.duration_s > 0
    row = _rows(settings)[1]
    assert row.is_active and row.status == "published" and row.n_interactions > 0
    assert row.params == {**DEFAULT_PARAMS, **TEST_ALS_PARAMS, "als_backend": "torch"}
    assert (Path(row.artifact_path) / "artifact.json").exists()
    assert index.count("als_items_v1") == row.n_items
    meta = index.get_metadata("als_items_v1", index.ids("als_items_v1")[:1])
    assert set(next(iter(meta.values()))) >= {"name", "category", "brand", "price"}
    assert cache.get_active_version() == 1
    assert cache.get_json(1, "popular")["items"]
    assert cache.get_array(1, "mean_user").shape == (TEST_ALS_PARAMS["factors"],)
    with session_scope(settings.database_url) as session:
        from hybrec.store.models import User

        user = session.scalar(select(User.external_id).limit(1))
    assert cache.get(1, user) is not None


def test_keeps_the_previous_version_and_deletes_older(settings: Settings, backends) -> None:  # type: ignore[no-untyped-def]
    cache, index = backends
    for _ in range(3):
        assert run_training(settings, user_cache=cache, item_index=index).status == "published"
    rows = _rows(settings)
    assert [rows[v].status for v in (1, 2, 3)] == ["retired", "published", "published"]
    assert rows[3].is_active and not rows[2].is_active
    assert sorted(c for c in index.list_collections() if c.startswith("als_items_")) == ["als_items_v2", "als_items_v3"]
    assert cache.list_versions() == [2, 3]
    assert sorted(p.name for p in (Path(settings.var_dir) / "models").iterdir()) == ["v2", "v3"]
    # v2 is complete, so a rollback to it works; the retired v1 cannot come back.
    assert versions.activate_version(settings, 2, cache).version == 2
    assert cache.get_active_version() == 2
    with pytest.raises(versions.ModelVersionUnusable, match="retired"):
        versions.activate_version(settings, 1)


def test_gate_rejects_a_worse_model(settings: Settings, backends) -> None:  # type: ignore[no-untyped-def]
    cache, index = backends
    run_training(settings, user_cache=cache, item_index=index)
    versions.update_version(settings, 1, metrics={"ndcg@10": 0.99})  # pretend the live model was excellent
    outcome = run_training(settings, user_cache=cache, item_index=index)
    assert outcome.status == "rejected" and "gate" in (outcome.error or "")
    rows = _rows(settings)
    assert rows[1].is_active and rows[2].status == "failed" and "0.99" in rows[2].error
    assert not index.has_collection("als_items_v2")


def test_margin_lets_a_slightly_worse_model_through(template: Settings, tmp_path: Path) -> None:
    settings = clone_store(template, tmp_path, publish_ndcg_margin=1.0)
    cache, index = MemoryUserVectorCache(), ExactVectorIndex()
    run_training(settings, user_cache=cache, item_index=index)
    versions.update_version(settings, 1, metrics={"ndcg@10": 0.99})
    assert run_training(settings, user_cache=cache, item_index=index).status == "published"


@pytest.mark.parametrize("step", ["artifact_saved", "item_vectors_written", "user_vectors_written"])
def test_crash_mid_publish_keeps_the_previous_version_active_and_complete(
    settings: Settings,
    backends,
    step: str,  # type: ignore[no-untyped-def]
) -> None:
    cache, index = backends
    run_training(settings, user_cache=cache, item_index=index)
    recommender = Recommender(settings, user_cache=cache, item_index=index)
    before = recommender.recommend("U00001", 10)

    outcome = run_training(settings, user_cache=cache, item_index=index, fault=crash_at(step))
    assert outcome.status == "failed" and "killed after" in (outcome.error or "")
    rows = _rows(settings)
    assert rows[1].is_active and rows[1].status == "published"
    assert rows[2].status == "failed" and not rows[2].is_active
    # v1 is untouched; v2's partial data is gone.
    assert index.has_collection("als_items_v1") and not index.has_collection("als_items_v2")
    assert cache.get_active_version() == 1 and 2 not in cache.list_versions()
    assert not (Path(settings.var_dir) / "models" / "v2").exists()
    recommender.refresh(force=True)
    after = recommender.recommend("U00001", 10)
    assert after.model_version == 1 and after.items == before.items
    ready = recommender.readiness()
    assert ready.ready and ready.last_training is not None
    assert ready.last_training.status == "failed" and "killed after" in (ready.last_training.error or "")


def test_a_trainer_that_died_mid_run_is_cleaned_up_by_the_next(settings: Settings, backends) -> None:  # type: ignore[no-untyped-def]
    cache, index = backends
    run_training(settings, user_cache=cache, item_index=index)
    # A dead trainer: its row still says "training" and half its data is written.
    stale = versions.start_version(settings, {})
    index.create_collection(f"als_items_v{stale}", 4, "ip")
    cache.set(stale, "someone", np.ones(4, np.float32))
    outcome = run_training(settings, user_cache=cache, item_index=index)
    assert outcome.status == "published"
    rows = _rows(settings)
    assert rows[stale].status == "failed" and "interrupted" in rows[stale].error
    assert not index.has_collection(f"als_items_v{stale}") and stale not in cache.list_versions()


def test_only_one_trainer_at_a_time(settings: Settings) -> None:
    with trainer_lock(settings.database_url, Path(settings.var_dir)), pytest.raises(TrainerBusy):
        run_training(settings)
    scheduler = TrainingScheduler(settings)
    with trainer_lock(settings.database_url, Path(settings.var_dir)):
        assert scheduler.run_once() is None  # busy: skipped, not crashed


def test_empty_store_fails_with_a_clear_reason(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    migrate.upgrade(settings.database_url)
    outcome = run_training(settings)
    assert outcome.status == "failed" and "no interactions" in (outcome.error or "")
    assert versions.active_version(settings) is None


def test_params_file(tmp_path: Path) -> None:
    assert load_params(tmp_path / "missing.json", missing_ok=True) == DEFAULT_PARAMS
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"params": {"factors": 8, "alpha": 3.0}}))
    assert load_params(path, missing_ok=True) == {**DEFAULT_PARAMS, "factors": 8, "alpha": 3.0}
    path.write_text(json.dumps({"params": {"factors": 8, "not_a_param": 1}}))
    with pytest.raises(ValueError, match="not_a_param"):
        load_params(path, missing_ok=True)


def test_a_bad_params_file_fails_the_run_and_says_why(settings: Settings) -> None:
    Path(settings.als_params_path).write_text("{not json")
    outcome = run_training(settings)
    assert outcome.status == "failed" and "not valid JSON" in (outcome.error or "")
    assert versions.active_version(settings) is None


def test_scheduler_trains_and_reports(settings: Settings) -> None:
    outcomes = []
    scheduler = TrainingScheduler(settings, on_outcome=outcomes.append)
    first = scheduler.run_once()
    assert first is not None and first.status == "published" and outcomes == [first]


def test_scheduler_thread_trains_first_and_on_trigger(settings: Settings) -> None:
    import threading

    done = threading.Semaphore(0)
    outcomes: list[str] = []

    def record(outcome) -> None:  # type: ignore[no-untyped-def]
        outcomes.append(outcome.status)
        done.release()

    scheduler = TrainingScheduler(settings.model_copy(update={"train_interval_minutes": 600}), on_outcome=record)
    scheduler.start()
    try:
        assert done.acquire(timeout=120)  # the first run, at start
        scheduler.trigger()  # the admin endpoint's "train now", long before the 10-hour interval
        assert done.acquire(timeout=120)
    finally:
        scheduler.stop()
    assert outcomes == ["published", "published"]
    assert [v.version for v in versions.list_versions(settings) if v.is_active] == [2]
