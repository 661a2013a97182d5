"""Input validation shared by the ALS models: every rejection names what is wrong."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
import torch


def check_interactions(matrix: object, name: str = "user_items") -> sp.csr_matrix:
    """A float32 CSR copy with sorted indices and no stored zeros; rejects empty, NaN and infinite input.

    Negative values are allowed: for implicit feedback they mean an explicit dislike (preference 0 with confidence
    ``1 + alpha * |r|``), for ratings they are ratings.
    """
    if not sp.issparse(matrix):
        raise TypeError(f"{name} must be a scipy.sparse matrix (users x items), got {type(matrix).__name__}")
    csr = sp.csr_matrix(matrix, dtype=np.float32, copy=True)
    if csr.shape[0] == 0 or csr.shape[1] == 0:
        raise ValueError(f"{name} has shape {csr.shape}: it needs at least one row and one column")
    csr.sum_duplicates()
    csr.eliminate_zeros()
    if csr.nnz == 0:
        raise ValueError(f"{name} is empty: it has no nonzero interactions to learn from")
    bad = ~np.isfinite(csr.data)
    if bad.any():
        rows = np.unique(np.repeat(np.arange(csr.shape[0]), np.diff(csr.indptr))[bad])
        raise ValueError(f"{name} holds {int(bad.sum())} NaN/infinite value(s), in row(s) {rows[:10].tolist()}")
    csr.sort_indices()
    return csr


def check_positive_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or int(value) <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def check_non_negative(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.number) or not math.isfinite(float(value)):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if float(value) < 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return float(value)


def check_rows(rows: int | Sequence[int] | np.ndarray | torch.Tensor, limit: int, what: str) -> np.ndarray:
    """Row ids as int64 numpy, all in ``[0, limit)``."""
    array = rows.cpu().numpy() if isinstance(rows, torch.Tensor) else np.asarray(rows)
    array = np.atleast_1d(array)
    if array.ndim != 1 or (array.size and not np.issubdtype(array.dtype, np.integer)):
        raise TypeError(f"{what} ids must be integers (a scalar or 1-D), got dtype {array.dtype} shape {array.shape}")
    array = array.astype(np.int64)
    bad = array[(array < 0) | (array >= limit)]
    if bad.size:
        raise IndexError(f"{what} id(s) {bad[:10].tolist()} out of range: the model has {limit} {what}s")
    return array


def check_finite_factors(factors: torch.Tensor, what: str) -> None:
    """Raise ``FloatingPointError`` naming the rows whose factors are NaN or infinite."""
    bad = ~torch.isfinite(factors).all(dim=1)
    if bool(bad.any()):
        rows = torch.nonzero(bad).flatten()
        raise FloatingPointError(
            f"{int(rows.numel())} {what} factor row(s) are not finite after fitting: {rows[:10].tolist()} "
            "(lower alpha, raise the regularisation, or check the input scale)"
        )
