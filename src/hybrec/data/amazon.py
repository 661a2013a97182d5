"""Amazon Review Data (2018) reader: a reviews file joined with its category metadata on ``asin``.

Ni, Li & McAuley, *Justifying recommendations using distantly-labeled reviews and fine-grained aspects*,
EMNLP-IJCNLP 2019 (https://nijianmo.github.io/amazon/).

Files (JSON lines, gzip'd or plain; streamed line by line)
----------------------------------------------------------
* reviews (``*_5.json.gz``): required ``reviewerID``, ``asin``, ``overall`` (1-5) and ``unixReviewTime`` (or, when
  absent, ``reviewTime`` as ``"06 17, 2018"``); optional ``verified``, ``summary``, ``reviewText``,
  ``reviewerName``.
* meta (``meta_*.json.gz``): required ``asin``; used ``title``, ``brand``, ``price``, ``description`` (list),
  ``feature`` (list), ``category`` (breadcrumb list), ``main_cat``, ``rank``, ``imageURL``.

Records
-------
* One interaction of kind ``"review"`` per review: ``rating = overall``, ``verified``, ``review_text`` = the cleaned
  summary and review text joined by a newline, ``ts`` from ``unixReviewTime`` (UTC).
* Users: the distinct ``reviewerID`` s, with ``attributes["name"]`` from ``reviewerName`` when present.
* Items: every product of the meta file (``catalog="all"``, the default — unreviewed products are still part of
  the shop for search and chat), or only the reviewed ones (``catalog="reviewed"``); in both cases every reviewed
  item is present even when the meta file lacks it. Fields are cleaned by :mod:`hybrec.data.cleaning`: ``name`` is
  the title; when the title is missing or junk (the Magazine Subscriptions meta has ``<span class=...`` as every
  title) the name falls back to ``"<brand> (<asin>)"`` or ``"Amazon product <asin>"`` and
  ``attributes["name_source"]`` says ``"fallback"``; ``category`` is the most specific breadcrumb entry,
  ``attributes`` keep ``categories``, ``main_cat``, ``rank`` and ``image_url``. Items the meta file lacks have
  ``attributes["metadata"] = False``.

Rules for bad and repeated rows
-------------------------------
* Repeated meta rows for one ``asin`` collapse: the first row's non-empty (cleaned) fields win, later rows fill the
  gaps (:func:`hybrec.data.cleaning.merge_fields`).
* A repeated review — same ``reviewerID``, ``asin`` and ``unixReviewTime`` — is collapsed into the first and recorded
  as a warning (``ErrorCollector.warnings``), not an error: the 2018 dump itself holds such rows (3 in Gift Cards,
  47 in Magazine Subscriptions), the timestamps being whole days.
* A malformed JSON line, a missing required key, a rating that is not a number in 1-5, a negative price or a
  non-UTF-8 line is a :class:`~hybrec.data.records.RowError` naming the file, line and field.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from hybrec.data.cleaning import (
    clean_list,
    clean_text,
    last_distinct,
    merge_fields,
    parse_price,
    parse_rating,
    parse_timestamp,
)
from hybrec.data.io import iter_json_lines, require_file
from hybrec.data.records import ErrorCollector, InteractionRecord, ItemRecord, RowError, SourceData, UserRecord
from hybrec.data.validation import UniqueInteractions, required_id

Catalog = Literal["all", "reviewed"]
logger = logging.getLogger(__name__)


def read_amazon(
    reviews: Path, meta: Path | None, errors: ErrorCollector, *, catalog: Catalog = "all"
) -> SourceData:
    """Read an Amazon 2018 reviews file and (optionally) its metadata file.

    Parameters
    ----------
    reviews:
        The reviews JSON-lines file (``*_5.json.gz`` or ``.json``).
    meta:
        The category's ``meta_*.json.gz``, or ``None`` (items are then placeholders named after their asin).
    errors:
        What to do with a bad row (raise, or skip and record).
    catalog:
        ``"all"`` yields every meta product, ``"reviewed"`` only the products that have a review.

    Raises
    ------
    DataError
        At once for a missing file; while the streams are consumed for an empty file or a bad row the collector
        does not skip.
    """
    reviews = require_file(Path(reviews))
    meta = require_file(Path(meta)) if meta is not None else None
    scan = _ReviewScan(reviews)
    return SourceData(
        name=f"amazon:{reviews.name}",
        users=scan.users(),
        items=_items(meta, scan, errors, catalog),
        interactions=_reviews(reviews, errors),
    )


class _ReviewScan:
    """A quick pass over the reviews for the distinct reviewers and reviewed asins (bad rows reported later)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._users: dict[str, str | None] | None = None
        self._items: dict[str, None] = {}

    def _run(self) -> None:
        if self._users is not None:
            return
        users: dict[str, str | None] = {}
        for _line, row in iter_json_lines(self.path, ErrorCollector(skip_invalid=True), desc=f"{self.path.name} (ids)"):
            user_id = str(row.get("reviewerID") or "").strip()
            asin = str(row.get("asin") or "").strip()
            if user_id and users.get(user_id) is None:
                users[user_id] = clean_text(row.get("reviewerName"))
            if asin:
                self._items[asin] = None
        self._users = users

    def users(self) -> Iterator[UserRecord]:
        self._run()
        for user_id, name in (self._users or {}).items():
            yield UserRecord(user_id, {"name": name} if name else {})

    def item_ids(self) -> list[str]:
        self._run()
        return list(self._items)


