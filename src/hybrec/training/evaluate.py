"""Holdout evaluation for the training job.

The split and the metrics are :mod:`hybrec.als.evaluation`'s (the params file is read by
:func:`hybrec.als.tuning.load_params`); this module only chooses the job's holdout.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from hybrec.als import ImplicitALS
from hybrec.als.evaluation import evaluate_model, split_random
from hybrec.data.matrices import InteractionMatrix

log = logging.getLogger(__name__)

HOLDOUT_FRACTION = 0.2
SEED = 0


def holdout_metrics(
    make_model: Callable[[], ImplicitALS], data: InteractionMatrix, *, show_progress: bool = False
) -> dict[str, float]:
    """Fit a fresh model on a seeded per-user 80/20 split of ``data`` and score it on the held-out 20%.

    Metrics are :func:`hybrec.als.evaluation.evaluate_model`'s (full catalog, training items excluded), at K = 10
    and 20; the gate reads ``ndcg@10``.
    """
    split = split_random(data.matrix, HOLDOUT_FRACTION, SEED)
    model = make_model().fit(split.train, show_progress=show_progress)
    n_items = data.matrix.shape[1]
    metrics = evaluate_model(model, split.train, split.test, k=[c for c in (10, 20) if c <= n_items] or [n_items])
    log.info("holdout: ndcg@10 %.4f, recall@20 %.4f", metrics.get("ndcg@10", 0.0), metrics.get("recall@20", 0.0))
    return metrics
