"""MovieLens readers: ML-100K and ml-latest-small (GroupLens).

Harper & Konstan, *The MovieLens Datasets: History and Context*, ACM TiiS 5(4), 2015.

:func:`read_movielens` detects the variant from the files in the folder:

* **ML-100K** (``u.data``): ``u.data`` is ``user \\t item \\t rating \\t unix_ts`` (ratings 1-5); ``u.item`` is
  ``|``-separated **latin-1** ``id|title|release date|video release|IMDb URL|19 genre flags`` (genre names from
  ``u.genre``); ``u.user`` is ``id|age|gender|occupation|zip`` (optional: without it, users come from ``u.data``).
* **ml-latest-small** (``ratings.csv``): ``userId,movieId,rating,timestamp`` (ratings 0.5-5) and
  ``movieId,title,genres`` (``|``-joined genres, ``(no genres listed)`` for none); users come from the ratings.

Records: ids are the source's numbers as strings; each rating is an interaction of kind ``"rating"`` with its
timestamp in UTC; an item's ``name`` is the title, ``category`` its first genre, ``attributes`` hold ``genres``,
``year`` (from the title's ``(1995)`` or the release date) and, for ML-100K, ``release_date`` and ``imdb_url``;
ML-100K users carry ``age``, ``gender``, ``occupation`` and ``zip`` attributes.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from hybrec.data.cleaning import normalise_whitespace, parse_rating, parse_timestamp
from hybrec.data.io import CsvTable
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

ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama", "Fantasy",
    "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
)
_TITLE_YEAR = re.compile(r"\((\d{4})\)\s*$")
_NO_GENRES = "(no genres listed)"


def read_movielens(directory: Path, errors: ErrorCollector) -> SourceData:
    """Read a MovieLens folder (ML-100K or ml-latest-small) as lazily streamed records.

    Parameters
    ----------
    directory:
        The dataset folder, holding ``u.data`` (ML-100K) or ``ratings.csv`` (ml-latest-small).
    errors:
        What to do with a bad row (raise, or skip and record).

    Raises
    ------
    DataError
        When the folder holds neither variant (raised at once), or — while the streams are consumed — for a bad row
        the collector does not skip, an empty file or a missing column.
    """
    directory = Path(directory)
    if (directory / "u.data").is_file():
        return _read_100k(directory, errors)
    if (directory / "ratings.csv").is_file():
        return _read_latest_small(directory, errors)
    raise DataError("not a MovieLens folder: expected u.data (ML-100K) or ratings.csv (ml-latest-small)",
                    file=directory)


# --- ML-100K -------------------------------------------------------------------------------------------------------


def _read_100k(directory: Path, errors: ErrorCollector) -> SourceData:
    ratings = directory / "u.data"
    items = directory / "u.item"
    if not items.is_file():
        raise DataError("ML-100K folder without u.item", file=items)
    users = directory / "u.user"
    user_stream = _users_100k(users, errors) if users.is_file() else _users_from_ratings(ratings, errors)
    return SourceData(
        name=f"movielens-100k:{directory.name}",
        users=user_stream,
        items=_items_100k(items, _genres_100k(directory / "u.genre", errors), errors),
        interactions=_ratings_100k(ratings, errors),
    )


def _genres_100k(path: Path, errors: ErrorCollector) -> tuple[str, ...]:
    if not path.is_file():
        return ML100K_GENRES
    table = CsvTable(path, errors, delimiter="|", quoting=csv.QUOTE_NONE, header=("name", "index"), desc=path.name)
    genres: dict[int, str] = {}
    for line, (name, index) in table.rows():
        try:
            genres[int(index)] = name.strip()
        except ValueError:
            errors.add(RowError(path, line, "index", f"not an integer: {index!r}"))
    return tuple(genres[i] for i in sorted(genres))


def _users_100k(path: Path, errors: ErrorCollector) -> Iterator[UserRecord]:
    table = CsvTable(path, errors, delimiter="|", quoting=csv.QUOTE_NONE,
                     header=("user_id", "age", "gender", "occupation", "zip"), desc=path.name)
    seen = UniqueIds(path, "user_id", errors)
    for line, (raw_id, age, gender, occupation, zip_code) in table.rows():
        user_id = required_id(raw_id, path, line, "user_id", errors)
        if user_id is None or not seen.check(user_id, line):
            continue
        try:
            age_value: int | None = int(age) if age.strip() else None
        except ValueError:
            errors.add(RowError(path, line, "age", f"not an integer: {age!r}"))
            continue
        yield UserRecord(user_id, {"age": age_value, "gender": gender.strip() or None,
                                   "occupation": occupation.strip() or None, "zip": zip_code.strip() or None})


def _items_100k(path: Path, genres: tuple[str, ...], errors: ErrorCollector) -> Iterator[ItemRecord]:
    header = ("item_id", "title", "release_date", "video_release_date", "imdb_url", *genres)
    table = CsvTable(path, errors, delimiter="|", quoting=csv.QUOTE_NONE, encoding="latin-1", header=header,
                     desc=path.name)
    seen = UniqueIds(path, "item_id", errors)
    for line, row in table.rows():
        item_id = required_id(row[0], path, line, "item_id", errors)
        if item_id is None or not seen.check(item_id, line):
            continue
        title = normalise_whitespace(row[1])
        if not title:
            errors.add(RowError(path, line, "title", "missing value"))
            continue
        flags = row[5:]
        if any(flag.strip() not in ("0", "1") for flag in flags):
            errors.add(RowError(path, line, "genres", "genre flags must be 0 or 1"))
            continue
        item_genres = [genre for genre, flag in zip(genres, flags, strict=True) if flag.strip() == "1"]
        release = _release_date(row[2])
        attributes: dict[str, Any] = {
            "genres": item_genres,
            "year": _title_year(title) or (release.year if release else None),
            "release_date": release.date().isoformat() if release else None,
            "imdb_url": row[4].strip() or None,
        }
        yield ItemRecord(item_id, title, category=item_genres[0] if item_genres else None, attributes=attributes)


def _ratings_100k(path: Path, errors: ErrorCollector) -> Iterator[InteractionRecord]:
    table = CsvTable(path, errors, delimiter="\t", quoting=csv.QUOTE_NONE,
                     header=("user_id", "item_id", "rating", "timestamp"), desc=path.name)
    yield from _rating_records(table, (0, 1, 2, 3), low=1.0, high=5.0)


# --- ml-latest-small -----------------------------------------------------------------------------------------------


def _read_latest_small(directory: Path, errors: ErrorCollector) -> SourceData:
    ratings = directory / "ratings.csv"
    movies = directory / "movies.csv"
    if not movies.is_file():
        raise DataError("ml-latest-small folder without movies.csv", file=movies)
    return SourceData(
        name=f"movielens-latest-small:{directory.name}",
        users=_users_from_ratings(ratings, errors),
        items=_movies_latest(movies, errors),
        interactions=_ratings_latest(ratings, errors),
    )


def _movies_latest(path: Path, errors: ErrorCollector) -> Iterator[ItemRecord]:
    table = CsvTable(path, errors, desc=path.name)
    id_col, title_col, genres_col = table.column("movieId"), table.column("title"), table.column("genres")
    seen = UniqueIds(path, "movieId", errors)
    for line, row in table.rows():
        item_id = required_id(row[id_col], path, line, "movieId", errors)
        if item_id is None or not seen.check(item_id, line):
            continue
        title = normalise_whitespace(row[title_col])
        if not title:
            errors.add(RowError(path, line, "title", "missing value"))
            continue
        raw_genres = row[genres_col].strip()
        genres = [] if raw_genres in ("", _NO_GENRES) else [g.strip() for g in raw_genres.split("|") if g.strip()]
        yield ItemRecord(item_id, title, category=genres[0] if genres else None,
                         attributes={"genres": genres, "year": _title_year(title)})


def _ratings_latest(path: Path, errors: ErrorCollector) -> Iterator[InteractionRecord]:
    table = CsvTable(path, errors, desc=path.name)
    columns = (table.column("userId"), table.column("movieId"), table.column("rating"), table.column("timestamp"))
    yield from _rating_records(table, columns, low=0.5, high=5.0)


# --- shared --------------------------------------------------------------------------------------------------------


def _rating_records(
    table: CsvTable, columns: tuple[int, int, int, int], *, low: float, high: float
) -> Iterator[InteractionRecord]:
    path, errors = table.path, table.errors
    user_col, item_col, rating_col, ts_col = columns
    names = [table.columns[c] for c in columns]
    seen = UniqueInteractions(path, errors)
    source = str(path)
    for line, row in table.rows():
        user_id = required_id(row[user_col], path, line, names[0], errors)
        item_id = required_id(row[item_col], path, line, names[1], errors)
        if user_id is None or item_id is None:
            continue
        try:
            rating = parse_rating(row[rating_col], low=low, high=high)
        except ValueError as exc:
            errors.add(RowError(path, line, names[2], str(exc)))
            continue
        try:
            ts = parse_timestamp(row[ts_col])
        except ValueError as exc:
            errors.add(RowError(path, line, names[3], str(exc)))
            continue
        if not seen.check(user_id, item_id, ts, line):
            continue
        yield InteractionRecord(user_id, item_id, "rating", ts, rating=rating, source_file=source, source_line=line)


def _users_from_ratings(path: Path, errors: ErrorCollector) -> Iterator[UserRecord]:
    """Users named by a ratings file, in order of first appearance (a quick pass over the user column only).

    Bad rows are not reported here — the interaction stream reports them — so a user whose every row is invalid
    may still appear (with no interactions) when bad rows are skipped.
    """
    quiet = ErrorCollector(skip_invalid=True)
    if path.name == "u.data":
        table = CsvTable(path, quiet, delimiter="\t", quoting=csv.QUOTE_NONE,
                         header=("user_id", "item_id", "rating", "timestamp"), desc=f"{path.name} (users)")
        user_col = 0
    else:
        table = CsvTable(path, quiet, desc=f"{path.name} (users)")
        user_col = table.column("userId")
    seen: set[str] = set()
    for _line, row in table.rows():
        user_id = row[user_col].strip()
        if user_id and user_id not in seen:
            seen.add(user_id)
            yield UserRecord(user_id)
    if quiet.errors and not errors.skip_invalid:
        errors.add(quiet.errors[0])


def _title_year(title: str) -> int | None:
    match = _TITLE_YEAR.search(title)
    return int(match.group(1)) if match else None


def _release_date(value: str) -> datetime | None:
    try:
        return datetime.strptime(value.strip(), "%d-%b-%Y")
    except ValueError:
        return None
