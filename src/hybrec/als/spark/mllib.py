"""The MLlib side of a fit: the regParam mapping, the interactions as a DataFrame, the fit, the factors back."""

from __future__ import annotations

from functools import reduce
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

#: Interactions per DataFrame built on the driver, bounding the Python-side copy of the data.
_CHUNK = 1 << 20


def mllib_reg_param(
    matrix: sp.csr_matrix, regularization: float, reg_exponent: float = 0.0, alpha0: float = 0.0
) -> float:
    """MLlib's ``regParam`` with the same total ridge weight as ImplicitALS's frequency-scaled regularisation.

    ImplicitALS adds ``regularization * (n + alpha0 * n_other) ** reg_exponent`` to the ridge of each user and item
    row with ``n`` entries; MLlib adds ``regParam * n_pos`` (positive entries only). Equating the sums over all
    non-empty rows of both sides gives ``regParam``; it is exactly ``regularization`` when ``reg_exponent = 1`` and
    ``alpha0 = 0`` on positive data.
    """
    csr = sp.csr_matrix(matrix)
    n_users, n_items = csr.shape
    user_counts = np.diff(csr.indptr).astype(np.float64)
    item_counts = np.bincount(csr.indices, minlength=n_items).astype(np.float64)
    ours = sum(
        float((regularization * (counts[counts > 0] + alpha0 * n_other) ** reg_exponent).sum())
        for counts, n_other in ((user_counts, n_items), (item_counts, n_users))
    )
    positives = 2.0 * float((csr.data > 0).sum())
    return ours / positives if positives else regularization


def _interaction_frame(session: SparkSession, matrix: sp.csr_matrix) -> DataFrame:
    """(user, item, rating) rows of the stored entries, row/column indices as MLlib ids.

    Built from plain tuples: pyspark passes local data through Python workers, which here only unpickle ints and
    floats, so executors need a Python of the driver's minor version but no hybrec, numpy or pandas.
    """
    from pyspark.sql.types import FloatType, IntegerType, StructField, StructType

    schema = StructType(
        [
            StructField("user", IntegerType(), False),
            StructField("item", IntegerType(), False),
            StructField("rating", FloatType(), False),
        ]
    )
    coo = matrix.tocoo()
    frames = [
        session.createDataFrame(
            list(
                zip(
                    coo.row[start : start + _CHUNK].tolist(),
                    coo.col[start : start + _CHUNK].tolist(),
                    coo.data[start : start + _CHUNK].tolist(),
                    strict=True,
                )
            ),
            schema,
            verifySchema=False,
        )
        for start in range(0, coo.nnz, _CHUNK)
    ]
    return reduce(lambda a, b: a.union(b), frames)


def _collect_factors(frame: DataFrame, n_rows: int, rank: int) -> np.ndarray:
    """A dense float32 [n_rows, rank] array from an MLlib factor frame (``id``, ``features``), by id."""
    out = np.zeros((n_rows, rank), dtype=np.float32)
    for row in frame.toLocalIterator():
        out[row["id"]] = row["features"]
    return out


def train_mllib_als(
    session: SparkSession,
    matrix: sp.csr_matrix,
    *,
    rank: int,
    reg_param: float,
    iterations: int,
    seed: int,
    implicit: bool,
    alpha: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Fit ``pyspark.ml.recommendation.ALS`` on ``matrix`` and return (user, item) factors in row/column order."""
    from pyspark.ml.recommendation import ALS

    if max(matrix.shape) > np.iinfo(np.int32).max:
        raise ValueError(f"MLlib ALS takes 32-bit ids; the matrix has shape {matrix.shape}")
    blocks = max(session.sparkContext.defaultParallelism, 1)
    estimator = ALS(
        rank=rank,
        maxIter=iterations,
        regParam=reg_param,
        implicitPrefs=implicit,
        alpha=alpha,
        seed=seed,
        userCol="user",
        itemCol="item",
        ratingCol="rating",
        numUserBlocks=blocks,
        numItemBlocks=blocks,
        nonnegative=False,
    )
    ratings = _interaction_frame(session, matrix).cache()
    try:
        model = estimator.fit(ratings)
        users = _collect_factors(model.userFactors, matrix.shape[0], rank)
        items = _collect_factors(model.itemFactors, matrix.shape[1], rank)
    finally:
        ratings.unpersist()
    return users, items
