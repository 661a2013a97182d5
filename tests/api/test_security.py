"""API security (issue 6 part 4): API keys, CORS, rate limits (in-process and real Redis), body limits, no leaks.

Every test runs the real app (``create_app``) on a trained embedded store, through FastAPI's TestClient or a real
uvicorn server on a free port; the Redis-backed limit runs against the real Redis of ``tests/servers.py``.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
import types
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
import redis
import uvicorn
from fastapi import APIRouter, FastAPI
from fastapi.testclient import TestClient

# The gift-shop fixtures shared with tests/chat (the streaming test).
from chat_support import chat_embedder, gift_shop, scripted  # noqa: F401
from hybrec.api.app import create_app
from hybrec.api.ratelimit import KEY_PREFIX, RateLimitMiddleware, client_identity
from hybrec.config import Settings
from reco_support import count_interactions, demo_template, trained_clone
from servers import REDIS_URL, find_free_port

KEY, OTHER_KEY = "k-" + uuid.uuid4().hex, "k-" + uuid.uuid4().hex
EVENT = {"user_id": "sec-user", "item_id": "P00001", "kind": "view"}
READS = [
    ("GET", "/v1/users/U00001/recommendations", None),
    ("GET", "/v1/items/P00001/similar", None),
    ("POST", "/recommendation", {"user_id": "U00001", "n_recs": 3}),
    ("GET", "/v1/users", None),
]
WRITES = [
    ("POST", "/v1/interactions", EVENT),
    ("GET", "/v1/models", None),
    ("POST", "/v1/models/1/activate", None),
    ("POST", "/v1/train", None),
]
OPEN = ["/health", "/ready", "/metrics", "/docs", "/openapi.json", "/", "/static/app.js"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return trained_clone(demo_template(tmp_path_factory.mktemp("sec_template")), tmp_path_factory.mktemp("sec"))


@contextmanager
def client_for(
    settings: Settings, components: tuple[str, ...] = ("reco", "web"), **overrides: Any
) -> Iterator[TestClient]:
    app = create_app(settings.model_copy(update=overrides), components)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


@contextmanager
def real_server(app: FastAPI) -> Iterator[str]:
    """``app`` on a real uvicorn (its defaults, as ``hybrec serve`` runs it) on a free port, in a thread."""
    port = find_free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60  # a guard against hanging, not a timing assertion
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


# --- API keys --------------------------------------------------------------------------------------------------------


def _call(client: TestClient, method: str, path: str, body: Any, key: str | None = None) -> httpx.Response:
    headers = {"X-API-Key": key} if key is not None else {}
    return client.request(method, path, json=body, headers=headers)


def test_writes_and_admin_need_a_valid_key(trained: Settings) -> None:
    with client_for(trained, api_keys=[OTHER_KEY, KEY]) as client:
        for method, path, body in WRITES:
            missing = _call(client, method, path, body)
            assert missing.status_code == 401, path
            assert "missing X-API-Key" in missing.json()["detail"]
            for wrong in ("nope", KEY[:-1], KEY + "x", "k" * 10_000):
                invalid = _call(client, method, path, body, wrong)
                assert invalid.status_code == 401 and invalid.json()["detail"] == "invalid X-API-Key", path
        stored = count_interactions(trained)
        assert _call(client, "POST", "/v1/interactions", EVENT, KEY).status_code == 201
        assert count_interactions(trained) == stored + 1
        assert _call(client, "GET", "/v1/models", None, OTHER_KEY).status_code == 200
        assert _call(client, "POST", "/v1/models/1/activate", None, KEY).status_code == 200


def test_reads_need_a_key_only_with_keys_on_reads(trained: Settings) -> None:
    with client_for(trained, api_keys=[KEY]) as client:
        for method, path, body in READS:
            assert _call(client, method, path, body).status_code == 200, path
    with client_for(trained, api_keys=[KEY], api_keys_on_reads=True) as client:
        for method, path, body in READS:
            assert _call(client, method, path, body).status_code == 401, path
            assert _call(client, method, path, body, "wrong").status_code == 401, path
            assert _call(client, method, path, body, KEY).status_code == 200, path
        for path in OPEN:
            assert client.get(path).status_code == 200, path
    with client_for(trained, api_keys_on_reads=True) as client:  # no keys configured: an open deployment
        assert _call(client, "POST", "/v1/interactions", EVENT).status_code == 201
        assert _call(client, *READS[0]).status_code == 200


def test_admin_keys_reserve_the_admin_endpoints(trained: Settings) -> None:
    # The web page's visitors may hold a write key (clicks are writes); model activation and training need another.
    with client_for(trained, api_keys=[KEY], admin_api_keys=[OTHER_KEY]) as client:
        for method, path in (("GET", "/v1/models"), ("POST", "/v1/models/1/activate")):
            assert _call(client, method, path, None, KEY).status_code == 401, path
            assert _call(client, method, path, None, OTHER_KEY).status_code == 200, path
        assert _call(client, "POST", "/v1/interactions", EVENT, KEY).status_code == 201
        assert _call(client, "POST", "/v1/interactions", EVENT, OTHER_KEY).status_code == 201  # an admin may write
        assert _call(client, "POST", "/v1/interactions", EVENT).status_code == 401
        schema = client.get("/openapi.json").json()
    assert schema["paths"]["/v1/models"]["get"]["security"] == [{"APIKey": []}]
    assert set(schema["components"]["securitySchemes"]) == {"APIKey"}
    with client_for(trained, admin_api_keys=[OTHER_KEY]) as client:  # writes open, admin still guarded
        assert _call(client, "POST", "/v1/interactions", EVENT).status_code == 201
        assert _call(client, "GET", "/v1/models", None).status_code == 401


def test_chat_history_needs_a_key_whenever_keys_are_set(trained: Settings) -> None:
    # Private data, and nothing proves the caller is that shopper: guarded like a write, even with reads open.
    with client_for(trained, ("reco", "chat"), api_keys=[KEY]) as client:
        assert _call(client, "GET", "/v1/users/u/chat-history", None).status_code == 401
        assert _call(client, "GET", "/v1/users/u/chat-history", None, "wrong").status_code == 401
        assert _call(client, "GET", "/v1/users/u/chat-history", None, KEY).status_code != 401


def test_chat_endpoints_are_reads(trained: Settings) -> None:
    # The key check runs before the body and the engine: a 401 needs no product index.
    chat = [("POST", "/v1/chat", {"user_id": "u", "message": "hi"}), ("POST", "/v1/chat/stream", None)]
    chat += [("GET", "/v1/users/u/chat-history", None), ("POST", "/get_reco", {"user_id": "u", "text": "hi"})]
    with client_for(trained, ("reco", "chat"), api_keys=[KEY], api_keys_on_reads=True) as client:
        for method, path, body in chat:
            response = _call(client, method, path, body)
            assert response.status_code == 401 and "X-API-Key" in response.json()["detail"], path


@pytest.mark.parametrize(
    ("keys", "on_reads", "writes", "reads"),
    [
        ([], False, "optional", "optional"),  # an open deployment
        ([KEY], False, "required", "optional"),
        ([KEY], True, "required", "required"),
    ],
)
def test_openapi_documents_the_key(trained: Settings, keys: list[str], on_reads: bool, writes: str, reads: str) -> None:
    with client_for(trained, ("reco", "chat", "web"), api_keys=keys, api_keys_on_reads=on_reads) as client:
        schema = client.get("/openapi.json").json()
        assert client.get("/openapi.json").json() == schema  # the cached schema is not folded twice
    scheme = schema["components"]["securitySchemes"]["APIKey"]
    assert (scheme["type"], scheme["in"], scheme["name"]) == ("apiKey", "header", "X-API-Key")
    assert "HYBREC_API_KEYS_ON_READS" in scheme["description"]
    expected = {"required": [{"APIKey": []}], "optional": [{}, {"APIKey": []}]}
    paths = schema["paths"]
    for path, method in [("/v1/interactions", "post"), ("/v1/models", "get"), ("/v1/train", "post")]:
        assert paths[path][method]["security"] == expected[writes], path
    for path, method in [("/v1/users/{user_id}/recommendations", "get"), ("/v1/chat", "post"), ("/v1/users", "get")]:
        assert paths[path][method]["security"] == expected[reads], path
    assert "security" not in paths["/health"]["get"] and "security" not in paths["/ready"]["get"]


# --- CORS ------------------------------------------------------------------------------------------------------------


def test_cors_allows_the_configured_origins_only(trained: Settings) -> None:
    origin = "https://shop.example"
    with client_for(trained, cors_origins=[origin], api_keys=[KEY]) as client:
        preflight = client.options(
            "/v1/interactions",
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type,x-api-key",
            },
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == origin
        assert {"GET", "POST"} <= set(preflight.headers["access-control-allow-methods"].split(", "))
        assert "x-api-key" in preflight.headers["access-control-allow-headers"].lower()
        foreign = client.options(
            "/v1/interactions", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
        )
        assert foreign.status_code == 400 and "access-control-allow-origin" not in foreign.headers
        # Errors carry the header too, so that the page can read why it was refused.
        refused = client.post("/v1/interactions", json=EVENT, headers={"Origin": origin})
        assert refused.status_code == 401 and refused.headers["access-control-allow-origin"] == origin
    with client_for(trained) as client:
        plain = client.get("/v1/users/U00001/recommendations", headers={"Origin": origin})
        assert plain.status_code == 200 and "access-control-allow-origin" not in plain.headers


# --- rate limit ------------------------------------------------------------------------------------------------------


def _is_429(response: httpx.Response, limit: int) -> bool:
    if response.status_code != 429:
        return False
    assert 1 <= int(response.headers["retry-after"]) <= 60
    assert f"{limit} requests per minute" in response.json()["detail"]
    return True


def test_in_process_limit_per_key_and_per_address(trained: Settings) -> None:
    path = "/v1/users/U00001/recommendations"
    with client_for(trained, rate_limit_per_minute=3, api_keys=[KEY, OTHER_KEY]) as client:
        assert [client.get(path, headers={"X-API-Key": KEY}).status_code for _ in range(3)] == [200] * 3
        assert _is_429(client.get(path, headers={"X-API-Key": KEY}), 3)
        assert client.get(path, headers={"X-API-Key": OTHER_KEY}).status_code == 200  # its own budget
        assert [client.get(path).status_code for _ in range(3)] == [200] * 3  # no key: the client's address
        assert _is_429(client.get(path, headers={"X-API-Key": "invented"}), 3)  # a bad key counts as the address
        unlimited = ("/health", "/ready", "/metrics", "/", "/static/app.js")  # probes and the page's own files
        assert all(client.get(p).status_code == 200 for p in unlimited for _ in range(5))


def test_no_limit_installs_nothing(trained: Settings) -> None:
    app = create_app(trained)
    assert RateLimitMiddleware not in [m.cls for m in app.user_middleware]
    with TestClient(app) as client:
        assert all(client.get("/v1/users/U00001/recommendations").status_code == 200 for _ in range(30))


@pytest.fixture
def redis_limit_key() -> Iterator[tuple[str, str]]:
    """A fresh API key and the Redis key its requests are counted under (deleted afterwards)."""
    key = "k-" + uuid.uuid4().hex
    counter_key = KEY_PREFIX + client_identity({}, key)
    yield key, counter_key
    redis.Redis.from_url(REDIS_URL).delete(counter_key)


# The web component's shopper list: a cheap limited endpoint ("/" and /static/ are never limited).
USERS = "/v1/users?limit=1"


def test_redis_limit_holds_across_apps(trained: Settings, redis_limit_key: tuple[str, str]) -> None:
    key, counter_key = redis_limit_key
    # Two apps share nothing but Redis, as two worker processes would; "web" alone keeps the user-vector cache off it.
    overrides: dict[str, Any] = {"redis_url": REDIS_URL, "rate_limit_per_minute": 4, "api_keys": [key]}
    with client_for(trained, ("web",), **overrides) as first, client_for(trained, ("web",), **overrides) as second:
        headers = {"X-API-Key": key}
        assert [first.get(USERS, headers=headers).status_code for _ in range(2)] == [200, 200]
        assert [second.get(USERS, headers=headers).status_code for _ in range(2)] == [200, 200]
        assert _is_429(second.get(USERS, headers=headers), 4) and _is_429(first.get(USERS, headers=headers), 4)
        stored = redis.Redis.from_url(REDIS_URL)
        assert int(stored.get(counter_key) or 0) == 6 and 0 < stored.pttl(counter_key) <= 60_000
        assert key not in str(stored.keys(KEY_PREFIX + "*"))  # keys are stored hashed


def test_redis_down_fails_open(trained: Settings, caplog: pytest.LogCaptureFixture) -> None:
    down = f"redis://127.0.0.1:{find_free_port()}/0"
    limited = client_for(trained, ("web",), redis_url=down, rate_limit_per_minute=2)
    with caplog.at_level(logging.WARNING, "hybrec.api.ratelimit"), limited as client:
        assert [client.get(USERS).status_code for _ in range(6)] == [200] * 6
        scrape = client.get("/metrics").text
    assert 'hybrec_fallbacks_total{reason="rate_limit_unavailable"} 6.0' in scrape
    warnings = [r for r in caplog.records if "rate limit not enforced" in r.getMessage()]
    assert len(warnings) == 1 and "127.0.0.1" in warnings[0].getMessage()


# --- request size ----------------------------------------------------------------------------------------------------


def test_bodies_over_the_limit_are_413_before_reading(trained: Settings) -> None:
    batch = {"interactions": [dict(EVENT, idempotency_key=f"big-{i}") for i in range(100)]}  # about 9 KB
    stored = count_interactions(trained)
    with client_for(trained, max_request_bytes=4096) as client:
        for path in ("/v1/interactions", "/recommendation", "/v1/train", "/no/such/route"):
            response = client.post(path, json=batch)
            assert response.status_code == 413, path
            assert response.json()["detail"] == "request body over 4096 bytes (HYBREC_MAX_REQUEST_BYTES)"
        assert client.post("/v1/interactions", json=batch["interactions"][0]).status_code == 201
    assert count_interactions(trained) == stored + 1


def test_chunked_body_over_the_limit_is_413_on_a_real_server(trained: Settings) -> None:
    app = create_app(trained.model_copy(update={"max_request_bytes": 4096}))
    small = json.dumps(dict(EVENT, idempotency_key="chunked-small")).encode()
    big = json.dumps({"interactions": [dict(EVENT, idempotency_key=f"chunk-{i}") for i in range(100)]}).encode()
    stored = count_interactions(trained)

    def chunks(body: bytes) -> Iterator[bytes]:  # an iterator body: httpx sends it chunked, no Content-Length
        yield from (body[i : i + 1000] for i in range(0, len(body), 1000))

    with real_server(app) as url:
        headers = {"content-type": "application/json"}
        response = httpx.post(f"{url}/v1/interactions", content=chunks(big), headers=headers)
        assert response.status_code == 413 and "HYBREC_MAX_REQUEST_BYTES" in response.json()["detail"]
        assert "content-length" not in response.request.headers
        assert httpx.post(f"{url}/v1/interactions", content=chunks(small), headers=headers).status_code == 201
    assert count_interactions(trained) == stored + 1


def test_overlong_ids_are_422(trained: Settings) -> None:
    with client_for(trained) as client:
        assert client.get(f"/v1/users/{'u' * 256}/recommendations").status_code == 422
        assert client.get(f"/v1/items/{'i' * 256}/similar").status_code == 422
        assert client.post("/v1/models/" + "9" * 5000 + "/activate").status_code == 422


# --- no leaks --------------------------------------------------------------------------------------------------------

SECRET = "db password hunter2 at /srv/hybrec/secret.py"


@pytest.fixture
def failing_component(monkeypatch: pytest.MonkeyPatch) -> str:
    """A component whose route, and whose middleware on ``/v1/mw-boom``, raise an error naming a secret."""
    module = types.ModuleType("hybrec.api.routes.failing_for_test")
    router = APIRouter()

    @router.get("/v1/boom")
    def boom() -> None:
        raise RuntimeError(SECRET)

    class Exploding:
        def __init__(self, app: Any) -> None:
            self.app = app

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] == "http" and scope["path"] == "/v1/mw-boom":
                raise ValueError(SECRET)
            await self.app(scope, receive, send)

    module.router = router  # type: ignore[attr-defined]
    module.setup = lambda app, settings: app.add_middleware(Exploding)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, module.__name__, module)
    return "failing_for_test"


def _assert_no_leak(response: httpx.Response) -> None:
    assert response.status_code == 500 and response.json() == {"detail": "internal server error"}
    assert "hunter2" not in response.text and "Traceback" not in response.text
    assert response.headers["x-content-type-options"] == "nosniff"


def test_errors_in_routes_and_middleware_leak_nothing(trained: Settings, failing_component: str) -> None:
    with client_for(trained, ("reco", failing_component), rate_limit_per_minute=100, cors_origins=["https://a.b"]) as c:
        _assert_no_leak(c.get("/v1/boom"))
        _assert_no_leak(c.get("/v1/mw-boom"))
    with real_server(create_app(trained, ("reco", failing_component))) as url:
        _assert_no_leak(httpx.get(f"{url}/v1/boom"))
        _assert_no_leak(httpx.get(f"{url}/v1/mw-boom"))
        ok = httpx.get(f"{url}/v1/users/U00001/recommendations")
        assert ok.status_code == 200 and ok.headers["x-content-type-options"] == "nosniff"
        assert not any(ch.isdigit() for ch in ok.headers.get("server", "")), "the server header names a version"


@pytest.mark.shared_data
def test_chat_stream_failing_midway_ends_with_a_bare_error_event(gift_shop: Any, scripted: Any) -> None:  # noqa: F811
    llm = scripted({"TurnReading": ['{"mode": "new_search"}']}, replies=[RuntimeError(SECRET)])
    app = create_app(gift_shop.settings, components=("chat",))
    app.state.chat_engine = gift_shop.engine(llm)
    body = {"user_id": "sse-fail", "message": "a gift card for a coffee lover"}
    with (
        TestClient(app, raise_server_exceptions=False) as client,
        client.stream("POST", "/v1/chat/stream", json=body) as response,
    ):
        assert response.status_code == 200  # sent before the failure
        text = "".join(response.iter_text())
    names = [block.split("\n", 1)[0].removeprefix("event: ") for block in text.strip().split("\n\n")]
    assert names[0] == "items" and names[-1] == "error" and "done" not in names
    assert text.strip().endswith('data: {"detail": "internal server error"}')
    assert "hunter2" not in text and "Traceback" not in text and "RuntimeError" not in text
