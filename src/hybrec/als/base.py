"""The alternating-least-squares loop and the serving methods shared by implicit ALS and ALS-WR.

A subclass defines its objective through three hooks: the per-nonzero weights of its row systems
(:meth:`AlternatingLeastSquaresBase._weights`), the per-row ridge term (:meth:`_row_regularization`) and the shared
Gramian (:meth:`_gramian`); the solve itself is :func:`hybrec.als.solvers.solve_rows`.
"""

from __future__ import annotations

import logging
import time
from typing import Any, TypedDict

import numpy as np
import scipy.sparse as sp
import torch
from tqdm.auto import tqdm

from hybrec.als._checks import (
    check_finite_factors,
    check_interactions,
    check_non_negative,
    check_positive_int,
    check_rows,
)
from hybrec.als.kernel import fused_kernel_or_none, kernel_is_built
from hybrec.als.solvers import BACKENDS, METHODS, RowSystems, solve_rows
from hybrec.als.topk import check_item_mask, top_k

log = logging.getLogger(__name__)


class RuntimeOptions(TypedDict, total=False):
    """The keyword arguments every ALS variant takes besides its objective (documented on
    :class:`hybrec.als.ImplicitALS`; defaults in :class:`AlternatingLeastSquaresBase`)."""

    device: str
    seed: int
    num_threads: int
    calculate_training_loss: bool
    backend: str


