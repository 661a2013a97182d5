"""Blending relevance with ALS scores: per-query min-max normalisation, weight, new users, unknown items."""

from __future__ import annotations

import numpy as np
import pytest

from hybrec.retrieval.personalise import blend, minmax


def test_minmax() -> None:
    np.testing.assert_allclose(minmax(np.array([2.0, 4.0, 3.0])), [0.0, 1.0, 0.5])
    np.testing.assert_allclose(minmax(np.array([7.0, 7.0])), [0.0, 0.0])
    assert minmax(np.array([])).size == 0
    with pytest.raises(ValueError, match="finite"):
        minmax(np.array([1.0, np.nan]))


def test_new_user_gets_pure_relevance_order() -> None:
    relevance = np.array([3.0, -1.0, 10.0, 0.5])
    for als in (None, [None, None, None, None]):
        scores = blend(relevance, als, 0.3)
        assert list(np.argsort(-scores)) == list(np.argsort(-relevance))
    # weight 0 ignores even a strong preference
    assert list(np.argsort(-blend(relevance, [0.0, 99.0, 0.0, 0.0], 0.0))) == [2, 0, 3, 1]


def test_preferred_item_moves_up_by_the_weight_of_its_als_score() -> None:
    relevance = np.array([1.0, 0.9, 0.8, 0.0])
    als = [0.1, 0.2, 5.0, 0.3]  # the user loves item 2
    scores = blend(relevance, als, 0.3)
    assert int(np.argmax(scores)) == 2
    # Both sides are min-max normalised: the scale of the raw scores does not matter.
    np.testing.assert_allclose(blend(relevance * 100, [a * 7 for a in als], 0.3), scores)
    # A small weight keeps relevance on top.
    assert int(np.argmax(blend(relevance, als, 0.1))) == 0


def test_items_unknown_to_the_model_are_neutral() -> None:
    scores = blend([1.0, 1.0, 1.0], [0.0, None, 1.0], 0.5)
    np.testing.assert_allclose(scores, [0.0, 0.25, 0.5])


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="weight"):
        blend([1.0], [1.0], 1.5)
    with pytest.raises(ValueError, match="2 ALS scores for 1"):
        blend([1.0], [1.0, 2.0], 0.3)
