"""A dependency that is down where no degraded answer exists is a 503 with a reason, never a 500 (DESIGN.md).

The fault tests (test_faults.py) show it under traffic with real servers stopped; these pin the app-level mapping
with a real client pointed at a port nothing listens on, the way a server that is down looks to hybrec.
"""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from hybrec.api.app import create_app
from reco_support import make_settings
from servers import find_free_port


def test_model_admin_with_the_store_down_is_a_503_naming_it(tmp_path: Path) -> None:
    closed = f"postgresql+psycopg://postgres@127.0.0.1:{find_free_port()}/hybrec"
    app = create_app(make_settings(tmp_path, closed), ("reco",))
    client = TestClient(app, raise_server_exceptions=False)  # no lifespan: no recommender needed for /v1/models
    response = client.get("/v1/models")
    assert response.status_code == 503
    detail = response.json()["detail"]
    assert detail == "the relational store is unavailable (OperationalError)"
    # Neither the SQL nor the driver's text, which names the server: its host, port and user stay in the log.
    assert "SELECT" not in detail and "127.0.0.1" not in detail and "postgres" not in detail


def test_a_vector_server_down_without_fallback_is_a_503_naming_it(tmp_path: Path) -> None:
    from fastapi import APIRouter

    from hybrec.vectors.chroma_index import ChromaVectorIndex

    index = ChromaVectorIndex.from_url(f"http://127.0.0.1:{find_free_port()}")
    router = APIRouter()

    @router.get("/v1/products-probe")
    def products() -> list[str]:  # what chat's product search does first: ask the index
        return index.list_collections()

    app = create_app(make_settings(tmp_path), ("reco",))
    app.include_router(router)
    response = TestClient(app, raise_server_exceptions=False).get("/v1/products-probe")
    assert response.status_code == 503
    assert "unreachable" in response.json()["detail"]
