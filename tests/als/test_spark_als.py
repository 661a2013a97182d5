"""The Spark MLlib backend of hybrec.als: hyperparameter mapping, id mapping, artifacts, quality against torch ALS.

One local[2] SparkSession serves the whole module (starting a JVM costs seconds).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from hybrec.als import ExplicitALS, ImplicitALS, ModelArtifact
from hybrec.als.evaluation import PopularityModel, RandomModel, evaluate_model, split_random
from hybrec.als.spark import (
    SparkExplicitALS,
    SparkImplicitALS,
    get_spark_session,
    mllib_reg_param,
    spark_session_scope,
    stop_spark_session,
)
from hybrec.data.matrices import load_dataset, synthetic_interactions


@pytest.fixture(scope="module")
def spark() -> Iterator[object]:
    session = get_spark_session("local[2]")
    try:
        yield session
    finally:
        stop_spark_session()


@pytest.fixture(scope="module")
def planted() -> sp.csr_matrix:
    """600 users x 300 items with 12 planted taste clusters; one extra user and one extra item stay empty."""
    matrix = synthetic_interactions(600, 300, 20, rank=12, seed=5, taste_share=0.85).matrix
    return sp.csr_matrix(sp.vstack([sp.hstack([matrix, sp.csr_matrix((600, 1))]), sp.csr_matrix((1, 301))]))


# --- hyperparameter mapping (no Spark needed) --------------------------------------------------------------------


def test_reg_param_puts_the_same_total_ridge_as_implicit_als() -> None:
    matrix = sp.csr_matrix(np.array([[1, 2, 0], [0, 3, 0], [0, 0, 0], [4, 5, 6]], dtype=np.float32))
    # ALS-WR scaling (reg_exponent 1) is MLlib's own: the mapping is the identity.
    assert mllib_reg_param(matrix, 0.3, reg_exponent=1.0) == pytest.approx(0.3)
    # Plain lambda: 3 non-empty users + 3 non-empty items, 6 entries counted once per side.
    assert mllib_reg_param(matrix, 0.3) == pytest.approx(0.3 * 6 / 12)
    # Only positive entries count for MLlib's ridge.
    disliked = matrix.copy()
    disliked.data[0] = -1.0
    assert mllib_reg_param(disliked, 0.3, reg_exponent=1.0) == pytest.approx(0.3 * 12 / 10)


def test_settings_mllib_cannot_express_are_refused() -> None:
    with pytest.raises(ValueError, match="alpha0 must be 0"):
        SparkImplicitALS(alpha0=1.0)
    with pytest.raises(ValueError, match="master"):
        SparkImplicitALS(master="")


def test_session_is_cached_and_a_scope_leaves_a_running_one_running(spark: object) -> None:
    with spark_session_scope():
        assert get_spark_session("local[2]") is spark
    assert get_spark_session("local[2]") is spark


# --- fitting ----------------------------------------------------------------------------------------------------


def test_factors_follow_our_row_order_and_recover_planted_structure(spark: object, planted: sp.csr_matrix) -> None:
    split = split_random(planted, 0.2, seed=0)
    model = SparkImplicitALS(
        factors=16, regularization=0.05, alpha=2.0, iterations=6, seed=1, calculate_training_loss=True
    )
    model.fit(split.train, show_progress=False)
    X, Y = model._require_fitted()
    assert X.shape == (601, 16) and Y.shape == (301, 16) and X.dtype == torch.float32
    assert model.backend_used == "spark"
    assert len(model.loss_history) == 1 and 0.0 < model.loss_history[0] < 1.0  # the final loss, normalised
    # Users and items without interactions score nothing, as in the torch fit.
    assert not X[600].any() and not Y[300].any()
    # Row u of X and column i of Y must be user u and item i: if the ids were shuffled, a user's own training items
    # would not score far above the rest.
    scores = (X @ Y.T).numpy()
    observed = split.train.toarray() > 0
    assert scores[observed].mean() > 0.5 and scores[~observed].mean() < 0.1
    metrics = evaluate_model(model, split.train, split.test, k=(20,))
    random = evaluate_model(RandomModel(seed=0).fit(split.train), split.train, split.test, k=(20,))
    assert metrics["recall@20"] > 4 * random["recall@20"]


def test_artifact_loads_as_the_torch_model_and_serves_the_same(
    spark: object, planted: sp.csr_matrix, tmp_path: Path
) -> None:
    model = SparkImplicitALS(factors=8, iterations=4, alpha=2.0).fit(planted, show_progress=False)
    users = [f"u{i}" for i in range(planted.shape[0])]
    items = [f"i{i}" for i in range(planted.shape[1])]
    ModelArtifact(model, users, items, metrics={"ndcg@10": 0.5}).save(tmp_path / "v1")

    loaded = ModelArtifact.load(tmp_path / "v1", users, items)
    assert type(loaded.model) is ImplicitALS and loaded.kind == "implicit"
    assert loaded.params == ImplicitALS(factors=8, iterations=4, alpha=2.0).get_params()
    assert torch.equal(loaded.model.item_factors, model.item_factors)
    ids, _ = model.recommend([0, 1], n=5)
    loaded_ids, _ = loaded.model.recommend([0, 1], user_items=planted[[0, 1]], n=5)
    assert torch.equal(ids, loaded_ids)
    # Fold-in against the Spark-trained items: a user's refolded vector ranks like the trained one.
    refolded = loaded.model.fold_in(planted[[3]])
    assert torch.nn.functional.cosine_similarity(refolded, model.user_factors[[3]]).item() > 0.9
    _, similar_scores = loaded.model.similar_items(0, n=3)
    assert torch.isfinite(similar_scores).all()


# --- quality on MovieLens-100K (same split, same hyperparameters) -------------------------------------------------


@pytest.mark.shared_data
def test_movielens_quality_is_on_par_with_torch_als(spark: object, movielens_100k: Path) -> None:
    data = load_dataset("ml-100k", data_dir=movielens_100k.parent)
    split = split_random(data.matrix, 0.2, seed=0)
    # Smaller than the seed params (64 factors, 15 iterations; docs/scale-out.md) to keep the Spark fit short.
    params = {"factors": 32, "regularization": 0.01, "alpha": 1.0, "iterations": 10}
    torch_model = ImplicitALS(**params).fit(split.train, show_progress=False)
    spark_model = SparkImplicitALS(**params).fit(split.train, show_progress=False)
    k = (10, 20)
    m_torch = evaluate_model(torch_model, split.train, split.test, k=k)
    m_spark = evaluate_model(spark_model, split.train, split.test, k=k)
    m_pop = evaluate_model(PopularityModel().fit(split.train), split.train, split.test, k=k)
    # Measured (seed 0): NDCG@10 0.405 Spark, 0.402 torch, 0.219 popularity; Recall@20 0.351 Spark, 0.355 torch.
    assert m_spark["ndcg@10"] >= 0.9 * m_torch["ndcg@10"]
    assert m_spark["recall@20"] >= 0.9 * m_torch["recall@20"]
    assert m_spark["ndcg@10"] >= 1.5 * m_pop["ndcg@10"]


@pytest.mark.shared_data
def test_movielens_ratings_rmse_matches_torch_als_wr(spark: object, movielens_100k: Path) -> None:
    data = load_dataset("ml-100k", data_dir=movielens_100k.parent)
    split = split_random(data.matrix, 0.2, seed=0)
    params = {"factors": 16, "regularization": 0.1, "iterations": 10}
    spark_model = SparkExplicitALS(**params).fit(split.train, show_progress=False)
    torch_model = ExplicitALS(**params).fit(split.train, show_progress=False)
    assert spark_model.global_mean == pytest.approx(float(split.train.data.mean()))
    # Same ALS-WR objective, different random start: the held-out errors agree closely.
    assert spark_model.rmse(split.test) == pytest.approx(torch_model.rmse(split.test), rel=0.03)
    mean = float(split.train.data.mean())
    baseline = float(np.sqrt(((split.test.data - mean) ** 2).mean()))
    assert spark_model.rmse(split.test) < 0.92 * baseline
