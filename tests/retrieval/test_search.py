"""Product search end to end on both vector backends: filters inside the search, brand matching, injection strings,
lexical model-number matches, reranking and its fallback, personalisation, on a tool shop and real gift cards."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import pytest
from retrieval_catalogs import BACKENDS, gift_cards, open_vector_index, tool_shop

from hybrec.retrieval.catalog_index import CatalogIndex
from hybrec.retrieval.embedder import TextEmbedder
from hybrec.retrieval.product_text import rerank_text
from hybrec.retrieval.reranker import Reranker, load_reranker
from hybrec.retrieval.search import ProductSearch, ScoredProduct
from hybrec.vectors.base import CollectionNotFound, VectorIndex
from hybrec.vectors.filters import Filter

SHOP = {item.external_id: item for item in tool_shop()}


@pytest.fixture(scope="module", params=BACKENDS)
def shop_index(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, embedder: TextEmbedder
) -> Iterator[tuple[VectorIndex, str]]:
    """The tool shop indexed once per backend for the whole module (the tests only read it)."""
    index = open_vector_index(request.param, request, tmp_path_factory.mktemp("shop"))
    name = f"shop-{uuid.uuid4().hex[:12]}"
    CatalogIndex(index, embedder, collection=name).sync(SHOP.values())
    yield index, name
    index.delete_collection(name)
    index.close()


@pytest.fixture
def search(shop_index: tuple[VectorIndex, str], embedder: TextEmbedder) -> ProductSearch:
    index, name = shop_index
    return ProductSearch(index, embedder, None, collection=name)


def ids(products: Sequence[ScoredProduct]) -> list[str]:
    return [p.item_id for p in products]


# --- filters -----------------------------------------------------------------------------------------------------

FILTER_CASES = [
    (Filter(category="Kitchen"), {"K1", "K2", "K3"}),
    (Filter(brand="DEWALT"), {"T1", "T2"}),
    (Filter(min_price=100), {"T2", "T3", "T8"}),
    (Filter(max_price=49), {"T5", "T7", "K3", "X1", "X2"}),
    (Filter(min_price=50, max_price=99), {"T1", "T4", "K1", "K2"}),
    (Filter(min_rating=4.6), {"T1", "T2", "T3"}),
    (Filter(ids=["T1", "K1", "nope"]), {"T1", "K1"}),
    (Filter(category="Power Tools", max_price=130, min_rating=4.5), {"T1", "T3", "T4"}),
]


@pytest.mark.parametrize(("where", "expected"), FILTER_CASES)
def test_every_constraint_is_applied_inside_the_search(
    search: ProductSearch, where: Filter, expected: set[str]
) -> None:
    # A query that is semantically far from most matches still gets exactly the matching set, from both sides.
    products = search.search("cordless drill", where, n=20)
    assert set(ids(products)) == expected


def test_unknown_price_or_rating_never_satisfies_a_constraint(search: ProductSearch) -> None:
    # T6 (Ryobi) has no price; T7 has no rating. Their own names are the query, so both sides would rank them first.
    assert ids(search.search("Ryobi ONE+ 18V Cordless Drill Driver P215", n=5))[0] == "T6"
    for where in (Filter(max_price=10_000), Filter(min_price=0), Filter(min_price=0, max_price=1e9)):
        assert "T6" not in ids(search.search("Ryobi ONE+ 18V Cordless Drill Driver P215", where, n=20))
    assert "T7" not in ids(search.search("Cordless Drill Set with 30 Accessories", Filter(min_rating=0), n=20))
    assert "T7" in ids(search.search("Cordless Drill Set with 30 Accessories", Filter(max_price=30), n=20))


@pytest.mark.parametrize("brand", ["dewalt", "  DeWALT ", "DEWALT"])
def test_brand_matching_ignores_case_and_spacing(search: ProductSearch, brand: str) -> None:
    assert set(ids(search.search("drill", Filter(brand=brand), n=10))) == {"T1", "T2"}


@pytest.mark.parametrize(
    ("brand", "expected"),
    [("black+decker", "T5"), ("BLACK  DECKER", "T5"), ("hewlett packard", "T7"), ("Hewlett-Packard", "T7")],
)
def test_brand_matching_ignores_punctuation(search: ProductSearch, brand: str, expected: str) -> None:
    assert ids(search.search("drill", Filter(brand=brand), n=10)) == [expected]


@pytest.mark.parametrize(
    ("brand", "expected"),
    [("' OR 1=1 --", ["X1"]), ('{"$ne": null}', ["X2"]), ('{"$gt": ""}', []), ("x' OR 'a'='a", [])],
)
def test_injection_strings_in_a_brand_are_literals(search: ProductSearch, brand: str, expected: list[str]) -> None:
    assert ids(search.search("widget", Filter(brand=brand), n=20)) == expected
    # ... and in the query text they are just words.
    assert set(ids(search.search(brand, Filter(category="Gadgets"), n=20))) == {"X1", "X2"}


def test_excluded_ids_are_never_returned(search: ProductSearch) -> None:
    first = ids(search.search("cordless drill", n=3))
    again = ids(search.search("cordless drill", n=3, exclude_ids=set(first)))
    assert not set(first) & set(again) and len(again) == 3


# --- lexical -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "expected"),
    [("XFD131", "T3"), ("DCD996B", "T2"), ("ps312a", "T4"), ("2804-20", "T8"), ("P215 drill", "T6")],
)
def test_model_numbers_match_lexically(search: ProductSearch, query: str, expected: str) -> None:
    (top, *rest) = search.search(query, n=5)
    assert top.item_id == expected
    assert top.lexical > 0.8 and all(p.lexical < top.lexical for p in rest)


def test_the_lexical_side_beats_a_closer_embedding(
    search: ProductSearch, shop_index: tuple[VectorIndex, str], embedder: TextEmbedder
) -> None:
    # MiniLM puts the coffee maker "DCC-3200" nearest to "DCD996B"; the exact model number wins the hybrid.
    index, name = shop_index
    dense_only = ProductSearch(index, embedder, None, collection=name, lexical_weight=0.0)
    assert ids(dense_only.search("DCD996B", n=1)) == ["K1"]
    assert ids(search.search("DCD996B", n=1)) == ["T2"]


def test_lexical_matches_respect_the_filter(search: ProductSearch) -> None:
    # The exact model number is outside the price range: it must not come back through the lexical side.
    products = search.search("XFD131", Filter(max_price=100), n=10)
    assert "T3" not in ids(products) and all(p.price is not None and p.price <= 100 for p in products)


# --- reranking and its fallback ----------------------------------------------------------------------------------


def test_without_a_cross_encoder_results_are_ranked_by_the_fused_score(search: ProductSearch) -> None:
    result = search.search_with_timings("compact drill driver", n=8)
    assert not result.reranked and not result.personalised
    relevance = [p.relevance for p in result.products]
    assert relevance == sorted(relevance, reverse=True)
    for p in result.products:
        assert p.rerank is None and p.als is None
        assert p.relevance == pytest.approx(0.7 * max(p.dense, 0) + 0.3 * p.lexical)
    assert set(result.timings_ms) == {"embed", "dense", "lexical", "rerank", "personalise", "total"}
    assert all(v >= 0 for v in result.timings_ms.values())


@pytest.fixture(scope="module")
def tiny_reranker(tiny_cross_encoder: Path) -> Reranker:
    reranker = load_reranker(str(tiny_cross_encoder), device="cpu")
    assert reranker is not None
    return reranker


def test_cross_encoder_orders_the_candidates(
    shop_index: tuple[VectorIndex, str], embedder: TextEmbedder, tiny_reranker: Reranker
) -> None:
    index, name = shop_index
    search = ProductSearch(index, embedder, tiny_reranker, collection=name, candidates=10)
    result = search.search_with_timings("cordless drill", Filter(category="Power Tools"), n=10)
    assert result.reranked
    products = result.products
    assert set(ids(products)) == {"T1", "T2", "T3", "T4", "T5", "T6", "T7", "T8"}
    rerank = [p.rerank for p in products]
    assert None not in rerank and rerank == sorted(rerank, reverse=True)  # type: ignore[type-var]
    # The scores are the cross-encoder's own on the short name + brand + category texts.
    metas = [index.get_metadata(name, [p.item_id])[p.item_id] for p in products]
    texts = [rerank_text(m["name"], m.get("brand"), m.get("category")) for m in metas]
    assert all(len(t) < len(m["text"]) for t, m in zip(texts, metas, strict=True))
    np.testing.assert_allclose(tiny_reranker.score("cordless drill", texts), rerank, rtol=1e-5)


def test_cross_encoder_can_read_the_full_product_text(
    shop_index: tuple[VectorIndex, str], embedder: TextEmbedder, tiny_reranker: Reranker
) -> None:
    index, name = shop_index
    search = ProductSearch(index, embedder, tiny_reranker, collection=name, candidates=10, rerank_full_text=True)
    products = search.search("cordless drill", Filter(category="Power Tools"), n=10)
    texts = [index.get_metadata(name, [p.item_id])[p.item_id]["text"] for p in products]
    np.testing.assert_allclose(tiny_reranker.score("cordless drill", texts), [p.rerank for p in products], rtol=1e-5)


def test_onnx_cross_encoder_in_the_search_on_threads_chosen_from_the_idle_cpus(
    shop_index: tuple[VectorIndex, str],
    embedder: TextEmbedder,
    tiny_cross_encoder: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from hybrec.retrieval import search as search_module

    onnx = load_reranker(str(tiny_cross_encoder), device="cpu", backend="onnx", quantize=True, cache_dir=tmp_path)
    assert onnx is not None and onnx.backend == "onnx"
    index, name = shop_index
    search = ProductSearch(index, embedder, onnx, collection=name, candidates=10, rerank_threads="auto")
    result = search.search_with_timings("cordless drill", Filter(category="Power Tools"), n=10)
    assert result.reranked and result.rerank_threads in (1, 2, 3, 4)
    metas = [index.get_metadata(name, [p.item_id])[p.item_id] for p in result.products]
    texts = [rerank_text(m["name"], m.get("brand"), m.get("category")) for m in metas]
    np.testing.assert_allclose(onnx.score("cordless drill", texts, threads=1), [p.rerank for p in result.products])

    monkeypatch.setattr(search_module.os, "cpu_count", lambda: 2)
    assert search.search_with_timings("cordless drill", n=5).rerank_threads == 2  # ONNX Runtime: every CPU

    # torch: one thread per idle CPU, from /proc/stat samples at the search's start and before its rerank ((idle,
    # total) jiffies of all CPUs).
    torch_reranker = load_reranker(str(tiny_cross_encoder), device="cpu", backend="torch")
    search = ProductSearch(index, embedder, torch_reranker, collection=name, candidates=10, rerank_threads="auto")
    samples: list[tuple[int, int]] = []
    monkeypatch.setattr(search_module, "_cpu_times", lambda: samples.pop(0))
    samples[:] = [(0, 0), (3, 6)]  # the other CPU idle, this search's busy: 2 threads
    assert search.search_with_timings("cordless drill", n=5).rerank_threads == 2
    samples[:] = [(0, 0), (0, 6)]  # another process held the other CPU: 1
    assert search.search_with_timings("cordless drill", n=5).rerank_threads == 1
    samples[:] = [(0, 0), (1, 2)]  # too short a sample to tell: the previous choice
    assert search.search_with_timings("cordless drill", n=5).rerank_threads == 1
    fixed = ProductSearch(index, embedder, onnx, collection=name, candidates=10, rerank_threads=2)
    assert fixed.search_with_timings("cordless drill", n=5).rerank_threads == 2


# --- personalisation ---------------------------------------------------------------------------------------------


def _als_scorer(factors: Mapping[str, np.ndarray]):  # type: ignore[no-untyped-def]
    def score(user_vector: np.ndarray, item_ids: Sequence[str]) -> dict[str, float]:
        return {i: float(factors[i] @ user_vector) for i in item_ids if i in factors}

    return score


def test_personalisation_moves_a_preferred_item_up_and_new_users_get_pure_relevance(
    shop_index: tuple[VectorIndex, str], embedder: TextEmbedder
) -> None:
    index, name = shop_index
    rng = np.random.default_rng(0)
    factors = {item_id: rng.normal(size=8).astype(np.float32) * 0.1 for item_id in SHOP}
    search = ProductSearch(
        index, embedder, None, item_scorer=_als_scorer(factors), collection=name, personalisation_weight=0.3
    )
    pure = search.search("cordless drill", Filter(category="Power Tools"), n=8)
    # A relevant but low-ranked drill: the lowest ranked whose (normalised) relevance is still at least 0.5.
    preferred = [p for p in pure if p.score >= 0.5][-1].item_id
    assert ids(pure).index(preferred) >= 3
    user = factors[preferred] / np.linalg.norm(factors[preferred])  # a user who loves exactly that drill
    factors[preferred] = user * 5.0

    personal = search.search_with_timings("cordless drill", Filter(category="Power Tools"), n=8, user_vector=user)
    assert personal.personalised
    assert ids(personal.products).index(preferred) < ids(pure).index(preferred)
    assert max(personal.products, key=lambda p: p.als or -1e9).item_id == preferred

    new_user = search.search_with_timings("cordless drill", Filter(category="Power Tools"), n=8, user_vector=None)
    assert not new_user.personalised and ids(new_user.products) == ids(pure)
    assert all(p.als is None for p in new_user.products)

    # A user whose model knows none of the candidates also gets pure relevance.
    stranger = ProductSearch(index, embedder, None, item_scorer=_als_scorer({}), collection=name)
    assert ids(stranger.search("cordless drill", Filter(category="Power Tools"), n=8, user_vector=user)) == ids(pure)


# --- bad input ---------------------------------------------------------------------------------------------------


def test_bad_input_is_rejected_clearly(
    search: ProductSearch, embedder: TextEmbedder, shop_index: tuple[VectorIndex, str]
) -> None:
    for query in ("", "   "):
        with pytest.raises(ValueError, match="non-empty"):
            search.search(query)
    for n in (0, 51, True):
        with pytest.raises(ValueError, match="n must be"):
            search.search("drill", n=n)
    missing = ProductSearch(shop_index[0], embedder, None, collection="never-built")
    with pytest.raises(CollectionNotFound, match="hybrec index catalog"):
        missing.search("drill")
    with pytest.raises(ValueError, match="lexical_weight"):
        ProductSearch(shop_index[0], embedder, lexical_weight=1.5)
    with pytest.raises(ValueError, match="rerank_threads"):
        ProductSearch(shop_index[0], embedder, rerank_threads=0)


def test_a_reindexed_catalog_is_matched_lexically(
    tmp_path: Path, embedder: TextEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hybrec.retrieval import search as search_module
    from hybrec.vectors.exact_index import ExactVectorIndex

    monkeypatch.setattr(search_module, "_COUNT_CHECK_S", 0.0)
    catalog = CatalogIndex(ExactVectorIndex(tmp_path), embedder)
    catalog.sync([SHOP["T1"], SHOP["K1"]])
    # The search process has its own index object, as a server next to a separate `hybrec index catalog` would.
    search = ProductSearch(ExactVectorIndex(tmp_path), embedder)
    assert ids(search.search("XFD131", n=2))[0] != "T3"
    catalog.sync([SHOP["T1"], SHOP["K1"], SHOP["T3"]])  # a new product: seen by the size check
    (top, _) = search.search("XFD131", n=2)
    assert top.item_id == "T3" and top.lexical > 0.8
    changed = dataclasses.replace(SHOP["K1"], name="Cuisinart Coffee Maker ZX-9000")
    catalog.sync([SHOP["T1"], changed, SHOP["T3"]])  # same size, new text: seen after refresh()
    assert search.refresh() == 3
    assert ids(search.search("ZX-9000", n=1)) == ["K1"]


# --- a real catalog ----------------------------------------------------------------------------------------------


@pytest.fixture
def gift_search(amazon_gift_cards: Path, embedder: TextEmbedder, tmp_path: Path) -> ProductSearch:
    from hybrec.vectors.exact_index import ExactVectorIndex

    index = ExactVectorIndex(tmp_path)
    CatalogIndex(index, embedder).sync(gift_cards(amazon_gift_cards))  # the session embedder remembers the vectors
    return ProductSearch(index, embedder)


@pytest.mark.shared_data
def test_gift_cards_for_a_coffee_lover_under_30(gift_search: ProductSearch) -> None:
    products = gift_search.search("I need a gift card for a coffee lover", Filter(max_price=30), n=5)
    assert products and all(p.price is not None and p.price <= 30 for p in products)
    assert sum("coffee" in p.name.lower() or p.brand == "Starbucks" for p in products[:3]) >= 2


@pytest.mark.shared_data
def test_gift_cards_brand_and_rating_filters(gift_search: ProductSearch) -> None:
    products = gift_search.search("gift card", Filter(brand="starbucks"), n=10)
    assert products and {p.brand for p in products} == {"Starbucks"}
    rated = gift_search.search("steak dinner", Filter(min_rating=4.5), n=10)
    assert rated and all(p.avg_rating is not None and p.avg_rating >= 4.5 for p in rated)
    assert "steak" in rated[0].name.lower()
