"""Lexical matching of product texts (Okapi BM25) and its fusion with the dense (embedding) score.

Sentence embeddings capture what a product *is* but blur exact strings: to MiniLM, "DCD771C2" and "DCD791D2" are
near-identical word pieces, and a brand the model never saw is just noise. BM25 scores exact tokens, weighted by
their rarity, so a model number or an unusual brand that appears in one product's text picks that product out.

BM25 (Robertson & Zaragoza, *The Probabilistic Relevance Framework: BM25 and Beyond*, FnTIR 2009) with the
non-negative idf of Lucene, ``idf(t) = ln(1 + (N - df + 0.5) / (df + 0.5))``::

    bm25(q, d) = sum_{t in q} idf(t) * tf(t, d) * (k1 + 1) / (tf(t, d) + k1 * (1 - b + b * |d| / avgdl))

**Fusion.** The dense and lexical scores are combined by a convex combination of normalised scores
(:func:`fuse_scores`), not by reciprocal-rank fusion (RRF, Cormack et al., SIGIR 2009). RRF keeps only ranks, so
an exact model-number hit that BM25 puts far ahead of everything else counts no more than a rank-1 dense neighbour
that matched only "drill": the exact product wins only if the dense ranking already puts it near the top. Bruch,
Gai & Ingber (*An Analysis of Fusion Functions for Hybrid Retrieval*, ACM TOIS 2023) find a convex combination of
normalised scores at least as good as RRF and less sensitive to its parameter. The dense score is a cosine (already
on a fixed scale); BM25 is normalised per query by its *idf mass*, ``sum_{t in q} idf(t)``, the score of a document
of average length that contains every query term once, clipped to 1. Unlike max-normalisation this keeps absolute
meaning: a query whose terms match nothing rare gets small lexical scores everywhere and the dense score decides,
while a document containing the query's rare model number gets close to 1.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import sparse

_WORD = re.compile(r"\S+")
_ALNUM = re.compile(r"[^\W_]+")
# Function words that would otherwise reward long texts for "a", "for" or "with" in a conversational query.
_STOPWORD_TEXT = (
    "a an and are as at be but by for from has have i in is it its me my of on or our so than that the their them "
    "this to up us was we what when which who will with you your need want looking find show get some any"
)
STOPWORDS = frozenset(_STOPWORD_TEXT.split(" "))


def tokenize(text: str) -> list[str]:
    """Lower-cased alphanumeric tokens of ``text``, stopwords removed, joined forms added for punctuated words.

    A word with inner punctuation also yields its parts joined, so "XR-2000" matches both "XR 2000" and "xr2000",
    and "WD-40" matches "wd40".

    >>> tokenize("The WD-40 Smart Straw, 8 oz")
    ['wd', '40', 'wd40', 'smart', 'straw', '8', 'oz']
    """
    tokens: list[str] = []
    for word in _WORD.findall(text.lower()):
        parts = _ALNUM.findall(word)
        tokens.extend(part for part in parts if part not in STOPWORDS)
        if len(parts) > 1:
            tokens.append("".join(parts))
    return tokens


@dataclass(frozen=True, slots=True)
class LexicalHit:
    """One document matched by a query: its id, raw BM25 score and idf-mass-normalised score in [0, 1]."""

    id: str
    bm25: float
    score: float


class BM25Index:
    """An in-memory Okapi BM25 index over ``(id, text)`` documents; rebuilt whole by :meth:`set_documents`.

    Term weights are precomputed into a sparse document-term matrix, so a query costs one sparse column slice and
    one product, whatever the number of documents.

    Parameters
    ----------
    k1 : float, default 1.2
        Term-frequency saturation: how fast repeated occurrences stop adding to the score.
    b : float, default 0.75
        Length normalisation: 0 ignores document length, 1 scales term frequency fully by it.
    tokenizer : callable, default :func:`tokenize`
    """

    def __init__(self, k1: float = 1.2, b: float = 0.75, tokenizer: Callable[[str], list[str]] = tokenize) -> None:
        if k1 < 0 or not 0 <= b <= 1:
            raise ValueError(f"BM25 needs k1 >= 0 and 0 <= b <= 1, got k1={k1}, b={b}")
        self.k1 = k1
        self.b = b
        self.tokenizer = tokenizer
        self._ids: list[str] = []
        self._vocab: dict[str, int] = {}
        self._idf = np.zeros(0, dtype=np.float64)
        self._weights = sparse.csc_matrix((0, 0), dtype=np.float64)

    def __len__(self) -> int:
        return len(self._ids)

    @property
    def ids(self) -> list[str]:
        return list(self._ids)

    def set_documents(self, documents: Mapping[str, str] | Iterable[tuple[str, str]]) -> None:
        """Replace the indexed documents by ``documents`` (``id -> text`` or ``(id, text)`` pairs)."""
        pairs = list(documents.items()) if isinstance(documents, Mapping) else list(documents)
        ids = [doc_id for doc_id, _ in pairs]
        if len(set(ids)) != len(ids):
            raise ValueError("BM25Index.set_documents: document ids must be unique")
        vocab: dict[str, int] = {}
        rows: list[int] = []
        cols: list[int] = []
        tfs: list[float] = []
        lengths = np.zeros(len(pairs), dtype=np.float64)
        for row, (_, text) in enumerate(pairs):
            tokens = self.tokenizer(text)
            lengths[row] = len(tokens)
            counts: dict[int, int] = {}
            for token in tokens:
                col = vocab.setdefault(token, len(vocab))
                counts[col] = counts.get(col, 0) + 1
            rows.extend([row] * len(counts))
            cols.extend(counts.keys())
            tfs.extend(float(c) for c in counts.values())
        n_docs = len(pairs)
        avgdl = float(lengths.mean()) if n_docs and lengths.sum() > 0 else 1.0
        tf = np.asarray(tfs, dtype=np.float64)
        row_idx = np.asarray(rows, dtype=np.int64)
        norm = self.k1 * (1.0 - self.b + self.b * lengths[row_idx] / avgdl) if n_docs else np.zeros(0)
        weights = tf * (self.k1 + 1.0) / (tf + norm) if tf.size else tf
        matrix = sparse.csc_matrix((weights, (row_idx, np.asarray(cols, dtype=np.int64))), shape=(n_docs, len(vocab)))
        df = np.diff(matrix.indptr).astype(np.float64)  # documents per term (one stored entry per doc and term)
        self._ids = ids
        self._vocab = vocab
        self._idf = np.log1p((n_docs - df + 0.5) / (df + 0.5))
        self._weights = matrix

    def _idf_of(self, term: str) -> float:
        col = self._vocab.get(term)
        if col is not None:
            return float(self._idf[col])
        n_docs = len(self._ids)
        return math.log1p((n_docs + 0.5) / 0.5)  # a term no document contains: the rarest possible

    def score_all(self, query: str) -> tuple[np.ndarray, float]:
        """Raw BM25 scores of every document (in :attr:`ids` order) and the query's idf mass."""
        terms = list(dict.fromkeys(self.tokenizer(query)))  # each distinct query term once
        scores = np.zeros(len(self._ids), dtype=np.float64)
        mass = sum(self._idf_of(term) for term in terms)
        cols = [self._vocab[t] for t in terms if t in self._vocab]
        if cols and len(self._ids):
            scores = np.asarray(self._weights[:, cols] @ self._idf[cols]).ravel()
        return scores, mass

    def search(self, query: str, n: int, allow: Callable[[str], bool] | None = None) -> list[LexicalHit]:
        """The ``n`` best-scoring documents that contain at least one query term and pass ``allow``.

        Parameters
        ----------
        query : str
        n : int
            Largest number of hits returned.
        allow : callable, optional
            ``allow(id)`` is True for a document that may be returned (the search filters); None allows all.
        """
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        scores, mass = self.score_all(query)
        matched = np.flatnonzero(scores > 0)
        if matched.size == 0:
            return []
        order = matched[np.argsort(-scores[matched], kind="stable")]
        hits: list[LexicalHit] = []
        for row in order:
            doc_id = self._ids[row]
            if allow is not None and not allow(doc_id):
                continue
            raw = float(scores[row])
            hits.append(LexicalHit(doc_id, raw, normalise_bm25(raw, mass)))
            if len(hits) == n:
                break
        return hits

    def scores_for(self, query: str, ids: Sequence[str]) -> dict[str, float]:
        """Normalised lexical scores of the given documents (0 for ids not indexed or not matching)."""
        scores, mass = self.score_all(query)
        position = {doc_id: row for row, doc_id in enumerate(self._ids)}
        return {
            doc_id: normalise_bm25(float(scores[position[doc_id]]), mass) if doc_id in position else 0.0
            for doc_id in ids
        }


def normalise_bm25(score: float, idf_mass: float) -> float:
    """A BM25 score divided by the query's idf mass, clipped to [0, 1] (see the module docstring)."""
    if idf_mass <= 0 or score <= 0:
        return 0.0
    return min(1.0, score / idf_mass)


def fuse_scores(dense: float, lexical: float, lexical_weight: float) -> float:
    """Convex combination ``(1 - w) * max(dense, 0) + w * lexical`` of a cosine and a normalised BM25 score."""
    if not 0 <= lexical_weight <= 1:
        raise ValueError(f"lexical_weight must be in [0, 1], got {lexical_weight}")
    return (1.0 - lexical_weight) * max(dense, 0.0) + lexical_weight * lexical
