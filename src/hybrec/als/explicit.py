"""Explicit-rating ALS with weighted-lambda regularisation (ALS-WR, Zhou, Wilkinson, Schreiber & Pan 2008)."""

from __future__ import annotations

from typing import Unpack

import numpy as np
import scipy.sparse as sp
import torch

from hybrec.als._checks import check_interactions, check_rows
from hybrec.als.base import AlternatingLeastSquaresBase, RuntimeOptions

_CHUNK = 1 << 18


class ExplicitALS(AlternatingLeastSquaresBase):
    """Rating prediction by ALS-WR.

    Minimises ``sum_{(u,i) rated} (r_ui - mu - x_u.y_i)^2 + lambda (sum_u n_u |x_u|^2 + sum_i n_i |y_i|^2)`` where
    ``n_u`` / ``n_i`` count the ratings of a user / item ("Large-scale Parallel Collaborative Filtering for the Netflix
    Prize", Zhou et al. 2008) and ``mu`` is the global mean rating (``center=True``) or 0. Unrated pairs carry no
    weight. ``loss_history`` holds the training RMSE per iteration; :meth:`rmse` scores any held-out ratings.

    Parameters
    ----------
    factors : int, default 64
    regularization : float, default 0.05
        lambda, multiplied by each row's rating count.
    iterations : int, default 15
    solver : {"cholesky", "cg"}, default "cholesky"
        Exact solve (ALS-WR as published) or warm-started conjugate gradient.
    cg_steps : int, default 3
    center : bool, default True
        Factorise ratings minus their global mean.
    device, seed, num_threads, calculate_training_loss, backend
        As in :class:`hybrec.als.ImplicitALS`.
    """

    param_names = ("factors", "regularization", "iterations", "solver", "cg_steps", "center", "seed")

    def __init__(
        self,
        factors: int = 64,
        regularization: float = 0.05,
        iterations: int = 15,
        solver: str = "cholesky",
        cg_steps: int = 3,
        center: bool = True,
        **options: Unpack[RuntimeOptions],
    ) -> None:
        super().__init__(factors, regularization, iterations, solver, cg_steps, **options)
        self.center = bool(center)
        self.global_mean = 0.0

    def _prepare(self, matrix: sp.csr_matrix) -> sp.csr_matrix:
        self.global_mean = float(matrix.data.mean()) if self.center else 0.0
        return matrix

    def _weights(self, data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.ones_like(data), data - self.global_mean

    def _row_regularization(self, counts: np.ndarray, n_other: int) -> np.ndarray:
        # max(n, 1): a row without ratings keeps a well-posed system (its factor is zero anyway).
        return self.regularization * np.maximum(counts, 1).astype(np.float64)

    def _gramian(self, other: torch.Tensor) -> torch.Tensor:
        return torch.zeros(other.shape[1], other.shape[1], device=other.device)

    def _score_offset(self) -> float:
        return self.global_mean

    def _loss(
        self, matrix: sp.csr_matrix, X: torch.Tensor, Y: torch.Tensor, reg_u: torch.Tensor, reg_i: torch.Tensor
    ) -> float:
        return self._rmse(matrix, X, Y)

    def _rmse(self, matrix: sp.csr_matrix, X: torch.Tensor, Y: torch.Tensor) -> float:
        rows = np.repeat(np.arange(matrix.shape[0]), np.diff(matrix.indptr))
        squared = 0.0
        for start in range(0, matrix.nnz, _CHUNK):
            sl = slice(start, start + _CHUNK)
            u = torch.from_numpy(rows[sl]).to(X.device)
            i = torch.from_numpy(matrix.indices[sl].astype(np.int64)).to(X.device)
            predicted = (X[u] * Y[i]).sum(1) + self.global_mean
            squared += float(((torch.from_numpy(matrix.data[sl]).to(X.device) - predicted) ** 2).sum())
        return float(np.sqrt(squared / max(matrix.nnz, 1)))

    def predict(self, user_rows: np.ndarray, item_rows: np.ndarray) -> torch.Tensor:
        """Predicted ratings for parallel arrays of user and item rows."""
        X, Y = self._require_fitted()
        users = check_rows(user_rows, X.shape[0], "user")
        items = check_rows(item_rows, Y.shape[0], "item")
        if len(users) != len(items):
            raise ValueError(f"user_rows and item_rows differ in length: {len(users)} vs {len(items)}")
        return (X[torch.from_numpy(users)] * Y[torch.from_numpy(items)]).sum(1) + self.global_mean

    def rmse(self, ratings: sp.csr_matrix) -> float:
        """Root-mean-square error on the stored ratings of ``ratings`` (users x items, same shape as training)."""
        X, Y = self._require_fitted()
        matrix = check_interactions(ratings, "ratings")
        if matrix.shape != (X.shape[0], Y.shape[0]):
            raise ValueError(f"ratings has shape {matrix.shape}, the model is {(X.shape[0], Y.shape[0])}")
        return self._rmse(matrix, X, Y)
