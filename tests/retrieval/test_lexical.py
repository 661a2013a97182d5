"""BM25 over product texts: tokenisation of model numbers, ranking, idf-mass normalisation, filters, fusion."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hybrec.retrieval.lexical import BM25Index, fuse_scores, normalise_bm25, tokenize

DOCS = {
    "drill-a": "DEWALT 20V Cordless Drill Driver Kit DCD771C2. Compact drill.",
    "drill-b": "DEWALT 20V Brushless Hammer Drill DCD996B. Hammer drill for masonry.",
    "drill-c": "Bosch 12V Drill/Driver Kit PS31-2A.",
    "kettle": "Hamilton Beach Electric Kettle 1.7L. Boils water fast.",
    "spray": "WD-40 Smart Straw lubricant spray 8 oz.",
}


@pytest.fixture
def bm25() -> BM25Index:
    index = BM25Index()
    index.set_documents(DOCS)
    return index


def test_tokenize_keeps_model_numbers_and_joins_punctuated_words() -> None:
    assert tokenize("Bosch PS31-2A drill/driver, for the Home!") == [
        "bosch",
        "ps31",
        "2a",
        "ps312a",
        "drill",
        "driver",
        "drilldriver",
        "home",
    ]
    assert tokenize("Café ÉCLAIR 1.7L") == ["café", "éclair", "1", "7l", "17l"]
    assert tokenize("  ") == []


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("DCD996B", "drill-b"),
        ("dcd771c2 drill", "drill-a"),
        ("ps312a", "drill-c"),
        ("PS31-2A", "drill-c"),
        ("wd40", "spray"),
        ("electric kettle", "kettle"),
    ],
)
def test_exact_model_numbers_and_names_rank_first(bm25: BM25Index, query: str, expected: str) -> None:
    hits = bm25.search(query, 5)
    assert hits[0].id == expected
    assert hits[0].score > (hits[1].score if len(hits) > 1 else 0.0)


def test_scores_follow_the_bm25_formula(bm25: BM25Index) -> None:
    # "kettle" occurs once, in one of 5 documents.
    idf = math.log1p((5 - 1 + 0.5) / (1 + 0.5))
    lengths = [len(tokenize(text)) for text in DOCS.values()]
    dl, avgdl = len(tokenize(DOCS["kettle"])), sum(lengths) / len(lengths)
    expected = idf * (1 * 2.2) / (1 + 1.2 * (1 - 0.75 + 0.75 * dl / avgdl))
    (hit,) = bm25.search("kettle", 5)
    assert hit.id == "kettle"
    assert hit.bm25 == pytest.approx(expected)
    assert hit.score == pytest.approx(min(1.0, expected / idf))


def test_normalised_scores_measure_how_much_of_the_query_matched(bm25: BM25Index) -> None:
    full = bm25.scores_for("hammer drill dcd996b", ["drill-b"])["drill-b"]
    partial = bm25.scores_for("hammer drill dcd996b", ["drill-a"])["drill-a"]
    assert 0.0 < partial < 0.5 < full <= 1.0
    # A term no document has still counts in the query's mass, so nothing scores as a full match.
    assert bm25.scores_for("kettle unicorn", ["kettle"])["kettle"] < 0.6
    assert bm25.scores_for("kettle", ["nope"]) == {"nope": 0.0}
    assert normalise_bm25(3.0, 0.0) == 0.0 and normalise_bm25(5.0, 2.0) == 1.0


def test_allow_applies_the_filter_and_still_returns_n_hits(bm25: BM25Index) -> None:
    hits = bm25.search("drill", 2, allow=lambda doc_id: doc_id != "drill-a")
    assert [h.id for h in hits] == ["drill-b", "drill-c"]
    assert bm25.search("drill", 5, allow=lambda doc_id: False) == []
    assert bm25.search("nothing matches this", 5) == []


def test_rebuild_replaces_documents_and_empty_index_is_fine() -> None:
    index = BM25Index()
    assert index.search("drill", 3) == [] and len(index) == 0
    index.set_documents([("a", "red drill")])
    index.set_documents([("b", "blue kettle")])
    assert index.ids == ["b"] and index.search("drill", 3) == []
    with pytest.raises(ValueError, match="unique"):
        index.set_documents([("a", "x"), ("a", "y")])
    with pytest.raises(ValueError, match="n must be"):
        index.search("x", 0)
    with pytest.raises(ValueError, match="k1"):
        BM25Index(k1=-1)


def test_score_all_is_aligned_with_ids(bm25: BM25Index) -> None:
    scores, mass = bm25.score_all("kettle")
    assert scores.shape == (5,) and mass > 0
    assert bm25.ids[int(np.argmax(scores))] == "kettle"


def test_fusion_lets_an_exact_lexical_match_beat_a_closer_embedding() -> None:
    exact = fuse_scores(dense=0.55, lexical=1.0, lexical_weight=0.3)
    semantic = fuse_scores(dense=0.70, lexical=0.2, lexical_weight=0.3)
    assert exact > semantic
    assert fuse_scores(-0.2, 0.0, 0.3) == 0.0  # negative cosines count as no similarity
    with pytest.raises(ValueError, match="lexical_weight"):
        fuse_scores(0.5, 0.5, 2.0)
