"""Quality parity with benfred/implicit on MovieLens-100K (same objective, hyperparameters and split)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hybrec.als import ExplicitALS, ImplicitALS
from hybrec.als.evaluation import PopularityModel, evaluate_model, split_random
from hybrec.data.matrices import load_dataset

pytestmark = pytest.mark.shared_data


def test_implicit_als_matches_implicit_and_beats_popularity(movielens_100k: Path) -> None:
    pytest.importorskip("implicit")
    from hybrec.als.evaluation import ImplicitBaseline

    data = load_dataset("ml-100k", data_dir=movielens_100k.parent)
    split = split_random(data.matrix, 0.2, seed=0)
    ours = ImplicitALS(factors=64, regularization=0.01, alpha=1.0, iterations=15).fit(split.train, show_progress=False)
    theirs = ImplicitBaseline(64, 0.01, 1.0, 15).fit(split.train)
    m_ours = evaluate_model(ours, split.train, split.test, k=(10, 20))
    m_theirs = evaluate_model(theirs, split.train, split.test, k=(10, 20))
    m_pop = evaluate_model(PopularityModel().fit(split.train), split.train, split.test, k=(10, 20))
    assert m_ours["recall@20"] >= m_theirs["recall@20"] - 0.002
    assert m_ours["ndcg@10"] >= m_theirs["ndcg@10"] - 0.002
    assert m_ours["ndcg@10"] > 1.4 * m_pop["ndcg@10"]


def test_als_wr_rmse_on_movielens(movielens_100k: Path) -> None:
    data = load_dataset("ml-100k", data_dir=movielens_100k.parent)
    split = split_random(data.matrix, 0.2, seed=0)
    model = ExplicitALS(factors=16, regularization=0.1, iterations=10).fit(split.train, show_progress=False)
    mean = float(split.train.data.mean())
    baseline = float(np.sqrt(((split.test.data - mean) ** 2).mean()))
    assert model.rmse(split.test) < 0.92 * baseline
