"""Small, tested queries the rest of hybrec runs against the store (training, serving, the events API, the CLI).

Functions take a :class:`~sqlalchemy.orm.Session` so that a caller can compose several in one transaction; the
caller commits (``hybrec.store.engine.session_scope`` does). External ids in, external ids out: integer keys stay
inside the store.
"""

from __future__ import annotations

import functools
import json
import threading
import weakref
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

import numpy as np
from sqlalchemy import Connection, Engine, Insert, PoolProxiedConnection, Select, bindparam, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from hybrec.data.records import InteractionRecord, interaction_value
from hybrec.store.engine import get_engine
from hybrec.store.models import ChatMessage, Interaction, Item, ModelVersion, User, to_utc, utcnow

_IN_CHUNK = 5_000  # ids per IN (...) list; SQLite allows 32766 bound parameters


class UnknownItemsError(LookupError):
    """Interactions named items the catalog does not have; nothing was inserted."""

    def __init__(self, item_ids: Sequence[str]) -> None:
        self.item_ids = list(item_ids)
        super().__init__(f"unknown item id(s): {', '.join(self.item_ids[:20])}")


@dataclass(frozen=True, slots=True)
class InteractionArrays:
    """Every stored interaction as parallel arrays (row i of each is one interaction), in time order."""

    user_ids: np.ndarray  # object array of external user ids
    item_ids: np.ndarray  # object array of external item ids
    kinds: np.ndarray  # object array
    ratings: np.ndarray  # float64, NaN where there is no rating
    weights: np.ndarray  # float64
    values: np.ndarray  # float64: hybrec.data.records.interaction_value of each row
    timestamps: np.ndarray  # int64 epoch seconds (UTC)

    def __len__(self) -> int:
        return len(self.user_ids)


@dataclass(frozen=True, slots=True)
class UserInteraction:
    item_id: str
    kind: str
    rating: float | None
    weight: float
    ts: datetime


def load_interaction_arrays(session: Session, batch_size: int = 50_000) -> InteractionArrays:
    """Stream every interaction (joined to external ids) into numpy arrays, for training."""
    rows = session.execute(
        select(
            User.external_id, Item.external_id, Interaction.kind, Interaction.rating, Interaction.weight, Interaction.ts
        )
        .join(User, Interaction.user_id == User.id)
        .join(Item, Interaction.item_id == Item.id)
        .order_by(Interaction.ts, Interaction.id)
        .execution_options(yield_per=batch_size)
    )
    users: list[str] = []
    items: list[str] = []
    kinds: list[str] = []
    ratings: list[float] = []
    weights: list[float] = []
    values: list[float] = []
    stamps: list[int] = []
    nan = float("nan")
    for user, item, kind, rating, weight, ts in rows:
        users.append(user)
        items.append(item)
        kinds.append(kind)
        ratings.append(nan if rating is None else rating)
        weights.append(weight)
        values.append(interaction_value(kind, rating, weight))
        stamps.append(int(ts.timestamp()))
    return InteractionArrays(
        np.asarray(users, dtype=object),
        np.asarray(items, dtype=object),
        np.asarray(kinds, dtype=object),
        np.asarray(ratings, dtype=np.float64),
        np.asarray(weights, dtype=np.float64),
        np.asarray(values, dtype=np.float64),
        np.asarray(stamps, dtype=np.int64),
    )


def _chunks(values: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(values), _IN_CHUNK):
        yield values[start : start + _IN_CHUNK]


def items_by_external_ids(session: Session, external_ids: Iterable[str]) -> dict[str, Item]:
    """The stored items among ``external_ids`` (absent ids are simply missing from the result)."""
    found: dict[str, Item] = {}
    for chunk in _chunks(list(dict.fromkeys(external_ids))):
        for item in session.scalars(select(Item).where(Item.external_id.in_(chunk))):
            found[item.external_id] = item
    return found


def iter_items(session: Session, chunk: int = 1000) -> Iterator[Item]:
    """Every item of the catalog in id order, streamed ``chunk`` rows at a time (for indexing a large catalog)."""
    yield from session.scalars(select(Item).order_by(Item.id).execution_options(yield_per=chunk))


