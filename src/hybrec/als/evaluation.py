"""Honest offline evaluation: holdout splits and full-catalog ranking metrics with training items excluded.

Every metric ranks the *whole* catalog for each test user (never sampled negatives, which inflate and reorder results;
Krichene & Rendle 2020, "On Sampled Metrics for Item Recommendation"), after removing the items the user interacted
with in training (or, under strong generalisation, in the fold-in history).

Definitions, for a test user with held-out set T and top-K list L (binary relevance):
``recall@K = |L ∩ T| / |T|``; ``precision@K = |L ∩ T| / K``; ``hitrate@K = [L ∩ T ≠ ∅]``;
``ndcg@K = DCG(L) / IDCG(min(|T|, K))`` with gains ``1 / log2(rank + 1)``;
``map@K = sum_{r ≤ K} P@r · rel_r / min(|T|, K)``; ``mrr = 1 / rank`` of the first held-out item in the full ranking;
``coverage@K`` = distinct items in all top-K lists / catalog size. Users are averaged with equal weight.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from hybrec.als.baselines import ImplicitBaseline, PopularityModel, RandomModel

__all__ = [
    "ImplicitBaseline",
    "PopularityModel",
    "RandomModel",
    "Split",
    "evaluate_model",
    "split_leave_last_out",
    "split_random",
    "split_strong_generalization",
]


@dataclass(frozen=True)
class Split:
    """Train/test matrices of the same shape; ``fold_in`` holds held-out users' history (strong generalisation)."""

    train: sp.csr_matrix
    test: sp.csr_matrix
    fold_in: sp.csr_matrix | None = None
    kind: str = "random"


def _csr(matrix: object) -> sp.csr_matrix:
    if not sp.issparse(matrix):
        raise TypeError(f"expected a scipy.sparse matrix, got {type(matrix).__name__}")
    csr = sp.csr_matrix(matrix, copy=True)
    csr.sum_duplicates()
    csr.eliminate_zeros()
    if csr.nnz == 0:
        raise ValueError("cannot split an empty interaction matrix")
    return csr


def _row_of(csr: sp.csr_matrix) -> np.ndarray:
    return np.repeat(np.arange(csr.shape[0]), np.diff(csr.indptr))


def _take(csr: sp.csr_matrix, keep: np.ndarray) -> sp.csr_matrix:
    coo = csr.tocoo()
    return sp.csr_matrix((coo.data[keep], (coo.row[keep], coo.col[keep])), shape=csr.shape)


