"""Spark MLlib ALS as a training backend that yields the same model objects (and so the same artifacts) as torch ALS.

:class:`SparkImplicitALS` and :class:`SparkExplicitALS` are :class:`hybrec.als.ImplicitALS` /
:class:`hybrec.als.ExplicitALS` whose ``fit`` runs ``pyspark.ml.recommendation.ALS`` (Zhou et al. 2008 for the
explicit solver, Hu, Koren & Volinsky 2008 for ``implicitPrefs=True``) on a local or ``spark://`` master; fold-in,
``recommend``, ``similar_items`` and :class:`hybrec.als.ModelArtifact` save/load are inherited unchanged, and a saved
model loads back as the plain torch class (the artifact does not know which backend trained it).

Hyperparameter mapping (ours → MLlib):

- ``factors`` → ``rank``; ``iterations`` → ``maxIter``; ``seed`` → ``seed``; ``alpha`` → ``alpha``: the same
  confidence ``c = 1 + alpha * |r|`` and preference ``[r > 0]``, including negative values as dislikes.
- ``regularization`` → ``regParam``. MLlib scales the ridge of every row by its count of positive entries
  (ALS-WR: ``lambda_u = regParam * n_u``); ImplicitALS uses ``regularization * (n_u + alpha0 * n_items) ** nu``
  (plain ``regularization`` at the default ``reg_exponent = 0``). No single regParam reproduces a per-row constant, so
  :func:`mllib_reg_param` picks the one that puts the same *total* ridge weight on the factors, summed over every
  user and item row: exact when ``reg_exponent = 1`` (ALS-WR), and ``regularization * (users + items) / (2 nnz)``
  at ``reg_exponent = 0``. For ExplicitALS (already ALS-WR) the mapping is the identity.
- ``alpha0`` (extra weight on unobserved pairs) has no MLlib counterpart: it must be 0.
- ``solver``, ``cg_steps``, ``backend``, ``num_threads`` are torch-side settings: MLlib always solves each row exactly
  (Cholesky). ``device`` is where the fitted factors are placed for serving.

Row ``u`` / column ``i`` of the CSR matrix are sent as MLlib ids ``u`` / ``i``, so the factors come back already in
our row order; rows without interactions get zero factors, as in the torch fit.

Modules: :mod:`.models` (the two model classes), :mod:`.mllib` (the regParam mapping, moving the data into and the
factors out of Spark, the MLlib fit) and :mod:`.session` (the session lifecycle): :func:`get_spark_session` starts
(or reuses) one cached ``SparkSession`` per process with the UI off, quiet logging, a small shuffle, a temporary
checkpoint folder and modest driver memory on a local master; :func:`stop_spark_session` stops it and its JVM (also
at interpreter exit) and :func:`spark_session_scope` stops a session that was started inside it. ``pyspark`` (the
``spark`` extra) and Java 17+ are needed only when these are used; importing this package does not import pyspark.
"""

from hybrec.als.spark.mllib import mllib_reg_param, train_mllib_als
from hybrec.als.spark.models import SparkExplicitALS, SparkImplicitALS
from hybrec.als.spark.session import (
    DEFAULT_MASTER,
    SparkUnavailableError,
    get_spark_session,
    spark_session_scope,
    stop_spark_session,
)

__all__ = [
    "DEFAULT_MASTER",
    "SparkExplicitALS",
    "SparkImplicitALS",
    "SparkUnavailableError",
    "get_spark_session",
    "mllib_reg_param",
    "spark_session_scope",
    "stop_spark_session",
    "train_mllib_als",
]
