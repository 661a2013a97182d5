"""The fused C++ kernel and the PyTorch fallback solve the same systems."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from hybrec.als import ImplicitALS
from hybrec.als.kernel import fused_kernel_or_none
from hybrec.als.solvers import RowSystems, solve_rows

needs_kernel = pytest.mark.skipif(fused_kernel_or_none() is None, reason="the fused kernel cannot be built here")


def _dense_solution(matrix: sp.csr_matrix, a: np.ndarray, b: np.ndarray, Y: np.ndarray, G: np.ndarray, reg: np.ndarray):
    out = np.zeros((matrix.shape[0], Y.shape[1]))
    for u in range(matrix.shape[0]):
        lo, hi = matrix.indptr[u], matrix.indptr[u + 1]
        yi = Y[matrix.indices[lo:hi]].astype(np.float64)
        A = G + reg[u] * np.eye(Y.shape[1]) + yi.T @ (a[lo:hi, None] * yi)
        out[u] = np.linalg.solve(A, yi.T @ b[lo:hi])
    return out


def _problem(small_matrix: sp.csr_matrix, k: int = 16):
    rng = np.random.default_rng(1)
    Y = rng.normal(size=(small_matrix.shape[1], k)).astype(np.float32) * 0.3
    a = (small_matrix.data * 2.0).astype(np.float32)
    b = (1.0 + small_matrix.data * 2.0).astype(np.float32)
    G = (Y.T @ Y).astype(np.float32)
    reg = np.full(small_matrix.shape[0], 0.1, dtype=np.float32)
    return RowSystems.from_csr(small_matrix, a, b), Y, G, reg, a, b


@pytest.mark.parametrize("backend", ["torch", pytest.param("fused", marks=needs_kernel)])
def test_cholesky_matches_dense_solve(small_matrix: sp.csr_matrix, backend: str) -> None:
    systems, Y, G, reg, a, b = _problem(small_matrix)
    X = torch.zeros(small_matrix.shape[0], Y.shape[1])
    used = solve_rows(
        systems, torch.from_numpy(Y), X, torch.from_numpy(G), torch.from_numpy(reg), "cholesky", backend=backend
    )
    assert used == backend
    expected = _dense_solution(small_matrix, a, b, Y, G, reg)
    np.testing.assert_allclose(X.numpy(), expected, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("backend", ["torch", pytest.param("fused", marks=needs_kernel)])
def test_cg_converges_to_the_exact_solution(small_matrix: sp.csr_matrix, backend: str) -> None:
    systems, Y, G, reg, a, b = _problem(small_matrix, k=8)
    X = torch.zeros(small_matrix.shape[0], Y.shape[1])
    for _ in range(10):  # warm-started restarts, as across ALS iterations
        solve_rows(systems, torch.from_numpy(Y), X, torch.from_numpy(G), torch.from_numpy(reg), "cg", 8, backend)
    expected = _dense_solution(small_matrix, a, b, Y, G, reg)
    np.testing.assert_allclose(X.numpy(), expected, rtol=1e-2, atol=1e-3)


@needs_kernel
@pytest.mark.parametrize("solver", ["cg", "cholesky"])
def test_fused_and_torch_backends_fit_the_same_factors(small_matrix: sp.csr_matrix, solver: str) -> None:
    fused = ImplicitALS(factors=16, iterations=4, solver=solver, backend="fused", seed=7).fit(
        small_matrix, show_progress=False
    )
    plain = ImplicitALS(factors=16, iterations=4, solver=solver, backend="torch", seed=7).fit(
        small_matrix, show_progress=False
    )
    assert fused.backend_used == "fused" and plain.backend_used == "torch"
    scale = float(fused.user_factors.abs().max())
    np.testing.assert_allclose(plain.user_factors.numpy(), fused.user_factors.numpy(), atol=2e-3 * scale)
    np.testing.assert_allclose(plain.item_factors.numpy(), fused.item_factors.numpy(), atol=2e-3 * scale)


def test_unknown_solver_or_backend_is_rejected(small_matrix: sp.csr_matrix) -> None:
    systems, Y, G, reg, _, _ = _problem(small_matrix)
    X = torch.zeros(small_matrix.shape[0], Y.shape[1])
    args = (systems, torch.from_numpy(Y), X, torch.from_numpy(G), torch.from_numpy(reg))
    with pytest.raises(ValueError, match="solver"):
        solve_rows(*args, method="lu")
    with pytest.raises(ValueError, match="backend"):
        solve_rows(*args, backend="gpu")


def test_without_a_compiler_auto_falls_back_and_fused_refuses(
    small_matrix: sp.csr_matrix, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hybrec.als.solvers as solvers

    monkeypatch.setattr(solvers, "fused_kernel_or_none", lambda: None)
    monkeypatch.setattr(solvers, "kernel_is_built", lambda: False)
    model = ImplicitALS(factors=4, iterations=2).fit(small_matrix, show_progress=False)
    assert model.backend_used == "torch"
    with pytest.raises(RuntimeError, match="could not be built"):
        ImplicitALS(factors=4, iterations=1, backend="fused").fit(small_matrix, show_progress=False)


@needs_kernel
def test_fused_gramian_matches_matmul() -> None:
    from hybrec.als.solvers import gramian

    Y = torch.rand(1000, 64, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(gramian(Y, "auto"), Y.T @ Y, rtol=1e-4, atol=1e-3)
    assert torch.equal(gramian(Y, "auto"), gramian(Y, "auto"))


@needs_kernel
def test_ahead_of_time_build_entry_point(capsys: pytest.CaptureFixture[str]) -> None:
    from hybrec.als.build import main

    assert main([]) == 0
    assert "fused ALS kernel ready" in capsys.readouterr().out


@needs_kernel
def test_fused_top_k_matches_the_pytorch_path(monkeypatch: pytest.MonkeyPatch) -> None:
    import hybrec.als.topk as topk

    gen = torch.Generator().manual_seed(0)
    users, items = torch.rand(300, 16, generator=gen), torch.rand(500, 16, generator=gen)
    exclude = sp.random(300, 500, density=0.05, format="csr", random_state=1)
    mask = torch.rand(500, generator=gen) > 0.2
    fused = topk.top_k(users, items, 10, exclude, mask, offset=0.5)
    monkeypatch.setattr(topk, "kernel_is_built", lambda: False)
    plain = topk.top_k(users, items, 10, exclude, mask, offset=0.5)
    assert torch.equal(fused[0], plain[0])
    torch.testing.assert_close(fused[1], plain[1])
