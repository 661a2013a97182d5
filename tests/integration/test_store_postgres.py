"""PostgreSQL-only behaviour of the store, against the real server: isolation of a running ingest, concurrent
schema upgrades. Needs the PostgreSQL server of tests/conftest.py (POSTGRES_URL)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from hybrec.data.records import ErrorCollector, InteractionRecord, ItemRecord, SourceData
from hybrec.ingest import ingest
from hybrec.store.engine import session_scope
from hybrec.store.migrate import current_revision, head_revision, upgrade
from hybrec.store.queries import store_counts
from servers import create_postgres_database, drop_postgres_database

pytestmark = pytest.mark.integration
T0 = datetime(2023, 1, 1, tzinfo=UTC)


@pytest.fixture
def fresh_url() -> Iterator[str]:
    url = create_postgres_database()
    try:
        yield url
    finally:
        drop_postgres_database(url)


def test_concurrent_upgrades_of_a_fresh_database_both_succeed(fresh_url: str) -> None:
    failures: list[BaseException] = []

    def run() -> None:
        try:
            upgrade(fresh_url)
        except BaseException as exc:  # pragma: no cover - reported below
            failures.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert failures == []
    assert current_revision(fresh_url) == head_revision()


def test_other_sessions_see_an_ingest_all_or_nothing(fresh_url: str) -> None:
    upgrade(fresh_url)
    ingest(SourceData("base", [], [ItemRecord("a", "A")], [InteractionRecord("u0", "a", "view", T0)]), fresh_url,
           ErrorCollector(), progress=False)
    paused, resume = threading.Event(), threading.Event()

    def interactions() -> Iterator[InteractionRecord]:
        for n in range(1, 2001):
            yield InteractionRecord(f"u{n}", "b", "view", T0 + timedelta(seconds=n))
            if n == 1000:
                paused.set()
                resume.wait(timeout=60)

    failures: list[BaseException] = []

    def run() -> None:
        try:
            ingest(SourceData("more", [], [ItemRecord("b", "B")], interactions()), fresh_url, ErrorCollector(),
                   progress=False)
        except BaseException as exc:  # pragma: no cover - reported below
            failures.append(exc)

    loader = threading.Thread(target=run)
    loader.start()
    try:
        assert paused.wait(timeout=60)
        with session_scope(fresh_url) as session:
            during = store_counts(session)
    finally:
        resume.set()
        loader.join(timeout=120)
    assert failures == []
    assert (during["users"], during["items"], during["interactions"]) == (1, 1, 1)
    with session_scope(fresh_url) as session:
        after = store_counts(session)
    assert (after["users"], after["items"], after["interactions"]) == (2001, 2, 2001)
