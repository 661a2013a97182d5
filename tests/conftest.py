"""Fixtures shared by the whole suite: real datasets, real servers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("HYBREC_SHARED_DATA_DIR", REPO_ROOT.parent / "shared" / "data")).resolve()
POSTGRES_URL = os.environ.get("HYBREC_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("HYBREC_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


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


def _free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def chroma_server(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """URL of a Chroma server started for this test session (``chroma run`` from the venv), stopped afterwards."""
    import shutil
    import subprocess
    import sys
    import time

    import httpx

    executable = Path(sys.executable).parent / "chroma"
    if not executable.exists():
        found = shutil.which("chroma")
        if found is None:
            pytest.fail(f"the chroma executable is missing (looked next to {sys.executable} and on PATH)")
        executable = Path(found)
    data_dir = tmp_path_factory.mktemp("chroma")
    port = _free_port()
    log_path = data_dir / "server.log"
    url = f"http://127.0.0.1:{port}"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [str(executable), "run", "--path", str(data_dir / "db"), "--host", "127.0.0.1", "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                pytest.fail(f"chroma run exited with {process.returncode}: {log_path.read_text()[-2000:]}")
            try:
                if httpx.get(f"{url}/api/v2/heartbeat", timeout=1.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"chroma server at {url} did not answer its heartbeat within 60 s")
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# --- relational store (hybrec.store) -------------------------------------------------------------------------------


def create_postgres_database(prefix: str = "hybrec_test") -> str:
    """A new, empty, uniquely named database on the test server; returns its URL (drop it with
    :func:`drop_postgres_database`)."""
    import uuid

    from sqlalchemy import create_engine, make_url

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = create_engine(make_url(POSTGRES_URL).set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    finally:
        admin.dispose()
    return make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)


def drop_postgres_database(url: str) -> None:
    from sqlalchemy import create_engine, make_url

    from hybrec.store.engine import dispose_engine

    dispose_engine(url)
    admin = create_engine(make_url(url).set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)')
    finally:
        admin.dispose()


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
