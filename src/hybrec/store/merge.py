"""Set-based merge of the staging tables into the store (the second half of a bulk load).

Every statement is ``INSERT ... SELECT ... ON CONFLICT`` or ``UPDATE ... FROM``, so a load costs a handful of round
trips whatever its size. On PostgreSQL a large load (see :data:`REBUILD_MIN_ROWS`) drops the foreign keys, the
unique idempotency key and the secondary indexes of ``interactions`` for the insert and rebuilds them afterwards,
inside the same transaction: row-by-row foreign-key triggers and index maintenance otherwise dominate the load time
(the PostgreSQL manual, "Populating a Database", 14.4). That takes an exclusive lock on ``interactions`` (and blocks
writes to ``users`` and ``items``) until the ingest commits; smaller loads keep everything in place.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import ForeignKeyConstraint, Table, UniqueConstraint, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.schema import AddConstraint, CreateIndex, DropConstraint, DropIndex

from hybrec.data.records import DataError, ErrorCollector, RowError
from hybrec.store.models import Interaction
from hybrec.store.staging import StagingBackend

log = logging.getLogger(__name__)

MAX_REPORTED_MISSING = 1_000
# Rebuild interactions' foreign keys and secondary indexes when a load inserts at least this many rows and at least
# a quarter of the table's current size (rebuilding costs a pass over the whole table).
REBUILD_MIN_ROWS = 50_000


@dataclass(slots=True)
class TableCounts:
    """What happened to one table: records read from the source, rows inserted, existing rows updated, rows skipped."""

    read: int = 0
    inserted: int = 0
    updated: int = 0
    skipped: int = 0


@dataclass(slots=True)
class LoadCounts:
    users: TableCounts = field(default_factory=TableCounts)
    items: TableCounts = field(default_factory=TableCounts)
    interactions: TableCounts = field(default_factory=TableCounts)
    skipped_rows: list[RowError] = field(default_factory=list)



def merge_users(backend: StagingBackend, counts: LoadCounts, stamp: datetime) -> None:
    """Merge the attributes of staged users that exist, insert the new ones and those only named by interactions.

    New rows are found with an anti-join first rather than left to ``ON CONFLICT``: a conflicting speculative insert
    costs far more than an index probe, and on a re-ingest every row would conflict.
    """
    new_only = "WHERE NOT EXISTS (SELECT 1 FROM users u WHERE u.external_id = {column})"
    merged = backend.merge_json("users.attributes", "s.attributes")
    counts.users.updated = backend.execute(
        f"""UPDATE users SET attributes = {merged}
            FROM stage_users s
            WHERE users.external_id = s.external_id AND s.attributes <> {backend.empty_object}
              AND {backend.differs(backend.json_canonical(merged), backend.json_canonical("users.attributes"))}"""
    )
    counts.users.inserted = backend.execute(
        f"""INSERT INTO users (external_id, attributes, created_at)
            SELECT s.external_id, s.attributes, :stamp FROM stage_users s {new_only.format(column="s.external_id")}
            ON CONFLICT (external_id) DO NOTHING""",
        stamp=stamp,
    )
    counts.users.inserted += backend.execute(
        f"""INSERT INTO users (external_id, attributes, created_at)
            SELECT DISTINCT s.user_ext, {backend.empty_object}, :stamp FROM stage_interactions s
            {new_only.format(column="s.user_ext")}
            ON CONFLICT (external_id) DO NOTHING""",
        stamp=stamp,
    )


def merge_items(backend: StagingBackend, counts: LoadCounts, stamp: datetime) -> None:
    """Upsert the staged items: non-null fields overwrite, nulls never erase; placeholders only fill gaps.

    A described item whose merged fields equal the stored ones is left alone (not counted as updated, its
    ``updated_at`` kept), so that re-ingesting a dataset reports no change and the catalog index has nothing to redo.
    """
    staged = backend.scalar("SELECT count(*) FROM stage_items")
    existing = backend.scalar("SELECT count(*) FROM stage_items s JOIN items i ON i.external_id = s.external_id")
    described_new = backend.scalar(
        "SELECT count(*) FROM stage_items s WHERE NOT s.placeholder "
        "AND NOT EXISTS (SELECT 1 FROM items i WHERE i.external_id = s.external_id)"
    )
    counts.items.inserted = staged - existing
    merged_attributes = backend.merge_json("items.attributes")
    merged_features = (
        f"CASE WHEN excluded.features <> {backend.empty_list} THEN excluded.features ELSE items.features END"
    )
    changed = " OR ".join(
        [
            backend.differs("excluded.name", "items.name"),
            *(
                backend.differs(f"COALESCE(excluded.{column}, items.{column})", f"items.{column}")
                for column in ("category", "brand", "description", "price", "avg_rating")
            ),
            f"(excluded.avg_rating IS NOT NULL AND {backend.differs('excluded.num_ratings', 'items.num_ratings')})",
            *(
                backend.differs(backend.json_canonical(merged), backend.json_canonical(f"items.{column}"))
                for merged, column in ((merged_features, "features"), (merged_attributes, "attributes"))
            ),
        ]
    )
    insert = """INSERT INTO items (external_id, name, category, brand, description, features, price, avg_rating,
                                   num_ratings, attributes, updated_at)
                SELECT external_id, name, category, brand, description, features, price, avg_rating, num_ratings,
                       attributes, :stamp
                FROM stage_items"""
    # The statement's row count is the described items inserted plus those really updated.
    written = backend.execute(
        f"""{insert} WHERE NOT placeholder
            ON CONFLICT (external_id) DO UPDATE SET
                name = excluded.name,
                category = COALESCE(excluded.category, items.category),
                brand = COALESCE(excluded.brand, items.brand),
                description = COALESCE(excluded.description, items.description),
                features = {merged_features},
                price = COALESCE(excluded.price, items.price),
                avg_rating = COALESCE(excluded.avg_rating, items.avg_rating),
                num_ratings = CASE WHEN excluded.avg_rating IS NOT NULL
                                   THEN excluded.num_ratings ELSE items.num_ratings END,
                attributes = {merged_attributes},
                updated_at = excluded.updated_at
            WHERE {changed}""",
        stamp=stamp,
    )
    counts.items.updated = written - described_new
    # A placeholder (an id the interactions name but no metadata describes) never overwrites a described item.
    backend.execute(f"{insert} WHERE placeholder ON CONFLICT (external_id) DO NOTHING", stamp=stamp)


def check_missing_items(backend: StagingBackend, counts: LoadCounts, errors: ErrorCollector) -> None:
    missing_sql = "NOT EXISTS (SELECT 1 FROM items i WHERE i.external_id = s.item_ext)"
    rows = backend.connection.execute(
        text(
            f"SELECT s.src_file, s.src_line, s.item_ext FROM stage_interactions s WHERE {missing_sql} "
            f"ORDER BY s.src_file, s.src_line LIMIT {MAX_REPORTED_MISSING}"
        )
    ).all()
    if not rows:
        return
    files = backend.source_files
    problems = [
        RowError(files[file], line, "item_id",
                 f"item {item!r} is absent from the catalog (not in this dataset nor the store)")
        for file, line, item in rows
    ]
    if not errors.skip_invalid:
        raise DataError(problems)
    errors.errors.extend(problems)
    skipped = backend.execute("DELETE FROM stage_interactions WHERE NOT EXISTS "
                              "(SELECT 1 FROM items i WHERE i.external_id = stage_interactions.item_ext)")
    counts.interactions.skipped += skipped
    if skipped > len(problems):
        log.warning("skipped %d interactions naming absent items; %d listed", skipped, len(problems))


_INSERT_INTERACTIONS = """
    INSERT INTO interactions (user_id, item_id, kind, rating, weight, review_text, verified, ts, idempotency_key,
                              created_at)
    SELECT {distinct} u.id, i.id, s.kind, s.rating, s.weight, s.review_text, s.verified, s.ts, s.idempotency_key,
           :stamp
    FROM stage_interactions s
    JOIN users u ON u.external_id = s.user_ext
    JOIN items i ON i.external_id = s.item_ext
    WHERE {where}
