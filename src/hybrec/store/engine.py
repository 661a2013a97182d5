"""Engines and sessions for the store, one engine per database URL per process.

SQLite gets WAL journaling, foreign keys and a busy timeout on every connection (so the API and the trainer can share
one file), and its parent folder is created on first use. PostgreSQL URLs are used as given (psycopg 3 driver).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, make_url
from sqlalchemy.orm import Session, sessionmaker

_ENGINES: dict[str, Engine] = {}
#: Pooled connections of a SQLite file database (see :func:`create_store_engine`).
SQLITE_POOL_SIZE = 40
_LOCK = threading.Lock()


def is_sqlite(database_url: str) -> bool:
    return make_url(database_url).get_backend_name() == "sqlite"


def public_error_name(exc: Exception) -> str:
    """What an HTTP answer may say of a store error: the driver's error class. Its text names the server (host,
    port, user), so it is logged here and never sent to a client."""
    original = getattr(exc, "orig", None) or exc
    logging.getLogger(__name__).warning("relational store error: %s", str(original).strip().splitlines()[:1])
    return type(original).__name__


#: How much of a SQLite store's file a connection reads through a memory map (PRAGMA mmap_size).
SQLITE_MMAP_BYTES = 1 << 30


def _enable_sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA temp_store=MEMORY")  # the bulk loader's staging tables
        # Read pages through a memory map instead of a read() call per page that misses the connection's 2 MB page
        # cache: the recommendation request's read of a user's events touches a dozen pages of a store far larger
        # than that (42 -> 30 us per read of the benchmark's 55 MB store, in a loop; more under load). Address
        # space only; SQLite maps at most the file's size.
        cursor.execute(f"PRAGMA mmap_size={SQLITE_MMAP_BYTES}")
    finally:
        cursor.close()


def create_store_engine(database_url: str) -> Engine:
    """A new engine for ``database_url``; creates a SQLite file's parent folder. Prefer :func:`get_engine`."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        pool: dict[str, int] = {}
        if url.database and url.database != ":memory:":
            # A file database gets a queue pool. The API reads from up to 40 request threads (anyio's thread pool);
            # with SQLAlchemy's default 5 + 10 overflow, the overflow connections were opened (five PRAGMAs) and
            # closed again on every request under load. An idle SQLite connection costs a file handle and a page
            # cache, so keep enough of them.
            pool = {"pool_size": SQLITE_POOL_SIZE, "max_overflow": 10}
            if not url.database.startswith("file:"):
                Path(url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30}, **pool)
        event.listen(engine, "connect", _enable_sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True)


def get_engine(database_url: str) -> Engine:
    """The process-wide engine for ``database_url`` (created on first use)."""
    with _LOCK:
        engine = _ENGINES.get(database_url)
        if engine is None:
            engine = _ENGINES[database_url] = create_store_engine(database_url)
        return engine


def dispose_engine(database_url: str) -> None:
    """Close the pooled connections of ``database_url``'s engine and forget it (tests dropping a database use it)."""
    with _LOCK:
        engine = _ENGINES.pop(database_url, None)
    if engine is not None:
        engine.dispose()


def session_factory(database_url: str) -> sessionmaker[Session]:
    return sessionmaker(get_engine(database_url), expire_on_commit=False)


@contextmanager
def session_scope(database_url: str) -> Iterator[Session]:
    """A session committed on success and rolled back on any exception."""
    session = session_factory(database_url)()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
