"""The serving logic: version reloads, vector sources, and degraded answers when Redis or Chroma is down.

"Down" here is real: clients pointed at a loopback port nothing listens on, so the failure travels through the
real client libraries into :class:`VectorStoreUnavailable`.
"""

from __future__ import annotations

import asyncio
import gc
import socket
import threading
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from hybrec.api.app import create_app
from hybrec.config import Settings
from hybrec.recommend.errors import ModelNotReady
from hybrec.recommend.service import CACHE_DOWN, INDEX_DOWN, Recommender
from hybrec.recommend.types import InteractionEvent
from hybrec.store import migrate, queries
from hybrec.store.engine import get_engine
from hybrec.training.job import run_training
from hybrec.vectors.chroma_index import ChromaVectorIndex
from hybrec.vectors.exact_index import ExactVectorIndex
from hybrec.vectors.filters import Filter
from hybrec.vectors.memory_cache import MemoryUserVectorCache
from hybrec.vectors.redis_cache import RedisUserVectorCache
from reco_support import count_interactions, demo_template, make_settings, trained_clone


def _dead_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # closed on exit: nothing listens there


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return demo_template(tmp_path_factory.mktemp("template"))


@pytest.fixture
def trained(template: Settings, tmp_path: Path) -> Settings:
    return trained_clone(template, tmp_path)


def test_a_trained_user_is_served_from_the_model_when_the_cache_misses(trained: Settings) -> None:
    # A fresh in-process cache (another process trained): the artifact's user factors serve the user.
    recommender = Recommender(trained, user_cache=MemoryUserVectorCache())
    result = recommender.recommend("U00001", 5)
    assert result.strategy == "trained" and len(result.items) == 5 and result.degraded == []


def test_the_event_loop_path_answers_exactly_as_the_threaded_one(trained: Settings) -> None:
    # Embedded backends answer in-process, so the API awaits recommend_async on its event loop.
    recommender = Recommender(trained, user_cache=MemoryUserVectorCache())
    assert recommender.answers_in_process
    cases = [
        ("U00001", 5, None),  # trained
        ("U00002", 8, Filter(max_price=60)),
        ("never-seen", 4, None),  # cold start
        ("never-seen", 4, Filter(min_rating=3.0)),  # cold start with a filter: the popular list through the index
    ]

    async def both() -> list[tuple[object, object]]:
        return [
            (recommender.recommend(u, n, where), await recommender.recommend_async(u, n, where))
            for u, n, where in cases
        ]

    results = asyncio.run(both())
    for threaded, awaited in results:
        assert awaited == threaded
    assert [r.strategy for r, _ in results] == [
        "trained",
        "trained",
        "cold_start_popular",
        "cold_start_popular",
    ]
    redis = RedisUserVectorCache(f"redis://127.0.0.1:{_dead_port()}/0")
    assert not Recommender(trained, user_cache=redis).answers_in_process  # round trips: a worker thread


def test_a_serving_recommender_freezes_the_loaded_model_out_of_the_collectors_sight(trained: Settings) -> None:
    # hybrec serve's recommender: the model and its index collection (loaded now, not on the first request) are
    # frozen, so full collections no longer walk them.
    index = ExactVectorIndex(Path(trained.var_dir) / "index")
    try:
        recommender = Recommender(trained, user_cache=MemoryUserVectorCache(), item_index=index, freeze_gc=True)
        recommender.refresh(force=True)
        frozen = gc.get_freeze_count()
        state = recommender._state
        assert state is not None and frozen > len(state.item_pos)
        assert not any(o is state.item_pos for o in gc.get_objects())  # in the permanent generation, not scanned
        assert index._collections[state.collection].metadatas  # loaded before freezing
        assert recommender.recommend("U00001", 5).strategy == "trained"
    finally:
        gc.unfreeze()
    Recommender(trained, user_cache=MemoryUserVectorCache()).refresh(force=True)
    assert gc.get_freeze_count() == 0  # off by default: tests and tools building many models never freeze


def test_reload_picks_up_a_new_version_within_the_interval(trained: Settings) -> None:
    clock = Clock()
    cache, index = MemoryUserVectorCache(), ExactVectorIndex(Path(trained.var_dir) / "index")
    recommender = Recommender(trained, user_cache=cache, item_index=index, reload_interval_s=5.0, clock=clock)
    assert recommender.recommend("U00002", 3).model_version == 1
    assert run_training(trained, user_cache=cache, item_index=index).status == "published"
    clock.now = 4.0
    assert recommender.recommend("U00002", 3).model_version == 1  # not checked yet: no store query per request
    clock.now = 5.5
    assert recommender.recommend("U00002", 3).model_version == 2


