"""The training job: store → ALS → holdout evaluation → gate → publish version N → flip → retention.

One run, under the trainer lock (:mod:`hybrec.training.lock`):

1. rows left in ``training`` by a trainer that died are marked failed and their partial data deleted;
2. a ``model_versions`` row is opened (its id is the version number N);
3. every stored interaction becomes a users × items matrix (:func:`hybrec.data.matrices.from_triples`; a rating
   counts with its rating, other kinds with their weight — :func:`hybrec.data.records.interaction_value`);
4. ALS (Hu, Koren & Volinsky 2008) is fitted on a per-user 80/20 holdout and scored on the held-out 20% over the
   full catalog (NDCG@10, Recall@20 ...), with the implementation ``settings.als_backend`` names (torch, or Spark
   MLlib on a cluster's executors: :mod:`hybrec.training.backend`), recorded in the version's params;
5. gate: the model is not published when its NDCG@10 is below the live model's by more than
   ``settings.publish_ndcg_margin``;
6. the model is refitted on all data and published (:mod:`hybrec.training.publish`): artifact, item vectors,
   user vectors, popularity, then the active pointer flips in one transaction;
7. versions other than N and N-1 are deleted.

Any exception marks the row failed with the reason; the previous version stays active and complete.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from hybrec.als.tuning import load_params
from hybrec.config import Settings
from hybrec.data.matrices import InteractionMatrix, from_triples
from hybrec.store import queries
from hybrec.store.engine import session_scope
from hybrec.training import versions
from hybrec.training.backend import als_model_factory, backend_scope
from hybrec.training.evaluate import holdout_metrics
from hybrec.training.lock import trainer_lock
from hybrec.training.publish import FaultHook, publish_version
from hybrec.vectors import make_user_cache, make_vector_index
from hybrec.vectors.base import UserVectorCache, VectorIndex

log = logging.getLogger(__name__)

GATE_METRIC = "ndcg@10"
Status = Literal["published", "rejected", "failed"]


class TrainingError(RuntimeError):
    """A training run that cannot produce a model (e.g. no interactions in the store)."""


@dataclass(frozen=True, slots=True)
class TrainingOutcome:
    """What one run did: the version it opened, whether it was published, its metrics, and why not if not."""

    version: int
    status: Status
    metrics: dict[str, float] = field(default_factory=dict)
    duration_s: float = 0.0
    error: str | None = None


def load_interactions(settings: Settings) -> InteractionMatrix:
    """Every stored interaction as a users x items matrix (duplicate pairs summed) with its id maps."""
    with session_scope(settings.database_url) as session:
        arrays = queries.load_interaction_arrays(session)
    if len(arrays) == 0:
        raise TrainingError("the store holds no interactions; ingest data before training")
    return from_triples(arrays.user_ids, arrays.item_ids, arrays.values, arrays.timestamps, name="store")


def run_training(
    settings: Settings,
    *,
    user_cache: UserVectorCache | None = None,
    item_index: VectorIndex | None = None,
    params: dict[str, Any] | None = None,
    fault: FaultHook | None = None,
    show_progress: bool = False,
) -> TrainingOutcome:
    """Train, evaluate, gate and publish one version (see the module docstring).

    Parameters
    ----------
    settings : Settings
        Store, backends, ``var_dir``, ``als_params_path``, ``publish_ndcg_margin``, ``als_device``.
    user_cache, item_index : optional
        Backends to publish into; built from ``settings`` when not given (and closed afterwards).
    params : dict, optional
        ALS hyperparameters; default: the params file (``settings.als_params_path``), else ImplicitALS's defaults.
    fault : callable, optional
        Called with the name of each publish step as it completes (tests use it to crash a publish midway).
    show_progress : bool
        Progress bar while fitting (the CLI turns it on).

    Raises
    ------
    hybrec.training.lock.TrainerBusy
        Another trainer is running; nothing was done.
    """
    own_cache, own_index = user_cache is None, item_index is None
    cache = user_cache if user_cache is not None else make_user_cache(settings)
    index = item_index if item_index is not None else make_vector_index(settings)
    try:
        with trainer_lock(settings.database_url, Path(settings.var_dir)):
            stale = versions.fail_interrupted(settings, index, cache)
            if stale:
                log.warning("marked interrupted version(s) %s as failed", stale)
            with backend_scope(settings):
                return _run_locked(settings, cache, index, params, fault, show_progress)
    finally:
        if own_cache:
            cache.close()
        if own_index:
            index.close()


def _run_locked(
    settings: Settings,
    cache: UserVectorCache,
    index: VectorIndex,
    params: dict[str, Any] | None,
    fault: FaultHook | None,
    show_progress: bool,
) -> TrainingOutcome:
    started = time.perf_counter()
    version = versions.start_version(settings, dict(params or {}))
    try:
        als_params = dict(params) if params is not None else load_params(settings.als_params_path, missing_ok=True)
        log.info("training model version %d with %s", version, als_params or "default parameters")
        data = load_interactions(settings)
        versions.update_version(
            settings,
            version,
            params={**als_params, "als_backend": settings.als_backend},
            n_users=len(data.user_ids),
            n_items=len(data.item_ids),
            n_interactions=int(data.matrix.nnz),
        )
        make_model = als_model_factory(settings, als_params)
        metrics = holdout_metrics(make_model, data, show_progress=show_progress)
        gate_error = _gate(settings, metrics)
        if gate_error is not None:
            duration = time.perf_counter() - started
            metrics["duration_s"] = duration
            versions.update_version(settings, version, status="failed", metrics=metrics, error=gate_error)
            log.warning("version %d not published: %s", version, gate_error)
            return TrainingOutcome(version, "rejected", metrics, duration, gate_error)
        model = make_model().fit(data.matrix, show_progress=show_progress)
        previous = versions.active_version(settings)
        metrics["train_s"] = time.perf_counter() - started
        publish_version(settings, version, model, data, metrics, cache, index, fault=fault)
    except Exception as exc:
        duration = time.perf_counter() - started
        error = f"{type(exc).__name__}: {exc}"
        log.exception("training version %d failed; the active version is unchanged", version)
        versions.mark_failed(settings, version, error)
        versions.update_version(settings, version, metrics={"duration_s": duration})
        versions.delete_version_data(settings, version, index, cache)
        return TrainingOutcome(version, "failed", {"duration_s": duration}, duration, error)
    # Version N is live from here on: a failure below is logged, never turned into a failed version.
    duration = time.perf_counter() - started
    metrics["duration_s"] = duration
    removed: list[int] = []
    try:
        versions.update_version(settings, version, metrics=metrics)
        keep = {version} | ({previous.version} if previous is not None else set())
        removed = versions.retire_old_versions(settings, keep, index, cache)
    except Exception:
        log.exception("version %d is published, but cleaning up older versions failed", version)
    log.info(
        "published version %d (%s %.4f) in %.1fs; deleted versions %s",
        version,
        GATE_METRIC,
        metrics.get(GATE_METRIC, float("nan")),
        duration,
        removed or "none",
    )
    return TrainingOutcome(version, "published", metrics, duration)


def _gate(settings: Settings, metrics: dict[str, float]) -> str | None:
    """Why the new model must not replace the live one, or None when it may."""
    live = versions.active_version(settings)
    if live is None or GATE_METRIC not in live.metrics:
        return None
    live_score = float(live.metrics[GATE_METRIC])
    new_score = float(metrics.get(GATE_METRIC, 0.0))
    if new_score < live_score - settings.publish_ndcg_margin:
        return (
            f"gate: {GATE_METRIC} {new_score:.4f} is below the live version {live.version}'s {live_score:.4f} "
            f"by more than the margin {settings.publish_ndcg_margin}"
        )
    return None
