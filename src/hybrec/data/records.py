"""The records every dataset reader yields and the ingestion pipeline loads into the store.

Readers (``hybrec.data.readers``) turn each source format into these plain records, with external ids kept as
strings exactly as the source spells them (Amazon ``reviewerID``/``asin``, MovieLens ids as text). Integer ids are
internal to the store and never appear here.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

InteractionKind = Literal["view", "click", "cart", "purchase", "rating", "review"]
INTERACTION_KINDS: tuple[str, ...] = ("view", "click", "cart", "purchase", "rating", "review")

# Implicit-feedback strength of each kind when the source gives no explicit weight.
DEFAULT_KIND_WEIGHTS: dict[str, float] = {
    "view": 1.0,
    "click": 1.0,
    "cart": 3.0,
    "purchase": 5.0,
    "rating": 1.0,
    "review": 1.0,
}


def interaction_value(kind: str, rating: float | None, weight: float | None) -> float:
    """The implicit-feedback value ALS sees for one interaction (training and real-time fold-in alike).

    A ``rating`` event counts with its rating (a 5 is a stronger signal than a 1); any other event with its weight,
    or its kind's default weight (:data:`DEFAULT_KIND_WEIGHTS`) when it has none.
    """
    if kind == "rating" and rating is not None:
        return float(rating)
    if weight is not None:
        return float(weight)
    return DEFAULT_KIND_WEIGHTS.get(kind, 1.0)


@dataclass(slots=True)
class UserRecord:
    external_id: str
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class ItemRecord:
    external_id: str
    name: str
    category: str | None = None
    brand: str | None = None
    description: str | None = None
    features: list[str] = field(default_factory=list)
    price: float | None = None
    # Computed from the interactions by the loader when the source does not carry them.
    avg_rating: float | None = None
    num_ratings: int = 0
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class InteractionRecord:
    user_id: str
    item_id: str
    kind: str
    ts: datetime
    rating: float | None = None
    weight: float = 1.0
    review_text: str | None = None
    verified: bool | None = None
    idempotency_key: str | None = None
    # Where the row came from, so the loader can name it in a DataError (e.g. an item absent from the catalog).
    source_file: str | None = None
    source_line: int | None = None


@dataclass(slots=True)
class RowError:
    """One bad input row: where it is and what is wrong with it."""

    file: Path | str
    line: int
    field: str | None
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}"
        return f"{where}: field {self.field!r}: {self.message}" if self.field else f"{where}: {self.message}"


class DataError(ValueError):
    """Input data that cannot be ingested; names the file, line and field of every bad row it saw."""

    def __init__(self, errors: list[RowError] | RowError | str, *, file: Path | str | None = None) -> None:
        if isinstance(errors, str):
            errors = [RowError(file or "<input>", 0, None, errors)]
        elif isinstance(errors, RowError):
            errors = [errors]
        self.errors: list[RowError] = errors
        shown = "\n".join(f"  {e}" for e in errors[:20])
        more = f"\n  ... and {len(errors) - 20} more" if len(errors) > 20 else ""
        super().__init__(f"{len(errors)} invalid row(s):\n{shown}{more}")


class ErrorCollector:
    """What a reader does with a bad row: stop with a :class:`DataError` (default) or skip it and remember why.

    ``--skip-invalid`` on the CLI builds a collector with ``skip_invalid=True``; the caller then reports
    ``collector.errors`` (the skipped rows) at the end.
    """

    def __init__(self, skip_invalid: bool = False) -> None:
        self.skip_invalid = skip_invalid
        self.errors: list[RowError] = []
        # Rows a reader changed or dropped by a documented rule rather than rejected (e.g. a repeated Amazon review
        # collapsed into the first); never raised, reported by the caller like the skipped rows.
        self.warnings: list[RowError] = []

    def add(self, error: RowError) -> None:
        if not self.skip_invalid:
            raise DataError(error)
        self.errors.append(error)

    def warn(self, warning: RowError) -> None:
        """Record a row handled by a documented rule (logged at DEBUG, never raised; the reader logs a summary)."""
        logging.getLogger(__name__).debug("%s", warning)
        self.warnings.append(warning)


@dataclass(slots=True)
class SourceData:
    """One dataset as three record streams; each may be a generator read lazily from disk.

    Loaders consume ``users`` and ``items`` before ``interactions``, so a reader may build its item stream from a
    metadata file and still stream the (much larger) interaction file afterwards.
    """

    name: str
    users: Iterable[UserRecord]
    items: Iterable[ItemRecord]
    interactions: Iterable[InteractionRecord]
    # The reader prefers its interactions consumed first: its user and item streams then come from the ids that
    # pass collected, where they would otherwise cost a pass of their own over the interaction file. Every stream
    # still works in any order; a loader that can take interactions first should.
    interactions_first: bool = False