def item_metadata(item: Item) -> dict[str, Any]:
    """An item as a plain dict keyed by the record field names (``external_id``, ``name``, ``price`` ...)."""
    return {
        "external_id": item.external_id,
        "name": item.name,
        "category": item.category,
        "brand": item.brand,
        "description": item.description,
        "features": list(item.features or []),
        "price": item.price,
        "avg_rating": item.avg_rating,
        "num_ratings": item.num_ratings,
        "attributes": dict(item.attributes or {}),
    }


def get_or_create_users(session: Session, external_ids: Iterable[str]) -> dict[str, int]:
    """Internal ids of ``external_ids``, creating the users that do not exist yet (race-safe upsert)."""
    wanted = list(dict.fromkeys(external_ids))
    ids = _user_ids(session, wanted)
    missing = [e for e in wanted if e not in ids]
    if missing:
        now = utcnow()
        session.execute(
            _insert(session, User).on_conflict_do_nothing(index_elements=["external_id"]),
            [{"external_id": e, "attributes": {}, "created_at": now} for e in missing],
        )
        ids.update(_user_ids(session, missing))
    return ids


def _user_ids(session: Session, external_ids: Sequence[str]) -> dict[str, int]:
    ids: dict[str, int] = {}
    for chunk in _chunks(external_ids):
        rows = session.execute(select(User.external_id, User.id).where(User.external_id.in_(chunk)))
        ids.update((external_id, user_id) for external_id, user_id in rows)
    return ids


def _insert(session: Session, model: Any) -> Any:
    """A dialect-specific INSERT, which has ``on_conflict_do_nothing`` on both PostgreSQL and SQLite."""
    dialect = session.get_bind().dialect.name
    statement: Insert = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(model)
    return statement


def insert_interactions(session: Session, records: Sequence[InteractionRecord]) -> list[InteractionRecord]:
    """Store ``records`` (the real-time events path) and return those that were new.

    A record whose ``idempotency_key`` is already stored - or repeated earlier in ``records`` - is not inserted
    again; records without a key are always new. Unknown users are created.

    Raises
    ------
    UnknownItemsError
        When a record names an item absent from the catalog; nothing is inserted.
    """
    if not records:
        return []
    items = {e: i.id for e, i in items_by_external_ids(session, (r.item_id for r in records)).items()}
    unknown = list(dict.fromkeys(r.item_id for r in records if r.item_id not in items))
    if unknown:
        raise UnknownItemsError(unknown)
    users = get_or_create_users(session, (r.user_id for r in records))
    insert = _insert(session, Interaction).on_conflict_do_nothing(index_elements=["idempotency_key"])
    now = utcnow()
    new: list[InteractionRecord] = []
    for record in records:  # one statement each: RETURNING tells exactly which records were new
        row = {
            "user_id": users[record.user_id],
            "item_id": items[record.item_id],
            "kind": record.kind,
            "rating": record.rating,
            "weight": record.weight,
            "review_text": record.review_text,
            "verified": record.verified,
            "ts": to_utc(record.ts),
            "idempotency_key": record.idempotency_key,
            "created_at": now,
        }
        if session.execute(insert.values(row).returning(Interaction.id)).first() is not None:
            new.append(record)
    return new


# Built once: SQLAlchemy's compiled cache then hits on every call (this read runs on every recommendation request).
_USER_INTERACTIONS = (
    select(Item.external_id, Interaction.kind, Interaction.rating, Interaction.weight, Interaction.ts)
    .join(Interaction, Interaction.item_id == Item.id)
    .join(User, Interaction.user_id == User.id)
    .where(User.external_id == bindparam("user_id"))
)
_USER_INTERACTIONS_OLDEST_FIRST = _USER_INTERACTIONS.order_by(Interaction.ts, Interaction.id)
_USER_INTERACTIONS_NEWEST_FIRST = _USER_INTERACTIONS.order_by(Interaction.ts.desc(), Interaction.id.desc())


def user_interactions(
    session: Session | Connection, user_external_id: str, limit: int | None = None
) -> list[UserInteraction]:
    """The interactions of one user, oldest first (the most recent ``limit`` when given); [] for an unknown user."""
    params = {"user_id": user_external_id}
    if limit is None:
        return [UserInteraction(*row) for row in session.execute(_USER_INTERACTIONS_OLDEST_FIRST, params)]
    rows = [UserInteraction(*row) for row in session.execute(_USER_INTERACTIONS_NEWEST_FIRST.limit(limit), params)]
    rows.reverse()
    return rows


