"""The fast lane of ``GET /v1/users/{user_id}/recommendations`` (hybrec.api.lane): it answers exactly as the
middleware stack would, and leaves every request it must not take to the stack."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from hybrec.api.app import HybrecAPI, create_app
from hybrec.api.lane import FastLane
from hybrec.config import Settings
from hybrec.training.job import run_training
from reco_support import demo_shop, ingest, make_settings

PATH = "/v1/users/{}/recommendations"


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    settings = make_settings(tmp_path_factory.mktemp("lane"))
    ingest(settings, demo_shop())
    assert run_training(settings).status == "published"
    return settings


def _app(settings: Settings, **overrides: Any) -> HybrecAPI:
    app = create_app(settings.model_copy(update=overrides))
    assert isinstance(app, HybrecAPI)
    return app


@pytest.fixture(scope="module")
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(_app(settings), raise_server_exceptions=False) as client:
        yield client


def _lane(client: TestClient) -> FastLane:
    lane = client.app.lane  # type: ignore[attr-defined]
    assert isinstance(lane, FastLane)
    return lane


def _both_ways(client: TestClient, path: str, **kwargs: Any) -> tuple[Any, Any]:
    """The answer through the lane, then the same request's answer through the middleware stack (lane shut)."""
    lane = _lane(client)
    served = lane.served
    fast = client.get(path, **kwargs)
    client.app.lane = None  # type: ignore[attr-defined]
    try:
        slow = client.get(path, **kwargs)
    finally:
        client.app.lane = lane  # type: ignore[attr-defined]
    assert lane.served == served + (fast.status_code == 200)
    return fast, slow


def _same(fast: Any, slow: Any) -> None:  # the test client's responses
    assert fast.status_code == slow.status_code
    assert fast.content == slow.content
    for header in ("content-type", "content-length", "x-content-type-options"):
        assert fast.headers.get(header) == slow.headers.get(header), header
    assert fast.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize(
    ("user", "params"),
    [
        ("U00001", {"n": 10}),
        ("U00002", {"n": 3, "exclude_seen": "false"}),
        ("someone-new", {}),  # cold start
        ("U00001", {"n": -1}),  # 422 naming the cap
        ("U00001", {"n": "ten"}),
        ("U00001", {"min_price": 50, "max_price": 10}),
        ("x" * 10_000, {}),  # 422, the id cut short in the echo
        ("%20", {"brand": "!!!"}),
    ],
)
def test_the_lane_answers_as_the_stack_does(client: TestClient, user: str, params: dict[str, Any]) -> None:
    fast, slow = _both_ways(client, PATH.format(user), params=params)
    _same(fast, slow)


