"""Which ALS implementation a training run fits with: ``settings.als_backend`` = torch (default) or spark.

Both produce an :class:`hybrec.als.ImplicitALS` (the Spark one is :class:`hybrec.als.spark.SparkImplicitALS`, a
subclass whose ``fit`` runs Spark MLlib), so evaluation, the gate and publishing do not depend on the choice.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from hybrec.als import ImplicitALS
from hybrec.config import Settings


def als_model_factory(settings: Settings, params: dict[str, Any]) -> Callable[[], ImplicitALS]:
    """A function returning a fresh, unfitted model with ``params`` on the configured backend.

    pyspark is imported only for ``als_backend=spark``, so the torch path never needs the spark extra.
    """
    if settings.als_backend == "spark":
        from hybrec.als.spark import SparkImplicitALS

        return lambda: SparkImplicitALS(**params, master=settings.spark_master, device=settings.als_device)
    return lambda: ImplicitALS(**params, device=settings.als_device)


def backend_scope(settings: Settings) -> AbstractContextManager[None]:
    """Holds the backend's resources for one run: with Spark, a session started during the run (shared by the
    holdout fit and the final fit) is stopped at its end, so a long-lived scheduler does not keep an idle JVM."""
    if settings.als_backend == "spark":
        from hybrec.als.spark import spark_session_scope

        return spark_session_scope()
    return nullcontext()
