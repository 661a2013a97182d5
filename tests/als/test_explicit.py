"""ExplicitALS (ALS-WR): rating prediction that beats the global mean and reports RMSE."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from hybrec.als import ExplicitALS
from hybrec.als.evaluation import split_random


def _ratings(seed: int = 0) -> sp.csr_matrix:
    """Ratings 1..5 from a planted rank-3 structure plus noise, 60% observed."""
    rng = np.random.default_rng(seed)
    U, V = rng.normal(size=(120, 3)), rng.normal(size=(80, 3))
    dense = np.clip(np.rint(3.0 + U @ V.T + rng.normal(scale=0.3, size=(120, 80))), 1, 5)
    observed = rng.random(dense.shape) < 0.6
    return sp.csr_matrix(np.where(observed, dense, 0.0).astype(np.float32))


@pytest.mark.parametrize("solver", ["cholesky", "cg"])
def test_als_wr_beats_the_global_mean(solver: str) -> None:
    split = split_random(_ratings(), 0.2, seed=1)
    model = ExplicitALS(factors=8, regularization=0.05, iterations=10, solver=solver, calculate_training_loss=True)
    model.fit(split.train, show_progress=False)
    mean = split.train.data.mean()
    baseline = float(np.sqrt(((split.test.data - mean) ** 2).mean()))
    assert model.rmse(split.test) < 0.75 * baseline
    assert model.loss_history[-1] < model.loss_history[0]  # training RMSE per iteration


def test_predict_and_recommend_use_the_global_mean() -> None:
    matrix = _ratings(2)
    model = ExplicitALS(factors=4, iterations=5).fit(matrix, show_progress=False)
    assert model.global_mean == pytest.approx(float(matrix.data.mean()), rel=1e-5)
    predicted = model.predict(np.array([0, 1]), np.array([2, 3]))
    expected = (model.user_factors[[0, 1]] * model.item_factors[[2, 3]]).sum(1) + model.global_mean
    torch.testing.assert_close(predicted, expected)
    _, scores = model.recommend([0], n=3, exclude_seen=False)
    assert float(scores[0, 0]) == pytest.approx(float((model.score([0])).max()), rel=1e-5)


def test_row_regularisation_is_weighted_by_counts() -> None:
    model = ExplicitALS(regularization=0.1)
    np.testing.assert_allclose(model._row_regularization(np.array([0, 3, 10]), 5), [0.1, 0.3, 1.0])


def test_rmse_checks_the_shape_and_values() -> None:
    model = ExplicitALS(factors=4, iterations=2).fit(_ratings(), show_progress=False)
    with pytest.raises(ValueError, match="shape"):
        model.rmse(sp.csr_matrix(([4.0], ([0], [0])), shape=(3, 3)))
    with pytest.raises(ValueError, match="differ in length"):
        model.predict(np.array([0, 1]), np.array([0]))
