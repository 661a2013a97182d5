"""Interaction matrices for the ALS engine: named datasets, generic CSVs and synthetic generators.

A dataset becomes a users x items ``scipy.sparse.csr_matrix`` (float32 values: ratings or counts) with its id maps and
a timestamp per stored entry (aligned with ``matrix.data``), which is what :mod:`hybrec.als` and its evaluation need.
Duplicate (user, item) pairs are merged: values summed, the latest timestamp kept.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

log = logging.getLogger(__name__)

DEFAULT_DATA_DIR = Path(__file__).resolve().parents[3].parent / "shared" / "data"

#: Named datasets: name -> path relative to the shared data folder.
NAMED_DATASETS: dict[str, str] = {
    "ml-100k": "movielens-100k/u.data",
    "ml-latest-small": "movielens-latest-small/ratings.csv",
    "amazon-industrial": "amazon/industrial_scientific_2018/Industrial_and_Scientific_5core_ratings.csv",
}

#: Synthetic datasets: name -> (users, items, mean interactions per user).
SYNTHETIC_DATASETS: dict[str, tuple[int, int, int]] = {
    "synthetic-1m": (50_000, 20_000, 24),
    "synthetic-10m": (250_000, 60_000, 48),
}


@dataclass(frozen=True)
class InteractionMatrix:
    """A users x items matrix with the external ids of its rows and columns.

    Attributes
    ----------
    matrix : scipy.sparse.csr_matrix
        float32 values (ratings or counts), sorted indices, no duplicates.
    user_ids, item_ids : list[str]
        External id of each row / column.
    timestamps : numpy.ndarray
        int64 seconds since the epoch, one per stored entry, aligned with ``matrix.data``.
    name : str
        Where the data came from.
    """

    matrix: sp.csr_matrix
    user_ids: list[str]
    item_ids: list[str]
    timestamps: np.ndarray
    name: str = ""

    @property
    def timestamp_matrix(self) -> sp.csr_matrix:
        """The timestamps in the same sparsity structure as ``matrix``."""
        return sp.csr_matrix(
            (self.timestamps.astype(np.float64), self.matrix.indices, self.matrix.indptr), shape=self.matrix.shape
        )


def from_triples(
    users: np.ndarray, items: np.ndarray, values: np.ndarray, timestamps: np.ndarray | None = None, name: str = ""
) -> InteractionMatrix:
    """Build an :class:`InteractionMatrix` from parallel arrays of external user ids, item ids and values."""
    if not (len(users) == len(items) == len(values)):
        raise ValueError(f"users, items and values differ in length: {len(users)}, {len(items)}, {len(values)}")
    values = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{name or 'data'}: {int((~np.isfinite(values)).sum())} values are NaN or infinite")
    ts = np.zeros(len(values), dtype=np.int64) if timestamps is None else np.asarray(timestamps, dtype=np.int64)
    user_ids, rows = np.unique(np.asarray(users).astype(str), return_inverse=True)
    item_ids, cols = np.unique(np.asarray(items).astype(str), return_inverse=True)
    # Merge duplicate pairs: sum the values, keep the latest timestamp.
    key = rows.astype(np.int64) * len(item_ids) + cols
    order = np.argsort(key, kind="stable")
    key, values, ts = key[order], values[order], ts[order]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]]) if len(key) else np.zeros(0, dtype=np.int64)
    merged_key = key[starts]
    merged_values = np.add.reduceat(values, starts) if len(key) else values
    merged_ts = np.maximum.reduceat(ts, starts) if len(key) else ts
    matrix = sp.csr_matrix(
        (merged_values.astype(np.float32), (merged_key // len(item_ids), merged_key % len(item_ids))),
        shape=(len(user_ids), len(item_ids)),
    )
    # csr_matrix from sorted unique (row, col) keeps that order, so timestamps stay aligned with matrix.data.
    matrix.sort_indices()
    return InteractionMatrix(matrix, user_ids.tolist(), item_ids.tolist(), merged_ts, name)


def _read_csv_columns(path: Path, columns: tuple[str, ...]) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = [h.strip() for h in next(reader, [])]
        missing = [c for c in columns if c not in header]
        if missing:
            raise ValueError(f"{path}: header {header} lacks column(s) {missing}")
        idx = [header.index(c) for c in columns]
        out: list[list[str]] = [[] for _ in columns]
        for line_no, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) < len(header):
                raise ValueError(f"{path}:{line_no}: expected {len(header)} fields, got {len(row)}")
            for target, i in zip(out, idx, strict=True):
                target.append(row[i])
    return out


def _to_epoch_seconds(raw: list[str]) -> np.ndarray:
    try:
        return np.asarray(raw, dtype=np.float64).astype(np.int64)
    except ValueError:
        return np.asarray(raw, dtype="datetime64[s]").astype(np.int64)


def load_csv(path: str | Path) -> InteractionMatrix:
    """Load a CSV with a header ``user,item,value`` (and optionally ``timestamp``)."""
    path = Path(path)
    with path.open(encoding="utf-8") as handle:
        header = [h.strip() for h in handle.readline().split(",")]
    has_ts = "timestamp" in header
    cols = _read_csv_columns(path, ("user", "item", "value", "timestamp") if has_ts else ("user", "item", "value"))
    try:
        values = np.asarray(cols[2], dtype=np.float64)
    except ValueError as exc:
        raise ValueError(f"{path}: column 'value' must be numeric ({exc})") from exc
    return from_triples(
        np.asarray(cols[0]), np.asarray(cols[1]), values, _to_epoch_seconds(cols[3]) if has_ts else None, str(path)
    )


def load_dataset(name: str, data_dir: str | Path | None = None, seed: int = 0) -> InteractionMatrix:
    """Load a named dataset (``ml-100k``, ``ml-latest-small``, ``amazon-industrial``), a synthetic one
    (``synthetic-1m``, ``synthetic-10m``) or a CSV path with header ``user,item,value``.
    """
    if name in SYNTHETIC_DATASETS:
        n_users, n_items, mean = SYNTHETIC_DATASETS[name]
        return synthetic_interactions(n_users, n_items, mean, seed=seed, name=name)
    if name not in NAMED_DATASETS:
        path = Path(name)
        if path.suffix == ".csv" and path.exists():
            return load_csv(path)
        known = sorted([*NAMED_DATASETS, *SYNTHETIC_DATASETS])
        raise ValueError(f"unknown dataset {name!r}: expected one of {known} or an existing .csv path")
    path = Path(data_dir or DEFAULT_DATA_DIR) / NAMED_DATASETS[name]
    if not path.exists():
        raise FileNotFoundError(f"dataset {name!r} not found at {path}")
    if name == "ml-100k":
        raw = np.loadtxt(path, dtype=np.int64, delimiter="\t")
        return from_triples(raw[:, 0], raw[:, 1], raw[:, 2], raw[:, 3], name)
    if name == "ml-latest-small":
        u, i, r, t = _read_csv_columns(path, ("userId", "movieId", "rating", "timestamp"))
    else:
        u, i, r, t = _read_csv_columns(path, ("userid", "itemid", "rating", "timestamp"))
    return from_triples(np.asarray(u), np.asarray(i), np.asarray(r, dtype=np.float64), _to_epoch_seconds(t), name)


def synthetic_interactions(
    n_users: int,
    n_items: int,
    mean_per_user: int,
    rank: int = 32,
    seed: int = 0,
    name: str = "synthetic",
    taste_share: float = 0.5,
) -> InteractionMatrix:
    """Implicit-feedback counts with a power-law item popularity and a planted low-rank taste structure.

    Every item belongs to one of ``rank`` taste clusters and every user to one; an interaction picks an item of the
    user's cluster by popularity within it (with probability ``taste_share``), otherwise an item by global
    popularity (Zipf, exponent 0.9). Interactions per user are log-normal (at least 2); values are counts
    drawn from Geometric(0.5).
    """
    if min(n_users, n_items, mean_per_user, rank) <= 0:
        raise ValueError("n_users, n_items, mean_per_user and rank must be positive")
    if not 0.0 <= taste_share <= 1.0:
        raise ValueError(f"taste_share must be in [0, 1], got {taste_share}")
    rng = np.random.default_rng(seed)
    popularity = 1.0 / np.arange(1, n_items + 1) ** 0.9
    popularity = popularity[rng.permutation(n_items)]
    item_cluster = rng.integers(0, rank, n_items)
    user_cluster = rng.integers(0, rank, n_users)
    per_user = np.maximum(2, rng.lognormal(np.log(mean_per_user) - 0.5, 1.0, n_users).astype(np.int64))
    per_user = np.minimum(per_user, n_items // 4)
    rows = np.repeat(np.arange(n_users), per_user)
    n = len(rows)
    cols = np.empty(n, dtype=np.int64)
    from_cluster = rng.random(n) < taste_share
    glob_cdf = np.cumsum(popularity) / popularity.sum()
    cols[~from_cluster] = np.searchsorted(glob_cdf, rng.random(int((~from_cluster).sum())))
    # Sample within a cluster: items sorted by cluster, one cumulative popularity per cluster segment.
    order = np.argsort(item_cluster, kind="stable")
    seg = np.searchsorted(item_cluster[order], np.arange(rank + 1))
    cum = np.cumsum(popularity[order])
    lo = np.r_[0.0, cum][seg[:-1]]
    hi = cum[seg[1:] - 1]
    cl = user_cluster[rows[from_cluster]]
    target = lo[cl] + rng.random(len(cl)) * (hi[cl] - lo[cl])
    pos = np.minimum(np.searchsorted(cum, target), seg[1:][cl] - 1)
    cols[from_cluster] = order[np.maximum(pos, seg[:-1][cl])]
    values = rng.geometric(0.5, n).astype(np.float64)
    matrix = sp.csr_matrix((values, (rows, cols)), shape=(n_users, n_items), dtype=np.float64)
    matrix.sum_duplicates()
    ts = 1_600_000_000 + rng.integers(0, 86_400 * 365, matrix.nnz)
    log.info("synthetic %s: %d users x %d items, %d interactions", name, n_users, n_items, matrix.nnz)
    return InteractionMatrix(
        matrix.astype(np.float32).tocsr(),
        [f"u{i}" for i in range(n_users)],
        [f"i{i}" for i in range(n_items)],
        ts,
        name,
    )
