"""The app factory: components, API keys, the store going down, training on demand."""

from __future__ import annotations

import sys
import time
import types
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import APIRouter
from fastapi.testclient import TestClient

from hybrec.api.app import create_app
from hybrec.config import Settings
from hybrec.recommend.service import Recommender
from hybrec.training.versions import list_versions
from reco_support import demo_template, make_settings, trained_clone


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return demo_template(tmp_path_factory.mktemp("template"))


@pytest.fixture
def trained(template: Settings, tmp_path: Path) -> Settings:
    return trained_clone(template, tmp_path)


@pytest.fixture
def plugin(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A component module the way the chat engine will add one: ``hybrec.api.routes.<name>`` with a ``router``."""
    module = types.ModuleType("hybrec.api.routes.plugin_for_test")
    router = APIRouter()

    @router.get("/v1/plugin")
    def hello() -> dict[str, str]:
        return {"hello": "plugin"}

    module.router = router  # type: ignore[attr-defined]
    calls: list[str] = []
    module.setup = lambda app, settings: calls.append("setup")  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "hybrec.api.routes.plugin_for_test", module)
    yield "plugin_for_test"
    assert calls == ["setup"]


def test_components_plug_in_by_route_module(trained: Settings, plugin: str) -> None:
    with TestClient(create_app(trained, ("reco", plugin))) as client:
        assert client.get("/v1/plugin").json() == {"hello": "plugin"}
        assert client.get("/v1/users/U00001/recommendations").status_code == 200


def test_without_reco_there_are_no_reco_routes(trained: Settings, plugin: str) -> None:
    with TestClient(create_app(trained, (plugin,))) as client:
        assert client.get("/v1/users/U00001/recommendations").status_code == 404
        assert client.get("/ready").status_code == 200


@pytest.mark.parametrize("name", ["no_such_engine", "admin"])
def test_unknown_component_is_a_clear_error(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        create_app(make_settings(tmp_path), ("reco", name))


def test_api_keys_guard_the_reco_routes(trained: Settings) -> None:
    settings = trained.model_copy(update={"api_keys": ["s3cret"], "api_keys_on_reads": True})
    with TestClient(create_app(settings)) as client:
        assert client.get("/v1/users/U00001/recommendations").status_code == 401
        ok = client.get("/v1/users/U00001/recommendations", headers={"X-API-Key": "s3cret"})
        assert ok.status_code == 200
        assert client.get("/health").status_code == 200  # probes stay open


def test_store_down_is_a_503_naming_the_store(trained: Settings) -> None:
    recommender = Recommender(trained)
    recommender.refresh(force=True)  # the model is loaded; then the database goes away
    recommender.settings = trained.model_copy(
        update={"database_url": "postgresql+psycopg://postgres@127.0.0.1:1/none?connect_timeout=1"}
    )
    with TestClient(create_app(trained, recommender=recommender)) as client:
        response = client.get("/v1/users/U00001/recommendations")
        assert response.status_code == 503 and "relational store is unavailable" in response.json()["detail"]
        posted = client.post("/v1/interactions", json={"user_id": "x", "item_id": "P00001", "kind": "view"})
        assert posted.status_code == 503 and "nothing was stored" in posted.json()["detail"]
        for answer in (response, posted):  # the driver's text names the server: it stays in the log
            assert "127.0.0.1" not in answer.text and "port" not in answer.text
        ready = client.get("/ready")
        assert ready.status_code == 503 and ready.json()["checks"]["store"]["ok"] is False


def test_store_down_on_the_embedded_path_is_a_503_naming_the_store(trained: Settings, tmp_path: Path) -> None:
    # Embedded backends answer on the event loop, and a trained user's seen items are read on the exact index's
    # search thread: a store failure there is the same 503 as on the loop (a user who must be folded in).
    recommender = Recommender(trained)
    recommender.refresh(force=True)
    recommender.settings = trained.model_copy(update={"database_url": f"sqlite:///{tmp_path / 'gone' / 'db.sqlite'}"})
    assert recommender.answers_in_process
    with TestClient(create_app(trained, recommender=recommender)) as client:
        for user in ("U00001", "never-seen"):
            response = client.get(f"/v1/users/{user}/recommendations")
            assert response.status_code == 503, response.text
            assert response.json()["detail"] == "the relational store is unavailable (OperationalError)"
        unexcluded = client.get("/v1/users/U00001/recommendations", params={"exclude_seen": "false"})
        assert unexcluded.status_code == 200 and unexcluded.json()["strategy"] == "trained"


def test_train_on_demand(trained: Settings) -> None:
    with TestClient(create_app(trained)) as client:
        response = client.post("/v1/train")
        assert response.status_code == 202 and response.json()["started"] is True
        deadline = time.monotonic() + 120  # a guard against hanging, not a timing assertion
        while len(list_versions(trained)) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        while list_versions(trained)[0].status == "training" and time.monotonic() < deadline:
            time.sleep(0.2)
        newest = list_versions(trained)[0]
        assert newest.version == 2 and newest.status == "published"
