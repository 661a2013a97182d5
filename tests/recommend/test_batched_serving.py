"""Recommendations served under concurrency through the exact index's request coalescing equal the unbatched ones.

A trained demo shop serves the same users twice: once from an index that coalesces concurrent queries into batches
(the default), once from one that computes each query on its own thread; filters, seen-item exclusion and
similar-items included.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from hybrec.config import Settings
from hybrec.recommend.service import Recommender
from hybrec.recommend.types import Recommendations
from hybrec.vectors.exact_index import ExactVectorIndex
from hybrec.vectors.filters import Filter
from reco_support import demo_template, trained_clone

FILTERS = [None, Filter(category="Books"), Filter(max_price=30.0), Filter(min_rating=4.0, min_price=5.0)]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    template = demo_template(tmp_path_factory.mktemp("template"))
    return trained_clone(template, tmp_path_factory.mktemp("trained"))


def _serve(recommender: Recommender, job: int) -> Recommendations:
    user = f"U{job % 60 + 1:05d}"
    where = FILTERS[job % len(FILTERS)]
    if job % 7 == 6:
        item = recommender.recommend(user, 1).items[0].item_id
        return recommender.similar_items(item, 8, where)
    return recommender.recommend(user, 5 + job % 10, where, exclude_seen=job % 5 != 0)


def test_batched_recommendations_equal_unbatched_ones_under_concurrency(trained: Settings, tmp_path: Path) -> None:
    batched = Recommender(trained, item_index=ExactVectorIndex(Path(trained.var_dir) / "index"))
    direct = Recommender(trained, item_index=ExactVectorIndex(Path(trained.var_dir) / "index", coalesce=False))
    batched.refresh(force=True)  # as the API's startup does: first requests then find the model loaded
    jobs = range(240)
    expected = [_serve(direct, job) for job in jobs]
    with ThreadPoolExecutor(12) as pool:
        got = list(pool.map(lambda job: _serve(batched, job), jobs))
    assert got == expected
    assert all(r.strategy == "trained" and r.items for r in expected)
    coalescer = batched.item_index._coalescer  # type: ignore[attr-defined]
    assert coalescer is not None and coalescer.requests > 0
    for recommender in (batched, direct):
        recommender.item_index.close()
    assert not coalescer.running