def user_interactions_by_url(database_url: str, user_external_id: str) -> list[UserInteraction]:
    """:func:`user_interactions` on a pooled Core connection of ``database_url``'s engine, without an ORM session.

    The serving fast path (it runs on every recommendation request): a prebuilt statement on a plain connection
    skips the ORM session, several times cheaper per call (SQLite demo shop, 15 rows, shared 2-core development
    machine: about 0.1 ms, against 0.4 ms through a session and 0.6 ms for a session building its ``select``).
    """
    with get_engine(database_url).connect() as connection:
        return user_interactions(connection, user_external_id)


class UserEvent(NamedTuple):
    """What serving reads of one stored interaction: seen-item exclusion and fold-in need no timestamp."""

    item_id: str
    kind: str
    rating: float | None
    weight: float


_USER_EVENTS = (
    select(Item.external_id, Interaction.kind, Interaction.rating, Interaction.weight)
    .join(Interaction, Interaction.item_id == Item.id)
    .join(User, Interaction.user_id == User.id)
    .where(User.external_id == bindparam("user_id"))
    .order_by(Interaction.ts, Interaction.id)
)


def user_events_by_url(database_url: str, user_external_id: str, *, keep_connection: bool = False) -> list[UserEvent]:
    """The interactions of one user, oldest first, as :class:`UserEvent`; [] for an unknown user.

    The recommendation request's read (seen items, fold-in): one statement compiled once per database, run on a
    pooled DBAPI connection and cursor, with no SQLAlchemy execution context or result processing (its columns are
    plain strings and floats on every backend). About a third of the CPU of :func:`user_interactions_by_url` (bench
    store, SQLite). Driver errors are raised as SQLAlchemy's (``OperationalError`` ...), like the other queries.

    With ``keep_connection``, the calling thread keeps one pooled connection checked out between calls instead of
    taking one from the pool and giving it back each time (8-19 us of the 26-38 us of a read of the benchmark's
    SQLite store, measured in a loop of reads). For a thread that reads on every request, such as the event loop of
    an embedded server: a thread pool's threads would each hold one.
    """
    params = {"user_id": user_external_id}
    rows = _raw_rows(database_url, "events", _USER_EVENTS, params, keep_connection=keep_connection)
    return [UserEvent(*row) for row in rows]


def seen_items_by_url(database_url: str, user_external_ids: Sequence[str]) -> list[set[str]]:
    """The ids of the items each user interacted with, in the order of ``user_external_ids`` (empty for an unknown
    user): a batch of recommendations' seen-item exclusions in one statement.

    The exact index's search thread reads them for the whole batch it is about to scan
    (:class:`~hybrec.vectors.base.DeferredIds`), one pool checkout and one statement for up to ``_IN_CHUNK`` users,
    run like :func:`user_events_by_url` (raw DBAPI cursor, driver errors raised as SQLAlchemy's). One row per user,
    its items as a JSON array, for the driver to step to and convert instead of a row per item: under the
    benchmark's load a batch's read (about 15 users) took 0.24-0.30 ms against 0.54 ms (0.1 ms unloaded).
    """
    users = list(dict.fromkeys(user_external_ids))
    seen: dict[str, set[str]] = {user: set() for user in users}
    dialect = get_engine(database_url).dialect.name
    for start in range(0, len(users), _IN_CHUNK):
        chunk = users[start : start + _IN_CHUNK]
        params = {f"user_{i}": user for i, user in enumerate(chunk)}
        statement = _seen_items_statement(dialect, len(chunk))
        for user, items in _raw_rows(database_url, f"seen-{len(chunk)}", statement, params):
            seen[user].update(items if isinstance(items, list) else json.loads(items))
    return [seen[user] for user in user_external_ids]


