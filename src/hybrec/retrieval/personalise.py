"""Blending query relevance with the user's collaborative (ALS) preference.

The relevance scores (cross-encoder logits, or fused dense + lexical scores) and the ALS scores (dot products of the
user's vector with each candidate's item vector; Hu, Koren & Volinsky, *Collaborative Filtering for Implicit
Feedback Datasets*, ICDM 2008) live on unrelated scales, so each is min-max normalised over the query's candidates
before the convex combination::

    score = (1 - w) * minmax(relevance) + w * minmax(als)

A user without a vector (new user), or a query where no candidate has an ALS score, gets pure relevance. A candidate
the ALS model has no vector for (a product newer than the last training run) takes the mean of the known normalised
ALS scores: neutral, neither promoted nor buried for being new.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def minmax(values: np.ndarray) -> np.ndarray:
    """``values`` scaled to [0, 1]; all zeros when they are all equal (no preference expressed)."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return values
    lo, hi = float(values.min()), float(values.max())
    if not np.isfinite(lo) or not np.isfinite(hi):
        raise ValueError("scores to normalise must be finite")
    if hi - lo <= 1e-12:
        return np.zeros_like(values)
    return (values - lo) / (hi - lo)


def blend(
    relevance: Sequence[float] | np.ndarray,
    als_scores: Sequence[float | None] | None,
    weight: float,
) -> np.ndarray:
    """Final ranking scores of a query's candidates.

    Parameters
    ----------
    relevance : array of float
        Query relevance of each candidate (any scale; higher is better).
    als_scores : sequence of float or None, or None
        The user's ALS score of each candidate, aligned with ``relevance``; ``None`` for a candidate without an item
        vector. ``None`` as a whole (new user) gives pure relevance.
    weight : float
        Share of the ALS score, in [0, 1] (``settings.personalisation_weight``).

    Returns
    -------
    numpy.ndarray
        Scores in [0, 1] (higher is better). Without ALS scores this is ``minmax(relevance)``, which orders the
        candidates exactly as ``relevance`` does.
    """
    if not 0 <= weight <= 1:
        raise ValueError(f"personalisation weight must be in [0, 1], got {weight}")
    rel = minmax(np.asarray(relevance, dtype=np.float64))
    if als_scores is None or weight == 0:
        return rel
    if len(als_scores) != rel.size:
        raise ValueError(f"got {len(als_scores)} ALS scores for {rel.size} candidates")
    known = np.array([s is not None for s in als_scores], dtype=bool)
    if not known.any():
        return rel
    raw = np.array([0.0 if s is None else float(s) for s in als_scores], dtype=np.float64)
    als = np.empty_like(raw)
    als[known] = minmax(raw[known])
    als[~known] = als[known].mean()
    return (1.0 - weight) * rel + weight * als
