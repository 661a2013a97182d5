"""Spark-fitted ALS models: the torch classes with ``fit`` replaced, so everything after the fit is unchanged."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Self, Unpack

import numpy as np
import scipy.sparse as sp
import torch

from hybrec.als._checks import check_finite_factors, check_interactions
from hybrec.als.base import AlternatingLeastSquaresBase, RuntimeOptions
from hybrec.als.explicit import ExplicitALS
from hybrec.als.implicit import ImplicitALS
from hybrec.als.spark.mllib import mllib_reg_param, train_mllib_als
from hybrec.als.spark.session import DEFAULT_MASTER, get_spark_session

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)


class _SparkFitMixin:
    """``fit`` through MLlib; the rest of the model (serving, artifacts) is the torch class it is mixed into."""

    master: str
    spark_conf: dict[str, str]
    _session: SparkSession | None

    def _init_spark(self, master: str, session: SparkSession | None, spark_conf: Mapping[str, str] | None) -> None:
        if not isinstance(master, str) or not master:
            raise ValueError(f"master must be a Spark master URL such as 'local[2]', got {master!r}")
        self.master = master
        self._session = session
        self.spark_conf = dict(spark_conf or {})

    def _mllib_spec(self, matrix: sp.csr_matrix) -> tuple[sp.csr_matrix, float, bool, float]:
        """(values to send, regParam, implicitPrefs, alpha) for a prepared training matrix."""
        raise NotImplementedError

    def fit(self, user_items: sp.csr_matrix, show_progress: bool = True) -> Self:
        """Factorise ``user_items`` with Spark MLlib (same meaning of values as the torch class); returns self."""
        model: AlternatingLeastSquaresBase = self  # type: ignore[assignment]
        matrix = model._prepare(check_interactions(user_items))
        values, reg_param, implicit, alpha = self._mllib_spec(matrix)
        session = self._session if self._session is not None else get_spark_session(self.master, conf=self.spark_conf)
        started = time.perf_counter()
        X, Y = train_mllib_als(
            session,
            values,
            rank=model.factors,
            reg_param=reg_param,
            iterations=model.iterations,
            seed=model.seed,
            implicit=implicit,
            alpha=alpha,
        )
        seconds = time.perf_counter() - started
        device = torch.device(model.device)
        users, items = torch.from_numpy(X).to(device), torch.from_numpy(Y).to(device)
        # MLlib returns factors for ids it saw; be explicit that rows without interactions score nothing.
        users[torch.from_numpy(np.diff(matrix.indptr) == 0).to(device)] = 0.0
        items[torch.from_numpy(np.bincount(matrix.indices, minlength=matrix.shape[1]) == 0).to(device)] = 0.0
        check_finite_factors(users, "user")
        check_finite_factors(items, "item")
        model.user_factors, model.item_factors = users, items
        model._train = matrix
        model._item_gramian = None
        model.seconds_per_iteration = seconds / model.iterations
        model.backend_used = "spark"
        model.loss_history = []
        if model.calculate_training_loss:
            # MLlib reports no per-iteration loss; record the final one under our objective.
            reg_u, reg_i = model._regularization_tensor(matrix), model._regularization_tensor(matrix.T.tocsr())
            model.loss_history.append(model._loss(matrix, users, items, reg_u, reg_i))
        log.info(
            "fitted %s with Spark MLlib on %s: %d users x %d items, %d factors, regParam %.3g, %.1fs",
            type(self).__name__,
            self.master,
            matrix.shape[0],
            matrix.shape[1],
            model.factors,
            reg_param,
            seconds,
        )
        return self


class SparkImplicitALS(_SparkFitMixin, ImplicitALS):
    """:class:`hybrec.als.ImplicitALS` fitted by Spark MLlib ALS, ``implicitPrefs=True`` (see :mod:`hybrec.als.spark`).

    Parameters
    ----------
    factors, regularization, alpha, reg_exponent, iterations, solver, cg_steps
        As in :class:`hybrec.als.ImplicitALS`; ``regularization`` is mapped by :func:`mllib_reg_param`, ``solver``
        and ``cg_steps`` are kept (for the artifact and fold-in) but MLlib always solves exactly.
    alpha0 : float, default 0.0
        Must be 0: MLlib weighs every unobserved pair by 1.
    master : str, default "local[2]"
        Spark master, used when no ``session`` is given (via :func:`get_spark_session`).
    session : pyspark.sql.SparkSession, optional
        A session to train on instead of the cached one.
    spark_conf : mapping, optional
        Extra Spark settings for a session this model starts.
    device, seed, num_threads, calculate_training_loss, backend
        As in :class:`hybrec.als.ImplicitALS` (``device`` holds the fitted factors).
    """

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
        *,
        master: str = DEFAULT_MASTER,
        session: SparkSession | None = None,
        spark_conf: Mapping[str, str] | None = None,
        **options: Unpack[RuntimeOptions],
    ) -> None:
        super().__init__(factors, regularization, alpha, alpha0, reg_exponent, iterations, solver, cg_steps, **options)
        if self.alpha0 != 0.0:
            raise ValueError(
                f"Spark MLlib ALS weighs unobserved pairs by exactly 1, so alpha0 must be 0 (got {self.alpha0}); "
                "train with als_backend=torch or drop alpha0 from the params"
            )
        self._init_spark(master, session, spark_conf)

    def _mllib_spec(self, matrix: sp.csr_matrix) -> tuple[sp.csr_matrix, float, bool, float]:
        reg_param = mllib_reg_param(matrix, self.regularization, self.reg_exponent, self.alpha0)
        return matrix, reg_param, True, self.alpha


class SparkExplicitALS(_SparkFitMixin, ExplicitALS):
    """:class:`hybrec.als.ExplicitALS` (ALS-WR) fitted by Spark MLlib ALS with ``implicitPrefs=False``.

    MLlib solves the same ALS-WR objective (ridge ``regParam * n_u``), so ``regularization`` is passed unchanged;
    with ``center=True`` the global mean is subtracted before the ratings are sent, as in the torch fit.
    ``master``, ``session`` and ``spark_conf`` are as in :class:`SparkImplicitALS`.
    """

    def __init__(
        self,
        factors: int = 64,
        regularization: float = 0.05,
        iterations: int = 15,
        solver: str = "cholesky",
        cg_steps: int = 3,
        center: bool = True,
        *,
        master: str = DEFAULT_MASTER,
        session: SparkSession | None = None,
        spark_conf: Mapping[str, str] | None = None,
        **options: Unpack[RuntimeOptions],
    ) -> None:
        super().__init__(factors, regularization, iterations, solver, cg_steps, center, **options)
        self._init_spark(master, session, spark_conf)

    def _mllib_spec(self, matrix: sp.csr_matrix) -> tuple[sp.csr_matrix, float, bool, float]:
        centred = matrix.copy()
        centred.data = centred.data - np.float32(self.global_mean)
        # An entry equal to the mean becomes 0; keep it (as a tiny value) so MLlib still counts it as a rating.
        centred.data[centred.data == 0] = np.float32(1e-12)
        return centred, self.regularization, False, 1.0
