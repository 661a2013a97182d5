"""Row-level checks shared by the readers: required ids, duplicate ids and duplicate interaction rows.

Each check reports a :class:`~hybrec.data.records.RowError` naming the file, line and field to an
:class:`~hybrec.data.records.ErrorCollector`, which raises it (default) or records it and lets the reader skip the
row (``skip_invalid``). The check returns whether the row is usable.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from hybrec.data.cleaning import normalise_whitespace
from hybrec.data.records import ErrorCollector, RowError


def required_id(value: object, path: Path, line: int, field: str, errors: ErrorCollector) -> str | None:
    """An external id as a stripped, non-empty string; reports a missing one and returns ``None``."""
    if value.__class__ is str and value.isascii():
        text = value.strip()  # NFKC is the identity on ASCII; an id's inner spaces are kept as they are
    else:
        text = "" if value is None else normalise_whitespace(str(value))
    if not text:
        errors.add(RowError(path, line, field, "missing value"))
        return None
    return text


class UniqueIds:
    """Remembers the ids seen in one file and reports a repeated one (e.g. a duplicate item id in ``items.csv``)."""

    def __init__(self, path: Path, field: str, errors: ErrorCollector) -> None:
        self.path, self.field, self.errors = path, field, errors
        self._first_line: dict[str, int] = {}

    def __contains__(self, external_id: str) -> bool:
        return external_id in self._first_line

    def __len__(self) -> int:
        return len(self._first_line)

    def check(self, external_id: str, line: int) -> bool:
        """``True`` for a new id; reports a duplicate (naming the earlier line) and returns ``False``."""
        first = self._first_line.get(external_id)
        if first is not None:
            self.errors.add(RowError(self.path, line, self.field,
                                     f"duplicate id {external_id!r} (first seen on line {first})"))
            return False
        self._first_line[external_id] = line
        return True


def instant(ts: datetime) -> float:
    """The time part of an interaction's key: unix seconds of the instant (a naive ``ts`` is UTC).

    Equal instants give equal floats and, at microsecond resolution, different instants different floats (a double
    holds 2⁵³ µs, some 285 years); a float hashes several times faster than a fresh aware datetime.
    """
    return (ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)).timestamp()


class UniqueInteractions:
    """Reports a repeated ``(user, item, timestamp)`` row within one interaction file.

    Only a 64-bit hash of each key is kept (about 70 bytes a row rather than the key's strings), so a 10M-row file
    costs well under 1 GiB; a hash collision between two different keys — odds about n²/2⁶⁵ — would report a
    false duplicate, which names both lines so it can be checked by hand.
    """

    def __init__(self, path: Path, errors: ErrorCollector) -> None:
        self.path, self.errors = path, errors
        self._first_line: dict[int, int] = {}

    def check(self, user_id: str, item_id: str, ts: datetime, line: int) -> bool:
        """``True`` for a new row; reports a duplicate and returns ``False``."""
        key = hash((user_id, item_id, instant(ts)))
        first = self._first_line.get(key)
        if first is not None:
            self.errors.add(RowError(self.path, line, None,
                                     f"duplicate interaction (user {user_id!r}, item {item_id!r}, time "
                                     f"{ts.isoformat()}) first seen on line {first}"))
            return False
        self._first_line[key] = line
        return True

    def claim_key(self, key: tuple[str, str, float], line: int) -> bool:
        """Remember ``key`` = ``(user, item, instant(ts))`` at ``line`` and return ``True`` when it is new; ``False``
        (and nothing reported: :meth:`check` names the repeat) when an earlier line has it. For a reader's hot loop,
        which may know the instant without asking the datetime (integral unix seconds are their own instant)."""
        return self._first_line.setdefault(hash(key), line) == line

    def first_line(self, user_id: str, item_id: str, ts: datetime) -> int | None:
        """The line of an earlier row with the same key, if any (for readers that collapse duplicates)."""
        return self._first_line.get(hash((user_id, item_id, instant(ts))))

    def remember(self, user_id: str, item_id: str, ts: datetime, line: int) -> None:
        self._first_line[hash((user_id, item_id, instant(ts)))] = line
