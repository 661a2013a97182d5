"""Reference recommenders for the evaluation table: popularity, random, and ``implicit`` (when installed)."""

from __future__ import annotations

import os

import numpy as np
import scipy.sparse as sp
import torch


class PopularityModel:
    """Scores every item by its number of training interactions (the same list for everyone)."""

    def __init__(self) -> None:
        self.item_counts: torch.Tensor | None = None

    def fit(self, user_items: sp.csr_matrix, show_progress: bool = False) -> PopularityModel:
        counts = np.diff(sp.csc_matrix(user_items).indptr).astype(np.float32)
        self.item_counts = torch.from_numpy(counts)
        return self

    def score(self, user_rows: np.ndarray) -> torch.Tensor:
        if self.item_counts is None:
            raise RuntimeError("PopularityModel is not fitted")
        return self.item_counts.expand(len(np.atleast_1d(user_rows)), -1).clone()


class RandomModel:
    """Uniformly random scores (seeded): the floor any model must beat."""

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self.n_items: int | None = None

    def fit(self, user_items: sp.csr_matrix, show_progress: bool = False) -> RandomModel:
        self.n_items = user_items.shape[1]
        self._generator = torch.Generator().manual_seed(self.seed)
        return self

    def score(self, user_rows: np.ndarray) -> torch.Tensor:
        if self.n_items is None:
            raise RuntimeError("RandomModel is not fitted")
        return torch.rand(len(np.atleast_1d(user_rows)), self.n_items, generator=self._generator)


class ImplicitBaseline:
    """benfred/implicit's CPU ``AlternatingLeastSquares`` on the same objective as :class:`hybrec.als.ImplicitALS`.

    implicit takes the matrix values as confidences, so it is fed ``1 + alpha * r`` with its own ``alpha=1``. Needs
    the optional ``implicit`` package (a development / benchmark dependency).
    """

    def __init__(
        self,
        factors: int = 64,
        regularization: float = 0.01,
        alpha: float = 1.0,
        iterations: int = 15,
        num_threads: int = 0,
        seed: int = 0,
        use_cg: bool = True,
    ) -> None:
        try:
            from implicit.cpu.als import AlternatingLeastSquares
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError("ImplicitBaseline needs the optional 'implicit' package (pip install implicit)") from exc
        if "OPENBLAS_NUM_THREADS" not in os.environ:
            import logging

            logging.getLogger(__name__).debug("OPENBLAS_NUM_THREADS is unset; implicit advises setting it to 1")
        self.alpha = alpha
        self.model = AlternatingLeastSquares(
            factors=factors,
            regularization=regularization,
            alpha=1.0,
            iterations=iterations,
            num_threads=num_threads,
            random_state=seed,
            use_cg=use_cg,
            use_native=True,
        )
        self._train: sp.csr_matrix | None = None

    def _confidence(self, user_items: sp.csr_matrix) -> sp.csr_matrix:
        matrix = sp.csr_matrix(user_items, dtype=np.float32, copy=True)
        matrix.data = 1.0 + self.alpha * matrix.data
        return matrix

    def fit(self, user_items: sp.csr_matrix, show_progress: bool = False) -> ImplicitBaseline:
        self._train = self._confidence(user_items)
        self.model.fit(self._train, show_progress=show_progress)
        return self

    @property
    def user_factors(self) -> torch.Tensor:
        return torch.from_numpy(np.asarray(self.model.user_factors))

    @property
    def item_factors(self) -> torch.Tensor:
        return torch.from_numpy(np.asarray(self.model.item_factors))

    def score(self, user_rows: np.ndarray) -> torch.Tensor:
        return self.user_factors[torch.from_numpy(np.atleast_1d(user_rows).astype(np.int64))] @ self.item_factors.T

    def fold_in(self, user_items_rows: sp.csr_matrix) -> torch.Tensor:
        rows = self._confidence(user_items_rows)
        vectors = self.model.recalculate_user(np.arange(rows.shape[0]), rows)
        return torch.from_numpy(np.asarray(vectors, dtype=np.float32)).reshape(rows.shape[0], -1)

    def score_vectors(self, user_vectors: torch.Tensor) -> torch.Tensor:
        return user_vectors @ self.item_factors.T

    def recommend(self, user_rows: np.ndarray, n: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """implicit's own batched top-n with seen items excluded (for the speed comparison)."""
        if self._train is None:
            raise RuntimeError("ImplicitBaseline is not fitted")
        users = np.atleast_1d(user_rows)
        return self.model.recommend(users, self._train[users], N=n, filter_already_liked_items=True)
