"""Cleaning rules for raw catalogue and interaction fields.

Each function takes one raw value and returns the clean value, ``None`` for "no value", or raises
:class:`ValueError` with a message a reader turns into a :class:`~hybrec.data.records.RowError` (file, line, field).

Rules
-----
* Text (:func:`clean_text`): HTML tags stripped (also an unterminated trailing tag such as the Amazon meta junk
  ``<span class="a-size-medium"``), ``<script>``/``<style>`` blocks dropped with their content, HTML entities
  unescaped (repeatedly, so ``&amp;#39;`` becomes ``'``), Unicode NFKC-normalised, whitespace collapsed to single
  spaces. An empty result is ``None``.
* Prices (:func:`parse_price`): ``"$1,299.00"`` -> ``1299.0``; a range ``"$10.00 - $25.00"`` -> its **lower bound**
  (``10.0``), the "from" price a shop shows and the one a "under $X" filter must respect; empty strings, junk HTML
  and CSS -> ``None`` (or :class:`ValueError` with ``strict=True``); a negative price -> :class:`ValueError`.
* Ratings (:func:`parse_rating`): a finite number inside ``[low, high]``, else :class:`ValueError`.
* Timestamps (:func:`parse_timestamp`): unix seconds (int, float or numeric string; values above ``1e11`` are taken
  as milliseconds) or ISO 8601; naive values are UTC; always returns an aware UTC ``datetime``.
* Duplicate metadata rows (:func:`merge_fields`): the first row's non-empty values win, later rows fill its gaps.
"""

from __future__ import annotations

import html
import math
import re
import unicodedata
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from hybrec.data.records import INTERACTION_KINDS

_SCRIPT_STYLE = re.compile(r"<(script|style)\b.*?(?:</\1\s*>|$)", re.IGNORECASE | re.DOTALL)
# A tag starts with '<' followed by a letter, '/', '!' or '?'; an unterminated one runs to the end of the text.
_TAG = re.compile(r"<[A-Za-z/!?][^<>]*(?:>|$)")
_WHITESPACE = re.compile(r"\s+")
_STRAY_TAG_END = re.compile(r"(?<!\S)/>(?!\S)")  # left over from tags the scraper cut ("... Scientific />")
_PRICE = re.compile(r"^(-)?\s*\$?\s*(-)?\s*(\d[\d,]*(?:\.\d+)?|\.\d+)$")
_RANGE = re.compile(r"^(.+?)\s+(?:-|–|to)\s+(.+)$")


def normalise_whitespace(value: str) -> str:
    """NFKC-normalise ``value`` and collapse every run of whitespace to one space, stripped at both ends."""
    return _WHITESPACE.sub(" ", unicodedata.normalize("NFKC", value)).strip()


def strip_html(value: str) -> str:
    """``value`` with HTML tags (and script/style blocks) removed, each replaced by a space."""
    return _TAG.sub(" ", _SCRIPT_STYLE.sub(" ", value))


def clean_text(value: Any) -> str | None:
    """Clean one text field: strip tags, unescape entities, NFKC, collapse whitespace; ``None`` when empty.

    A list (Amazon ``description`` is a list of paragraphs) is cleaned item by item and joined with spaces.
    """
    if value is None:
        return None
    if isinstance(value, list | tuple):
        return clean_text(" ".join(str(v) for v in value if v is not None))
    text = strip_html(str(value))
    for _ in range(3):  # double-escaped entities ("&amp;#39;") occur in Amazon meta
        unescaped = html.unescape(text)
        if unescaped == text:
            break
        text = unescaped
    text = _STRAY_TAG_END.sub(" ", strip_html(text))  # tags that were themselves escaped ("&lt;br&gt;")
    cleaned = normalise_whitespace(text)
    return cleaned or None


def clean_list(values: Any) -> list[str]:
    """Clean each entry of a list of texts; drop empty entries and repeats, keeping the first occurrence's order."""
    if values is None:
        return []
    if isinstance(values, str):
        values = [values]
    seen: dict[str, None] = {}
    for value in values:
        cleaned = clean_text(value)
        if cleaned is not None and cleaned not in seen:
            seen[cleaned] = None
    return list(seen)


