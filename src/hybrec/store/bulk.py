"""Bulk loading of dataset records into the store: stage, check, merge - in one transaction.

Records are streamed into temporary staging tables (PostgreSQL: binary ``COPY ... FROM STDIN`` through psycopg 3;
SQLite: batched ``executemany``), then merged into the real tables with set-based ``INSERT ... SELECT ... ON
CONFLICT`` statements (:mod:`hybrec.store.merge`; on PostgreSQL a large load rebuilds the constraints and indexes of
``interactions`` instead of maintaining them row by row):

* users and items are upserted on ``external_id``; for items a later file's non-null fields overwrite, nulls (and an
  empty feature list) never erase what the store already has, and a placeholder item (:func:`is_placeholder`: an id
  the interactions name but no metadata describes) is only inserted when the item is new;
* users that appear only in interactions are created;
* interactions are inserted with ``ON CONFLICT (idempotency_key) DO NOTHING``. When the source gives no key, one is
  derived deterministically (:func:`derive_idempotency_key`), so re-ingesting the same file inserts nothing and a
  second dataset adds to the first;
* an interaction naming an item absent from both this dataset and the store is a :class:`DataError` naming its file
  and line (or is skipped and reported when the collector skips invalid rows);
* ``items.avg_rating`` / ``num_ratings`` are recomputed in SQL for the items that received ratings.

Atomicity: the caller runs :func:`load_source` inside ONE transaction covering staging and merge. Any exception -
a reader's :class:`DataError` mid-stream, a missing item, a server error - rolls the whole ingest back, so the store
is exactly as before. That holds the write lock for the duration of an ingest (seconds to a minute at these sizes),
which is the price of never leaving a half-written dataset behind.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import Connection
from tqdm import tqdm

from hybrec.data.records import (
    ErrorCollector,
    InteractionRecord,
    ItemRecord,
    SourceData,
    UserRecord,
)
from hybrec.store.merge import (
    LoadCounts,
    TableCounts,
    check_missing_items,
    merge_interactions,
    merge_items,
    merge_users,
    recompute_item_ratings,
)
from hybrec.store.models import to_utc
from hybrec.store.staging import INTERACTION_COLUMNS, ITEM_COLUMNS, USER_COLUMNS, StagingBackend

__all__ = ["LoadCounts", "TableCounts", "derive_idempotency_key", "load_source"]

log = logging.getLogger(__name__)
T = TypeVar("T")


def derive_idempotency_key(source: str, user_id: str, item_id: str, kind: str, ts: datetime) -> str:
    """The natural key of an interaction without one: sha1 of ``source|user|item|kind|ts`` (ts in UTC, ISO 8601)."""
    raw = f"{source}|{user_id}|{item_id}|{kind}|{to_utc(ts).isoformat()}"
    return hashlib.sha1(raw.encode("utf-8")).hexdigest()


@contextmanager
def _timed(phase: str) -> Iterator[None]:
    started = time.perf_counter()
    yield
    log.debug("bulk load: %s took %.2fs", phase, time.perf_counter() - started)


def _progress(records: Iterable[T], desc: str, enabled: bool) -> Iterable[T]:
    if not enabled:
        return records  # not even a disabled bar's pass-through loop around the stream
    # disable=None: shown on a terminal only, so logs and CI output stay clean.
    return tqdm(records, desc=desc, unit=" rows", disable=None if enabled else True, mininterval=0.5, leave=False)


def _collect_users(users: Iterable[UserRecord]) -> tuple[dict[str, dict[str, Any]], int]:
    merged: dict[str, dict[str, Any]] = {}
    n = 0
    for user in users:
        n += 1
        merged.setdefault(user.external_id, {}).update(user.attributes)
    return merged, n


def _collect_items(items: Iterable[ItemRecord]) -> tuple[dict[str, ItemRecord], int]:
    merged: dict[str, ItemRecord] = {}
    n = 0
    for item in items:
        n += 1
        previous = merged.get(item.external_id)
        merged[item.external_id] = item if previous is None else _merge_item(previous, item)
    return merged, n


def is_placeholder(item: ItemRecord) -> bool:
    """An item a reader made up for an id its interactions name but no metadata describes (``metadata: False``)."""
    return item.attributes.get("metadata") is False or not item.name or item.name == item.external_id


def _merge_item(old: ItemRecord, new: ItemRecord) -> ItemRecord:
    """``new`` over ``old`` with the store's upsert rule: non-null fields win, nulls never erase."""
    if is_placeholder(new):
        return old
    if is_placeholder(old):
        return new
    return ItemRecord(
        external_id=new.external_id,
        name=new.name,
        category=new.category if new.category is not None else old.category,
        brand=new.brand if new.brand is not None else old.brand,
        description=new.description if new.description is not None else old.description,
        features=new.features or old.features,
        price=new.price if new.price is not None else old.price,
        avg_rating=new.avg_rating if new.avg_rating is not None else old.avg_rating,
        num_ratings=new.num_ratings if new.avg_rating is not None else old.num_ratings,
        attributes={**old.attributes, **new.attributes},
    )