"""


def merge_interactions(backend: StagingBackend, counts: LoadCounts, stamp: datetime) -> None:
    staged = backend.scalar("SELECT count(*) FROM stage_interactions")
    if backend.postgres and staged >= REBUILD_MIN_ROWS and staged * 4 >= _estimated_rows(backend):
        counts.interactions.inserted = _insert_and_rebuild(backend, staged, stamp)
        return
    counts.interactions.inserted = backend.execute(
        _INSERT_INTERACTIONS.format(distinct="", where="true") + " ON CONFLICT (idempotency_key) DO NOTHING",
        stamp=stamp,
    )


def _insert_and_rebuild(backend: StagingBackend, staged: int, stamp: datetime) -> int:
    """PostgreSQL bulk path: insert with constraints and indexes dropped, then rebuild them (sort-based, set-based).

    Idempotency is an anti-join against the rows already stored; the rebuilt unique constraint then proves that the
    staged keys were distinct too. Only if they were not (a source repeating an event verbatim) is the insert redone
    with ``DISTINCT ON`` - the sort it needs is skipped in the common case.
    """
    log.info("large load (%d interactions): rebuilding constraints and indexes of interactions after it", staged)
    connection = backend.connection
    table = Interaction.__table__
    assert isinstance(table, Table)
    foreign_keys = [c for c in table.constraints if isinstance(c, ForeignKeyConstraint)]
    unique = next(c for c in table.constraints if isinstance(c, UniqueConstraint))
    for fk in foreign_keys:
        connection.execute(DropConstraint(fk))
    for index in table.indexes:
        connection.execute(DropIndex(index))
    connection.execute(DropConstraint(unique))
    connection.exec_driver_sql("SET LOCAL maintenance_work_mem = '256MB'")
    not_stored = "NOT EXISTS (SELECT 1 FROM interactions x WHERE x.idempotency_key = s.idempotency_key)"
    started = time.perf_counter()
    try:
        with connection.begin_nested():
            inserted = backend.execute(_INSERT_INTERACTIONS.format(distinct="", where=not_stored), stamp=stamp)
            log.debug("insert without constraints: %.2fs", time.perf_counter() - started)
            connection.execute(AddConstraint(unique))
    except IntegrityError:
        log.info("staged interactions repeat idempotency keys; inserting each key once")
        inserted = backend.execute(
            _INSERT_INTERACTIONS.format(distinct="DISTINCT ON (s.idempotency_key)", where=not_stored), stamp=stamp
        )
        connection.execute(AddConstraint(unique))
    log.debug("insert + unique constraint: %.2fs", time.perf_counter() - started)
    for index in table.indexes:
        connection.execute(CreateIndex(index))
    log.debug("+ indexes: %.2fs", time.perf_counter() - started)
    for fk in foreign_keys:  # re-adding validates every row in one set-based pass
        connection.execute(AddConstraint(fk))
    log.debug("+ foreign keys: %.2fs", time.perf_counter() - started)
    return inserted


def _estimated_rows(backend: StagingBackend) -> int:
    """The planner's estimate of the interactions row count (cheap; -1 = never analysed, taken as 0)."""
    estimate = backend.scalar("SELECT reltuples FROM pg_class WHERE oid = 'interactions'::regclass")
    return max(int(estimate or 0), 0)


def recompute_item_ratings(backend: StagingBackend) -> None:
    """Average rating and rating count of every item that received a rating in this load, from all its ratings."""
    backend.execute(
        """UPDATE items SET avg_rating = agg.avg_rating, num_ratings = agg.num_ratings
           FROM (SELECT x.item_id, avg(x.rating) AS avg_rating, count(x.rating) AS num_ratings
                 FROM interactions x
                 WHERE x.rating IS NOT NULL AND x.item_id IN (
                     SELECT i.id FROM items i
                     WHERE i.external_id IN (SELECT item_ext FROM stage_interactions WHERE rating IS NOT NULL))
                 GROUP BY x.item_id) AS agg
           WHERE items.id = agg.item_id"""
    )
