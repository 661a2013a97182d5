"""A bounded load test on loopback: mixed traffic against ``hybrec serve`` (reco + chat, one uvicorn process) for
``HYBREC_LOAD_TEST_SECONDS`` (default 120) with zero errors, and every interaction answered 201 found in the store.

Needs PostgreSQL at HYBREC_TEST_POSTGRES_URL (a database is created for the test and dropped afterwards).
``bench/soak.py`` runs the same traffic for longer and reports latencies and memory growth.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest
from load_deployment import Deployment, serve_shop
from mixed_traffic import CHAT, EXPECTED, missing_keys, traffic

from servers import create_postgres_database, drop_postgres_database

pytestmark = [pytest.mark.integration, pytest.mark.slow]

LOAD_SECONDS = float(os.environ.get("HYBREC_LOAD_TEST_SECONDS", "120"))


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    url = create_postgres_database("hybrec_load")
    try:
        with serve_shop(tmp_path_factory.mktemp("load"), url) as running:
            yield running
    finally:
        drop_postgres_database(url)


def test_mixed_load_has_zero_errors_and_loses_no_interaction(deployment: Deployment) -> None:
    with traffic(deployment.url, deployment.mix, reco_workers=4, chat_url=deployment.url, chat_pause_s=0.2) as log:
        time.sleep(LOAD_SECONDS)
    summary = log.summary()
    errors = log.unexpected()
    assert not errors, f"{len(errors)} errors under load, first ones: {errors[:5]}\n{summary}"
    assert set(summary["endpoints"]) == set(EXPECTED), summary  # every endpoint was exercised
    assert summary["endpoints"][CHAT]["requests"] >= 1
    assert deployment.server.alive(), deployment.server.tail()
    assert "unhandled error" not in deployment.server.tail(200_000)
    assert log.accepted_keys and not missing_keys(deployment.settings.database_url, log.accepted_keys)
    # Every answer was about the one published version, none degraded; similar items always fill the page (a
    # shopper who has seen most of the small catalog may get fewer than 10 unseen recommendations).
    for outcome in log.outcomes:
        body = outcome.body or {}
        if outcome.endpoint in ("recommendations", "similar"):
            assert body["model_version"] == 1 and body["items"] and not body["degraded"], outcome
            assert outcome.endpoint == "recommendations" or len(body["items"]) == 5, outcome
