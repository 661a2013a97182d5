"""The stores of a local production run: a PostgreSQL database (given, or created on the local server), a Redis
(given, or a private ``redis-server``) and the checks the supervisor waits on."""

from __future__ import annotations

import logging

from sqlalchemy import create_engine, make_url, text
from sqlalchemy.exc import SQLAlchemyError

log = logging.getLogger(__name__)

DEFAULT_POSTGRES_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
DEFAULT_DATABASE = "hybrec_local"


class StoreUnavailable(RuntimeError):
    """A store the topology needs cannot be reached or prepared."""


def display_url(url: str) -> str:
    """``url`` with its password masked, for logs and the printed summary."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not an SQLAlchemy URL (redis://, http://): show it as given, minus any password
        scheme, sep, rest = url.partition("://")
        if sep and "@" in rest and ":" in rest.split("@", 1)[0]:
            user = rest.split("@", 1)[0].split(":", 1)[0]
            return f"{scheme}://{user}:***@{rest.split('@', 1)[1]}"
        return url


def ensure_postgres_database(server_url: str, name: str) -> str:
    """The URL of database ``name`` on the server of ``server_url``, created when it does not exist yet.

    Parameters
    ----------
    server_url : str
        Any SQLAlchemy PostgreSQL URL of the server (its database part is replaced by ``name``); the role needs
        CREATEDB when the database is missing.
    name : str
        Database name: letters, digits and underscores only (it is quoted into CREATE DATABASE).

    Raises
    ------
    StoreUnavailable
        When the server cannot be reached or the database cannot be created.
    """
    if not name.replace("_", "").isalnum():
        raise ValueError(f"database name {name!r}: use letters, digits and underscores only")
    admin_url = make_url(server_url).set(database="postgres")
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            exists = connection.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).first()
            if exists is None:
                connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
                log.info("created database %s", name)
    except SQLAlchemyError as exc:
        raise StoreUnavailable(f"PostgreSQL at {display_url(str(admin_url))}: {str(exc).splitlines()[0]}") from exc
    finally:
        admin.dispose()
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


def check_database(url: str) -> None:
    """Raise :class:`StoreUnavailable` unless ``SELECT 1`` works on ``url``."""
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        raise StoreUnavailable(f"database {display_url(url)}: {str(exc).splitlines()[0]}") from exc
    finally:
        engine.dispose()


def redis_answers(url: str) -> bool:
    """Whether the Redis at ``url`` answers PING."""
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=1.0, socket_timeout=1.0)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def live_model_version(database_url: str) -> int | None:
    """The store's active model version (what ``hybrec model active`` prints); None when there is none yet, or the
    store cannot be read (no schema yet, the server busy): the trainer is not ready then."""
    from hybrec.store.engine import session_scope
    from hybrec.store.model_versions import active_model_version

    try:
        with session_scope(database_url) as session:
            row = active_model_version(session)
            return None if row is None else int(row.id)
    except SQLAlchemyError:
        return None
