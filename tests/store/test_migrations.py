"""The packaged Alembic migrations create exactly the models' schema, on SQLite and PostgreSQL, and run anywhere."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from hybrec.store.engine import get_engine
from hybrec.store.migrate import alembic_config, current_revision, head_revision, upgrade
from hybrec.store.models import Base
from servers import create_postgres_database, drop_postgres_database

TABLES = {"users", "items", "interactions", "chat_sessions", "chat_messages", "model_versions"}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.integration)])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'nested' / 'dirs' / 'hybrec.db'}"  # parent folders do not exist yet
        return
    url = create_postgres_database()
    try:
        yield url
    finally:
        drop_postgres_database(url)


def _diff(url: str) -> list[object]:
    with get_engine(url).connect() as connection:
        return compare_metadata(MigrationContext.configure(connection, opts={"compare_type": True}), Base.metadata)


def test_upgrade_creates_the_models_schema_and_round_trips(empty_url: str) -> None:
    assert current_revision(empty_url) is None
    upgrade(empty_url)
    assert current_revision(empty_url) == head_revision()
    assert set(inspect(get_engine(empty_url)).get_table_names()) >= TABLES
    assert _diff(empty_url) == []

    upgrade(empty_url)  # idempotent
    assert current_revision(empty_url) == head_revision()

    config = alembic_config(empty_url)
    with get_engine(empty_url).begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "base")
    assert not TABLES & set(inspect(get_engine(empty_url)).get_table_names())

    upgrade(empty_url)
    assert _diff(empty_url) == []


def test_sqlite_connections_use_wal_and_foreign_keys(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'a' / 'b.db'}"
    upgrade(url)
    with get_engine(url).connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_db_upgrade_works_from_any_working_directory(tmp_path: Path) -> None:
    """The migration scripts ship inside the package: no alembic.ini in the working directory is needed."""
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HYBREC_")}
    env["HYBREC_DATABASE_URL"] = "sqlite:///var/from-env.db"
    result = subprocess.run(
        [str(Path(sys.executable).parent / "hybrec"), "db", "upgrade"],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert (workdir / "var" / "from-env.db").is_file()
    assert current_revision(f"sqlite:///{workdir / 'var' / 'from-env.db'}") == head_revision()
