"""One trainer publishes at a time: a PostgreSQL advisory lock in production, a file lock next to the SQLite file.

``pg_try_advisory_lock`` is held by a database *session*, so the lock lives on one dedicated connection kept open for
the whole run and released (or dropped with the connection, if the process dies) at the end. SQLite has no advisory
locks; ``fcntl.flock`` on ``<database file>.trainer.lock`` (next to the SQLite file, so every process sharing that
store shares the lock, whatever its ``var_dir``) gives the same guarantee to every process on the machine, and the
kernel releases it when the holder dies. An in-memory SQLite store locks ``<var_dir>/trainer.lock``.
"""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import make_url, text

from hybrec.store.engine import get_engine, is_sqlite

log = logging.getLogger(__name__)

# An arbitrary constant 64-bit key that names "the hybrec trainer" among the database's advisory locks.
TRAINER_LOCK_KEY = 0x6879_6272_6563_0001


class TrainerBusy(RuntimeError):
    """Another trainer holds the publish lock."""


@contextmanager
def trainer_lock(database_url: str, var_dir: Path) -> Iterator[None]:
    """Hold the trainer lock for the block; :class:`TrainerBusy` when another trainer has it (never waits)."""
    if is_sqlite(database_url):
        with _file_lock(_sqlite_lock_path(database_url, Path(var_dir))):
            yield
    else:
        with _advisory_lock(database_url):
            yield


def _sqlite_lock_path(database_url: str, var_dir: Path) -> Path:
    database = make_url(database_url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return var_dir / "trainer.lock"
    return Path(database).expanduser().with_name(Path(database).name + ".trainer.lock")


@contextmanager
def _advisory_lock(database_url: str) -> Iterator[None]:
    with get_engine(database_url).connect() as connection:
        acquired = connection.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": TRAINER_LOCK_KEY}).scalar()
        connection.commit()
        if not acquired:
            raise TrainerBusy("another trainer holds the PostgreSQL advisory lock; not training now")
        try:
            yield
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": TRAINER_LOCK_KEY})
            connection.commit()


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise TrainerBusy(f"another trainer holds {path}; not training now") from exc
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
