"""Per-row least-squares solvers shared by implicit ALS and ALS-WR.

Every half-step of ALS solves, for each row ``u`` of a sparse matrix, the ``k x k`` system

    (G + reg_u I + sum_i a_ui y_i y_i^T) x_u = sum_i b_ui y_i

with ``i`` over the row's nonzeros (Hu, Koren & Volinsky 2008; Zhou et al. 2008). Two methods are provided: a few
warm-started conjugate-gradient steps (Takács, Pilászy & Tikk 2011) and the exact Cholesky solve. Each exists as the
fused C++ kernel (``csrc/als_cg.cpp``, CPU) and as vectorised PyTorch (any device, and the fallback when no compiler
is available); both compute the same thing up to float rounding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from hybrec.als.kernel import fused_kernel_or_none, kernel_is_built

BACKENDS = ("auto", "fused", "torch")
METHODS = ("cg", "cholesky")
# Gathered rows per chunk in the PyTorch path: bounds the temporary memory to chunk * k floats (x k for Cholesky).
_CHUNK_NNZ = 1 << 18
# On a GPU, larger chunks: fewer kernel launches, about 3 * 4 * chunk * k bytes of temporaries.
_GPU_CHUNK_NNZ = 1 << 21
_CHOL_CHUNK_NNZ = 1 << 13
_RS_EPS = 1e-20


@dataclass
class RowSystems:
    """The sparse part of one side's systems: CSR structure plus the two per-nonzero weights."""

    indptr: torch.Tensor  # int64 [rows + 1]
    indices: torch.Tensor  # int32 [nnz]
    a_weight: torch.Tensor  # float32 [nnz], coefficient of y_i y_i^T
    b_weight: torch.Tensor  # float32 [nnz], coefficient of y_i in the right-hand side
    _row_of: torch.Tensor | None = None

    @classmethod
    def from_csr(cls, matrix: sp.csr_matrix, a_weight: np.ndarray, b_weight: np.ndarray) -> RowSystems:
        return cls(
            torch.from_numpy(matrix.indptr.astype(np.int64)),
            torch.from_numpy(matrix.indices.astype(np.int32)),
            torch.from_numpy(np.ascontiguousarray(a_weight, dtype=np.float32)),
            torch.from_numpy(np.ascontiguousarray(b_weight, dtype=np.float32)),
        )

    @property
    def rows(self) -> int:
        return self.indptr.numel() - 1

    def row_of(self) -> torch.Tensor:
        """The row index of every nonzero (PyTorch path only, built lazily)."""
        if self._row_of is None:
            counts = self.indptr[1:] - self.indptr[:-1]
            rows = torch.arange(self.rows, dtype=torch.int64, device=self.indptr.device)
            self._row_of = torch.repeat_interleave(rows, counts)
        return self._row_of

    def to(self, device: torch.device | str) -> RowSystems:
        device = torch.device(device)
        if self.indptr.device == device or (device.type == "cuda" and device.index is None and self.indptr.is_cuda):
            return self
        moved = RowSystems(*(t.to(device) for t in (self.indptr, self.indices, self.a_weight, self.b_weight)))
        moved._row_of = None if self._row_of is None else self._row_of.to(device)
        return moved


def _add_rows(out: torch.Tensor, rows: torch.Tensor, values: torch.Tensor) -> None:
    """``out[rows[j]] += values[j]`` for ``rows`` sorted ascending (CSR order), deterministic on every device.

    On CPU ``index_add_`` adds in order. On a GPU it adds with atomics, whose order (and so the float result) changes
    from run to run; there each row's contiguous run of values is summed by a segmented reduction, which adds in a
    fixed order, and the per-row totals are written with unique indices.
    """
    if out.device.type == "cpu":
        out.index_add_(0, rows, values)
    else:
        _add_sorted_rows(out, rows, values)


def _add_sorted_rows(out: torch.Tensor, rows: torch.Tensor, values: torch.Tensor) -> None:
    if rows.numel() == 0:
        return
    starts_mask = torch.ones(rows.numel(), dtype=torch.bool, device=rows.device)
    starts_mask[1:] = rows[1:] != rows[:-1]
    starts = torch.nonzero(starts_mask).flatten()
    offsets = torch.cat([starts, starts.new_tensor([rows.numel()])])
    flat = values.reshape(values.shape[0], -1)
    totals = torch.segment_reduce(flat, "sum", offsets=offsets, axis=0, unsafe=True).reshape(-1, *values.shape[1:])
    unique_rows = rows[starts]
    out[unique_rows] = out[unique_rows] + totals


def _sparse_sum(sys_: RowSystems, Y: torch.Tensor, V: torch.Tensor | None) -> torch.Tensor:
    """``out_u = sum_i a_ui (y_i . v_u) y_i`` when ``V`` is given, else the right-hand sides ``sum_i b_ui y_i``."""
    out = torch.zeros(sys_.rows, Y.shape[1], device=Y.device, dtype=Y.dtype)
    row_of = sys_.row_of()
    idx = sys_.indices
    weight = sys_.b_weight if V is None else sys_.a_weight
    chunk = _CHUNK_NNZ if Y.device.type == "cpu" else _GPU_CHUNK_NNZ
    for start in range(0, idx.numel(), chunk):
        stop = min(start + chunk, idx.numel())
        yi = Y[idx[start:stop].long()]
        rows = row_of[start:stop]
        coef = weight[start:stop] if V is None else weight[start:stop] * (yi * V[rows]).sum(1)
        _add_rows(out, rows, yi * coef[:, None])
    return out


