"""Readers for CSV interaction files: generic ratings CSVs with an optional item-text CSV.

Ratings file (:func:`read_ratings_csv`)
---------------------------------------
A header line names the columns (case-insensitive; the first alias present is used):

=============  =====================================  ==========================================================
meaning        accepted names                         rule
=============  =====================================  ==========================================================
user id        ``userid``, ``user_id``, ``user``,     required, non-empty
               ``reviewerID``
item id        ``itemid``, ``item_id``, ``item``,     required, non-empty
               ``asin``
rating         ``rating``, ``overall``                explicit rating 1-5; the row becomes kind ``"rating"``
value          ``value``, ``weight``                  used when there is no rating column: an implicit-feedback
                                                      strength (> 0, e.g. a play count); the row becomes kind
                                                      ``"view"`` with ``weight=value`` and no rating
kind           ``kind``, ``event``                    optional; one of ``view/click/cart/purchase/rating/review``
timestamp      ``timestamp``, ``ts``, ``time``,       unix seconds (ms above 1e11) or ISO 8601, UTC when naive;
               ``unixReviewTime``                     optional — without it every row is dated 1970-01-01 UTC
=============  =====================================  ==========================================================

So both ``userid,itemid,timestamp,rating`` (Amazon Industrial & Scientific 5-core) and ``user,item,value`` (generic
implicit data) are read. A repeated ``(user, item, timestamp)`` row is an error.

Item file (optional)
--------------------
``asin``/``item_id``/``itemid``/``item``/``id`` (required), ``title``/``name`` (required, HTML-cleaned), and optional
``brand``, ``category``/``categories``, ``description``, ``price`` (``"$1,299.00"``; negative is an error),
``features`` (``|``-separated). Other columns are ignored. A duplicate item id is an error. Every item the ratings
name but the item file lacks is still yielded, named ``"Item <id>"`` with ``attributes["metadata"] = False``; without
an item file, all items are such placeholders.

Users are the distinct user ids of the ratings file, in order of first appearance (ratings files carry no profile).
The reader asks to have its interactions consumed first (``SourceData.interactions_first``): that pass then collects
the user and item ids, so the file is read once; read in the other order, the id streams scan the file themselves.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from math import inf
from pathlib import Path
from typing import Any

from hybrec.data.cleaning import (
    clean_list,
    clean_text,
    parse_kind,
    parse_price,
    parse_rating,
    parse_timestamp,
    parse_weight,
)
from hybrec.data.io import CsvTable
from hybrec.data.records import (
    ErrorCollector,
    InteractionRecord,
    ItemRecord,
    RowError,
    SourceData,
    UserRecord,
)
from hybrec.data.validation import UniqueIds, UniqueInteractions, instant, required_id

USER_COLUMNS = ("userid", "user_id", "user", "reviewerid")
ITEM_COLUMNS = ("itemid", "item_id", "item", "asin")
RATING_COLUMNS = ("rating", "overall")
VALUE_COLUMNS = ("value", "weight")
KIND_COLUMNS = ("kind", "event")
TIMESTAMP_COLUMNS = ("timestamp", "ts", "time", "unixreviewtime")
ITEM_ID_COLUMNS = ("asin", "item_id", "itemid", "item", "id")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def read_ratings_csv(path: Path, items: Path | None, errors: ErrorCollector) -> SourceData:
    """Read a ratings (or generic ``user,item,value``) CSV and an optional item-text CSV.

    Parameters
    ----------
    path:
        The interaction CSV (plain or gzip'd); see the module docstring for its columns.
    items:
        An item-text CSV, or ``None`` for placeholder items named after their ids.
    errors:
        What to do with a bad row (raise, or skip and record).

    Raises
    ------
    DataError
        While the streams are consumed: a missing file or column, an empty file, or a bad row the collector does
        not skip.
    """
    path = Path(path)
    scan = IdScan(path)
    return SourceData(
        name=f"ratings-csv:{path.name}",
        users=_users(scan),
        items=_items_with_placeholders(Path(items) if items is not None else None, scan, errors),
        interactions=iter_interactions(path, errors, ids=scan),
        interactions_first=True,
    )


def _users(scan: IdScan) -> Iterator[UserRecord]:
    for user_id in scan.users():
        yield UserRecord(user_id)


class IdScan:
    """The distinct user and item ids of an interaction CSV, in order of first appearance, for the user and item
    streams.

    When the interaction stream (:func:`iter_interactions` with ``ids=``) has been read to its end, the ids are the
    ones it collected from its valid rows, at no extra cost. Otherwise one quick pass over the file's user and item
    columns collects them; rows are not validated there (the interaction stream reports bad rows), so a user or item
    whose every row is invalid may appear when bad rows are skipped.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._users: dict[str, None] | None = None
        self._items: dict[str, None] | None = None
        # Filled by the interaction stream while it runs; adopted once it completes.
        self.seen_users: dict[str, None] = {}
        self.seen_items: dict[str, None] = {}

    def interactions_done(self) -> None:
        """The interaction stream has read every row: its ids are the complete set."""
        if self._users is None:
            self._users, self._items = self.seen_users, self.seen_items

    def _run(self) -> None:
        if self._users is not None:
            return
        table = CsvTable(self.path, ErrorCollector(skip_invalid=True), desc=f"{self.path.name} (ids)")
        user_col, item_col = table.column(*USER_COLUMNS), table.column(*ITEM_COLUMNS)
        users: dict[str, None] = {}
        items: dict[str, None] = {}
        for _line, row in table.rows():
            users[row[user_col].strip()] = None
            items[row[item_col].strip()] = None
        users.pop("", None)
        items.pop("", None)
        self._users, self._items = users, items

    def users(self) -> list[str]:
        self._run()
        return list(self._users or ())

    def items(self) -> list[str]:
        self._run()
        return list(self._items or ())


def iter_interactions(
    path: Path, errors: ErrorCollector, *, rating_range: tuple[float, float] = (1.0, 5.0), ids: IdScan | None = None,
) -> Iterator[InteractionRecord]:
    """Stream the interactions of a ratings / generic CSV (see the module docstring for the columns).

    With ``ids``, the user and item ids of the valid rows are collected into it as they are read.
    """
    table = CsvTable(path, errors, desc=path.name)
    user_col, item_col = table.column(*USER_COLUMNS), table.column(*ITEM_COLUMNS)
    rating_col = table.column(*RATING_COLUMNS, required=False)
    value_col = table.column(*VALUE_COLUMNS, required=False)  # used only when there is no rating column
    if rating_col is None and value_col is None:
        table.column("rating", "value")  # raises, naming both accepted columns
    kind_col = table.column(*KIND_COLUMNS, required=False)
    ts_col = table.column(*TIMESTAMP_COLUMNS, required=False)
    name = table.columns
    low, high = rating_range
    seen = UniqueInteractions(path, errors)
    source = str(path)

    def parse_row(line: int, row: list[str]) -> InteractionRecord | None:
        """One row with every check and a message naming its field (also the slow path of the loop below)."""
        user_id = required_id(row[user_col], path, line, name[user_col], errors)
        item_id = required_id(row[item_col], path, line, name[item_col], errors)
        if user_id is None or item_id is None:
            return None
        rating: float | None = None
        weight = 1.0
        kind = "rating"
        try:
            if rating_col is not None:
                field = name[rating_col]
                rating = parse_rating(row[rating_col], low=low, high=high)
            elif value_col is not None:
                field = name[value_col]
                weight = parse_weight(row[value_col])
                kind = "view"
            if kind_col is not None:
                field = name[kind_col]
                kind = parse_kind(row[kind_col], kind)
            field = name[ts_col] if ts_col is not None else "timestamp"
            ts = parse_timestamp(row[ts_col]) if ts_col is not None else EPOCH
        except ValueError as exc:
            errors.add(RowError(path, line, field, str(exc)))
            return None
        if not seen.check(user_id, item_id, ts, line):
            return None
        return InteractionRecord(user_id, item_id, kind, ts, rating=rating, weight=weight, source_file=source,
                                 source_line=line)

    # The hot loop (once per row): the common row - ASCII ids, a rating in range (or a positive value), no kind
    # column, whole unix seconds (or no timestamp column), not seen before - is checked inline; anything else goes
    # through parse_row, which accepts it or names what is wrong exactly as before.
    claim = seen.claim_key
    from_unix = datetime.fromtimestamp
    utc = UTC
    collect = ids is not None
    users_seen = ids.seen_users if ids is not None else {}
    items_seen = ids.seen_items if ids is not None else {}
    numeric_col = rating_col if rating_col is not None else value_col
    plain_kind = "rating" if rating_col is not None else "view"
    fast = kind_col is None and numeric_col is not None
    is_rating = rating_col is not None
    stamps: dict[str, tuple[datetime, float]] = {}
    ts: datetime | None
    for line, row in table.rows():
        if fast:
            user_id, item_id = row[user_col], row[item_col]
            if user_id.isascii() and item_id.isascii():
                user_id, item_id = user_id.strip(), item_id.strip()
                try:
                    number = float(row[numeric_col])  # type: ignore[index]
                except ValueError:
                    number = -1.0
                if ts_col is None:
                    ts, when = EPOCH, 0.0
                else:
                    text = row[ts_col]
                    try:
                        when = float(text)
                    except ValueError:  # ISO dates, usually repeated (one per day): parsed once per distinct text
                        ts, when = stamps.get(text) or _stamp(text, stamps)
                    else:  # whole unix seconds are their own instant; anything else takes the checked path
                        ts = from_unix(when, utc) if 0.0 <= when < _UNIX_MAX and when.is_integer() else None
                if (
                    ts is not None and user_id and item_id
                    and ((low <= number <= high) if is_rating else 0 < number < inf)
                    and claim((user_id, item_id, when), line)
                ):
                    if collect:
                        users_seen[user_id] = None
                        items_seen[item_id] = None
                    if is_rating:
                        yield InteractionRecord(user_id, item_id, plain_kind, ts, number, 1.0, None, None, None,
                                                source, line)
                    else:
                        yield InteractionRecord(user_id, item_id, plain_kind, ts, None, number, None, None, None,
                                                source, line)
                    continue
        record = parse_row(line, row)
        if record is not None:
            if collect:
                users_seen[record.user_id] = None
                items_seen[record.item_id] = None
            yield record
    if ids is not None:
        ids.interactions_done()


_UNIX_MAX = 1e11  # unix seconds below this need neither the millisecond rule nor a range check
_STAMP_CACHE = 1 << 16  # distinct non-numeric timestamp texts remembered per file (about 15 MB at most)
_NO_STAMP: tuple[None, float] = (None, 0.0)


def _stamp(text: str, cache: dict[str, tuple[datetime, float]]) -> tuple[datetime, float] | tuple[None, float]:
    """``(datetime, instant)`` of a timestamp text (remembered in ``cache``), or ``(None, 0.0)`` when it is invalid
    (the checked path then names the problem)."""
    try:
        ts = parse_timestamp(text)
    except ValueError:
        return _NO_STAMP
    stamp = (ts, instant(ts))
    if len(cache) < _STAMP_CACHE:
        cache[text] = stamp
    return stamp


def iter_item_csv(path: Path, errors: ErrorCollector, *, id_columns: tuple[str, ...] = ITEM_ID_COLUMNS,
                  ) -> Iterator[ItemRecord]:
    """Stream the items of an item-text CSV (see the module docstring for the columns)."""
    table = CsvTable(path, errors, desc=path.name)
    id_col = table.column(*id_columns)
    name_col = table.column("title", "name")
    optional = {
        "brand": table.column("brand", required=False),
        "category": table.column("category", "categories", required=False),
        "description": table.column("description", required=False),
        "price": table.column("price", required=False),
        "features": table.column("features", "feature", required=False),
        "avg_rating": table.column("avg_rating", required=False),
        "num_ratings": table.column("num_ratings", required=False),
    }
    seen = UniqueIds(path, table.columns[id_col], errors)
    for line, row in table.rows():
        item_id = required_id(row[id_col], path, line, table.columns[id_col], errors)
        if item_id is None or not seen.check(item_id, line):
            continue
        values = {key: (row[col] if col is not None else None) for key, col in optional.items()}
        try:
            record = _item_from_fields(item_id, row[name_col], values)
        except _FieldError as exc:
            errors.add(RowError(path, line, exc.field, exc.message))
            continue
        yield record


class _FieldError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field, self.message = field, message


def _item_from_fields(item_id: str, raw_name: Any, values: dict[str, Any]) -> ItemRecord:
    name = clean_text(raw_name)
    if name is None:
        raise _FieldError("name", "missing value")
    try:
        price = parse_price(values.get("price"), strict=True)
    except ValueError as exc:
        raise _FieldError("price", str(exc)) from None
    avg_rating = None
    if clean_text(values.get("avg_rating")) is not None:
        try:
            avg_rating = parse_rating(values["avg_rating"], low=0.0, high=5.0)
        except ValueError as exc:
            raise _FieldError("avg_rating", str(exc)) from None
    num_ratings = 0
    if clean_text(values.get("num_ratings")) is not None:
        try:
            num_ratings = int(str(values["num_ratings"]).strip())
        except ValueError:
            raise _FieldError("num_ratings", f"not an integer: {values['num_ratings']!r}") from None
        if num_ratings < 0:
            raise _FieldError("num_ratings", f"negative count: {num_ratings}")
    raw_features = values.get("features")
    features = clean_list(raw_features.split("|") if isinstance(raw_features, str) else raw_features)
    return ItemRecord(
        item_id, name, category=clean_text(values.get("category")), brand=clean_text(values.get("brand")),
        description=clean_text(values.get("description")), features=features, price=price, avg_rating=avg_rating,
        num_ratings=num_ratings,
    )


def placeholder_item(item_id: str) -> ItemRecord:
    """The item yielded for an id that interactions name but no metadata describes."""
    return ItemRecord(item_id, f"Item {item_id}", attributes={"metadata": False})


def _items_with_placeholders(items: Path | None, scan: IdScan, errors: ErrorCollector) -> Iterator[ItemRecord]:
    described: set[str] = set()
    if items is not None:
        for record in iter_item_csv(items, errors):
            described.add(record.external_id)
            yield record
    for item_id in scan.items():
        if item_id not in described:
            yield placeholder_item(item_id)




def read_seed_csv(directory: Path, errors: ErrorCollector) -> SourceData:
    """Read the seed project's cleaned folder (``users.csv``, ``items.csv``, ``interactions.csv``,
    ``ProductsRAG.json``); the columns are documented in :mod:`hybrec.data.seed`."""
    from hybrec.data.seed import read_seed  # seed builds on this module's item reader

    return read_seed(directory, errors)


__all__ = [
    "IdScan", "iter_interactions", "iter_item_csv", "placeholder_item", "read_ratings_csv", "read_seed_csv",
]
