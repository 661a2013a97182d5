"""Splits and full-catalog metrics, checked against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from hybrec.als import ImplicitALS
from hybrec.als.evaluation import (
    PopularityModel,
    RandomModel,
    evaluate_model,
    split_leave_last_out,
    split_random,
    split_strong_generalization,
)


class FixedScores:
    """A model whose scores are given: lets the metrics be checked by hand."""

    def __init__(self, scores: np.ndarray) -> None:
        self.scores = torch.tensor(scores, dtype=torch.float32)

    def score(self, user_rows: np.ndarray) -> torch.Tensor:
        return self.scores[torch.from_numpy(np.asarray(user_rows))]


def test_metrics_match_hand_computed_values() -> None:
    # 1 user, 6 items. Train: item 0 (excluded). Test: items 2 and 5. Ranking after exclusion: 1, 2, 3, 4, 5.
    train = sp.csr_matrix(([1.0], ([0], [0])), shape=(1, 6))
    test = sp.csr_matrix(([1.0, 1.0], ([0, 0], [2, 5])), shape=(1, 6))
    model = FixedScores(np.array([[10.0, 6.0, 5.0, 4.0, 3.0, 2.0]]))
    m = evaluate_model(model, train, test, k=(2, 5))
    assert m["recall@2"] == pytest.approx(0.5)
    assert m["precision@2"] == pytest.approx(0.5)
    assert m["hitrate@2"] == 1.0
    assert m["ndcg@2"] == pytest.approx((1 / math.log2(3)) / (1 + 1 / math.log2(3)))
    assert m["map@2"] == pytest.approx((1 / 2) / 2)
    assert m["recall@5"] == pytest.approx(1.0)
    assert m["map@5"] == pytest.approx((1 / 2 + 2 / 5) / 2)
    assert m["mrr"] == pytest.approx(1 / 2)  # the first held-out item is ranked 2nd
    assert m["coverage@2"] == pytest.approx(2 / 6)
    assert m["users"] == 1.0


def test_training_items_are_never_counted() -> None:
    # The top-scored item is in both train and test position: it must be excluded, not counted as a hit.
    train = sp.csr_matrix(([1.0], ([0], [0])), shape=(1, 4))
    test = sp.csr_matrix(([1.0], ([0], [3])), shape=(1, 4))
    m = evaluate_model(FixedScores(np.array([[9.0, 1.0, 2.0, 0.5]])), train, test, k=1)
    assert m["recall@1"] == 0.0 and m["mrr"] == pytest.approx(1 / 3)


def test_metric_arguments_are_checked() -> None:
    train = sp.csr_matrix(([1.0], ([0], [0])), shape=(1, 4))
    model = FixedScores(np.zeros((1, 4)))
    with pytest.raises(ValueError, match="no held-out"):
        evaluate_model(model, train, sp.csr_matrix((1, 4)), k=2)
    with pytest.raises(ValueError, match="exceeds the catalog"):
        evaluate_model(model, train, train, k=5)
    with pytest.raises(ValueError, match="differ in shape"):
        evaluate_model(model, train, sp.csr_matrix((2, 4)), k=2)


def test_random_split_partitions_each_user(small_matrix: sp.csr_matrix) -> None:
    split = split_random(small_matrix, 0.2, seed=4)
    assert (split.train + split.test - small_matrix).nnz == 0
    assert split.train.multiply(split.test).nnz == 0
    counts, held = np.diff(small_matrix.indptr), np.diff(split.test.indptr)
    assert np.all(held[counts >= 2] == np.clip(np.rint(0.2 * counts[counts >= 2]), 1, counts[counts >= 2] - 1))
    assert np.all(np.diff(split.train.indptr) >= 1)
    assert (split_random(small_matrix, 0.2, seed=4).test != split.test).nnz == 0  # seeded
    with pytest.raises(ValueError, match="test_fraction"):
        split_random(small_matrix, 1.5)
    with pytest.raises(ValueError, match="empty"):
        split_random(sp.csr_matrix((3, 3)))


def test_leave_last_out_holds_out_the_latest_interaction() -> None:
    matrix = sp.csr_matrix(np.array([[1, 1, 1], [0, 1, 0], [1, 0, 1]], dtype=np.float32))
    timestamps = np.array([5, 9, 1, 3, 7, 2])  # aligned with matrix.data
    split = split_leave_last_out(matrix, timestamps)
    assert split.test[0].indices.tolist() == [1]  # ts 9
    assert split.test[1].nnz == 0  # a single interaction stays in training
    assert split.test[2].indices.tolist() == [0]  # ts 7
    with pytest.raises(ValueError, match="timestamps"):
        split_leave_last_out(matrix, timestamps[:2])


def test_strong_generalization_keeps_held_out_users_out_of_training(small_matrix: sp.csr_matrix) -> None:
    split = split_strong_generalization(small_matrix, 0.1, 0.2, seed=0)
    held_users = np.flatnonzero(np.diff(split.test.indptr) > 0)
    eligible = int((np.diff(small_matrix.indptr) >= 2).sum())
    assert len(held_users) == round(0.1 * eligible)
    assert np.all(np.diff(split.train.indptr)[held_users] == 0)
    assert (split.train + split.fold_in + split.test - small_matrix).nnz == 0
    model = ImplicitALS(factors=16, iterations=8, regularization=0.1).fit(split.train, show_progress=False)
    folded = evaluate_model(model, split.train, split.test, k=10, fold_in=split.fold_in)
    rand = evaluate_model(RandomModel(0).fit(split.train), split.train, split.test, k=10, fold_in=split.fold_in)
    assert folded["users"] == float(len(held_users))
    assert folded["ndcg@10"] > 2 * rand["ndcg@10"]


def test_als_beats_popularity_and_random_on_planted_structure(small_matrix: sp.csr_matrix) -> None:
    split = split_random(small_matrix, 0.2, seed=0)
    als = ImplicitALS(factors=16, iterations=8, regularization=0.1).fit(split.train, show_progress=False)
    scores = {
        name: evaluate_model(m, split.train, split.test, k=10)["ndcg@10"]
        for name, m in [
            ("als", als),
            ("pop", PopularityModel().fit(split.train)),
            ("random", RandomModel(0).fit(split.train)),
        ]
    }
    assert scores["als"] > scores["pop"] > scores["random"]