def _interaction_rows(
    interactions: Iterable[InteractionRecord], source: str, backend: StagingBackend, counts: TableCounts
) -> Iterator[tuple[Any, ...]]:
    # The hot loop of a load (once per interaction): locals only, no helper calls on the common path. The key is
    # derive_idempotency_key inlined; tests/store/test_bulk.py checks that the two agree. The source file is staged
    # as its number in backend.source_files (a file name repeated on every row would be most of the COPY stream).
    ts_value = backend.ts_value
    postgres = backend.postgres
    sha1 = hashlib.sha1
    utc_zone = UTC
    files = backend.source_files
    numbers: dict[str, int] = {}
    last_file: object = numbers  # a sentinel no record's source_file is
    last_number = -1
    ordinal = 0
    for ordinal, rec in enumerate(interactions, start=1):
        ts = rec.ts
        zone = ts.tzinfo
        utc = ts if zone is utc_zone else ts.replace(tzinfo=utc_zone) if zone is None else ts.astimezone(utc_zone)
        key = rec.idempotency_key or sha1(
            f"{source}|{rec.user_id}|{rec.item_id}|{rec.kind}|{utc.isoformat()}".encode()
        ).hexdigest()
        file = rec.source_file
        if file is not last_file:
            last_file = file
            name = file or source
            last_number = numbers.get(name, -1)
            if last_number < 0:
                last_number = numbers[name] = len(files)
                files.append(name)
        yield (
            rec.user_id, rec.item_id, rec.kind, rec.rating, rec.weight, rec.review_text, rec.verified,
            utc if postgres else ts_value(utc), key, last_number,
            rec.source_line if rec.source_line is not None else ordinal,
        )
    counts.read = ordinal


def load_source(
    connection: Connection,
    source: SourceData,
    errors: ErrorCollector,
    *,
    progress: bool = True,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> LoadCounts:
    """Stage and merge ``source`` on ``connection``, which must be inside a transaction the caller commits.

    Raises
    ------
    DataError
        From a reader (bad row, unless ``errors.skip_invalid``) or for interactions naming an item absent from the
        catalog. The caller must roll back; nothing is merged before every stream has been read.
    """
    backend = StagingBackend(connection)
    counts = LoadCounts()
    backend.create_staging()
    try:
        with _timed("stage"):
            _stage_all(backend, source, counts, progress)
        stamp = now()
        with _timed("merge users"):
            merge_users(backend, counts, stamp)
        with _timed("merge items"):
            merge_items(backend, counts, stamp)
        with _timed("check missing items"):
            check_missing_items(backend, counts, errors)
        with _timed("merge interactions"):
            merge_interactions(backend, counts, stamp)
        with _timed("recompute item ratings"):
            recompute_item_ratings(backend)
    finally:
        backend.drop_staging()
    counts.skipped_rows = list(errors.errors)
    return counts


def _stage_all(backend: StagingBackend, source: SourceData, counts: LoadCounts, progress: bool) -> None:
    # Staging order does not matter to the merge, which starts only when all three are staged; a reader that
    # derives its users and items from its interaction pass asks for interactions first (SourceData docs).
    if source.interactions_first:
        _stage_interactions(backend, source, counts, progress)
    users, counts.users.read = _collect_users(_progress(source.users, f"{source.name}: users", progress))
    json_value = backend.json_value
    backend.stage("stage_users", USER_COLUMNS, ((ext, json_value(attrs)) for ext, attrs in users.items()))
    items, counts.items.read = _collect_items(_progress(source.items, f"{source.name}: items", progress))
    backend.stage(
        "stage_items",
        ITEM_COLUMNS,
        (
            (
                it.external_id, it.name, it.category, it.brand, it.description, json_value(it.features), it.price,
                it.avg_rating, it.num_ratings, json_value(it.attributes), is_placeholder(it),
            )
            for it in items.values()
        ),
    )
    if not source.interactions_first:
        _stage_interactions(backend, source, counts, progress)
    if backend.postgres:
        # Temporary tables are never auto-analysed; without statistics the merge joins get poor plans.
        backend.connection.exec_driver_sql("ANALYZE stage_users, stage_items, stage_interactions")
    log.info(
        "%s: staged %d users, %d items, %d interactions",
        source.name, len(users), len(items), counts.interactions.read,
    )


def _stage_interactions(backend: StagingBackend, source: SourceData, counts: LoadCounts, progress: bool) -> None:
    rows = _interaction_rows(
        _progress(source.interactions, f"{source.name}: interactions", progress),
        source.name,
        backend,
        counts.interactions,
    )
    backend.stage("stage_interactions", INTERACTION_COLUMNS, rows)