def test_no_model_yet_is_a_503_with_a_reason(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    migrate.upgrade(settings.database_url)
    recommender = Recommender(settings)
    with pytest.raises(ModelNotReady, match="hybrec train"):
        recommender.recommend("anyone", 3)
    with TestClient(create_app(settings, recommender=recommender)) as client:
        assert client.get("/ready").status_code == 503
        response = client.get("/v1/users/anyone/recommendations")
        assert response.status_code == 503 and "hybrec train" in response.json()["detail"]
        assert client.get("/health").status_code == 200


def test_redis_down_folds_in_from_the_store_and_still_stores_events(trained: Settings) -> None:
    dead = RedisUserVectorCache(f"redis://127.0.0.1:{_dead_port()}/0", "down-test", connect_timeout=0.2)
    recommender = Recommender(trained, user_cache=dead)
    result = recommender.recommend("U00003", 10)
    assert result.strategy == "folded_in" and CACHE_DOWN in result.degraded and len(result.items) == 10

    before = count_interactions(trained)
    with TestClient(create_app(trained, recommender=recommender)) as client:
        posted = client.post(
            "/v1/interactions", json={"user_id": "redis-down-user", "item_id": "P00010", "kind": "cart"}
        )
        assert posted.status_code == 201 and posted.json()["stored"] == 1
        assert any("user_cache_unavailable" in d for d in posted.json()["degraded"])
        body = client.get("/v1/users/redis-down-user/recommendations", params={"n": 5}).json()
        assert body["strategy"] == "folded_in" and "P00010" not in [i["item_id"] for i in body["items"]]
        ready = client.get("/ready").json()
        assert ready["ready"] is True and ready["checks"]["user_cache"]["ok"] is False
    assert count_interactions(trained) == before + 1


def test_chroma_down_serves_from_the_exact_index_built_from_the_artifact(trained: Settings) -> None:
    healthy = Recommender(trained)
    expected = healthy.recommend("U00004", 8, Filter(min_price=5.0))
    dead = ChromaVectorIndex.from_url(f"http://127.0.0.1:{_dead_port()}")
    recommender = Recommender(trained, item_index=dead)
    result = recommender.recommend("U00004", 8, Filter(min_price=5.0))
    assert INDEX_DOWN in result.degraded
    assert [i.item_id for i in result.items] == [i.item_id for i in expected.items]
    similar = recommender.similar_items(expected.items[0].item_id, 4)
    assert len(similar.items) == 4 and INDEX_DOWN in similar.degraded
    with TestClient(create_app(trained, recommender=recommender)) as client:
        ready = client.get("/ready").json()
        assert ready["ready"] is True and "exact fallback" in ready["checks"]["item_index"]["detail"]


def test_a_deleted_collection_is_served_from_the_factors_in_memory(trained: Settings) -> None:
    # Another trainer published twice more and deleted this server's version before it reloaded.
    index = ExactVectorIndex(Path(trained.var_dir) / "index")
    recommender = Recommender(trained, item_index=index)
    expected = recommender.recommend("U00005", 6)
    index.delete_collection(f"als_items_v{expected.model_version}")
    result = recommender.recommend("U00005", 6)
    assert [i.item_id for i in result.items] == [i.item_id for i in expected.items]
    assert INDEX_DOWN in result.degraded


def test_item_scores_for_blending_agree_with_the_ranking(trained: Settings) -> None:
    recommender = Recommender(trained)
    top = recommender.recommend("U00006", 5)
    ids = [i.item_id for i in top.items]
    scores, strategy = recommender.item_scores("U00006", [*reversed(ids), "NOT-AN-ITEM"])
    assert strategy == "trained" and set(scores) == set(ids)
    assert sorted(scores, key=lambda i: -scores[i]) == ids
    assert recommender.item_scores("nobody-at-all", ids) == ({}, "cold_start_popular")


def test_recommender_is_the_chat_personaliser(trained: Settings) -> None:
    from hybrec.chat.schemas import Personaliser

    recommender = Recommender(trained)
    assert isinstance(recommender, Personaliser)
    ids = [i.item_id for i in recommender.recommend("U00006", 5).items]
    vector = recommender.user_vector("U00006")
    assert vector is not None and vector.dtype == np.float32
    scores = recommender.score_items(vector, [*ids, "NOT-AN-ITEM"])
    assert scores == recommender.item_scores("U00006", ids)[0]
    assert recommender.user_vector("nobody-at-all") is None


def test_the_serving_read_of_a_users_events_matches_the_orm_read(trained: Settings) -> None:
    # The recommendation request reads a user's events on a raw pooled connection; same rows, same order, same
    # values as the SQLAlchemy query the rest of hybrec uses (timestamps aside, which serving does not read).
    url = trained.database_url
    for user in ("U00001", "U00002", "U00150"):
        full = queries.user_interactions_by_url(url, user)
        assert full and queries.user_events_by_url(url, user) == [(e.item_id, e.kind, e.rating, e.weight) for e in full]
    assert queries.user_events_by_url(url, "nobody") == []
    recommender = Recommender(trained, user_cache=MemoryUserVectorCache())
    seen = {e.item_id for e in queries.user_interactions_by_url(url, "U00001")}
    assert not seen & {i.item_id for i in recommender.recommend("U00001", 20).items}


def test_a_kept_connection_reads_what_was_committed_since_and_holds_no_transaction(trained: Settings) -> None:
    # The event loop keeps one pooled connection between reads: it must see every write committed meanwhile, and must
    # not sit in a read transaction (which would pin an old snapshot and stop SQLite's WAL checkpoints).
    url = trained.database_url
    before = queries.user_events_by_url(url, "U00001", keep_connection=True)
    assert before == queries.user_events_by_url(url, "U00001")
    kept = queries._kept_connection(get_engine(url))
    assert not kept.dbapi_connection.in_transaction
    item = next(i for i in ("P00001", "P00002", "P00003") if i not in {e.item_id for e in before})
    Recommender(trained, user_cache=MemoryUserVectorCache()).record_interactions(
        [InteractionEvent("U00001", item, "purchase")]
    )
    after = queries.user_events_by_url(url, "U00001", keep_connection=True)
    assert after[:-1] == before and after[-1].item_id == item
    assert queries._kept_connection(get_engine(url)) is kept  # the same one, call after call
    others: list[object] = []
    thread = threading.Thread(target=lambda: others.append(queries._kept_connection(get_engine(url))))
    thread.start()
    thread.join()
    assert others[0] is not kept  # each thread keeps its own
