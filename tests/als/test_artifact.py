"""ModelArtifact: safetensors + JSON round trip, and refusing data with another id map."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from hybrec.als import ArtifactMismatchError, ExplicitALS, ImplicitALS, ModelArtifact, data_fingerprint


@pytest.fixture(scope="module")
def artifact(small_matrix: sp.csr_matrix) -> ModelArtifact:
    model = ImplicitALS(factors=8, iterations=3, alpha=2.0).fit(small_matrix, show_progress=False)
    users = [f"user-{i}" for i in range(small_matrix.shape[0])]
    items = [f"item-{i}" for i in range(small_matrix.shape[1])]
    return ModelArtifact(model, users, items, data_fingerprint(small_matrix, users, items), {"ndcg@10": 0.3})


def test_round_trip_keeps_factors_ids_params_and_metrics(
    artifact: ModelArtifact, tmp_path: Path, small_matrix: sp.csr_matrix
) -> None:
    artifact.save(tmp_path / "v1")
    assert (tmp_path / "v1" / "factors.safetensors").exists()
    meta = json.loads((tmp_path / "v1" / "artifact.json").read_text())
    assert meta["kind"] == "implicit" and meta["params"]["alpha"] == 2.0
    loaded = ModelArtifact.load(tmp_path / "v1", artifact.user_ids, artifact.item_ids, artifact.fingerprint)
    assert torch.equal(loaded.model.user_factors, artifact.model.user_factors)
    assert torch.equal(loaded.model.item_factors, artifact.model.item_factors)
    assert loaded.metrics == {"ndcg@10": 0.3} and loaded.model.alpha == 2.0
    assert loaded.user_row("user-7") == 7 and loaded.item_row("item-3") == 3
    # A loaded model serves: fold-in and recommendations with explicit history rows.
    rows = small_matrix[:2]
    torch.testing.assert_close(loaded.model.fold_in(rows), artifact.model.fold_in(rows))
    ids, _ = loaded.model.recommend([0, 1], user_items=rows, n=5)
    expected, _ = artifact.model.recommend([0, 1], n=5)
    assert torch.equal(ids, expected)


def test_explicit_model_round_trip(tmp_path: Path) -> None:
    matrix = sp.random(30, 20, density=0.3, format="csr", random_state=0, dtype=np.float32) * 5 + sp.eye(30, 20)
    model = ExplicitALS(factors=4, iterations=2).fit(sp.csr_matrix(matrix), show_progress=False)
    ModelArtifact(model, [str(i) for i in range(30)], [str(i) for i in range(20)]).save(tmp_path)
    loaded = ModelArtifact.load(tmp_path)
    assert isinstance(loaded.model, ExplicitALS) and loaded.model.global_mean == pytest.approx(model.global_mean)


def test_loading_against_another_id_map_fails_clearly(artifact: ModelArtifact, tmp_path: Path) -> None:
    artifact.save(tmp_path)
    swapped = list(artifact.item_ids)
    swapped[0], swapped[1] = swapped[1], swapped[0]
    with pytest.raises(ArtifactMismatchError, match="item id at row 0"):
        ModelArtifact.load(tmp_path, item_ids=swapped)
    with pytest.raises(ArtifactMismatchError, match="user id map has"):
        ModelArtifact.load(tmp_path, user_ids=artifact.user_ids[:-1])
    with pytest.raises(ArtifactMismatchError, match="fingerprint"):
        ModelArtifact.load(tmp_path, fingerprint="0" * 16)


def test_fingerprint_changes_with_the_data(small_matrix: sp.csr_matrix) -> None:
    ids_u, ids_i = [str(i) for i in range(small_matrix.shape[0])], [str(i) for i in range(small_matrix.shape[1])]
    changed = small_matrix.copy()
    changed.data[0] += 1
    assert data_fingerprint(small_matrix, ids_u, ids_i) == data_fingerprint(small_matrix.copy(), ids_u, ids_i)
    assert data_fingerprint(small_matrix, ids_u, ids_i) != data_fingerprint(changed, ids_u, ids_i)


def test_bad_artifacts_are_rejected(artifact: ModelArtifact, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not a hybrec ALS artifact"):
        ModelArtifact.load(tmp_path / "nowhere")
    with pytest.raises(ArtifactMismatchError, match="do not match the factors"):
        ModelArtifact(artifact.model, artifact.user_ids[:3], artifact.item_ids)
    with pytest.raises(KeyError, match="unknown user id"):
        artifact.user_row("nobody")