def _items(meta: Path | None, scan: _ReviewScan, errors: ErrorCollector, catalog: Catalog) -> Iterator[ItemRecord]:
    products = read_meta(meta, errors) if meta is not None else {}
    reviewed = scan.item_ids()
    if catalog == "all":
        for asin, fields in products.items():
            yield _item_record(asin, fields)
        for asin in reviewed:
            if asin not in products:
                yield _item_record(asin, None)
    else:
        for asin in reviewed:
            yield _item_record(asin, products.get(asin))


def read_meta(path: Path, errors: ErrorCollector) -> dict[str, dict[str, Any]]:
    """The cleaned fields of every product of a meta file, keyed on ``asin``; repeated rows collapsed."""
    products: dict[str, dict[str, Any]] = {}
    for line, row in iter_json_lines(path, errors):
        asin = required_id(row.get("asin"), path, line, "asin", errors)
        if asin is None:
            continue
        try:
            price = parse_price(row.get("price"))
        except ValueError as exc:
            errors.add(RowError(path, line, "price", str(exc)))
            continue
        categories = clean_list(row.get("category"))
        image = row.get("imageURL")
        fields = {
            "title": clean_text(row.get("title")),
            "brand": clean_text(row.get("brand")),
            "price": price,
            "description": clean_text(row.get("description")),
            "features": clean_list(row.get("feature")),
            "category": last_distinct(categories),
            "categories": categories,
            "main_cat": clean_text(row.get("main_cat")),
            "rank": clean_text(row.get("rank")),
            "image_url": image[0] if isinstance(image, list) and image else None,
        }
        products[asin] = merge_fields(products[asin], fields) if asin in products else fields
    return products


def _item_record(asin: str, fields: dict[str, Any] | None) -> ItemRecord:
    if fields is None:
        return ItemRecord(asin, f"Amazon product {asin}", attributes={"metadata": False, "name_source": "fallback"})
    title, brand = fields["title"], fields["brand"]
    name = title or (f"{brand} ({asin})" if brand else f"Amazon product {asin}")
    attributes = {key: fields[key] for key in ("categories", "main_cat", "rank", "image_url") if fields[key]}
    attributes["name_source"] = "title" if title else "fallback"
    return ItemRecord(asin, name, category=fields["category"], brand=brand, description=fields["description"],
                      features=fields["features"], price=fields["price"], attributes=attributes)


def _reviews(path: Path, errors: ErrorCollector) -> Iterator[InteractionRecord]:
    seen = UniqueInteractions(path, errors)
    source = str(path)
    repeated = 0
    for line, row in iter_json_lines(path, errors):
        user_id = required_id(row.get("reviewerID"), path, line, "reviewerID", errors)
        asin = required_id(row.get("asin"), path, line, "asin", errors)
        if user_id is None or asin is None:
            continue
        try:
            rating = parse_rating(row.get("overall"))
        except ValueError as exc:
            errors.add(RowError(path, line, "overall", str(exc)))
            continue
        try:
            ts = _review_time(row)
        except ValueError as exc:
            errors.add(RowError(path, line, "unixReviewTime", str(exc)))
            continue
        first = seen.first_line(user_id, asin, ts)
        if first is not None:
            errors.warn(RowError(path, line, None, f"repeated review (reviewer {user_id!r}, asin {asin!r}, "
                                                   f"{ts.date()}) collapsed into line {first}"))
            repeated += 1
            continue
        seen.remember(user_id, asin, ts, line)
        verified = row.get("verified")
        text = "\n".join(t for t in (clean_text(row.get("summary")), clean_text(row.get("reviewText"))) if t)
        yield InteractionRecord(user_id, asin, "review", ts, rating=rating, review_text=text or None,
                                verified=verified if isinstance(verified, bool) else None, source_file=source,
                                source_line=line)
    if repeated:
        logger.warning("%s: collapsed %d repeated review(s) into the first of each (see ErrorCollector.warnings)",
                       path, repeated)


def _review_time(row: dict[str, Any]) -> datetime:
    if row.get("unixReviewTime") not in (None, ""):
        return parse_timestamp(row["unixReviewTime"])
    raw = row.get("reviewTime")
    if not raw:
        raise ValueError("missing value (neither unixReviewTime nor reviewTime)")
    try:
        return datetime.strptime(str(raw).strip(), "%m %d, %Y").replace(tzinfo=UTC)
    except ValueError:
        raise ValueError(f"reviewTime is not 'MM DD, YYYY': {raw!r}") from None
