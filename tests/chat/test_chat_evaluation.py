from __future__ import annotations

import pytest

from hybrec.chat.evaluation import build_queries, evaluate_chat, load_catalog, ndcg_at, recall_at
from hybrec.chat.relaxation import satisfies


def test_recall_and_ndcg() -> None:
    relevant = frozenset({"a", "b"})
    assert recall_at(["a", "x", "b"], relevant) == 1.0
    assert recall_at(["x", "a"], relevant) == 0.5
    assert ndcg_at(["a", "b"], relevant) == pytest.approx(1.0)
    assert 0 < ndcg_at(["x", "a"], relevant) < 1
    assert recall_at(["a"], frozenset()) == 0.0


@pytest.mark.shared_data
def test_queries_from_the_real_catalog_are_labelled_with_every_satisfying_item(gift_shop) -> None:
    catalog = load_catalog(gift_shop.settings.database_url)
    queries = build_queries(catalog, "gift card", max_queries=30)
    assert 10 <= len(queries) <= 30
    assert {q.kind for q in queries} >= {"brand_price", "price_rating"}
    items = {e.item_id: e.as_item() for e in catalog}
    for query in queries:
        assert query.relevant == {i for i, item in items.items() if satisfies(item, query.constraints)}
        assert query.relevant


@pytest.mark.shared_data
def test_the_none_backend_meets_the_constraint_target_on_gift_cards(gift_shop) -> None:
    queries = build_queries(load_catalog(gift_shop.settings.database_url), "gift card", max_queries=12)
    result = evaluate_chat(gift_shop.engine(), queries, progress=False)
    assert result.queries == len(queries) and result.queries_with_results == len(queries)
    assert result.constraint_satisfaction >= 0.99, result.failures
    assert result.recall_at_5 > 0 and set(result.latency_ms) >= {"understanding", "retrieval", "generation"}


@pytest.mark.shared_data
def test_the_report_lists_replies_only_when_asked(gift_shop) -> None:
    queries = build_queries(load_catalog(gift_shop.settings.database_url), "gift card", max_queries=3)
    engine = gift_shop.engine()
    assert "replies" not in evaluate_chat(engine, queries, progress=False, warm_up=False).as_dict()
    report = evaluate_chat(engine, queries, progress=False, warm_up=False, keep_replies=True).as_dict()
    assert [r["query"] for r in report["replies"]] == [q.text for q in queries]
    assert all(r["reply"] and r["mode"] == "new_search" and r["total_ms"] > 0 for r in report["replies"])
