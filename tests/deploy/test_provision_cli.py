"""The commands the deployment's one-shot containers and health checks run: ``hybrec ingest configured``,
``hybrec model active`` and ``hybrec llm pull`` (its error paths; the pull protocol itself is tested in
tests/llm/test_ollama.py). Each runs as its own process on a SQLite store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from deploy_support import run_hybrec, write_small_shop

from hybrec.store.engine import dispose_engine, session_scope
from hybrec.store.model_versions import create_model_version, mark_published, set_active
from hybrec.store.queries import store_counts
from servers import find_free_port

pytestmark = pytest.mark.slow  # one hybrec process per step, a few seconds each


@pytest.fixture
def store(tmp_path: Path) -> tuple[str, dict[str, str]]:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    env = {"HYBREC_DATABASE_URL": url, "HYBREC_VAR_DIR": str(tmp_path / "var")}
    yield url, env
    dispose_engine(url)


def test_ingest_configured_loads_an_empty_store_once(tmp_path: Path, store: tuple[str, dict[str, str]]) -> None:
    url, env = store
    env = {**env, "HYBREC_DATASET": str(write_small_shop(tmp_path / "shop", n_users=40, n_items=60))}
    first = run_hybrec(["ingest", "configured", "--no-progress"], env, tmp_path)
    assert first.returncode == 0, first.stderr
    assert "store is empty: loading" in first.stdout
    with session_scope(url) as session:
        loaded = store_counts(session)
    assert loaded["items"] == 60 and loaded["interactions"] > 0

    again = run_hybrec(["ingest", "configured", "--no-progress"], env, tmp_path)
    assert again.returncode == 0, again.stderr
    assert "store already loaded" in again.stdout
    with session_scope(url) as session:
        assert store_counts(session) == loaded


def test_ingest_configured_names_a_missing_dataset(tmp_path: Path, store: tuple[str, dict[str, str]]) -> None:
    _url, env = store
    result = run_hybrec(["ingest", "configured"], {**env, "HYBREC_DATASET": str(tmp_path / "nowhere")}, tmp_path)
    assert result.returncode == 2
    message = " ".join(result.stderr.replace("│", " ").split())  # the error box wraps lines at 80 columns
    assert "HYBREC_DATASET" in message and "nowhere does not exist" in message


def test_model_active_fails_until_a_version_is_live(tmp_path: Path, store: tuple[str, dict[str, str]]) -> None:
    url, env = store
    unmigrated = run_hybrec(["model", "active"], env, tmp_path)
    assert unmigrated.returncode == 1 and "cannot read the model versions" in unmigrated.stderr

    assert run_hybrec(["db", "upgrade"], env, tmp_path).returncode == 0
    empty = run_hybrec(["model", "active"], env, tmp_path)
    assert empty.returncode == 1 and "no model version is live" in empty.stderr

    with session_scope(url) as session:
        version = create_model_version(session).id
        mark_published(
            session,
            version,
            metrics={"ndcg@10": 0.1},
            artifact_path="models/v1",
            n_users=1,
            n_items=1,
            n_interactions=1,
        )
        set_active(session, version)
    live = run_hybrec(["model", "active", "--json"], env, tmp_path)
    assert live.returncode == 0, live.stderr
    assert json.loads(live.stdout)["version"] == version and json.loads(live.stdout)["metrics"] == {"ndcg@10": 0.1}


def test_llm_pull_needs_an_ollama_server(tmp_path: Path, store: tuple[str, dict[str, str]]) -> None:
    _url, env = store
    wrong_backend = run_hybrec(["llm", "pull"], {**env, "HYBREC_LLM_BACKEND": "none"}, tmp_path)
    assert wrong_backend.returncode == 1 and "pulling needs an Ollama server" in wrong_backend.stderr

    down = f"http://127.0.0.1:{find_free_port()}"
    unreachable = run_hybrec(
        ["llm", "pull", "--base-url", down, "--model", "qwen2.5:0.5b", "--no-progress"], env, tmp_path
    )
    assert unreachable.returncode == 1 and "cannot reach" in unreachable.stderr