def parse_price(value: Any, *, strict: bool = False) -> float | None:
    """Parse a price; see the module docstring for the rules.

    Parameters
    ----------
    value:
        A number, a string such as ``"$1,299.00"`` or ``"$10.00 - $25.00"``, or ``None``.
    strict:
        Raise :class:`ValueError` for a non-empty value that is not a price (typed CSV columns) instead of
        returning ``None`` (scraped Amazon meta, where junk is common).

    Raises
    ------
    ValueError
        For a negative price, a NaN/infinite number, or (``strict``) an unparseable value.
    """
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        number = float(value)
        if not math.isfinite(number):
            raise ValueError(f"price is not a finite number: {value!r}")
        if number < 0:
            raise ValueError(f"negative price: {value!r}")
        return number
    text = clean_text(str(value))
    if text is None:
        return None
    range_match = _RANGE.match(text)
    if range_match:
        low = parse_price(range_match.group(1), strict=strict)
        high = parse_price(range_match.group(2), strict=strict)
        if low is None or high is None:
            return None
        return min(low, high)
    match = _PRICE.match(text)
    if not match:
        if strict:
            raise ValueError(f"not a price: {_preview(value)}")
        return None
    number = float(match.group(3).replace(",", ""))
    if (match.group(1) or match.group(2)) and number > 0:
        raise ValueError(f"negative price: {_preview(value)}")
    return number


def parse_rating(value: Any, *, low: float = 1.0, high: float = 5.0) -> float:
    """A rating as a float inside ``[low, high]``.

    Raises
    ------
    ValueError
        When the value is missing, not a number, NaN/infinite, or outside the range.
    """
    if value.__class__ is not bool:
        try:
            number = float(value)
        except (TypeError, ValueError):
            pass
        else:
            if low <= number <= high:  # NaN fails this comparison too
                return number
    # Slow path: say what is wrong.
    if value is None or (isinstance(value, str) and not value.strip()):
        raise ValueError("rating is missing")
    try:
        number = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        raise ValueError(f"rating is not a number: {_preview(value)}") from None
    if isinstance(value, bool):
        raise ValueError(f"rating is not a number: {value!r}")
    if not math.isfinite(number):
        raise ValueError(f"rating is not a finite number: {_preview(value)}")
    raise ValueError(f"rating {number:g} is outside the range {low:g}-{high:g}")


def parse_timestamp(value: Any) -> datetime:
    """An aware UTC datetime from unix seconds (or milliseconds above ``1e11``) or an ISO 8601 string.

    Raises
    ------
    ValueError
        When the value is missing or neither a number nor an ISO date.
    """
    if value.__class__ is str:
        try:
            seconds = float(value)  # the common case: unix seconds as text
        except ValueError:
            pass
        else:
            return _from_unix(seconds, value)
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if value is None or isinstance(value, bool):
        raise ValueError("timestamp is missing")
    if isinstance(value, int | float):
        return _from_unix(float(value), value)
    text = str(value).strip()
    if not text:
        raise ValueError("timestamp is missing")
    try:
        return _from_unix(float(text), value)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    except ValueError:
        raise ValueError(f"not a unix or ISO 8601 timestamp: {_preview(value)}") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _from_unix(seconds: float, original: Any) -> datetime:
    if not math.isfinite(seconds):
        raise ValueError(f"timestamp is not a finite number: {_preview(original)}")
    if abs(seconds) > 1e11:
        seconds /= 1000.0
    try:
        return datetime.fromtimestamp(seconds, tz=UTC)
    except (OverflowError, OSError, ValueError):
        raise ValueError(f"timestamp out of range: {_preview(original)}") from None


def parse_weight(value: Any) -> float:
    """An implicit-feedback strength: a positive finite number.

    Raises
    ------
    ValueError
        When the value is not a number, not positive, or infinite.
    """
    try:
        weight = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"not a number: {_preview(value)}") from None
    if not 0 < weight < math.inf:
        raise ValueError(f"must be a positive finite number, got {_preview(value)}")
    return weight


def parse_kind(value: Any, default: str) -> str:
    """An interaction kind (one of :data:`~hybrec.data.records.INTERACTION_KINDS`, case-insensitive); ``default``
    when the value is empty.

    Raises
    ------
    ValueError
        For an unknown kind.
    """
    kind = "" if value is None else str(value).strip().lower()
    if not kind:
        return default
    if kind not in INTERACTION_KINDS:
        raise ValueError(f"unknown interaction kind {value!r} (expected one of {', '.join(INTERACTION_KINDS)})")
    return kind


def is_empty(value: Any) -> bool:
    """Whether a field carries no information (``None``, blank string, empty list/dict)."""
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, list | tuple | dict | set):
        return len(value) == 0
    return False


def merge_fields(first: Mapping[str, Any], later: Mapping[str, Any]) -> dict[str, Any]:
    """Collapse a duplicate row into the first: ``first``'s non-empty values win, ``later`` fills the empty ones."""
    merged = dict(first)
    for key, value in later.items():
        if is_empty(merged.get(key)) and not is_empty(value):
            merged[key] = value
    return merged


def last_distinct(values: Iterable[str]) -> str | None:
    """The most specific entry of a category breadcrumb: its last non-empty entry."""
    result = None
    for value in values:
        if value:
            result = value
    return result


def _preview(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
