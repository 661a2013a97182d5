"""The recommendation API on the embedded backends: answers, filters, events, and every bad input of issue 4."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from hybrec.api.app import create_app
from hybrec.config import Settings
from hybrec.store.engine import session_scope
from hybrec.store.models import Interaction, Item, User
from hybrec.training.job import run_training
from reco_support import count_interactions, demo_shop, ingest, make_settings


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    settings = make_settings(tmp_path_factory.mktemp("reco_api"))
    ingest(settings, demo_shop())
    outcome = run_training(settings)
    assert outcome.status == "published", outcome.error
    return settings


@pytest.fixture(scope="module")
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


def _items_by_category(settings: Settings) -> dict[str, list[str]]:
    with session_scope(settings.database_url) as session:
        out: dict[str, list[str]] = {}
        for ext, category in session.execute(select(Item.external_id, Item.category)):
            out.setdefault(category, []).append(ext)
        return out


def _seen(settings: Settings, user_id: str) -> set[str]:
    with session_scope(settings.database_url) as session:
        rows = session.execute(
            select(Item.external_id)
            .join(Interaction, Interaction.item_id == Item.id)
            .join(User, User.id == Interaction.user_id)
            .where(User.external_id == user_id)
        )
        return {r[0] for r in rows}


def _a_trained_user(settings: Settings) -> str:
    with session_scope(settings.database_url) as session:
        return str(session.scalar(select(User.external_id).join(Interaction).limit(1)))


# --- health ----------------------------------------------------------------------------------------------------------


def test_health_and_ready(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/ready")
    assert ready.status_code == 200
    body = ready.json()
    assert body["ready"] is True and body["model_version"] >= 1
    assert body["last_training"]["status"] == "published"
    assert all(check["ok"] for check in body["checks"].values())


# --- recommendations -------------------------------------------------------------------------------------------------


def test_trained_user_gets_n_unseen_items_with_metadata(client: TestClient, settings: Settings) -> None:
    user = _a_trained_user(settings)
    response = client.get(f"/v1/users/{user}/recommendations", params={"n": 10})
    assert response.status_code == 200
    body = response.json()
    assert body["strategy"] == "trained" and body["user_id"] == user
    ids = [i["item_id"] for i in body["items"]]
    assert len(ids) == 10 and len(set(ids)) == 10
    assert not set(ids) & _seen(settings, user)
    scores = [i["score"] for i in body["items"]]
    assert scores == sorted(scores, reverse=True)
    assert all(i["name"] and i["category"] and i["price"] is not None for i in body["items"])


def test_exclude_seen_false_may_return_seen_items(client: TestClient, settings: Settings) -> None:
    user = _a_trained_user(settings)
    body = client.get(f"/v1/users/{user}/recommendations", params={"n": 50, "exclude_seen": "false"}).json()
    assert set(i["item_id"] for i in body["items"]) & _seen(settings, user)


def test_category_filter_is_applied_inside_the_search(client: TestClient, settings: Settings) -> None:
    user = _a_trained_user(settings)
    category, members = max(_items_by_category(settings).items(), key=lambda kv: len(kv[1]))
    body = client.get(f"/v1/users/{user}/recommendations", params={"n": 20, "category": category}).json()
    assert len(body["items"]) == min(20, len(set(members) - _seen(settings, user)))
    assert {i["category"] for i in body["items"]} == {category}


def test_price_rating_and_brand_filters(client: TestClient, settings: Settings) -> None:
    user = _a_trained_user(settings)
    body = client.get(f"/v1/users/{user}/recommendations", params={"n": 15, "min_price": 10, "max_price": 60}).json()
    assert body["items"] and all(10 <= i["price"] <= 60 for i in body["items"])
    brand = body["items"][0]["brand"]
    by_brand = client.get(f"/v1/users/{user}/recommendations", params={"n": 5, "brand": brand.upper()}).json()
    assert by_brand["items"] and {i["brand"] for i in by_brand["items"]} == {brand}
    rated = client.get(f"/v1/users/{user}/recommendations", params={"n": 5, "min_rating": 4.0}).json()
    assert all(i["avg_rating"] is not None and i["avg_rating"] >= 4.0 for i in rated["items"])


def test_unknown_user_without_events_gets_popular_items(client: TestClient, settings: Settings) -> None:
    body = client.get("/v1/users/never-seen-anywhere/recommendations", params={"n": 7}).json()
    assert body["strategy"] == "cold_start_popular" and len(body["items"]) == 7
    category = body["items"][0]["category"]
    filtered = client.get("/v1/users/never-seen-anywhere/recommendations", params={"n": 5, "category": category}).json()
    assert len(filtered["items"]) == 5 and {i["category"] for i in filtered["items"]} == {category}


def test_similar_items(client: TestClient, settings: Settings) -> None:
    item = next(iter(_items_by_category(settings).values()))[0]
    body = client.get(f"/v1/items/{item}/similar", params={"n": 5}).json()
    ids = [i["item_id"] for i in body["items"]]
    assert len(ids) == 5 and item not in ids
    assert client.get("/v1/items/NO-SUCH-ITEM/similar").status_code == 404


def test_seed_compatible_endpoint(client: TestClient, settings: Settings) -> None:
    user = _a_trained_user(settings)
    body = client.post("/recommendation", json={"user_id": user, "n_recs": 4}).json()
    assert len(body["recommendations"]) == 4 and len(body["scores"]) == 4
    assert body["recommendations"] == [
        i["item_id"] for i in client.get(f"/v1/users/{user}/recommendations", params={"n": 4}).json()["items"]
    ]
    assert client.post("/recommendation", json={"user_id": user, "n_recs": 0}).status_code == 422


# --- bad input -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [0, -1, 101, 10_000])
def test_n_out_of_range_is_422_naming_the_cap(client: TestClient, n: int) -> None:
    response = client.get("/v1/users/u1/recommendations", params={"n": n})
    assert response.status_code == 422
    assert "100" in response.json()["detail"][0]["msg"]


def test_n_at_the_cap_is_fine(client: TestClient, settings: Settings) -> None:
    user = _a_trained_user(settings)
    assert len(client.get(f"/v1/users/{user}/recommendations", params={"n": 100}).json()["items"]) == 100


@pytest.mark.parametrize("user_id", ["", "x" * 10_240])
def test_empty_or_huge_user_id_is_422(client: TestClient, user_id: str) -> None:
    response = client.get(f"/v1/users/{user_id}/recommendations")
    assert response.status_code == 422
    assert len(response.text) < 2_000  # the 10 KB id is not echoed back whole
    post = client.post("/v1/interactions", json={"user_id": user_id, "item_id": "P00001", "kind": "view"})
    assert post.status_code == 422


@pytest.mark.parametrize(
    "params",
    [
        {"min_price": "cheap"},
        {"max_price": "1e"},
        {"min_price": 50, "max_price": 10},
        {"min_price": "nan"},
        {"min_rating": "high"},
    ],
)
def test_bad_price_or_rating_filters_are_422(client: TestClient, params: dict[str, object]) -> None:
    response = client.get("/v1/users/u1/recommendations", params=params)
    assert response.status_code == 422
    assert any(key in response.text for key in params)


def test_malformed_json_is_422(client: TestClient) -> None:
    response = client.post(
        "/v1/interactions", content=b'{"user_id": "a", "item_id": ', headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert "json" in response.text.lower()


@pytest.mark.parametrize(
    "event",
    [
        {"user_id": "a", "item_id": "P00001", "kind": "teleport"},
        {"user_id": "a", "item_id": "P00001", "kind": "rating"},
        {"user_id": "a", "item_id": "P00001", "kind": "view", "weight": -2},
        {"user_id": "a", "item_id": "P00001", "kind": "view", "surprise": 1},
        {"user_id": "a", "kind": "view"},
    ],
)
def test_invalid_events_are_422(client: TestClient, event: dict[str, object]) -> None:
    assert client.post("/v1/interactions", json=event).status_code == 422


def test_unknown_item_rejects_the_whole_batch(client: TestClient, settings: Settings) -> None:
    before = count_interactions(settings)
    batch = {
        "interactions": [
            {"user_id": "batch-user", "item_id": "P00001", "kind": "view"},
            {"user_id": "batch-user", "item_id": "NOT-IN-CATALOG", "kind": "click"},
        ]
    }
    response = client.post("/v1/interactions", json=batch)
    assert response.status_code == 422
    assert "NOT-IN-CATALOG" in response.json()["detail"]
    assert count_interactions(settings) == before
    assert not _seen(settings, "batch-user")


def test_duplicate_idempotency_key_is_stored_once(client: TestClient, settings: Settings) -> None:
    event = {"user_id": "idem-user", "item_id": "P00002", "kind": "purchase", "idempotency_key": "order-77-line-1"}
    first = client.post("/v1/interactions", json=event).json()
    second = client.post("/v1/interactions", json=event).json()
    assert (first["stored"], first["duplicates"]) == (1, 0)
    assert (second["stored"], second["duplicates"]) == (0, 1)
    with session_scope(settings.database_url) as session:
        keys = session.scalars(select(Interaction.id).where(Interaction.idempotency_key == "order-77-line-1")).all()
    assert len(keys) == 1


def test_internal_errors_carry_no_stack_trace(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    recommender = client.app.state.recommender  # type: ignore[attr-defined]

    def explode(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("secret internals at /srv/hybrec")

    monkeypatch.setattr(recommender, "_current", explode)  # the first step of both the sync and the async path
    response = client.get("/v1/users/u1/recommendations")
    assert response.status_code == 500
    assert response.json() == {"detail": "internal server error"}
    assert "Traceback" not in response.text and "secret" not in response.text


# --- real-time events ------------------------------------------------------------------------------------------------


def test_five_ratings_fold_a_new_user_in(client: TestClient, settings: Settings) -> None:
    rated = next(iter(_items_by_category(settings).values()))[:5]
    events = [{"user_id": "fresh-rater", "item_id": i, "kind": "rating", "rating": 5} for i in rated]
    response = client.post("/v1/interactions", json={"interactions": events})
    assert response.status_code == 201
    assert response.json()["users"] == [{"user_id": "fresh-rater", "strategy": "folded_in"}]
    body = client.get("/v1/users/fresh-rater/recommendations", params={"n": 10}).json()
    assert body["strategy"] == "folded_in" and len(body["items"]) == 10
    assert not {i["item_id"] for i in body["items"]} & set(rated)


def test_interactions_on_one_category_steer_the_next_recommendations(client: TestClient, settings: Settings) -> None:
    by_category = _items_by_category(settings)
    category = sorted(by_category, key=lambda c: -len(by_category[c]))[1]
    events = [
        {"user_id": "category-fan", "item_id": item, "kind": kind}
        for item in by_category[category][:8]
        for kind in ("view", "cart", "purchase")
    ]
    assert client.post("/v1/interactions", json={"interactions": events}).status_code == 201
    body = client.get("/v1/users/category-fan/recommendations", params={"n": 10}).json()
    assert body["strategy"] == "folded_in"
    counts = Counter(i["category"] for i in body["items"])
    assert counts[category] >= 6, counts


# --- models and metrics ----------------------------------------------------------------------------------------------


def test_models_listing_and_activation_errors(client: TestClient) -> None:
    body = client.get("/v1/models").json()
    assert body["active_version"] == body["models"][0]["version"]
    assert body["models"][0]["metrics"]["ndcg@10"] > 0
    assert client.post("/v1/models/9999/activate").status_code == 404
    again = client.post(f"/v1/models/{body['active_version']}/activate")
    assert again.status_code == 200 and again.json()["is_active"] is True


def test_metrics_exposes_latency_stages_and_cache_outcomes(client: TestClient, settings: Settings) -> None:
    client.get(f"/v1/users/{_a_trained_user(settings)}/recommendations")
    text = client.get("/metrics").text
    assert 'hybrec_request_duration_seconds_count{endpoint="/v1/users/{user_id}/recommendations"' in text
    assert 'hybrec_stage_duration_seconds_count{stage="index_query"}' in text
    assert "hybrec_user_vector_lookups_total" in text and "hybrec_fallbacks_total" in text
    duration = next(line for line in text.splitlines() if line.startswith("hybrec_last_training_duration_seconds "))
    assert float(duration.split()[1]) > 0
    assert "hybrec_active_model_version 1.0" in text


def test_openapi_documents_every_endpoint(client: TestClient) -> None:
    paths = json.loads(client.get("/openapi.json").text)["paths"]
    for path in (
        "/v1/users/{user_id}/recommendations",
        "/v1/items/{item_id}/similar",
        "/v1/interactions",
        "/recommendation",
        "/v1/models",
        "/v1/models/{version}/activate",
        "/health",
        "/ready",
    ):
        assert path in paths


def test_openapi_documents_the_recommendation_query_parameters(client: TestClient) -> None:
    # The endpoint validates its query string as one model (hybrec.api.params); the document still lists each one.
    operation = json.loads(client.get("/openapi.json").text)["paths"]["/v1/users/{user_id}/recommendations"]["get"]
    parameters = {p["name"]: p for p in operation["parameters"]}
    assert parameters["user_id"]["in"] == "path" and parameters["user_id"]["required"]
    assert {"n", "exclude_seen", "category", "brand", "min_price", "max_price", "min_rating"} <= set(parameters)
    assert all(
        parameters[name]["in"] == "query" and not parameters[name]["required"]
        for name in parameters
        if name != "user_id"
    )
    assert (
        parameters["n"]["schema"]["type"] == "integer"
        and "HYBREC_MAX_RECOMMENDATIONS" in parameters["n"]["description"]
    )
    price = parameters["min_price"]["schema"]["anyOf"][0]
    assert price["type"] == "number" and price["minimum"] == 0


def test_recommendation_json_is_exactly_the_response_models_json() -> None:
    """The endpoint serialises the serving layer's dataclasses directly; it must write what the documented
    RecommendationResponse would, field for field and in its order."""
    from hybrec.api.routes.reco import recommendation_json
    from hybrec.api.schemas import RecommendationResponse, RecommendedItem
    from hybrec.recommend.types import Recommendations, ScoredItem

    items = [
        ScoredItem("i1", 1.25, 'Name "quoted" é', "Brand", "cat", 19.99, 4.5),
        ScoredItem("i2", -0.5),
        ScoredItem("i3", 3.0, price=5.0, avg_rating=None),
    ]
    for result in (
        Recommendations(7, items, "folded_in", ["user_cache_unavailable: folded in"]),
        Recommendations(1, [], "cold_start_popular"),
    ):
        model = RecommendationResponse(
            user_id="u 1",
            model_version=result.model_version,
            items=[RecommendedItem.model_validate(i, from_attributes=True) for i in result.items],
            strategy=result.strategy,
            degraded=result.degraded,
        )
        assert recommendation_json("u 1", result) == model.model_dump_json().encode()