def test_a_domain_error_and_an_unexpected_one_are_answered_by_the_apps_handlers(
    client: TestClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from hybrec.recommend.errors import ModelNotReady

    recommender = client.app.state.recommender  # type: ignore[attr-defined]
    for error, status in ((ModelNotReady("no model yet"), 503), (RuntimeError("secret at /srv"), 500)):

        def fail(*_args: object, error: Exception = error, **_kwargs: object) -> None:
            raise error

        monkeypatch.setattr(recommender, "_current", fail)
        with caplog.at_level(logging.ERROR, logger="hybrec.api.app"):
            fast, slow = _both_ways(client, PATH.format("U00001"))
        _same(fast, slow)
        assert fast.status_code == status
        assert "secret" not in fast.text
    assert sum("unhandled error" in r.getMessage() for r in caplog.records) == 2  # logged on both paths


def test_a_missing_read_key_is_the_same_401(settings: Settings) -> None:
    app = _app(settings, api_keys=["k" * 24], api_keys_on_reads=True)
    with TestClient(app) as client:
        fast, slow = _both_ways(client, PATH.format("U00001"))
        _same(fast, slow)
        assert fast.status_code == 401
        assert client.get(PATH.format("U00001"), headers={"X-API-Key": "k" * 24}).status_code == 200
        assert _lane(client).served == 1


def test_requests_the_route_does_not_match_go_down_the_stack(client: TestClient) -> None:
    lane = _lane(client)
    served = lane.served
    assert client.get("/v1/users//recommendations").status_code == 422  # the stack's own empty-id route
    assert client.get("/v1/users/a/b/recommendations").status_code == 404
    assert client.head(PATH.format("U00001")).status_code == 200
    assert client.post(PATH.format("U00001")).status_code == 405
    with_body = client.request("GET", PATH.format("U00001"), content=b"{}")  # a body: the body limit judges it
    assert with_body.status_code == 200
    assert client.get(PATH.format("U00001") + "/", follow_redirects=False).status_code == 307  # the router's redirect
    assert lane.served == served
    assert client.get(PATH.format("U00001")).status_code == 200
    assert lane.served == served + 1


def test_the_lane_records_the_request_metric_under_the_template(client: TestClient) -> None:
    lane = _lane(client)
    served = lane.served
    client.get(PATH.format("U00003"))
    client.get(PATH.format("U00003"), params={"n": 0})
    assert lane.served == served + 1
    text = client.get("/metrics").text
    template = "/v1/users/{user_id}/recommendations"
    for status in ("200", "422"):
        assert f'hybrec_request_duration_seconds_count{{endpoint="{template}",method="GET",status="{status}"}}' in text


@pytest.mark.parametrize(
    "overrides",
    [{"cors_origins": ["https://shop.example"]}, {"rate_limit_per_minute": 1}],
    ids=["cors", "rate-limit"],
)
def test_with_cors_or_a_rate_limit_the_lane_stays_shut(settings: Settings, overrides: dict[str, Any]) -> None:
    with TestClient(_app(settings, **overrides)) as client:
        response = client.get(PATH.format("U00001"), headers={"Origin": "https://shop.example"})
        assert response.status_code == 200
        if "cors_origins" in overrides:
            assert response.headers["access-control-allow-origin"] == "https://shop.example"
        else:  # the limit counted it: the next one is over
            assert client.get(PATH.format("U00001")).status_code == 429
        assert _lane(client).served == 0


def test_with_fastapis_opentelemetry_on_the_lane_stays_shut(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    lane = _lane(client)
    served = lane.served
    monkeypatch.setattr(client.app._native_telemetry, "enabled", lambda: True)  # type: ignore[attr-defined]
    assert not lane.open()
    monkeypatch.undo()
    assert lane.open()
    assert lane.served == served


def test_a_lane_needs_one_whole_segment_parameter(client: TestClient) -> None:
    lane = _lane(client)
    with pytest.raises(ValueError, match="exactly one path parameter"):
        FastLane(client.app, lane.route, "item_id", lane.handler, lane.metrics, lane.default_middleware)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "raw",
    [b"", b"n=10", b"n=1", b"n=999999", b"n=1000000", b"n=0", b"n=010", b"n=+5", b"n=-3", b"n=10&n=3", b"n= 10",
     b"n=1e3", b"n=10&category=books", b"exclude_seen=false", b"n=10&exclude_seen=0", b"m=5"],
)  # fmt: skip
def test_query_strings_read_without_pydantic_read_as_pydantic_reads_them(raw: bytes) -> None:
    from fastapi.exceptions import RequestValidationError
    from starlette.requests import Request

    from hybrec.api.params import query_model
    from hybrec.api.routes.reco import RecommendationQuery, _recommendation_query

    request = Request({"type": "http", "query_string": raw, "headers": []})
    try:
        expected = query_model(RecommendationQuery, request)
    except RequestValidationError:
        with pytest.raises(RequestValidationError):
            _recommendation_query(request)
        return
    query, filters = _recommendation_query(request)
    assert query == expected
    assert filters == expected.to_filter() or (filters is None and expected.to_filter().is_empty)
