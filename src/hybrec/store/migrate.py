"""Programmatic Alembic migrations: the scripts ship inside the package, so ``hybrec db upgrade`` works from any
working directory and from an installed wheel (no ``alembic.ini`` needed)."""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from hybrec.store.engine import get_engine

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
_MIGRATION_LOCK_ID = 0x68796272  # "hybr": the advisory lock serialising concurrent upgrades on PostgreSQL


def alembic_config(database_url: str) -> Config:
    """An Alembic config pointing at the packaged migration scripts and ``database_url``."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # Alembic interpolates %-signs in options; a password may contain them.
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Bring the schema of ``database_url`` up to ``revision`` (default: the latest); a no-op when already there."""
    config = alembic_config(database_url)
    alembic_log = logging.getLogger("alembic")
    if alembic_log.level == logging.NOTSET:  # its per-step INFO lines are noise on every CLI command
        alembic_log.setLevel(logging.WARNING)
    with get_engine(database_url).begin() as connection:
        if connection.dialect.name == "postgresql":
            # Processes starting together (API, trainer) would otherwise race to create the same tables.
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK_ID})")
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
    log.debug("schema of %s at %s", _safe(database_url), revision)


def current_revision(database_url: str) -> str | None:
    """The revision the database is at, or None for an empty database."""
    with get_engine(database_url).connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def _safe(database_url: str) -> str:
    from sqlalchemy import make_url

    return make_url(database_url).render_as_string(hide_password=True)
