"""The ALS engine on a GPU: the CPU's answers, identical from run to run, every serving call working there.

Skipped where PyTorch sees no CUDA device (CI has none); on a GPU machine: ``pytest tests/als/test_cuda.py``.
The segmented row accumulation that keeps GPU fits deterministic is also checked on CPU, where it always runs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from hybrec.als import ExplicitALS, ImplicitALS, ModelArtifact
from hybrec.als.evaluation import evaluate_model, split_random
from hybrec.als.solvers import RowSystems, _add_sorted_rows
from hybrec.data.matrices import synthetic_interactions

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture(scope="module")
def matrix() -> sp.csr_matrix:
    return synthetic_interactions(2_000, 1_500, 25, rank=12, seed=5, taste_share=0.8).matrix


def _fit(matrix: sp.csr_matrix, device: str, **params: object) -> ImplicitALS:
    options = {"factors": 32, "iterations": 6, "regularization": 0.05, "alpha": 2.0, "seed": 11, **params}
    return ImplicitALS(**options, device=device, backend="torch").fit(matrix, show_progress=False)  # type: ignore[arg-type]


def test_segmented_row_accumulation_equals_index_add() -> None:
    generator = torch.Generator().manual_seed(0)
    rows = torch.sort(torch.randint(0, 50, (5_000,), generator=generator)).values
    for shape in ((5_000, 8), (5_000, 4, 4)):
        values = torch.randn(*shape, generator=generator)
        start = torch.randn(60, *shape[1:], generator=generator)
        expected = start.clone().index_add_(0, rows, values)
        got = start.clone()
        _add_sorted_rows(got, rows, values)
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    untouched = start.clone()
    _add_sorted_rows(untouched, rows[:0], values[:0])
    assert torch.equal(untouched, start)


def test_row_systems_move_with_their_row_index(matrix: sp.csr_matrix) -> None:
    systems = ImplicitALS(factors=4)._systems(matrix)
    row_of = systems.row_of()
    assert row_of.device.type == "cpu" and systems.to("cpu") is systems
    expected = np.repeat(np.arange(matrix.shape[0]), np.diff(matrix.indptr))
    assert torch.equal(row_of, torch.from_numpy(expected))


@cuda
@pytest.mark.parametrize("solver", ["cg", "cholesky"])
def test_cuda_fit_matches_cpu_and_repeats_bit_for_bit(matrix: sp.csr_matrix, solver: str) -> None:
    on_cpu = _fit(matrix, "cpu", solver=solver)
    on_gpu = _fit(matrix, "cuda", solver=solver)
    again = _fit(matrix, "cuda", solver=solver)
    assert on_gpu.user_factors is not None and on_gpu.user_factors.is_cuda
    assert on_gpu.backend_used == "torch"
    assert torch.equal(on_gpu.user_factors, again.user_factors)  # type: ignore[arg-type]
    assert torch.equal(on_gpu.item_factors, again.item_factors)  # type: ignore[arg-type]
    for gpu, cpu in ((on_gpu.user_factors, on_cpu.user_factors), (on_gpu.item_factors, on_cpu.item_factors)):
        assert gpu is not None and cpu is not None
        # Sums run in another order on the GPU; over the iterations that drifts a little, never far.
        assert float((gpu.cpu() - cpu).norm() / cpu.norm()) < 2e-3
    users = np.arange(0, matrix.shape[0], 7)
    gpu_ids, _ = on_gpu.recommend(users, n=10)
    cpu_ids, _ = on_cpu.recommend(users, n=10)
    overlap = np.mean([len(set(g) & set(c)) / 10 for g, c in zip(gpu_ids.tolist(), cpu_ids.tolist(), strict=True)])
    assert overlap > 0.97


@cuda
def test_cuda_model_serves_every_call(matrix: sp.csr_matrix, tmp_path: Path) -> None:
    split = split_random(matrix, 0.2, seed=1)
    model = _fit(split.train, "cuda", calculate_training_loss=True)
    assert len(model.loss_history) == 6 and model.loss_history[-1] < model.loss_history[0]
    ids, scores = model.recommend(np.arange(100), n=20)
    assert ids.shape == (100, 20) and bool(torch.isfinite(scores).all())
    seen = split.train[:100]
    assert not any(set(row) & set(seen[i].indices) for i, row in enumerate(ids.tolist()))
    mask = torch.zeros(matrix.shape[1], dtype=torch.bool)
    mask[:300] = True
    masked, _ = model.recommend(np.arange(10), n=5, item_mask=mask)
    assert bool((masked < 300).all())
    similar, _ = model.similar_items(3, n=10)
    assert 3 not in similar.tolist() and similar.shape == (10,)
    # Fold-in on the GPU gives back the trained users' vectors (the same exact solve as the last half-step).
    folded = model.fold_in(split.train[:50])
    assert folded.is_cuda
    by_fold, _ = model.recommend_vectors(folded, n=10, exclude=split.train[:50])
    by_row, _ = model.recommend(np.arange(50), n=10)
    overlap = np.mean([len(set(f) & set(r)) / 10 for f, r in zip(by_fold.tolist(), by_row.tolist(), strict=True)])
    assert overlap > 0.8
    metrics = evaluate_model(model, split.train, split.test, k=(10, 20))
    assert metrics["ndcg@10"] > 0.05
    artifact = ModelArtifact(model, [str(u) for u in range(matrix.shape[0])], [str(i) for i in range(matrix.shape[1])])
    artifact.save(tmp_path / "model")
    for device in ("cpu", "cuda"):
        loaded = ModelArtifact.load(tmp_path / "model", device=device).model
        assert loaded.item_factors is not None and loaded.item_factors.device.type == device
        assert torch.equal(loaded.item_factors.cpu(), model.item_factors.cpu())  # type: ignore[union-attr]


@cuda
def test_cuda_explicit_als_matches_cpu_rmse() -> None:
    rng = np.random.default_rng(2)
    users, items = rng.integers(0, 800, 30_000), rng.integers(0, 600, 30_000)
    ratings = sp.csr_matrix((rng.integers(1, 6, 30_000).astype(np.float32), (users, items)), shape=(800, 600))
    ratings.sum_duplicates()
    ratings.data = np.clip(ratings.data, 1, 5)
    fits = {
        device: ExplicitALS(factors=16, iterations=5, regularization=0.1, seed=3, device=device, backend="torch").fit(
            ratings, show_progress=False
        )
        for device in ("cpu", "cuda")
    }
    assert fits["cuda"].rmse(ratings) == pytest.approx(fits["cpu"].rmse(ratings), rel=1e-3)
    predicted = fits["cuda"].predict(np.arange(10), np.arange(10))
    assert predicted.is_cuda and bool(torch.isfinite(predicted).all())


@cuda
def test_cuda_rejects_non_finite_input_and_fused_backend(matrix: sp.csr_matrix) -> None:
    bad = matrix.copy()
    bad.data[0] = np.nan
    with pytest.raises(ValueError, match=r"NaN|finite"):
        _fit(bad, "cuda")
    with pytest.raises(ValueError, match="CPU only"):
        ImplicitALS(factors=8, iterations=1, device="cuda", backend="fused").fit(matrix, show_progress=False)
    systems = RowSystems.from_csr(matrix, matrix.data, matrix.data).to("cuda")
    assert systems.row_of().is_cuda and systems.to("cuda") is systems
