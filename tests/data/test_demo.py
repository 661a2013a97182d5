from __future__ import annotations

from collections import Counter, defaultdict
from datetime import timedelta

import numpy as np
import pytest
import scipy.sparse as sp

from hybrec.data.demo import DAYS, START, generate_demo_shop
from hybrec.data.records import INTERACTION_KINDS, InteractionRecord


def _key(record: InteractionRecord) -> tuple:
    return (record.user_id, record.item_id, record.kind, record.ts, record.rating)


def test_deterministic_for_a_seed() -> None:
    a, b = generate_demo_shop(seed=3, n_users=150, n_items=300), generate_demo_shop(seed=3, n_users=150, n_items=300)
    assert list(a.items) == list(b.items)
    assert list(a.users) == list(b.users)
    assert [_key(r) for r in a.interactions] == [_key(r) for r in b.interactions]
    c = generate_demo_shop(seed=4, n_users=150, n_items=300)
    assert [i.name for i in c.items] != [i.name for i in generate_demo_shop(seed=3, n_users=150, n_items=300).items]


def test_catalogue_shape() -> None:
    source = generate_demo_shop(seed=42, n_users=200, n_items=3000)
    items = list(source.items)
    assert len(items) == 3000 and len({i.external_id for i in items}) == 3000
    assert len({i.name for i in items}) == 3000  # names are unique
    by_category = defaultdict(list)
    for item in items:
        by_category[item.category].append(item)
        assert item.brand and item.description and len(item.features) >= 2
        assert item.price is not None and item.price > 0
    assert len(by_category) >= 12
    assert all(len({i.brand for i in group}) >= 4 for group in by_category.values())
    medians = {c: float(np.median([i.price for i in group])) for c, group in by_category.items()}
    assert medians["Headphones"] > 3 * medians["Coffee"]  # prices are drawn per category


def test_interactions_kinds_times_and_funnel() -> None:
    source = generate_demo_shop(seed=42, n_users=300, n_items=600)
    users = {u.external_id for u in source.users}
    items = {i.external_id for i in source.items}
    events = list(source.interactions)
    kinds = Counter(e.kind for e in events)
    assert set(kinds) == set(INTERACTION_KINDS) - {"review"}
    assert kinds["view"] > kinds["click"] > kinds["cart"] > kinds["purchase"] > kinds["rating"] > 0
    assert all(e.user_id in users and e.item_id in items for e in events)
    assert all(START <= e.ts <= START + timedelta(days=DAYS) for e in events)
    assert {e.rating for e in events if e.kind == "rating"} <= {1.0, 2.0, 3.0, 4.0, 5.0}
    assert all(e.rating is None for e in events if e.kind != "rating")
    assert len({(e.user_id, e.item_id, e.ts) for e in events}) == len(events)  # no duplicate rows
    first_view = {(e.user_id, e.item_id): e.ts for e in events if e.kind == "view"}
    assert all(first_view[(e.user_id, e.item_id)] <= e.ts for e in events)  # every funnel starts with a view
    assert {e.kind: e.weight for e in events}["purchase"] > {e.kind: e.weight for e in events}["view"]


def test_popularity_is_skewed() -> None:
    events = list(generate_demo_shop(seed=42, n_users=1000, n_items=1000).interactions)
    views = np.sort(np.array(list(Counter(e.item_id for e in events if e.kind == "view").values())))[::-1]
    assert views[: len(views) // 10].sum() > 0.3 * views.sum()  # top 10% of items get > 30% of the views


def test_ratings_follow_taste() -> None:
    source = generate_demo_shop(seed=42, n_users=600, n_items=900)
    favourite = {u.external_id: set(u.attributes["favourite_categories"]) for u in source.users}
    category = {i.external_id: i.category for i in source.items}
    inside, outside = [], []
    purchases_in = purchases_all = 0
    for e in source.interactions:
        liked = category[e.item_id] in favourite[e.user_id]
        if e.kind == "rating":
            (inside if liked else outside).append(e.rating)
        if e.kind == "purchase":
            purchases_all += 1
            purchases_in += liked
    # Shoppers have 2-3 favourite categories out of 12 (about 21% of the catalogue by chance) and mostly buy there.
    assert purchases_in > 0.5 * purchases_all
    assert np.mean(inside) > np.mean(outside)


@pytest.mark.slow
def test_matrix_factorisation_beats_popularity() -> None:
    implicit_als = pytest.importorskip("implicit.cpu.als")
    threadpoolctl = pytest.importorskip("threadpoolctl")
    source = generate_demo_shop(seed=7, n_users=1000, n_items=1500)
    users = {u.external_id: k for k, u in enumerate(source.users)}
    items = {i.external_id: k for k, i in enumerate(source.items)}
    events = list(source.interactions)
    last: dict[str, InteractionRecord] = {}
    for e in events:
        if e.kind == "purchase" and (e.user_id not in last or e.ts > last[e.user_id].ts):
            last[e.user_id] = e
    held_out = {(e.user_id, e.item_id) for e in last.values()}
    train = [e for e in events if (e.user_id, e.item_id) not in held_out]
    matrix = sp.csr_matrix(
        ([e.weight for e in train], ([users[e.user_id] for e in train], [items[e.item_id] for e in train])),
        shape=(len(users), len(items)),
    )
    matrix.sum_duplicates()
    popularity = np.asarray((matrix > 0).sum(axis=0)).ravel().astype(float)
    with threadpoolctl.threadpool_limits(1):
        model = implicit_als.AlternatingLeastSquares(
            factors=32, regularization=0.05, iterations=15, num_threads=1, random_state=0
        )
        model.fit(matrix, show_progress=False)
        hits_pop = hits_mf = 0
        for e in last.values():
            u, target = users[e.user_id], items[e.item_id]
            scores = popularity.copy()
            scores[matrix[u].indices] = -1
            hits_pop += target in np.argsort(-scores)[:10]
            ids, _ = model.recommend(u, matrix[u], N=10, filter_already_liked_items=True)
            hits_mf += target in ids
    assert hits_mf > 2 * hits_pop, (hits_mf, hits_pop)
