"""The ``web`` component over HTTP: the page and its files, ``GET /v1/users``, and the ``reason`` of chat items."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from hybrec.api.app import create_app
from hybrec.config import Settings
from hybrec.data.records import ErrorCollector, InteractionRecord, ItemRecord, SourceData, UserRecord
from hybrec.ingest import ingest
from hybrec.store.engine import session_scope
from hybrec.store.queries import load_interaction_arrays, most_active_users

COFFEE = "some coffee under $30"


@pytest.fixture(scope="module")
def client(web_shop: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(web_shop, ("reco", "chat", "web")), raise_server_exceptions=False) as client:
        yield client


def _counts(settings: Settings) -> Counter[str]:
    with session_scope(settings.database_url) as session:
        return Counter(load_interaction_arrays(session).user_ids.tolist())


def test_the_page_and_its_files_are_served(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for needle in ('src="/static/app.js"', 'href="/static/style.css"', 'aria-live="polite"', 'for="chat-input"'):
        assert needle in page.text
    for name, needle in (("app.js", "/v1/chat/stream"), ("http.js", "X-API-Key")):
        script = client.get(f"/static/{name}")
        assert script.status_code == 200 and "javascript" in script.headers["content-type"]
        assert needle in script.text
    assert client.get("/static/style.css").headers["content-type"].startswith("text/css")
    assert client.get("/static/nothing-here.js").status_code == 404
    assert "/" not in client.get("/openapi.json").json()["paths"]  # the page is not an API operation


def test_users_are_the_most_active_shoppers_with_their_counts(client: TestClient, web_shop: Settings) -> None:
    response = client.get("/v1/users", params={"limit": 5})
    assert response.status_code == 200, response.text
    users = response.json()["users"]
    counts = _counts(web_shop)
    expected = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:5]
    assert [(u["user_id"], u["interactions"]) for u in users] == expected
    assert len(client.get("/v1/users").json()["users"]) == 20  # the default


@pytest.mark.parametrize("limit", ["0", "-1", "201", "many"])
def test_users_limit_out_of_range_is_422(client: TestClient, limit: str) -> None:
    response = client.get("/v1/users", params={"limit": limit})
    assert response.status_code == 422 and "limit" in response.text


@pytest.mark.parametrize("keys_on_reads", [False, True])
def test_the_page_never_needs_a_key_and_users_is_a_read(web_shop: Settings, keys_on_reads: bool) -> None:
    settings = web_shop.model_copy(update={"api_keys": ["s3cret"], "api_keys_on_reads": keys_on_reads})
    with TestClient(create_app(settings, ("reco", "web"))) as client:
        assert client.get("/").status_code == 200 and client.get("/static/app.js").status_code == 200
        assert client.get("/v1/users").status_code == (401 if keys_on_reads else 200)
        answer = client.get("/v1/users", params={"limit": 1}, headers={"X-API-Key": "s3cret"})
        assert answer.status_code == 200 and len(answer.json()["users"]) == 1
        assert client.get("/v1/users", headers={"X-API-Key": "wrong"}).status_code == (401 if keys_on_reads else 200)


def test_most_active_users_on_each_backend(store_url: str) -> None:
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    items = [ItemRecord("a", "Alpha"), ItemRecord("b", "Beta")]
    events = [
        InteractionRecord(user, item, "view", t0 + timedelta(minutes=k))
        for k, (user, item) in enumerate([("u2", "a"), ("u2", "b"), ("u1", "a"), ("u1", "b"), ("u3", "a"), ("u2", "a")])
    ]
    users = [UserRecord("quiet")]  # a user without interactions is not listed
    ingest(SourceData("shop", users, items, events), store_url, ErrorCollector(), progress=False)
    with session_scope(store_url) as session:
        assert most_active_users(session, 10) == [("u2", 3), ("u1", 2), ("u3", 1)]
        assert most_active_users(session, 2) == [("u2", 3), ("u1", 2)]  # ties and limits are stable


def test_chat_items_say_why_they_were_chosen(client: TestClient, web_shop: Settings) -> None:
    regular = _counts(web_shop).most_common(1)[0][0]
    body = client.post("/v1/chat", json={"user_id": regular, "message": COFFEE}).json()
    assert body["filters"].get("max_price") == 30.0 and body["items"], body
    reasons = [item["reason"] for item in body["items"]]
    assert all(r.startswith("under $30") for r in reasons), reasons
    # A shopper with a trained taste: the ALS side of the ranking shows in the reasons.
    assert any("your taste" in r for r in reasons), reasons

    newcomer = client.post("/v1/chat", json={"user_id": "web-newcomer", "message": COFFEE}).json()
    reasons = [item["reason"] for item in newcomer["items"]]
    assert reasons and not any("taste" in r for r in reasons), reasons
    assert reasons[0].endswith("best match for your request")


def test_the_streams_items_event_carries_the_reasons(client: TestClient) -> None:
    with client.stream("POST", "/v1/chat/stream", json={"user_id": "web-streamer", "message": COFFEE}) as response:
        assert response.status_code == 200
        blocks = "".join(response.iter_text()).strip().split("\n\n")
    events = [
        (b.split("\n")[0].removeprefix("event: "), json.loads(b.split("\n")[1].removeprefix("data: "))) for b in blocks
    ]
    first, last = events[0], events[-1]
    assert first[0] == "items" and last[0] == "done"
    assert first[1]["items"] and all(i["reason"].startswith("under $30") for i in first[1]["items"])
    assert [i["reason"] for i in first[1]["items"]] == [i["reason"] for i in last[1]["items"]]
