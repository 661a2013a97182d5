"""Acceptance of issue 4: MovieLens 100K ingested, trained and served — embedded through the real CLI and a real
uvicorn, and in production mode against PostgreSQL + Redis + a Chroma server (all real servers).

Needs: ../shared/data/movielens-100k; PostgreSQL at HYBREC_TEST_POSTGRES_URL (a database is created per module and
dropped afterwards); Redis at HYBREC_TEST_REDIS_URL (a unique key namespace, deleted afterwards); the ``chroma``
executable (session fixture ``chroma_server``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, make_url, text

from hybrec.api.app import create_app
from hybrec.config import Settings
from hybrec.recommend.service import CACHE_DOWN, Recommender
from hybrec.store import migrate
from hybrec.store.engine import dispose_engine
from hybrec.training.job import run_training
from hybrec.training.lock import TrainerBusy, trainer_lock
from hybrec.training.versions import list_versions
from hybrec.vectors.chroma_index import ChromaVectorIndex
from hybrec.vectors.redis_cache import RedisUserVectorCache
from reco_support import count_interactions, ingest, make_settings, movielens
from servers import POSTGRES_URL, REDIS_URL, find_free_port, running_server

pytestmark = [pytest.mark.integration, pytest.mark.shared_data]
HYBREC = str(Path(sys.executable).parent / "hybrec")  # the console script of this environment


def acceptance_flow(client: httpx.Client | TestClient, settings: Settings) -> None:
    """The checks of issue 4's acceptance section, plus the event-path guarantees."""
    assert client.get("/ready").status_code == 200
    top = client.get("/v1/users/1/recommendations", params={"n": 10})
    assert top.status_code == 200 and len(top.json()["items"]) == 10 and top.json()["strategy"] == "trained"
    assert client.get("/v1/users/1/recommendations", params={"n": -1}).status_code == 422

    newcomer = f"newcomer-{uuid.uuid4().hex[:8]}"
    rated = ["50", "172", "181", "1", "121"]
    events = [{"user_id": newcomer, "item_id": i, "kind": "rating", "rating": 5} for i in rated]
    assert client.post("/v1/interactions", json={"interactions": events}).status_code == 201
    body = client.get(f"/v1/users/{newcomer}/recommendations", params={"n": 10}).json()
    assert body["strategy"] == "folded_in" and len(body["items"]) == 10
    assert not {i["item_id"] for i in body["items"]} & set(rated)

    key = f"idem-{uuid.uuid4().hex}"
    event = {"user_id": newcomer, "item_id": "7", "kind": "view", "idempotency_key": key}
    assert client.post("/v1/interactions", json=event).json()["stored"] == 1
    assert client.post("/v1/interactions", json=event).json()["duplicates"] == 1

    before = count_interactions(settings)
    bad = {
        "interactions": [
            {"user_id": newcomer, "item_id": "8", "kind": "view"},
            {"user_id": newcomer, "item_id": "no-such-movie", "kind": "view"},
        ]
    }
    response = client.post("/v1/interactions", json=bad)
    assert response.status_code == 422 and "no-such-movie" in response.json()["detail"]
    assert count_interactions(settings) == before


# --- embedded: the CLI, a real server -------------------------------------------------------------------------------


def _hybrec(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 300) -> None:
    result = subprocess.run([HYBREC, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"hybrec {' '.join(args)} failed:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}"


def test_embedded_acceptance_through_the_cli(movielens_100k: Path, tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    env = {
        **os.environ,
        "HYBREC_DATABASE_URL": settings.database_url,
        "HYBREC_VAR_DIR": str(settings.var_dir),
        "HYBREC_ALS_PARAMS_PATH": str(settings.als_params_path),
    }
    for name in ("HYBREC_REDIS_URL", "HYBREC_CHROMA_URL"):
        env.pop(name, None)
    _hybrec(["ingest", "movielens", str(movielens_100k)], env, tmp_path)
    _hybrec(["train"], env, tmp_path)
    port = find_free_port()
    url = f"http://127.0.0.1:{port}"
    command = [HYBREC, "serve", "--host", "127.0.0.1", "--port", str(port)]
    with (
        running_server(
            command, f"{url}/ready", tmp_path / "serve.log", what="hybrec serve", timeout_s=90, env=env, cwd=tmp_path
        ),
        httpx.Client(base_url=url, timeout=30) as client,
    ):
        acceptance_flow(client, settings)


# --- production: PostgreSQL + Redis + Chroma ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    name = f"hybrec_reco_{uuid.uuid4().hex[:12]}"
    admin = create_engine(make_url(POSTGRES_URL).set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        pytest.fail(f"PostgreSQL at {POSTGRES_URL} is needed for this test: {exc}")
    url = make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        dispose_engine(url)
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def redis_cache() -> Iterator[RedisUserVectorCache]:
    cache = RedisUserVectorCache(REDIS_URL, f"test-reco-{uuid.uuid4().hex[:12]}")
    try:
        yield cache
    finally:
        cache.delete_namespace()
        cache.close()


def test_production_acceptance(
    movielens_100k: Path, tmp_path: Path, postgres_url: str, redis_cache: RedisUserVectorCache, chroma_server: str
) -> None:
    settings = make_settings(tmp_path, database_url=postgres_url, redis_url=REDIS_URL, chroma_url=chroma_server)
    ingest(settings, movielens(movielens_100k))
    index = ChromaVectorIndex.from_url(chroma_server)
    outcome = run_training(settings, user_cache=redis_cache, item_index=index)
    assert outcome.status == "published", outcome.error
    v1 = outcome.version
    assert redis_cache.get_active_version() == v1 and index.count(f"als_items_v{v1}") > 1600

    recommender = Recommender(settings, user_cache=redis_cache, item_index=index)
    with TestClient(create_app(settings, recommender=recommender)) as client:
        acceptance_flow(client, settings)
        before = client.get("/v1/users/1/recommendations", params={"n": 10}).json()

        # The trainer dies after writing item vectors: v1 stays active and complete.
        def crash(step: str) -> None:
            if step == "item_vectors_written":
                raise RuntimeError("trainer killed mid-publish")

        failed = run_training(settings, user_cache=redis_cache, item_index=index, fault=crash)
        assert failed.status == "failed"
        assert [v.version for v in list_versions(settings) if v.is_active] == [v1]
        assert not index.has_collection(f"als_items_v{failed.version}")
        assert redis_cache.get_active_version() == v1
        recommender.refresh(force=True)
        after = client.get("/v1/users/1/recommendations", params={"n": 10}).json()
        assert after["model_version"] == v1 and after["items"] == before["items"]
        ready = client.get("/ready").json()
        assert ready["ready"] and ready["last_training"]["status"] == "failed"

    # Redis down: still answered (folded in from PostgreSQL), events still stored.
    dead = RedisUserVectorCache(f"redis://127.0.0.1:{find_free_port()}/0", "down", connect_timeout=0.2)
    degraded = Recommender(settings, user_cache=dead, item_index=index)
    result = degraded.recommend("1", 10)
    assert result.strategy == "folded_in" and CACHE_DOWN in result.degraded and len(result.items) == 10


def test_postgres_advisory_lock_lets_one_trainer_publish(postgres_url: str, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, database_url=postgres_url)
    migrate.upgrade(postgres_url)
    with trainer_lock(postgres_url, tmp_path), pytest.raises(TrainerBusy, match="advisory lock"):
        run_training(settings)
    # Released: the next trainer gets it (and fails only for want of data in this empty-or-not store).
    with trainer_lock(postgres_url, tmp_path):
        pass