def _torch_cg(
    sys_: RowSystems, Y: torch.Tensor, X: torch.Tensor, G: torch.Tensor, reg: torch.Tensor, steps: int
) -> None:
    rhs = _sparse_sum(sys_, Y, None)

    def apply(v: torch.Tensor) -> torch.Tensor:
        return v @ G + reg[:, None] * v + _sparse_sum(sys_, Y, v)

    r = rhs - apply(X)
    p = r.clone()
    rsold = (r * r).sum(1)
    active = rsold >= _RS_EPS
    for _ in range(steps):
        if not bool(active.any()):
            break
        ap = apply(p)
        alpha = torch.where(active, rsold / (p * ap).sum(1).where(active, torch.ones_like(rsold)), 0.0)
        X += alpha[:, None] * p
        r -= alpha[:, None] * ap
        rsnew = (r * r).sum(1)
        active = active & (rsnew >= _RS_EPS)
        beta = torch.where(active, rsnew / rsold.clamp_min(_RS_EPS), 0.0)
        p = r + beta[:, None] * p
        rsold = torch.where(active, rsnew, rsold)


def _torch_cholesky(sys_: RowSystems, Y: torch.Tensor, X: torch.Tensor, G: torch.Tensor, reg: torch.Tensor) -> None:
    k = X.shape[1]
    rhs = _sparse_sum(sys_, Y, None)
    indptr = sys_.indptr.tolist()
    idx = sys_.indices.long()
    aw = sys_.a_weight
    eye = torch.eye(k, device=Y.device)
    row = 0
    while row < sys_.rows:  # chunks of whole rows whose nonzeros fit the temporary budget
        stop = row + 1
        while stop < sys_.rows and indptr[stop + 1] - indptr[row] <= _CHOL_CHUNK_NNZ:
            stop += 1
        lo, hi = indptr[row], indptr[stop]
        yi = Y[idx[lo:hi]]
        local = sys_.row_of()[lo:hi] - row
        A = G.expand(stop - row, k, k).clone() + reg[row:stop, None, None] * eye
        _add_rows(A, local, yi[:, :, None] * (aw[lo:hi, None] * yi)[:, None, :])
        L, info = torch.linalg.cholesky_ex(A)
        if bool((info > 0).any()):
            bad = (torch.nonzero(info > 0).flatten() + row).tolist()
            raise ValueError(f"the ALS system of row(s) {bad[:10]} is not positive definite; raise the regularisation")
        X[row:stop] = torch.cholesky_solve(rhs[row:stop, :, None], L)[:, :, 0]
        row = stop


def gramian(Y: torch.Tensor, backend: str = "auto") -> torch.Tensor:
    """``Y^T Y``; on CPU with the fused kernel (when built: never compiles here), computed there, which avoids a
    BLAS thread hand-off per half-step."""
    if backend != "torch" and Y.device.type == "cpu" and kernel_is_built():
        kernel = fused_kernel_or_none()
        if kernel is not None:
            return kernel.gramian(Y.contiguous())
    return Y.T @ Y


def solve_rows(
    systems: RowSystems,
    Y: torch.Tensor,
    X: torch.Tensor,
    gramian: torch.Tensor,
    reg: torch.Tensor,
    method: str = "cg",
    cg_steps: int = 3,
    backend: str = "auto",
) -> str:
    """Update ``X`` in place with one solve per row; returns the backend used (``"fused"`` or ``"torch"``).

    Parameters
    ----------
    systems : RowSystems
        Structure and weights of the rows of ``X``.
    Y : torch.Tensor
        float32 [n_cols, k] fixed factors of the other side.
    X : torch.Tensor
        float32 [n_rows, k] factors to update (warm start for CG).
    gramian : torch.Tensor
        float32 [k, k] shared part of every system (``w0 * Y^T Y`` or zeros).
    reg : torch.Tensor
        float32 [n_rows] per-row ridge term.
    method : {"cg", "cholesky"}
    cg_steps : int
    backend : {"auto", "fused", "torch"}
        ``auto`` uses the fused kernel on CPU when it builds and PyTorch otherwise.
    """
    if method not in METHODS:
        raise ValueError(f"solver must be one of {METHODS}, got {method!r}")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    kernel = None
    if backend != "torch" and X.device.type == "cpu":
        kernel = fused_kernel_or_none()
        if kernel is None and backend == "fused":
            raise RuntimeError("backend='fused' was asked for but the fused ALS kernel could not be built")
    elif backend == "fused":
        raise ValueError("backend='fused' runs on CPU only; use backend='auto' or 'torch' on CUDA")
    if kernel is not None:
        args = (
            systems.indptr,
            systems.indices,
            systems.a_weight,
            systems.b_weight,
            Y.contiguous(),
            X,
            gramian.contiguous(),
            reg.contiguous(),
        )
        if method == "cg":
            kernel.cg_solve(*args, int(cg_steps))
        else:
            try:
                kernel.cholesky_solve(*args)
            except RuntimeError as exc:
                raise ValueError(str(exc).splitlines()[0]) from exc
        return "fused"
    systems = systems.to(X.device)
    if method == "cg":
        _torch_cg(systems, Y, X, gramian, reg, cg_steps)
    else:
        _torch_cholesky(systems, Y, X, gramian, reg)
    return "torch"
