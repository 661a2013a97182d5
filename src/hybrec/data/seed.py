"""Reader for the seed project's cleaned dataset folder: ``users.csv``, ``items.csv``, ``interactions.csv`` and
``ProductsRAG.json``.

Column names are matched case-insensitively; where several names are listed, the first one present is used.

``items.csv`` (required)
    ``item_id`` (or ``asin``/``itemid``/``id``; required), ``name`` (or ``title``; required), and optional
    ``category``, ``brand``, ``price`` (number or ``"$1,299.00"``; negative or non-numeric is an error),
    ``avg_rating`` (0-5), ``num_ratings`` (integer >= 0), ``description``, ``features`` (``|``-separated).
    Text is HTML-cleaned. A repeated item id is an error.
``interactions.csv`` (required)
    ``user_id``, ``item_id``, ``timestamp`` (unix seconds or ISO 8601; required), and optional ``rating`` (1-5;
    may be empty on a row), ``review`` (or ``review_text``/``reviewText``), ``kind`` (view/click/cart/purchase/
    rating/review), ``verified`` (true/false/1/0/yes/no), ``weight`` (> 0). Without a ``kind`` the row is a
    ``"review"`` when it has review text, a ``"rating"`` when it has a rating, else a ``"purchase"``. A repeated
    ``(user_id, item_id, timestamp)`` row is an error.
``users.csv`` (optional)
    ``user_id`` (required, unique); every other non-empty column goes into ``attributes`` as text (e.g. ``name``).
    Users that interactions name but ``users.csv`` lacks (or every user, without the file) are still yielded,
    without attributes.
``ProductsRAG.json`` (optional)
    A JSON array (or JSON lines) of products: ``item_id``/``asin``/``id``, ``name``/``title``, ``description``
    (text or list), ``features``/``feature`` (list or text), ``price``, ``brand``, ``category`` (text or breadcrumb
    list, most specific entry used), ``avg_rating``. Merged into ``items.csv`` by id: the ``items.csv`` values win
    and the product fills their gaps; a product absent from ``items.csv`` is added. Repeated products collapse like
    Amazon meta rows (first non-empty value wins).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hybrec.data.cleaning import (
    clean_list,
    clean_text,
    last_distinct,
    merge_fields,
    parse_kind,
    parse_price,
    parse_rating,
    parse_timestamp,
    parse_weight,
)
from hybrec.data.csv_formats import KIND_COLUMNS, iter_item_csv
from hybrec.data.io import CsvTable, iter_json_records
from hybrec.data.records import (
    DataError,
    ErrorCollector,
    InteractionRecord,
    ItemRecord,
    RowError,
    SourceData,
    UserRecord,
)
from hybrec.data.validation import UniqueIds, UniqueInteractions, required_id

SEED_ITEM_ID_COLUMNS = ("item_id", "asin", "itemid", "id")
_TRUE = {"true", "1", "yes", "y", "t"}
_FALSE = {"false", "0", "no", "n", "f"}
_ITEM_FIELDS = ("name", "category", "brand", "description", "features", "price", "avg_rating", "num_ratings")


def read_seed(directory: Path, errors: ErrorCollector) -> SourceData:
    """Read a seed-format folder (see the module docstring for the files and columns).

    Raises
    ------
    DataError
        At once when ``items.csv`` or ``interactions.csv`` is missing; while the streams are consumed for an empty
        file, a missing column or a bad row the collector does not skip.
    """
    directory = Path(directory)
    for required in ("items.csv", "interactions.csv"):
        if not (directory / required).is_file():
            raise DataError(f"seed folder without {required}", file=directory / required)
    interactions = directory / "interactions.csv"
    return SourceData(
        name=f"seed-csv:{directory.name}",
        users=_users(directory / "users.csv", interactions, errors),
        items=_items(directory / "items.csv", directory / "ProductsRAG.json", errors),
        interactions=_interactions(interactions, errors),
    )


def _users(path: Path, interactions: Path, errors: ErrorCollector) -> Iterator[UserRecord]:
    known = set()
    if path.is_file():
        table = CsvTable(path, errors, desc=path.name)
        id_col = table.column("user_id", "userid", "user", "id")
        seen = UniqueIds(path, table.columns[id_col], errors)
        for line, row in table.rows():
            user_id = required_id(row[id_col], path, line, table.columns[id_col], errors)
            if user_id is None or not seen.check(user_id, line):
                continue
            attributes = {name: value.strip() for k, (name, value) in enumerate(zip(table.columns, row, strict=True))
                          if k != id_col and value.strip()}
            known.add(user_id)
            yield UserRecord(user_id, attributes)
    scan = CsvTable(interactions, ErrorCollector(skip_invalid=True), desc=f"{interactions.name} (users)")
    user_col = scan.column("user_id", "userid", "user")
    for _line, row in scan.rows():
        user_id = row[user_col].strip()
        if user_id and user_id not in known:
            known.add(user_id)
            yield UserRecord(user_id)


def _items(items_csv: Path, rag: Path, errors: ErrorCollector) -> Iterator[ItemRecord]:
    records = {r.external_id: r for r in iter_item_csv(items_csv, errors, id_columns=SEED_ITEM_ID_COLUMNS)}
    if rag.is_file():
        for item_id, fields in _rag_products(rag, errors).items():
            record = records.get(item_id)
            if record is None:
                if fields.get("name") is None:
                    errors.add(RowError(rag, fields["_line"], "name", f"product {item_id!r} has no name or title"))
                    continue
                records[item_id] = ItemRecord(item_id, fields["name"])
                record = records[item_id]
            merged = merge_fields({f: getattr(record, f) for f in _ITEM_FIELDS}, fields)
            for name in _ITEM_FIELDS:
                setattr(record, name, merged[name])
    yield from records.values()


def _rag_products(path: Path, errors: ErrorCollector) -> dict[str, dict[str, Any]]:
    products: dict[str, dict[str, Any]] = {}
    for line, row in iter_json_records(path, errors):
        item_id = required_id(_first(row, "item_id", "asin", "id"), path, line, "item_id", errors)
        if item_id is None:
            continue
        try:
            price = parse_price(row.get("price"))
        except ValueError as exc:
            errors.add(RowError(path, line, "price", str(exc)))
            continue
        avg_rating = None
        if row.get("avg_rating") not in (None, ""):
            try:
                avg_rating = parse_rating(row["avg_rating"], low=0.0, high=5.0)
            except ValueError as exc:
                errors.add(RowError(path, line, "avg_rating", str(exc)))
                continue
        category = row.get("category")
        fields = {
            "_line": line,
            "name": clean_text(_first(row, "name", "title")),
            "description": clean_text(row.get("description")),
            "features": clean_list(_first(row, "features", "feature")),
            "price": price,
            "brand": clean_text(row.get("brand")),
            "category": last_distinct(clean_list(category)) if isinstance(category, list) else clean_text(category),
            "avg_rating": avg_rating,
        }
        products[item_id] = merge_fields(products[item_id], fields) if item_id in products else fields
    return products


def _interactions(path: Path, errors: ErrorCollector) -> Iterator[InteractionRecord]:
    table = CsvTable(path, errors, desc=path.name)
    user_col, item_col = table.column("user_id", "userid", "user"), table.column(*SEED_ITEM_ID_COLUMNS)
    ts_col = table.column("timestamp", "ts", "time")
    rating_col = table.column("rating", required=False)
    review_col = table.column("review", "review_text", "reviewtext", required=False)
    kind_col = table.column(*KIND_COLUMNS, required=False)
    verified_col = table.column("verified", required=False)
    weight_col = table.column("weight", required=False)
    names = table.columns
    seen = UniqueInteractions(path, errors)
    source = str(path)
    for line, row in table.rows():
        user_id = required_id(row[user_col], path, line, names[user_col], errors)
        item_id = required_id(row[item_col], path, line, names[item_col], errors)
        if user_id is None or item_id is None:
            continue
        field = "timestamp"
        try:
            ts = parse_timestamp(row[ts_col])
            rating = None
            if rating_col is not None and row[rating_col].strip():
                field = names[rating_col]
                rating = parse_rating(row[rating_col])
            review = clean_text(row[review_col]) if review_col is not None else None
            field = "kind"
            kind = _kind(row[kind_col] if kind_col is not None else "", review, rating)
            field = "verified"
            verified = _bool(row[verified_col]) if verified_col is not None else None
            field = "weight"
            weight = parse_weight(row[weight_col]) if weight_col is not None and row[weight_col].strip() else 1.0
        except ValueError as exc:
            errors.add(RowError(path, line, field, str(exc)))
            continue
        if not seen.check(user_id, item_id, ts, line):
            continue
        yield InteractionRecord(user_id, item_id, kind, ts, rating=rating, weight=weight, review_text=review,
                                verified=verified, source_file=source, source_line=line)


def _kind(value: str, review: str | None, rating: float | None) -> str:
    return parse_kind(value, "review" if review else "rating" if rating is not None else "purchase")


def _bool(value: str) -> bool | None:
    text = value.strip().lower()
    if not text:
        return None
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"not a boolean: {value!r}")


def _first(row: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        if row.get(key) not in (None, "", []):
            return row[key]
    return None