@functools.lru_cache(maxsize=64)  # building a statement costs more than running this one
def _seen_items_statement(dialect: str, size: int) -> Select[str, Any]:
    """One row per user among ``size`` bound user ids: the external id, and a JSON array of its items' ids (the
    drivers return SQLite's as text, PostgreSQL's as a list)."""
    items = func.json_agg(Item.external_id) if dialect == "postgresql" else func.json_group_array(Item.external_id)
    return (
        select(User.external_id, items)
        .join(Interaction, Interaction.item_id == Item.id)
        .join(User, Interaction.user_id == User.id)
        .where(User.external_id.in_([bindparam(f"user_{i}") for i in range(size)]))
        .group_by(User.id)
    )


#: Raw reads compiled for each database URL's dialect, by (URL, statement key): the SQL text in the driver's
#: paramstyle, and the bound parameters' names in their order when that paramstyle is positional (else None).
_RAW_SQL: dict[tuple[str, str], tuple[str, tuple[str, ...] | None]] = {}


def _raw_rows(
    database_url: str,
    key: str,
    statement: Select[*tuple[Any, ...]],
    values: dict[str, str],
    *,
    keep_connection: bool = False,
) -> Sequence[Any]:
    """Run ``statement`` with its bound parameters set to ``values`` on a pooled DBAPI connection and cursor; the
    rows as the driver returns them. ``key`` names the statement in the cache of compiled texts: a statement built
    per call is compiled once per key."""
    engine = get_engine(database_url)
    compiled = _RAW_SQL.get((database_url, key))
    if compiled is None:
        text = statement.compile(dialect=engine.dialect)
        order = tuple(text.positiontup or ()) if text.positional else None
        compiled = _RAW_SQL[(database_url, key)] = (str(text), order)
    sql, order = compiled
    params: Any = values if order is None else tuple(values[name] for name in order)
    dbapi_error = engine.dialect.loaded_dbapi.Error
    try:
        connection = _kept_connection(engine) if keep_connection else engine.raw_connection()  # a pool checkout
    except dbapi_error as exc:  # could not connect: the store is down
        raise DBAPIError.instance(None, None, exc, dbapi_error, dialect=engine.dialect) from exc
    failed = True
    try:
        cursor = connection.cursor()
        try:
            cursor.execute(sql, params)
            rows = cursor.fetchall()
        finally:
            cursor.close()
        failed = False
    except dbapi_error as exc:
        if engine.dialect.is_disconnect(exc, connection.dbapi_connection, None):
            connection.invalidate(exc)  # as SQLAlchemy's own execution does: the pool opens a new one next time
        raise DBAPIError.instance(sql, params, exc, dbapi_error, dialect=engine.dialect) from exc
    finally:
        if not keep_connection:
            connection.close()  # back to the pool (rolled back there)
        elif failed:  # a kept connection that failed goes back too; the next call takes a fresh one
            _KEPT.connections.pop(engine, None)
            connection.close()
    return rows


class _Kept(threading.local):
    #: Per thread: the connection it keeps checked out of each engine's pool. Weak keys: an engine that was disposed
    #: and dropped (:func:`~hybrec.store.engine.dispose_engine`) takes its entry with it.
    connections: weakref.WeakKeyDictionary[Engine, PoolProxiedConnection]

    def __init__(self) -> None:
        self.connections = weakref.WeakKeyDictionary()


_KEPT = _Kept()


def _kept_connection(engine: Engine) -> PoolProxiedConnection:
    connection = _KEPT.connections.get(engine)
    if connection is None:
        connection = _KEPT.connections[engine] = engine.raw_connection()
    return connection


def store_counts(session: Session) -> dict[str, int]:
    """Row counts of the main tables (``hybrec db stats``)."""
    tables = {
        "users": User,
        "items": Item,
        "interactions": Interaction,
        "chat_messages": ChatMessage,
        "model_versions": ModelVersion,
    }
    return {name: int(session.scalar(select(func.count()).select_from(model)) or 0) for name, model in tables.items()}


def most_active_users(session: Session, limit: int = 20) -> list[tuple[str, int]]:
    """The ``limit`` users with the most stored interactions, as ``(external id, count)``, most active first (ties
    by id, so the answer is stable); users without interactions are not listed."""
    count = func.count(Interaction.id).label("n")
    rows = session.execute(
        select(User.external_id, count)
        .join(Interaction, Interaction.user_id == User.id)
        .group_by(User.id, User.external_id)
        .order_by(count.desc(), User.external_id)
        .limit(limit)
    )
    return [(external_id, int(n)) for external_id, n in rows]
