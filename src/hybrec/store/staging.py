"""Temporary staging tables for the bulk loader, and the SQL that differs between PostgreSQL and SQLite.

PostgreSQL stages with binary ``COPY ... FROM STDIN`` (psycopg 3 ``cursor.copy``); SQLite with batched
``executemany`` (batches of :data:`BATCH_SIZE`).
The staging tables live in the loading transaction (PostgreSQL: ``ON COMMIT DROP``; SQLite: dropped explicitly).
On PostgreSQL the loading transaction also sets :data:`POSTGRES_LOAD_SETTINGS` (``SET LOCAL``: nothing outlives it)
and, when the session has not used temporary tables yet, :data:`POSTGRES_TEMP_BUFFERS`, so a million staged rows
stay in memory instead of being written out and read back by every merge statement (about a third less server CPU
for a 1M-row load).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any, TypeVar

from psycopg.types.json import set_json_dumps
from sqlalchemy import Connection, bindparam, text
from sqlalchemy.exc import DBAPIError

from hybrec.store.models import UTCDateTime

log = logging.getLogger(__name__)

BATCH_SIZE = 10_000
T = TypeVar("T")

USER_COLUMNS = ["external_id", "attributes"]
ITEM_COLUMNS = [
    "external_id", "name", "category", "brand", "description", "features", "price", "avg_rating", "num_ratings",
    "attributes", "placeholder",
]
INTERACTION_COLUMNS = [
    "user_ext", "item_ext", "kind", "rating", "weight", "review_text", "verified", "ts", "idempotency_key",
    "src_file", "src_line",
]
# Settings of the PostgreSQL loading transaction only (SET LOCAL): the merge statements each touch every staged
# row, so JIT compilation costs more than it saves, and a larger work_mem keeps their hashes and sorts in memory.
# synchronous_commit off: the commit returns without waiting for the load's WAL (hundreds of MB for 1M rows) to reach
# disk. A server crash in the next fraction of a second can lose the whole ingest, never part of it (the store stays
# consistent), and re-running it is idempotent - the trade the PostgreSQL manual describes for bulk loads.
POSTGRES_LOAD_SETTINGS = {"jit": "off", "work_mem": "'128MB'", "synchronous_commit": "off"}
# An upper bound (about 1.5M staged interactions): local buffers are allocated as the staging tables grow, and kept
# by that server session until it closes.
POSTGRES_TEMP_BUFFERS = "256MB"
# Connection settings of a SQLite load (restored afterwards): a 256 MiB page cache. (Staging tables are in memory:
# engine.py sets temp_store=MEMORY on every connection, as it cannot change inside a transaction.)
SQLITE_LOAD_PRAGMAS = {"cache_size": -262_144}
# PostgreSQL types of the staging columns, in column order, for binary COPY.
COPY_TYPES: dict[str, list[str]] = {
    "stage_users": ["text", "jsonb"],
    "stage_items": ["text", "text", "text", "text", "text", "jsonb", "float8", "float8", "int4", "jsonb", "bool"],
    "stage_interactions": [
        "text", "text", "text", "float8", "float8", "text", "bool", "timestamptz", "text", "int4", "int4",
    ],
}


class StagingBackend:
    """The SQL that differs between PostgreSQL and SQLite."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        # The files the staged interactions came from; stage_interactions.src_file is an index into this list.
        self.source_files: list[str] = []
        self._saved_pragmas: dict[str, Any] = {}
        self.postgres = connection.dialect.name == "postgresql"
        if not self.postgres and connection.dialect.name != "sqlite":
            raise ValueError(f"bulk loading supports postgresql and sqlite, not {connection.dialect.name}")
        self.json_type = "jsonb" if self.postgres else "TEXT"
        self.ts_type = "timestamptz" if self.postgres else "TEXT"
        self.empty_object = "'{}'::jsonb" if self.postgres else "'{}'"
        self.key_collation = 'COLLATE "C"' if self.postgres else ""
        self.empty_list = "'[]'::jsonb" if self.postgres else "'[]'"

    def differs(self, left: str, right: str) -> str:
        """Null-safe inequality: ``IS DISTINCT FROM`` on PostgreSQL, ``IS NOT`` on SQLite (which has the former only
        since 3.39, while Python builds still link older libraries)."""
        return f"{left} IS DISTINCT FROM {right}" if self.postgres else f"{left} IS NOT {right}"

    def json_canonical(self, expression: str) -> str:
        """SQL for ``expression`` as comparable JSON: jsonb compares by value; SQLite's text needs ``json()``
        (minified), since the ORM writes ``{"a": 1}`` and ``json_patch`` returns ``{"a":1}``."""
        return expression if self.postgres else f"json({expression})"

    def merge_json(self, existing: str, incoming: str = "excluded.attributes") -> str:
        """SQL merging two JSON objects: keys of ``incoming`` overwrite, other keys of ``existing`` stay."""
        if self.postgres:
            return f"{existing} || {incoming}"
        return f"json_patch({existing}, {incoming})"

    def staging_tables(self) -> dict[str, str]:
        j, ts, c = self.json_type, self.ts_type, self.key_collation
        return {
            "stage_users": f"external_id TEXT {c} NOT NULL, attributes {j} NOT NULL",
            "stage_items": (
                f"external_id TEXT {c} NOT NULL, name TEXT NOT NULL, category TEXT, brand TEXT, description TEXT, "
                f"features {j} NOT NULL, price DOUBLE PRECISION, avg_rating DOUBLE PRECISION, "
                f"num_ratings INTEGER NOT NULL, attributes {j} NOT NULL, placeholder BOOLEAN NOT NULL"
            ),
            "stage_interactions": (
                f"user_ext TEXT {c} NOT NULL, item_ext TEXT {c} NOT NULL, kind TEXT NOT NULL, rating DOUBLE PRECISION, "
                f"weight DOUBLE PRECISION NOT NULL, review_text TEXT, verified BOOLEAN, ts {ts} NOT NULL, "
                f"idempotency_key TEXT {c} NOT NULL, src_file INTEGER NOT NULL, src_line INTEGER"
            ),
        }

    def create_staging(self) -> None:
        if not self.postgres:
            # SQLite's default page cache (2 MB) makes the random index inserts of a large load thrash the disk; a
            # big cache for the duration of the load makes it several times faster.
            self._saved_pragmas = {name: self.scalar(f"PRAGMA {name}") for name in SQLITE_LOAD_PRAGMAS}
            for name, value in SQLITE_LOAD_PRAGMAS.items():
                self.connection.exec_driver_sql(f"PRAGMA {name} = {value}")
        if self.postgres:
            for setting, setting_value in POSTGRES_LOAD_SETTINGS.items():
                self.connection.exec_driver_sql(f"SET LOCAL {setting} = {setting_value}")
            self._enlarge_temp_buffers()
        suffix = " ON COMMIT DROP" if self.postgres else ""
        for name, columns in self.staging_tables().items():
            self.connection.exec_driver_sql(f"DROP TABLE IF EXISTS {'' if self.postgres else 'temp.'}{name}")
            self.connection.exec_driver_sql(f"CREATE TEMP TABLE {name} ({columns}){suffix}")

    def _enlarge_temp_buffers(self) -> None:
        """Keep the staging tables in memory (PostgreSQL's default 8 MB of temp buffers spills a large load to disk).

        ``temp_buffers`` can only change before a session first touches a temporary table; on a pooled connection
        that already did, the current size stays (the SET fails inside a savepoint, leaving the transaction intact).
        """
        try:
            with self.connection.begin_nested():
                self.connection.exec_driver_sql(f"SET LOCAL temp_buffers = '{POSTGRES_TEMP_BUFFERS}'")
        except DBAPIError:
            log.debug("temp_buffers already fixed for this session; staging with the current size")

    def drop_staging(self) -> None:
        if self.postgres:  # PostgreSQL drops them on commit/rollback
            return
        for name in self.staging_tables():
            self.connection.exec_driver_sql(f"DROP TABLE IF EXISTS temp.{name}")
        for name, value in self._saved_pragmas.items():
            self.connection.exec_driver_sql(f"PRAGMA {name} = {int(value)}")

    def ts_value(self, utc: datetime) -> Any:
        """The staged form of an aware UTC timestamp."""
        # SQLite: the exact text SQLAlchemy's DateTime writes, so the ORM reads it back and text order is time order.
        return utc if self.postgres else utc.replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")

    def json_value(self, value: Any) -> Any:
        """The staged form of a JSON column: the object itself for binary COPY (psycopg encodes it), text for SQLite."""
        return value if self.postgres else json.dumps(value)

    def stage(self, table: str, columns: list[str], rows: Iterable[tuple[Any, ...]]) -> int:
        """Write ``rows`` into staging ``table``; returns how many."""
        n = 0
        if self.postgres:
            raw = self.connection.connection.driver_connection
            assert raw is not None
            # Binary COPY: about 2.5x less client CPU than text COPY for these rows (no number/date formatting).
            statement = f"COPY {table} ({', '.join(columns)}) FROM STDIN WITH (FORMAT BINARY)"
            with raw.cursor() as cursor:
                set_json_dumps(_dump_json, cursor)
                with cursor.copy(statement) as copy:
                    copy.set_types(COPY_TYPES[table])
                    for row in rows:
                        copy.write_row(row)
                        n += 1
            return n
        cursor = self.connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
        sql = f"INSERT INTO temp.{table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
        try:
            for batch in batches(rows, BATCH_SIZE):
                cursor.executemany(sql, batch)
                n += len(batch)
        finally:
            cursor.close()
        return n

    def execute(self, sql: str, **params: Any) -> int:
        statement = text(sql)
        if "stamp" in params:  # through the model's type, so SQLite stores the same text the ORM writes
            statement = statement.bindparams(bindparam("stamp", type_=UTCDateTime()))
        result = self.connection.execute(statement, params)
        return max(result.rowcount, 0)

    def scalar(self, sql: str, **params: Any) -> Any:
        return self.connection.execute(text(sql), params).scalar()



def _dump_json(value: Any) -> str:
    """``json.dumps``, short-cut for the empty object and list most staged users and items carry."""
    if not value and value.__class__ in (dict, list):
        return "{}" if value.__class__ is dict else "[]"
    return json.dumps(value)


def batches(rows: Iterable[T], size: int) -> Iterator[list[T]]:
    batch: list[T] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


