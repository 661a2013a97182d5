"""Fixtures shared by the whole suite: real datasets, real servers."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# Plain helpers live in servers.py: a test module importing `from conftest import ...` gets whichever
# conftest.py was imported first under that name, so nothing may be imported from a conftest.
from servers import (  # noqa: F401  (re-exported for fixtures below)
    POSTGRES_URL,
    REDIS_URL,
    SHARED_DATA,
    create_postgres_database,
    drop_postgres_database,
    find_free_port,
    running_server,
)


def require_shared(relative: str) -> Path:
    """The path of a dataset under ../shared/data; skips the test when absent, fails in CI."""
    path = SHARED_DATA / relative
    if not path.exists():
        message = f"dataset {path} is missing"
        if os.environ.get("HYBREC_REQUIRE_SHARED_DATA") == "1":
            pytest.fail(message + " and HYBREC_REQUIRE_SHARED_DATA=1")
        pytest.skip(message)
    return path


@pytest.fixture
def movielens_100k() -> Path:
    return require_shared("movielens-100k")


@pytest.fixture
def movielens_latest_small() -> Path:
    return require_shared("movielens-latest-small")


@pytest.fixture
def amazon_gift_cards() -> Path:
    return require_shared("amazon/gift_cards_2018")


@pytest.fixture
def amazon_industrial() -> Path:
    return require_shared("amazon/industrial_scientific_2018")


# --- Chroma server (hybrec.vectors) --------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def chroma_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a Chroma server started for this test session (``chroma run`` from the venv), stopped afterwards."""
    executable = Path(sys.executable).parent / "chroma"
    if not executable.exists():
        found = shutil.which("chroma")
        if found is None:
            pytest.fail(f"the chroma executable is missing (looked next to {sys.executable} and on PATH)")
        executable = Path(found)
    data_dir = tmp_path_factory.mktemp("chroma")
    port = find_free_port()
    url = f"http://127.0.0.1:{port}"
    command = [str(executable), "run", "--path", str(data_dir / "db"), "--host", "127.0.0.1", "--port", str(port)]
    with running_server(command, f"{url}/api/v2/heartbeat", data_dir / "server.log", what="chroma run"):
        yield url


# --- relational store (hybrec.store) -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_store_session():  # type: ignore[no-untyped-def]
    """URL of a PostgreSQL database created (and migrated) for this test session, dropped afterwards."""
    from hybrec.store.migrate import upgrade

    url = create_postgres_database()
    try:
        upgrade(url)
        yield url
    finally:
        drop_postgres_database(url)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.integration)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty, migrated store on each backend: a fresh SQLite file, or the session's PostgreSQL database emptied."""
    from hybrec.store.engine import get_engine
    from hybrec.store.migrate import upgrade

    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'store' / 'hybrec.db'}"
        upgrade(url)
        return url
    url = request.getfixturevalue("postgres_store_session")
    with get_engine(url).begin() as connection:
        connection.exec_driver_sql(
            "TRUNCATE users, items, interactions, chat_sessions, chat_messages, model_versions RESTART IDENTITY CASCADE"
        )
    return url
