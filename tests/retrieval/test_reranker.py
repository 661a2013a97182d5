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
    assert status.describe().startswith("fallback to dense + lexical ranking: ") and status.reason in status.describe()


def test_status_says_how_the_cross_encoder_runs(tiny_cross_encoder: Path) -> None:
    assert load_reranker(str(tiny_cross_encoder), device="cpu", max_length=48, quantize=True) is not None
    assert (
        reranker_status().describe() == f"cross-encoder {tiny_cross_encoder} (int8 dynamic quantization, max_length 48)"
    )
    assert load_reranker(str(tiny_cross_encoder), device="cpu", max_length=64) is not None
    assert reranker_status().describe() == f"cross-encoder {tiny_cross_encoder} (fp32, max_length 64)"


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


def _agreement(a: np.ndarray, b: np.ndarray, k: int) -> tuple[float, int]:
    """Spearman correlation of two score vectors and the overlap of their top ``k``."""
    from scipy.stats import spearmanr

    overlap = len(set(np.argsort(-a)[:k]) & set(np.argsort(-b)[:k]))
    return float(spearmanr(a, b).statistic), overlap


def test_int8_quantized_reranker_ranks_like_the_fp32_one(tiny_cross_encoder: Path) -> None:
    full = load_reranker(str(tiny_cross_encoder), device="cpu")
    int8 = load_reranker(str(tiny_cross_encoder), device="cpu", quantize=True)
    assert full is not None and int8 is not None
    assert int8.quantized and not full.quantized
    assert any(type(m).__module__.startswith("torch.ao.nn.quantized") for m in int8.model.modules())
    texts = [
        f"{brand} gift card for {what}"
        for brand in ("Starbucks", "iTunes", "Amazon", "Visa", "Target")
        for what in ("coffee", "music", "a birthday", "dinner", "games", "travel")
    ] + TEXTS
    reference, quantized = full.score("coffee gift card", texts), int8.score("coffee gift card", texts)
    rho, overlap = _agreement(reference, quantized, 10)
    assert rho > 0.85 and overlap >= 8, (rho, overlap)  # measured: 0.89 and 10 of 10


def test_batches_and_length_limit_do_not_change_the_scores(tiny_cross_encoder: Path) -> None:
    reranker = load_reranker(str(tiny_cross_encoder), device="cpu", batch_size=64)
    assert reranker is not None
    one_batch = reranker.score("coffee gift card", TEXTS)
    reranker.batch_size = 1
    np.testing.assert_allclose(reranker.score("coffee gift card", TEXTS), one_batch, rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="batch_size"):
        reranker_module.Reranker(reranker.model, "x", batch_size=0)


def test_get_reranker_applies_the_latency_settings(tiny_cross_encoder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reranker_module, "_loaded", {})
    settings = Settings(
        reranker_model=str(tiny_cross_encoder), reranker_max_length=32, reranker_batch_size=8, reranker_quantize=True
    )
    reranker = get_reranker(settings, device="cpu")
    assert reranker is not None and reranker.quantized and reranker.batch_size == 8
    assert reranker.model.max_seq_length == 32
    plain = get_reranker(settings.model_copy(update={"reranker_quantize": False}), device="cpu")
    assert plain is not None and not plain.quantized and plain is not reranker
