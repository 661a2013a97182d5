"""ImplicitALS: fitting, serving methods, and every bad input named in issue 3."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from hybrec.als import ImplicitALS


@pytest.fixture(scope="module")
def fitted(small_matrix: sp.csr_matrix) -> ImplicitALS:
    return ImplicitALS(factors=16, iterations=6, regularization=0.05, calculate_training_loss=True).fit(
        small_matrix, show_progress=False
    )


def test_fit_is_deterministic_for_a_seed(small_matrix: sp.csr_matrix) -> None:
    a = ImplicitALS(factors=8, iterations=3, seed=11).fit(small_matrix, show_progress=False)
    b = ImplicitALS(factors=8, iterations=3, seed=11).fit(small_matrix, show_progress=False)
    c = ImplicitALS(factors=8, iterations=3, seed=12).fit(small_matrix, show_progress=False)
    assert torch.equal(a.user_factors, b.user_factors) and torch.equal(a.item_factors, b.item_factors)
    assert not torch.equal(a.user_factors, c.user_factors)


def test_training_loss_decreases(fitted: ImplicitALS) -> None:
    losses = fitted.loss_history
    assert len(losses) == 6
    assert losses[-1] < losses[0]
    assert all(later <= earlier + 1e-4 for earlier, later in itertools.pairwise(losses))


def test_factor_shapes_and_dtype(fitted: ImplicitALS, small_matrix: sp.csr_matrix) -> None:
    assert fitted.user_factors.shape == (small_matrix.shape[0], 16)
    assert fitted.item_factors.shape == (small_matrix.shape[1], 16)
    assert fitted.user_factors.dtype == torch.float32


def test_recommend_excludes_seen_items_and_is_sorted(fitted: ImplicitALS, small_matrix: sp.csr_matrix) -> None:
    users = np.arange(20)
    ids, scores = fitted.recommend(users, n=10)
    assert ids.shape == (20, 10) and ids.dtype == torch.int64 and scores.dtype == torch.float32
    for row, user in enumerate(users):
        seen = set(small_matrix[user].indices.tolist())
        assert not seen & set(ids[row].tolist())
        assert torch.all(scores[row][:-1] >= scores[row][1:])
    # Scores are the dot products of the factors.
    expected = fitted.user_factors[users[0]] @ fitted.item_factors[ids[0]].T
    torch.testing.assert_close(scores[0], expected, rtol=1e-5, atol=1e-5)
    # Without exclusion, the best-scored item over the whole catalog comes first.
    ids_all, _ = fitted.recommend(users[:1], n=1, exclude_seen=False)
    assert int(ids_all[0, 0]) == int(torch.argmax(fitted.user_factors[0] @ fitted.item_factors.T))


def test_recommend_respects_item_mask(fitted: ImplicitALS) -> None:
    mask = torch.zeros(fitted.item_factors.shape[0], dtype=torch.bool)
    mask[50:60] = True
    ids, scores = fitted.recommend([0, 1], n=5, exclude_seen=False, item_mask=mask)
    assert ((ids >= 50) & (ids < 60)).all()
    ids, scores = fitted.recommend([0], n=12, exclude_seen=False, item_mask=mask)
    assert (ids[0, 10:] == -1).all() and torch.isneginf(scores[0, 10:]).all()
    with pytest.raises(TypeError, match="boolean"):
        fitted.recommend([0], item_mask=np.ones(fitted.item_factors.shape[0]))
    with pytest.raises(ValueError, match="shape"):
        fitted.recommend([0], item_mask=torch.ones(3, dtype=torch.bool))


def test_recommend_with_explicit_history_rows(fitted: ImplicitALS) -> None:
    history = sp.csr_matrix(([1.0, 1.0], ([0, 0], [3, 4])), shape=(1, fitted.item_factors.shape[0]))
    ids, _ = fitted.recommend([5], user_items=history, n=fitted.item_factors.shape[0] - 2)
    assert {3, 4}.isdisjoint(ids[0].tolist())
    with pytest.raises(ValueError, match="one row per requested user"):
        fitted.recommend([5, 6], user_items=history)


def test_similar_items_excludes_the_item_and_ranks_by_cosine(fitted: ImplicitALS) -> None:
    ids, scores = fitted.similar_items(3, n=5)
    assert 3 not in ids.tolist() and len(ids) == 5
    Y = fitted.item_factors / fitted.item_factors.norm(dim=1, keepdim=True).clamp_min(1e-12)
    torch.testing.assert_close(scores, Y[ids] @ Y[3], rtol=1e-5, atol=1e-5)
    assert torch.all(scores[:-1] >= scores[1:])


def test_fold_in_solves_the_normal_equations_exactly(fitted: ImplicitALS, small_matrix: sp.csr_matrix) -> None:
    rows = small_matrix[:3]
    vectors = fitted.fold_in(rows)
    Y = fitted.item_factors.double().numpy()
    for u in range(3):
        items, r = rows[u].indices, rows[u].data.astype(np.float64)
        c = 1.0 + fitted.alpha * r
        A = Y.T @ Y + (Y[items].T * (c - 1.0)) @ Y[items] + fitted.regularization * np.eye(Y.shape[1])
        np.testing.assert_allclose(vectors[u].numpy(), np.linalg.solve(A, Y[items].T @ c), rtol=1e-3, atol=1e-4)


def test_fold_in_of_an_empty_row_is_zero_and_shape_checked(fitted: ImplicitALS) -> None:
    empty = sp.csr_matrix((2, fitted.item_factors.shape[0]), dtype=np.float32)
    assert torch.equal(fitted.fold_in(empty), torch.zeros(2, 16))
    with pytest.raises(IndexError, match="columns"):
        fitted.fold_in(sp.csr_matrix((1, 5)))
    with pytest.raises(ValueError, match="NaN"):
        fitted.fold_in(sp.csr_matrix(([np.nan], ([0], [1])), shape=(1, fitted.item_factors.shape[0])))


def test_frequency_scaled_regularisation_and_alpha0(small_matrix: sp.csr_matrix) -> None:
    model = ImplicitALS(factors=8, iterations=3, alpha0=0.5, reg_exponent=1.0, regularization=0.01)
    counts = np.array([0, 4])
    np.testing.assert_allclose(model._row_regularization(counts, 100), 0.01 * (counts + 0.5 * 100))
    model.fit(small_matrix, show_progress=False)
    assert torch.isfinite(model.user_factors).all()


# ------------------------------------------------------------------------------------------------- bad input
def test_empty_matrix_is_rejected() -> None:
    with pytest.raises(ValueError, match="empty"):
        ImplicitALS(factors=4).fit(sp.csr_matrix((10, 5), dtype=np.float32), show_progress=False)
    with pytest.raises(ValueError, match="shape"):
        ImplicitALS(factors=4).fit(sp.csr_matrix((0, 5), dtype=np.float32), show_progress=False)
    with pytest.raises(TypeError, match=r"scipy\.sparse"):
        ImplicitALS(factors=4).fit(np.ones((3, 3)), show_progress=False)


def test_users_and_items_without_interactions_get_zero_factors(tiny_matrix: sp.csr_matrix) -> None:
    matrix = tiny_matrix.tolil()
    matrix[5, :] = 0
    matrix[:, 7] = 0
    model = ImplicitALS(factors=4, iterations=3).fit(matrix.tocsr(), show_progress=False)
    assert torch.equal(model.user_factors[5], torch.zeros(4))
    assert torch.equal(model.item_factors[7], torch.zeros(4))
    ids, _ = model.recommend([5], n=3)
    assert ids.shape == (1, 3)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_weights_are_rejected(tiny_matrix: sp.csr_matrix, bad: float) -> None:
    matrix = tiny_matrix.copy()
    matrix.data[4] = bad
    with pytest.raises(ValueError, match="NaN/infinite"):
        ImplicitALS(factors=4).fit(matrix, show_progress=False)


def test_negative_weights_are_dislikes(tiny_matrix: sp.csr_matrix) -> None:
    model = ImplicitALS(factors=4, alpha=2.0)
    a, b = model._weights(np.array([-3.0, 3.0], dtype=np.float32))
    np.testing.assert_allclose(a, [6.0, 6.0])  # same confidence, 1 + alpha |r| - w0
    np.testing.assert_allclose(b, [0.0, 7.0])  # preference 0 for a dislike
    matrix = tiny_matrix.copy()
    matrix.data[::3] *= -1
    model.fit(matrix, show_progress=False)
    assert torch.isfinite(model.user_factors).all()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"factors": 0}, "factors"),
        ({"factors": -3}, "factors"),
        ({"iterations": 0}, "iterations"),
        ({"regularization": -1.0}, "regularization"),
        ({"alpha": float("nan")}, "alpha"),
        ({"cg_steps": 0}, "cg_steps"),
        ({"solver": "lu"}, "solver"),
    ],
)
def test_invalid_hyperparameters_are_rejected(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ImplicitALS(**kwargs)


def test_out_of_range_ids_are_rejected(fitted: ImplicitALS) -> None:
    n_users, n_items = fitted.user_factors.shape[0], fitted.item_factors.shape[0]
    with pytest.raises(IndexError, match="user id"):
        fitted.recommend([0, n_users])
    with pytest.raises(IndexError, match="user id"):
        fitted.recommend(-1)
    with pytest.raises(IndexError, match="item id"):
        fitted.similar_items(n_items)


def test_more_items_than_exist_is_rejected(fitted: ImplicitALS) -> None:
    n_items = fitted.item_factors.shape[0]
    with pytest.raises(ValueError, match="catalog has only"):
        fitted.recommend([0], n=n_items + 1)
    with pytest.raises(ValueError, match="catalog has only"):
        fitted.similar_items(0, n=n_items)


@pytest.mark.filterwarnings("ignore:overflow encountered")
def test_non_finite_factors_are_detected_and_named(tiny_matrix: sp.csr_matrix) -> None:
    matrix = tiny_matrix.copy()
    matrix.data[:] = 1e30  # confidence overflows float32
    with pytest.raises(FloatingPointError, match="not finite"):
        ImplicitALS(factors=4, iterations=2, alpha=1e10).fit(matrix, show_progress=False)


def test_unfitted_model_says_so() -> None:
    with pytest.raises(RuntimeError, match="not fitted"):
        ImplicitALS().recommend([0])
