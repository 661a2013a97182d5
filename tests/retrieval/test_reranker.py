"""The cross-encoder: real loading and scoring (on a tiny locally built model) and the fallback when it is missing."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from hybrec.config import Settings
from hybrec.retrieval import reranker as reranker_module
from hybrec.retrieval.reranker import get_reranker, load_reranker, reranker_status

TEXTS = [
    "Starbucks Gift Card. Brand: Starbucks.",
    "iTunes Gift Card for music and apps.",
    "DEWALT 20V cordless drill DCD771C2.",
    "Peet's Coffee & Tea Gift Card.",
]


def test_loads_a_local_cross_encoder_and_scores_like_the_model_itself(tiny_cross_encoder: Path) -> None:
    reranker = load_reranker(str(tiny_cross_encoder), device="cpu")
    assert reranker is not None
    status = reranker_status()
    assert status.available and status.state == "ready" and status.model == str(tiny_cross_encoder)

    scores = reranker.score("coffee gift card", TEXTS)
    assert scores.shape == (4,) and np.isfinite(scores).all()
    assert len(set(np.round(scores, 6))) == 4  # the candidates really get different scores

    # Independent computation with plain transformers: same pairs, same logits, same order.
    tokenizer = AutoTokenizer.from_pretrained(tiny_cross_encoder)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_cross_encoder).eval()
    batch = tokenizer(
        ["coffee gift card"] * 4, TEXTS, padding=True, truncation=True, max_length=128, return_tensors="pt"
    )
    with torch.no_grad():
        logits = model(**batch).logits[:, 0].numpy()
    assert list(np.argsort(-scores)) == list(np.argsort(-logits))
    np.testing.assert_allclose(scores, 1 / (1 + np.exp(-logits)), atol=1e-5)  # sigmoid of the logit
    assert reranker.score("anything", []).shape == (0,)


def test_missing_weights_fall_back_with_a_warning_and_a_status(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    missing = tmp_path / "ms-marco-MiniLM-L-6-v2"
    with caplog.at_level(logging.WARNING, logger="hybrec.retrieval.reranker"):
        assert load_reranker(str(missing)) is None
    status = reranker_status()
    assert status.state == "fallback" and not status.available
    assert status.reason and "ms-marco-MiniLM-L-6-v2" in status.reason
    assert any("dense + lexical" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)


def test_hub_name_without_cached_weights_falls_back_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # what HF_HUB_OFFLINE=1 sets; no network is tried
    assert load_reranker("cross-encoder/ms-marco-MiniLM-L-6-v2-not-in-cache") is None
    assert reranker_status().state == "fallback"


def test_empty_name_and_multi_label_models_are_not_rerankers(tmp_path: Path, tiny_cross_encoder: Path) -> None:
    assert load_reranker("") is None and reranker_status().reason == "reranker_model is empty"
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(tiny_cross_encoder)
    config.num_labels = 3
    model = AutoModelForSequenceClassification.from_config(config)
    model.save_pretrained(tmp_path / "three-labels")
    AutoTokenizer.from_pretrained(tiny_cross_encoder).save_pretrained(tmp_path / "three-labels")
    assert load_reranker(str(tmp_path / "three-labels")) is None
    assert "3 labels" in (reranker_status().reason or "")


def test_get_reranker_loads_once_per_model_and_reports_that_models_status(
    tiny_cross_encoder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reranker_module, "_loaded", {})
    good = Settings(reranker_model=str(tiny_cross_encoder))
    bad = Settings(reranker_model=str(tmp_path / "absent"))
    first = get_reranker(good)
    assert first is not None and get_reranker(good) is first
    assert get_reranker(bad) is None and reranker_status().state == "fallback"
    assert get_reranker(good) is first and reranker_status().state == "ready"
