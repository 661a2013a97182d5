"""The ingestion pipeline: one dataset (:class:`~hybrec.data.records.SourceData`) into the relational store.

The schema is brought up to date first, then :func:`hybrec.store.bulk.load_source` stages and merges the records in a
single transaction: a :class:`~hybrec.data.records.DataError` anywhere (a reader's bad row, an interaction naming an
absent item) leaves the store exactly as it was.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from hybrec.data.records import ErrorCollector, RowError, SourceData
from hybrec.store.bulk import LoadCounts, TableCounts, load_source
from hybrec.store.engine import get_engine
from hybrec.store.migrate import upgrade

log = logging.getLogger(__name__)


@dataclass(slots=True)
class IngestReport:
    """The outcome of one ingest: per-table counts and the rows skipped under ``--skip-invalid``."""

    source: str
    users: TableCounts
    items: TableCounts
    interactions: TableCounts
    skipped_rows: list[RowError] = field(default_factory=list)
    seconds: float = 0.0

    @classmethod
    def from_counts(cls, source: str, counts: LoadCounts, seconds: float) -> IngestReport:
        return cls(source, counts.users, counts.items, counts.interactions, counts.skipped_rows, seconds)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "users": asdict(self.users),
            "items": asdict(self.items),
            "interactions": asdict(self.interactions),
            "skipped_rows": [str(row) for row in self.skipped_rows],
            "seconds": round(self.seconds, 3),
        }


def ingest(
    source: SourceData,
    database_url: str,
    errors: ErrorCollector,
    progress: bool = True,
    *,
    migrate: bool = True,
) -> IngestReport:
    """Load ``source`` into the store at ``database_url``, atomically and idempotently.

    Parameters
    ----------
    source
        The dataset's record streams (users, then items, then interactions; each may be a lazy generator).
    database_url
        SQLAlchemy URL of the store (SQLite file or ``postgresql+psycopg://``).
    errors
        The collector the readers report bad rows to; with ``skip_invalid`` the loader also skips interactions naming
        absent items and lists them here.
    progress
        Show tqdm progress bars while streaming.
    migrate
        Upgrade the schema to the latest revision first (default).

    Raises
    ------
    DataError
        Invalid input that was not to be skipped; nothing has been written.
    """
    if migrate:
        upgrade(database_url)
    started = time.perf_counter()
    with get_engine(database_url).begin() as connection:
        counts = load_source(connection, source, errors, progress=progress)
    report = IngestReport.from_counts(source.name, counts, time.perf_counter() - started)
    log.info(
        "ingested %s in %.1fs: users +%d, items +%d (%d updated), interactions +%d of %d read, %d rows skipped",
        source.name, report.seconds, report.users.inserted, report.items.inserted, report.items.updated,
        report.interactions.inserted, report.interactions.read, len(report.skipped_rows),
    )
    return report
