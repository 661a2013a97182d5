"""Chroma-specific behaviour: recall against exact search, HNSW settings, stale handles, an unreachable server."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import chromadb
import numpy as np
import pytest

from hybrec.vectors.base import VectorStoreUnavailable
from hybrec.vectors.chroma_index import ChromaVectorIndex
from hybrec.vectors.exact_index import ExactVectorIndex
from hybrec.vectors.filters import Filter

pytestmark = pytest.mark.integration


@pytest.fixture
def chroma(chroma_server: str) -> Iterator[ChromaVectorIndex]:
    index = ChromaVectorIndex.from_url(chroma_server)
    made_before = set(index.list_collections())
    yield index
    for name in set(index.list_collections()) - made_before:
        index.delete_collection(name)


def _name() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


@pytest.mark.slow
def test_recall_at_10_against_exact_search(chroma: ChromaVectorIndex) -> None:
    """i.i.d. Gaussian vectors are the hard case for HNSW; Chroma's defaults give ~0.85 here, ours >= 0.95."""
    rng = np.random.default_rng(42)
    items = rng.standard_normal((20_000, 64)).astype(np.float32)
    queries = rng.standard_normal((100, 64)).astype(np.float32)
    ids = [f"i{k}" for k in range(len(items))]
    metas = [{"category": "even" if k % 2 == 0 else "odd"} for k in range(len(items))]
    name = _name()
    exact = ExactVectorIndex()
    for index in (exact, chroma):
        index.create_collection(name, 64, "ip")
        index.upsert(name, ids, items, metas)
    assert chroma.count(name) == len(items)
    for where in (None, Filter(category="odd")):
        truth = exact.query(name, queries, 10, where=where)
        got = chroma.query(name, queries, 10, where=where)
        recall = np.mean([len({h.id for h in t} & {h.id for h in g}) / 10 for t, g in zip(truth, got, strict=True)])
        assert recall >= 0.95, f"recall@10 {recall:.3f} with filter {where}"
        # the scores of the hits it does find are the true dot products
        hit = got[0][0]
        assert hit.score == pytest.approx(float(items[int(hit.id[1:])] @ queries[0]), abs=1e-3)


@pytest.mark.parametrize("prefilter_candidates", [1000, 20])
def test_filtered_query_with_and_without_falling_back_to_chroma_where(
    chroma_server: str, prefilter_candidates: int
) -> None:
    """Few candidates make the client-side pass come up short for a rare category, so Chroma's where runs."""
    chroma = ChromaVectorIndex.from_url(chroma_server, prefilter_candidates=prefilter_candidates)
    rng = np.random.default_rng(3)
    items = rng.standard_normal((600, 8)).astype(np.float32)
    ids = [f"i{k}" for k in range(600)]
    metas = [{"category": "rare" if k % 100 == 7 else "common", "price": float(k)} for k in range(600)]
    name = _name()
    exact = ExactVectorIndex()
    try:
        for index in (exact, chroma):
            index.create_collection(name, 8, "ip")
            index.upsert(name, ids, items, metas)
        for where in (Filter(category="rare"), Filter(category="common", max_price=300), Filter(category="none")):
            expected = exact.query(name, items[:3], 5, where=where, exclude_ids={"i107"})
            got = chroma.query(name, items[:3], 5, where=where, exclude_ids={"i107"})
            assert [[h.id for h in row] for row in got] == [[h.id for h in row] for row in expected]
    finally:
        chroma.delete_collection(name)


def test_collections_are_created_with_our_hnsw_settings(chroma: ChromaVectorIndex, chroma_server: str) -> None:
    name = _name()
    chroma.create_collection(name, 16, "cosine")
    host, port = chroma_server.removeprefix("http://").split(":")
    raw = chromadb.HttpClient(host=host, port=int(port)).get_collection(name, embedding_function=None)
    hnsw = raw.configuration["hnsw"]
    assert (hnsw["space"], hnsw["ef_search"], hnsw["ef_construction"]) == ("cosine", 800, 200)
    assert raw.metadata == {"hybrec_dim": 16, "hybrec_metric": "cosine"}


def test_a_collection_recreated_by_another_client_is_found_again(chroma: ChromaVectorIndex, chroma_server: str) -> None:
    name = _name()
    chroma.create_collection(name, 2, "ip")
    chroma.upsert(name, ["a"], np.array([[1.0, 0.0]]))
    assert chroma.count(name) == 1  # handle cached
    other = ChromaVectorIndex.from_url(chroma_server)
    other.delete_collection(name)
    other.create_collection(name, 2, "ip")
    other.upsert(name, ["b", "c"], np.array([[0.0, 1.0], [1.0, 1.0]]))
    assert chroma.count(name) == 2
    assert [h.id for h in chroma.query(name, np.array([0.0, 1.0]), 2)[0]] == ["b", "c"]


def test_persistent_client_round_trip(tmp_path: Path) -> None:
    index = ChromaVectorIndex.persistent(tmp_path / "chroma")
    index.create_collection("products", 3, "ip")
    index.upsert("products", ["a", "b"], np.array([[1.0, 0, 0], [0, 1.0, 0]]), [{"price": 3}, {"price": 9.5}])
    hits = index.query("products", np.array([1.0, 1.0, 0]), 5, where=Filter(max_price=5))[0]
    assert [(h.id, h.metadata) for h in hits] == [("a", {"price": 3.0})]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unreachable_server_raises_vector_store_unavailable() -> None:
    index = ChromaVectorIndex.from_url(f"http://127.0.0.1:{_closed_port()}")  # lazy: creating it does not connect
    for call in (
        lambda: index.list_collections(),
        lambda: index.create_collection("products", 4, "ip"),
        lambda: index.query("products", np.ones(4), 3),
        lambda: index.count("products"),
    ):
        with pytest.raises(VectorStoreUnavailable, match="unreachable"):
            call()


def test_server_going_down_after_use_raises_vector_store_unavailable(tmp_path: Path) -> None:
    """A second server we can stop: the client had a working connection, then the server disappears."""
    import subprocess
    import sys
    import time

    import httpx

    port = _closed_port()
    exe = Path(sys.executable).parent / "chroma"
    proc = subprocess.Popen(
        [str(exe), "run", "--path", str(tmp_path / "db"), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                httpx.get(f"{url}/api/v2/heartbeat", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        index = ChromaVectorIndex.from_url(url)
        index.create_collection("products", 2, "ip")
        index.upsert("products", ["a"], np.ones((1, 2)))
        assert index.count("products") == 1
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    with pytest.raises(VectorStoreUnavailable):
        index.query("products", np.ones(2), 1)


@pytest.mark.parametrize("url", ["127.0.0.1:8000", "ftp://host:1", "http://"])
def test_invalid_url_is_rejected(url: str) -> None:
    with pytest.raises(ValueError, match="Chroma URL"):
        ChromaVectorIndex.from_url(url)