class AlternatingLeastSquaresBase:
    """Common state: factors, hyperparameters, fit loop, recommend / similar_items / fold_in."""

    #: Names of the constructor arguments, saved with an artifact and used by ``get_params``.
    param_names: tuple[str, ...] = ()

    def __init__(
        self,
        factors: int,
        regularization: float,
        iterations: int,
        solver: str,
        cg_steps: int,
        *,
        device: str = "cpu",
        seed: int = 0,
        num_threads: int = 0,
        calculate_training_loss: bool = False,
        backend: str = "auto",
    ) -> None:
        self.factors = check_positive_int(factors, "factors")
        self.regularization = check_non_negative(regularization, "regularization")
        self.iterations = check_positive_int(iterations, "iterations")
        if solver not in METHODS:
            raise ValueError(f"solver must be one of {METHODS}, got {solver!r}")
        self.solver = solver
        self.cg_steps = check_positive_int(cg_steps, "cg_steps")
        self.device = str(torch.device(device))
        self.seed = int(seed)
        if isinstance(num_threads, bool) or not isinstance(num_threads, int) or num_threads < 0:
            raise ValueError(f"num_threads must be an integer >= 0 (0 = torch's default), got {num_threads!r}")
        self.num_threads = num_threads
        self.calculate_training_loss = bool(calculate_training_loss)
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        self.backend = backend
        self.user_factors: torch.Tensor | None = None
        self.item_factors: torch.Tensor | None = None
        self.loss_history: list[float] = []
        self.seconds_per_iteration: float | None = None
        self.backend_used: str | None = None
        self._train: sp.csr_matrix | None = None
        self._item_gramian: torch.Tensor | None = None
        self._item_gramian_of: torch.Tensor | None = None

    # ----------------------------------------------------------------- hooks for the objective
    def _prepare(self, matrix: sp.csr_matrix) -> sp.csr_matrix:
        """Per-fit preparation of the (validated) matrix; returns the matrix the weights are computed from."""
        return matrix

    def _weights(self, data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def _row_regularization(self, counts: np.ndarray, n_other: int) -> np.ndarray:
        raise NotImplementedError

    def _gramian(self, other: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _loss(
        self, matrix: sp.csr_matrix, X: torch.Tensor, Y: torch.Tensor, reg_u: torch.Tensor, reg_i: torch.Tensor
    ) -> float:
        raise NotImplementedError

    # ----------------------------------------------------------------- fitting
    def get_params(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.param_names}

    def _systems(self, matrix: sp.csr_matrix) -> RowSystems:
        a_weight, b_weight = self._weights(matrix.data)
        return RowSystems.from_csr(matrix, a_weight, b_weight)

    def _regularization_tensor(self, matrix: sp.csr_matrix) -> torch.Tensor:
        counts = np.diff(matrix.indptr)
        return torch.from_numpy(self._row_regularization(counts, matrix.shape[1]).astype(np.float32)).to(self.device)

    def fit(self, user_items: sp.csr_matrix, show_progress: bool = True) -> AlternatingLeastSquaresBase:
        """Factorise ``user_items`` (users x items, see the class docstring for what values mean); returns self."""
        matrix = self._prepare(check_interactions(user_items))
        transposed = matrix.T.tocsr()
        n_users, n_items = matrix.shape
        empty_users = int((np.diff(matrix.indptr) == 0).sum())
        empty_items = int((np.diff(transposed.indptr) == 0).sum())
        if empty_users or empty_items:
            log.warning(
                "%d user(s) and %d item(s) have no interactions; their factors will be zero", empty_users, empty_items
            )
        device = torch.device(self.device)
        if self.backend != "torch" and device.type == "cpu":
            fused_kernel_or_none()  # build/load once up front, so every step of this fit uses the same code
        # Moved to the factors' device once: a GPU fit then copies no structure per half-step.
        user_sys, item_sys = self._systems(matrix).to(device), self._systems(transposed).to(device)
        reg_u, reg_i = self._regularization_tensor(matrix), self._regularization_tensor(transposed)
        generator = torch.Generator().manual_seed(self.seed)
        X = (torch.rand(n_users, self.factors, generator=generator) * 0.01).to(device)
        Y = (torch.rand(n_items, self.factors, generator=generator) * 0.01).to(device)
        self.loss_history = []
        previous_threads = torch.get_num_threads()
        if self.num_threads:
            torch.set_num_threads(self.num_threads)
        started = time.perf_counter()
        try:
            with tqdm(total=self.iterations, disable=not show_progress, desc="ALS", unit="it") as progress:
                for _ in range(self.iterations):
                    self.backend_used = solve_rows(
                        user_sys, Y, X, self._gramian(Y), reg_u, self.solver, self.cg_steps, self.backend
                    )
                    solve_rows(item_sys, X, Y, self._gramian(X), reg_i, self.solver, self.cg_steps, self.backend)
                    if self.calculate_training_loss:
                        loss = self._loss(matrix, X, Y, reg_u, reg_i)
                        self.loss_history.append(loss)
                        progress.set_postfix(loss=f"{loss:.5f}")
                    progress.update(1)
        finally:
            torch.set_num_threads(previous_threads)
        self.seconds_per_iteration = (time.perf_counter() - started) / self.iterations
        # Rows without interactions carry no signal; zero them so they score nothing rather than noise.
        X[torch.from_numpy(np.diff(matrix.indptr) == 0).to(device)] = 0.0
        Y[torch.from_numpy(np.diff(transposed.indptr) == 0).to(device)] = 0.0
        check_finite_factors(X, "user")
        check_finite_factors(Y, "item")
        self.user_factors, self.item_factors = X, Y
        self._train = matrix
        self._item_gramian = None
        log.info(
            "fitted %s: %d users x %d items, %d factors, %.3fs/iteration (%s solver, %s backend)",
            type(self).__name__,
            n_users,
            n_items,
            self.factors,
            self.seconds_per_iteration,
            self.solver,
            self.backend_used,
        )
        return self

    # ----------------------------------------------------------------- serving
    def _require_fitted(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.user_factors is None or self.item_factors is None:
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit() or load an artifact first")
        return self.user_factors, self.item_factors

    @property
    def item_gramian(self) -> torch.Tensor:
        """The shared Gramian of the item side, cached for the current ``item_factors`` tensor."""
        _, Y = self._require_fitted()
        if self._item_gramian is None or self._item_gramian_of is not Y:
            self._item_gramian = self._gramian(Y)
            self._item_gramian_of = Y
        return self._item_gramian

    def _score_offset(self) -> float:
        return 0.0

    def fold_in(self, user_items_rows: sp.csr_matrix) -> torch.Tensor:
        """Exact user factors for ``k`` new or updated users against the fixed item factors.

        Parameters
        ----------
        user_items_rows : scipy.sparse.csr_matrix
            [k, n_items] interactions of the users, same meaning of values as in ``fit``.

        Returns
        -------
        torch.Tensor
            float32 [k, factors] on the model's device. A row without interactions gets a zero vector.
        """
        _, Y = self._require_fitted()
        if not sp.issparse(user_items_rows):
            raise TypeError("user_items_rows must be a scipy.sparse matrix [k, n_items]")
        if user_items_rows.shape[1] != Y.shape[0]:
            raise IndexError(
                f"user_items_rows has {user_items_rows.shape[1]} columns but the model has {Y.shape[0]} items"
            )
        rows = sp.csr_matrix(user_items_rows, dtype=np.float32)
        if rows.nnz and not np.all(np.isfinite(rows.data)):
            raise ValueError("user_items_rows holds NaN or infinite values")
        rows.sum_duplicates()
        rows.eliminate_zeros()
        rows.sort_indices()
        rows = self._prepare_rows(rows)
        X = torch.zeros(rows.shape[0], self.factors, device=Y.device)
        if rows.nnz:
            # On a serving path never trigger a compile: the fused kernel only when it is already built (or loaded).
            backend = "torch" if self.backend == "auto" and not kernel_is_built() else self.backend
            solve_rows(
                self._systems(rows),
                Y,
                X,
                self.item_gramian,
                self._regularization_tensor(rows),
                "cholesky",
                backend=backend,
            )
            X[torch.from_numpy(np.diff(rows.indptr) == 0).to(X.device)] = 0.0
        return X

    def _prepare_rows(self, rows: sp.csr_matrix) -> sp.csr_matrix:
        return rows

    def _exclusions(self, users: np.ndarray, user_items: sp.csr_matrix | None) -> sp.csr_matrix:
        if user_items is None:
            if self._train is None:
                raise ValueError("exclude_seen needs user_items (the model was loaded without its training data)")
            return self._train[users]
        if not sp.issparse(user_items):
            raise TypeError("user_items must be a scipy.sparse matrix")
        user_items = sp.csr_matrix(user_items)
        _, Y = self._require_fitted()
        if user_items.shape[1] != Y.shape[0]:
            raise IndexError(f"user_items has {user_items.shape[1]} columns but the model has {Y.shape[0]} items")
        if user_items.shape[0] == len(users):
            return user_items
        raise ValueError(
            f"user_items must hold one row per requested user ({len(users)}), got {user_items.shape[0]} rows"
        )

    def recommend(
        self,
        user_rows: int | np.ndarray | list[int] | torch.Tensor,
        user_items: sp.csr_matrix | None = None,
        n: int = 10,
        exclude_seen: bool = True,
        item_mask: torch.Tensor | np.ndarray | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-``n`` items for a batch of known users by dot product over the full catalog.

        Parameters
        ----------
        user_rows : int or array of int
            Row indices of the users in the fitted matrix.
        user_items : scipy.sparse.csr_matrix, optional
            One row per requested user holding the items to exclude; defaults to the users' training rows.
        n : int
            Items per user (at most the catalog size).
        exclude_seen : bool
            Never recommend an item the user already interacted with.
        item_mask : bool tensor [n_items] or [k, n_items], optional
            True marks the items that may be recommended (a filter by stock, category, ...).

        Returns
        -------
        (ids, scores) : int64 [k, n] item rows and float32 [k, n] scores; id -1 / score -inf pad users with fewer
        than ``n`` eligible items.
        """
        X, Y = self._require_fitted()
        n = check_positive_int(n, "n")
        users = check_rows(user_rows, X.shape[0], "user")
        exclude = self._exclusions(users, user_items) if exclude_seen else None
        mask = check_item_mask(item_mask, len(users), Y.shape[0])
        return top_k(X[torch.from_numpy(users).to(X.device)], Y, n, exclude, mask, self._score_offset())

    def recommend_vectors(
        self,
        user_vectors: torch.Tensor,
        n: int = 10,
        exclude: sp.csr_matrix | None = None,
        item_mask: torch.Tensor | np.ndarray | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Like :meth:`recommend` for user vectors from :meth:`fold_in` (or a cache)."""
        _, Y = self._require_fitted()
        n = check_positive_int(n, "n")
        if user_vectors.dim() != 2 or user_vectors.shape[1] != self.factors:
            raise ValueError(f"user_vectors must be [k, {self.factors}], got {tuple(user_vectors.shape)}")
        mask = check_item_mask(item_mask, user_vectors.shape[0], Y.shape[0])
        return top_k(user_vectors, Y, n, exclude, mask, self._score_offset())

    def similar_items(self, item: int, n: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``n`` items closest to ``item`` by cosine similarity of item factors (the item itself excluded)."""
        _, Y = self._require_fitted()
        n = check_positive_int(n, "n")
        row = int(check_rows(item, Y.shape[0], "item")[0])
        if n > Y.shape[0] - 1:
            raise ValueError(f"asked for {n} similar items but the catalog has only {Y.shape[0] - 1} other items")
        norms = Y.norm(dim=1).clamp_min(1e-12)
        normalised = Y / norms[:, None]
        exclude = sp.csr_matrix(([1.0], ([0], [row])), shape=(1, Y.shape[0]))
        ids, scores = top_k(normalised[row : row + 1], normalised, n, exclude)
        return ids[0], scores[0]

    def score(self, user_rows: np.ndarray) -> torch.Tensor:
        """Full-catalog scores [k, n_items] of known users (for evaluation)."""
        X, Y = self._require_fitted()
        users = check_rows(user_rows, X.shape[0], "user")
        return X[torch.from_numpy(users).to(X.device)] @ Y.T + self._score_offset()

    def score_vectors(self, user_vectors: torch.Tensor) -> torch.Tensor:
        _, Y = self._require_fitted()
        return user_vectors.to(Y.device) @ Y.T + self._score_offset()
