"""Hyperparameter search for :class:`hybrec.als.ImplicitALS` on a validation split, and the params file training reads.

The search sets aside the test part of the seeded per-user 80/20 split, fits on a second 80/20 split of what remains
and ranks candidates by a full-catalog metric (``ndcg@10`` by default), so the test split of a later evaluation stays
untouched.
"""

from __future__ import annotations

import itertools
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from hybrec.als.evaluation import evaluate_model, split_random
from hybrec.als.implicit import ImplicitALS

log = logging.getLogger(__name__)

#: Hyperparameters a params file may set (the ImplicitALS constructor arguments that shape the model).
TUNABLE = ("factors", "regularization", "alpha", "alpha0", "reg_exponent", "iterations", "solver", "cg_steps", "seed")
DEFAULT_PARAMS: dict[str, Any] = {
    "factors": 64,
    "regularization": 0.01,
    "alpha": 1.0,
    "alpha0": 0.0,
    "reg_exponent": 0.0,
    "iterations": 15,
    "solver": "cg",
    "cg_steps": 3,
    "seed": 0,
}
DEFAULT_SPACE: dict[str, list[Any]] = {
    "factors": [32, 64, 128],
    "regularization": [0.01, 0.1, 1.0, 10.0],
    "alpha": [0.5, 1.0, 4.0, 16.0],
}


@dataclass
class Trial:
    params: dict[str, Any]
    metrics: dict[str, float]
    seconds: float


@dataclass
class TuningResult:
    """All trials, best first by ``metric``."""

    metric: str
    trials: list[Trial] = field(default_factory=list)

    @property
    def best(self) -> Trial:
        if not self.trials:
            raise ValueError("no trial was run")
        return self.trials[0]


def _check_space(space: Mapping[str, Sequence[Any]]) -> dict[str, list[Any]]:
    unknown = sorted(set(space) - set(TUNABLE))
    if unknown:
        raise ValueError(f"unknown hyperparameter(s) {unknown}; tunable: {list(TUNABLE)}")
    empty = [name for name, values in space.items() if len(values) == 0]
    if empty:
        raise ValueError(f"hyperparameter(s) {empty} have no candidate values")
    return {name: list(values) for name, values in space.items()}


def grid_candidates(space: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Every combination of the candidate values."""
    checked = _check_space(space)
    names = sorted(checked)
    return [dict(zip(names, values, strict=True)) for values in itertools.product(*(checked[n] for n in names))]


def random_candidates(space: Mapping[str, Sequence[Any]], trials: int, seed: int = 0) -> list[dict[str, Any]]:
    """``trials`` distinct combinations drawn uniformly from the grid (all of it when it is smaller)."""
    grid = grid_candidates(space)
    if trials <= 0:
        raise ValueError(f"trials must be positive, got {trials}")
    order = np.random.default_rng(seed).permutation(len(grid))[:trials]
    return [grid[i] for i in order]


def search(
    user_items: sp.csr_matrix,
    candidates: Sequence[Mapping[str, Any]],
    base_params: Mapping[str, Any] | None = None,
    metric: str = "ndcg@10",
    validation_fraction: float = 0.2,
    seed: int = 0,
    num_threads: int = 0,
    on_trial: Callable[[Trial], None] | None = None,
) -> TuningResult:
    """Fit one :class:`ImplicitALS` per candidate on a validation split and rank them by ``metric``.

    The test part of ``split_random(user_items, validation_fraction, seed)`` (the split ``hybrec evaluate`` and the
    benchmark use) is set aside first; candidates are fitted and scored on a second split of the remaining training
    part, so the reported test metrics of the chosen parameters stay honest.
    """
    outer = split_random(user_items, validation_fraction, seed=seed)
    split = split_random(outer.train, validation_fraction, seed=seed + 1)
    cutoff = int(metric.split("@")[1]) if "@" in metric else 10
    result = TuningResult(metric)
    for number, candidate in enumerate(candidates, start=1):
        params = {**DEFAULT_PARAMS, **(base_params or {}), **candidate}
        started = time.perf_counter()
        model = ImplicitALS(**params, num_threads=num_threads).fit(split.train, show_progress=False)
        metrics = evaluate_model(model, split.train, split.test, k=sorted({10, 20, cutoff}))
        if metric not in metrics:
            raise ValueError(f"unknown metric {metric!r}; available: {sorted(metrics)}")
        trial = Trial(params, metrics, time.perf_counter() - started)
        result.trials.append(trial)
        log.info("trial %d/%d %s: %s=%.4f", number, len(candidates), candidate, metric, metrics[metric])
        if on_trial:
            on_trial(trial)
    result.trials.sort(key=lambda t: -t.metrics[metric])
    return result


def save_params(path: str | Path, params: Mapping[str, Any], **provenance: Any) -> Path:
    """Write a params file: ``{"model": "implicit-als", "params": {...}, ...provenance}``."""
    checked = validate_params(params)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"model": "implicit-als", "params": checked, **provenance}, indent=2) + "\n")
    return path


def validate_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Known keys only, and values ImplicitALS accepts (raises ValueError naming the problem)."""
    unknown = sorted(set(params) - set(TUNABLE))
    if unknown:
        raise ValueError(f"unknown ALS parameter(s) {unknown}; known: {list(TUNABLE)}")
    merged = {**DEFAULT_PARAMS, **params}
    ImplicitALS(**merged)  # validates every value
    return merged


def load_params(path: str | Path, *, missing_ok: bool = False) -> dict[str, Any]:
    """The ``params`` of a params file, completed with the defaults.

    Parameters
    ----------
    path : str or Path
        The params file (:func:`save_params`'s format).
    missing_ok : bool, default False
        Return a copy of :data:`DEFAULT_PARAMS` when there is no file yet (the training job before the first
        ``hybrec tune``) instead of raising.

    Raises
    ------
    FileNotFoundError
        No file at ``path`` and ``missing_ok`` is false.
    ValueError
        The file is malformed or names unknown parameters (a training run must not silently ignore it).
    """
    path = Path(path)
    if not path.exists():
        if missing_ok:
            log.info("no ALS params file at %s; using the defaults", path)
            return dict(DEFAULT_PARAMS)
        raise FileNotFoundError(f"ALS params file {path} does not exist (run `hybrec tune` or restore it)")
    try:
        content = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(content, dict) or not isinstance(content.get("params"), dict):
        raise ValueError(f"{path} must hold an object with a 'params' object")
    return validate_params(content["params"])