def _holdout_mask(csr: sp.csr_matrix, key: np.ndarray, test_fraction: float, rows: np.ndarray | None = None):
    """True for the entries held out: per row, the ``round(test_fraction * n)`` (≥ 1) entries with the largest key,
    only in rows with at least 2 entries (and in ``rows`` when given)."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    row_of = _row_of(csr)
    counts = np.diff(csr.indptr)
    order = np.lexsort((-key, row_of))  # by row, then descending key
    rank = np.empty(csr.nnz, dtype=np.int64)
    rank[order] = np.arange(csr.nnz) - csr.indptr[row_of[order]]
    n_test = np.where(counts >= 2, np.clip(np.rint(test_fraction * counts), 1, counts - 1), 0).astype(np.int64)
    if rows is not None:
        selected = np.zeros(csr.shape[0], dtype=bool)
        selected[rows] = True
        n_test = np.where(selected, n_test, 0)
    return rank < n_test[row_of]


def split_random(matrix: sp.spmatrix, test_fraction: float = 0.2, seed: int = 0) -> Split:
    """Per-user random holdout: each user with ≥ 2 interactions keeps ``1 - test_fraction`` of them for training."""
    csr = _csr(matrix)
    key = np.random.default_rng(seed).random(csr.nnz)
    held = _holdout_mask(csr.tocsr(), key, test_fraction)
    return Split(_take(csr, ~held), _take(csr, held), None, "random")


def split_leave_last_out(matrix: sp.spmatrix, timestamps: np.ndarray) -> Split:
    """Each user's latest interaction (by timestamp, aligned with ``matrix.data``) is the test item; users with a
    single interaction stay in training only. Ties go to the higher column index."""
    csr = sp.csr_matrix(matrix)
    if len(timestamps) != csr.nnz:
        raise ValueError(f"timestamps has {len(timestamps)} entries, the matrix stores {csr.nnz}")
    if csr.nnz == 0:
        raise ValueError("cannot split an empty interaction matrix")
    if not csr.has_canonical_format:
        raise ValueError("leave-last-out needs a canonical CSR (sorted, no duplicates) aligned with the timestamps")
    row_of = _row_of(csr)
    order = np.lexsort((-csr.indices, -np.asarray(timestamps, dtype=np.float64), row_of))
    counts = np.diff(csr.indptr)
    latest = np.zeros(csr.nnz, dtype=bool)
    latest[order[csr.indptr[:-1][counts >= 2]]] = True
    return Split(_take(csr, ~latest), _take(csr, latest), None, "leave-last-out")


def split_strong_generalization(
    matrix: sp.spmatrix, holdout_users: float = 0.1, test_fraction: float = 0.2, seed: int = 0
) -> Split:
    """Held-out users are absent from training; at test time they are folded in from ``1 - test_fraction`` of their
    items and evaluated on the rest (Marlin 2004; Liang et al. 2018)."""
    if not 0.0 < holdout_users < 1.0:
        raise ValueError(f"holdout_users must be in (0, 1), got {holdout_users}")
    csr = _csr(matrix)
    rng = np.random.default_rng(seed)
    eligible = np.flatnonzero(np.diff(csr.indptr) >= 2)
    users = rng.choice(eligible, size=max(1, round(holdout_users * len(eligible))), replace=False)
    is_heldout = np.zeros(csr.shape[0], dtype=bool)
    is_heldout[users] = True
    in_heldout = is_heldout[_row_of(csr)]
    held = _holdout_mask(csr, rng.random(csr.nnz), test_fraction, users)
    return Split(_take(csr, ~in_heldout), _take(csr, held), _take(csr, in_heldout & ~held), "strong-generalization")


def _scores(model: Any, users: np.ndarray, fold_in: sp.csr_matrix | None) -> torch.Tensor:
    if fold_in is not None and hasattr(model, "fold_in"):
        return model.score_vectors(model.fold_in(fold_in[users])).float().cpu()
    return model.score(users).float().cpu()


def evaluate_model(
    model: Any,
    train: sp.csr_matrix,
    test: sp.csr_matrix,
    k: int | Iterable[int] = (10, 20),
    fold_in: sp.csr_matrix | None = None,
    batch_size: int = 1024,
    users: np.ndarray | None = None,
) -> dict[str, float]:
    """Full-catalog ranking metrics of ``model`` on the users with held-out items.

    Parameters
    ----------
    model
        Anything with ``score(user_rows) -> Tensor [k, n_items]`` (ALS models, baselines); with ``fold_in`` given,
        models that have ``fold_in``/``score_vectors`` score the held-out users from their history.
    train, test : scipy.sparse.csr_matrix
        Same shape; training items are excluded from every ranking.
    k : int or iterable of int
        Cut-offs; every ``metric@K`` is reported for each.
    fold_in : scipy.sparse.csr_matrix, optional
        Strong generalisation: the held-out users' history (excluded instead of ``train``).
    users : numpy.ndarray, optional
        Evaluate only these user rows (e.g. a seeded sample on a very large dataset); users without held-out items
        among them are skipped.

    Returns
    -------
    dict
        ``recall@K, precision@K, ndcg@K, map@K, hitrate@K, coverage@K`` per cut-off, ``mrr`` and ``users``.
    """
    ks = sorted({int(k)} if isinstance(k, int | np.integer) else {int(x) for x in k})
    if not ks or ks[0] <= 0:
        raise ValueError(f"cut-offs must be positive integers, got {k}")
    train, test = sp.csr_matrix(train), sp.csr_matrix(test)
    if train.shape != test.shape:
        raise ValueError(f"train {train.shape} and test {test.shape} differ in shape")
    n_items = train.shape[1]
    if ks[-1] > n_items:
        raise ValueError(f"cut-off {ks[-1]} exceeds the catalog size {n_items}")
    history = fold_in if fold_in is not None else train
    has_test = np.diff(test.indptr) > 0
    if users is None:
        users = np.flatnonzero(has_test)
    else:
        users = np.unique(np.asarray(users, dtype=np.int64))
        if users.size and (users.min() < 0 or users.max() >= test.shape[0]):
            raise IndexError(f"users must be rows in [0, {test.shape[0]})")
        users = users[has_test[users]]
    if len(users) == 0:
        raise ValueError("the test matrix has no held-out interactions")
    kmax = ks[-1]
    discounts = 1.0 / np.log2(np.arange(2, kmax + 2))
    sums: dict[str, float] = {f"{m}@{c}": 0.0 for c in ks for m in ("recall", "precision", "ndcg", "map", "hitrate")}
    sums["mrr"] = 0.0
    recommended = {c: np.zeros(n_items, dtype=bool) for c in ks}
    for start in range(0, len(users), batch_size):
        batch = users[start : start + batch_size]
        scores = _scores(model, batch, fold_in)
        seen = history[batch]
        rows = np.repeat(np.arange(len(batch)), np.diff(seen.indptr))
        scores[torch.from_numpy(rows), torch.from_numpy(seen.indices.astype(np.int64))] = float("-inf")
        top = torch.topk(scores, kmax, dim=1).indices.numpy()
        truth = test[batch]
        relevant = np.zeros((len(batch), n_items), dtype=bool)
        relevant[np.repeat(np.arange(len(batch)), np.diff(truth.indptr)), truth.indices] = True
        hits = np.take_along_axis(relevant, top, axis=1)
        n_rel = np.diff(truth.indptr).astype(np.float64)
        for c in ks:
            h = hits[:, :c]
            n_hits = h.sum(1)
            sums[f"recall@{c}"] += float((n_hits / n_rel).sum())
            sums[f"precision@{c}"] += float((n_hits / c).sum())
            sums[f"hitrate@{c}"] += float((n_hits > 0).sum())
            ideal = np.cumsum(discounts[:c])[np.minimum(n_rel, c).astype(np.int64) - 1]
            sums[f"ndcg@{c}"] += float(((h * discounts[:c]).sum(1) / ideal).sum())
            precision_at = np.cumsum(h, axis=1) / np.arange(1, c + 1)
            sums[f"map@{c}"] += float(((precision_at * h).sum(1) / np.minimum(n_rel, c)).sum())
            recommended[c][top[:, :c].ravel()] = True
        # Full-catalog rank of the best-ranked held-out item: 1 + items scoring strictly higher.
        rel_t = torch.from_numpy(relevant)
        best = scores.masked_fill(~rel_t, float("-inf")).max(dim=1).values
        rank = 1 + (scores > best[:, None]).sum(1)
        sums["mrr"] += float((1.0 / rank.double()).sum())
    result = {name: value / len(users) for name, value in sums.items()}
    for c in ks:
        result[f"coverage@{c}"] = float(recommended[c].sum()) / n_items
    result["users"] = float(len(users))
    return result
