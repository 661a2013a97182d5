"""Implicit-feedback ALS (Hu, Koren & Volinsky 2008) with the iALS refinements of Rendle et al. (2022)."""

from __future__ import annotations

from typing import Unpack

import numpy as np
import scipy.sparse as sp
import torch

from hybrec.als._checks import check_non_negative
from hybrec.als.base import AlternatingLeastSquaresBase, RuntimeOptions
from hybrec.als.solvers import gramian

_LOSS_CHUNK = 1 << 18


class ImplicitALS(AlternatingLeastSquaresBase):
    """Matrix factorisation for implicit feedback by alternating least squares.

    Minimises, over user factors ``x_u`` and item factors ``y_i``,

        sum_{(u,i) observed} c_ui (p_ui - x_u.y_i)^2 + w0 sum_{(u,i) unobserved} (x_u.y_i)^2
        + sum_u lambda_u |x_u|^2 + sum_i lambda_i |y_i|^2

    with preference ``p_ui = [r_ui > 0]`` and confidence ``c_ui = 1 + alpha |r_ui|`` (Hu, Koren & Volinsky 2008,
    "Collaborative Filtering for Implicit Feedback Datasets"). A negative value is an explicit dislike: preference 0
    with confidence ``1 + alpha |r|``. The unobserved weight is ``w0 = 1 + alpha0`` and the regularisation is
    frequency-scaled, ``lambda_u = regularization * (n_u + alpha0 * n_items) ** reg_exponent`` (Rendle, Krichene,
    Zhang & Koren 2022, "Revisiting the Performance of iALS on Item Recommendation Benchmarks"); the defaults
    ``alpha0 = 0``, ``reg_exponent = 0`` give the classic objective, the same as ``implicit`` fed ``1 + alpha r``.

    Each half-step is solved by ``cg_steps`` conjugate-gradient steps warm-started from the previous factors (Takács,
    Pilászy & Tikk 2011, "Applications of the Conjugate Gradient Method for Implicit Feedback Collaborative
    Filtering") or exactly by Cholesky. On CPU both run in a fused C++ kernel (``hybrec.als.kernel``), elsewhere in
    vectorised PyTorch.

    Parameters
    ----------
    factors : int, default 64
        Latent dimensions.
    regularization : float, default 0.01
        lambda, the ridge weight (scaled as above).
    alpha : float, default 1.0
        Confidence slope: ``c = 1 + alpha * |r|``.
    alpha0 : float, default 0.0
        Extra weight on unobserved pairs (``w0 = 1 + alpha0``), also used in the frequency-scaled regularisation.
    reg_exponent : float, default 0.0
        nu, the exponent of the frequency-scaled regularisation (0 = plain lambda).
    iterations : int, default 15
        ALS sweeps (users then items).
    solver : {"cg", "cholesky"}, default "cg"
    cg_steps : int, default 3
        Conjugate-gradient steps per half-step.
    device : str, default "cpu"
        Torch device of the factors ("cuda" uses the PyTorch solvers).
    seed : int, default 0
        Seed of the random initialisation (uniform in [0, 0.01)); fitting is deterministic for a seed.
    num_threads : int, default 0
        Threads during ``fit`` (0 = torch's current setting).
    calculate_training_loss : bool, default False
        Record the normalised training loss after each iteration in ``loss_history``.
    backend : {"auto", "fused", "torch"}, default "auto"
        Row solver implementation; "auto" = fused C++ on CPU when it builds, PyTorch otherwise.
    """

    param_names = (
        "factors",
        "regularization",
        "alpha",
        "alpha0",
        "reg_exponent",
        "iterations",
        "solver",
        "cg_steps",
        "seed",
    )

    def __init__(
        self,
        factors: int = 64,
        regularization: float = 0.01,
        alpha: float = 1.0,
        alpha0: float = 0.0,
        reg_exponent: float = 0.0,
        iterations: int = 15,
        solver: str = "cg",
        cg_steps: int = 3,
        **options: Unpack[RuntimeOptions],
    ) -> None:
        super().__init__(factors, regularization, iterations, solver, cg_steps, **options)
        self.alpha = check_non_negative(alpha, "alpha")
        self.alpha0 = check_non_negative(alpha0, "alpha0")
        self.reg_exponent = check_non_negative(reg_exponent, "reg_exponent")

    @property
    def unobserved_weight(self) -> float:
        return 1.0 + self.alpha0

    def _weights(self, data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        confidence = 1.0 + self.alpha * np.abs(data)
        preference = (data > 0).astype(np.float32)
        return confidence - self.unobserved_weight, confidence * preference

    def _row_regularization(self, counts: np.ndarray, n_other: int) -> np.ndarray:
        if self.reg_exponent == 0.0:
            return np.full(len(counts), self.regularization, dtype=np.float64)
        return self.regularization * (counts + self.alpha0 * n_other) ** self.reg_exponent

    def _gramian(self, other: torch.Tensor) -> torch.Tensor:
        return self.unobserved_weight * gramian(other, self.backend)

    def _loss(
        self, matrix: sp.csr_matrix, X: torch.Tensor, Y: torch.Tensor, reg_u: torch.Tensor, reg_i: torch.Tensor
    ) -> float:
        """The objective above divided by the total weight ``sum c_ui + w0 * #unobserved``."""
        w0 = self.unobserved_weight
        total = w0 * float(((X.T @ X) * (Y.T @ Y)).sum())
        rows = torch.from_numpy(np.repeat(np.arange(matrix.shape[0]), np.diff(matrix.indptr))).to(X.device)
        cols = torch.from_numpy(matrix.indices.astype(np.int64)).to(X.device)
        data = torch.from_numpy(matrix.data).to(X.device)
        confidence_sum = 0.0
        for start in range(0, matrix.nnz, _LOSS_CHUNK):
            sl = slice(start, start + _LOSS_CHUNK)
            s = (X[rows[sl]] * Y[cols[sl]]).sum(1)
            c = 1.0 + self.alpha * data[sl].abs()
            p = (data[sl] > 0).float()
            total += float((c * (p - s) ** 2 - w0 * s**2).sum())
            confidence_sum += float(c.sum())
        total += float((reg_u * (X * X).sum(1)).sum() + (reg_i * (Y * Y).sum(1)).sum())
        weight = confidence_sum + w0 * (matrix.shape[0] * matrix.shape[1] - matrix.nnz)
        return total / weight
