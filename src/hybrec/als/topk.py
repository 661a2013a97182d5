"""Batched exact top-k by dot product over the full catalog, with per-user exclusions and an eligibility mask."""

from __future__ import annotations

from types import ModuleType

import numpy as np
import scipy.sparse as sp
import torch

from hybrec.als.kernel import fused_kernel_or_none, kernel_is_built

# Users per batch so that a score block stays around 4M floats (16 MB).
_SCORE_BUDGET = 1 << 22
# Users per block in the fused top-k: each thread's score buffer is block x n_items floats.
_FUSED_BLOCK = 128


def check_item_mask(item_mask: object, n_users: int, n_items: int) -> torch.Tensor | None:
    """A bool tensor ``[n_items]`` or ``[n_users, n_items]``; True marks an item that may be recommended."""
    if item_mask is None:
        return None
    mask = item_mask if isinstance(item_mask, torch.Tensor) else torch.as_tensor(np.asarray(item_mask))
    if mask.dtype != torch.bool:
        raise TypeError(f"item_mask must be boolean (True = may be recommended), got {mask.dtype}")
    if mask.shape not in {(n_items,), (n_users, n_items)}:
        raise ValueError(f"item_mask must have shape ({n_items},) or ({n_users}, {n_items}), got {tuple(mask.shape)}")
    return mask


def _fused_top_k(
    kernel: ModuleType,
    user_vectors: torch.Tensor,
    item_vectors: torch.Tensor,
    n: int,
    exclude: sp.csr_matrix | None,
    item_mask: torch.Tensor | None,
    offset: float | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    empty = torch.empty(0, dtype=torch.int64)
    indptr = torch.from_numpy(exclude.indptr.astype(np.int64)) if exclude is not None else empty
    indices = torch.from_numpy(exclude.indices.astype(np.int64)) if exclude is not None else empty
    mask = item_mask.contiguous() if item_mask is not None else torch.empty(0, dtype=torch.bool)
    ids, scores = kernel.top_k(
        user_vectors.float().contiguous(), item_vectors.float().contiguous(), n, indptr, indices, mask, _FUSED_BLOCK
    )
    if offset:
        scores += offset
    return ids, scores


def top_k(
    user_vectors: torch.Tensor,
    item_vectors: torch.Tensor,
    n: int,
    exclude: sp.csr_matrix | None = None,
    item_mask: torch.Tensor | None = None,
    offset: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``n`` items for each user vector by dot product.

    Parameters
    ----------
    user_vectors : torch.Tensor
        float32 [k, f].
    item_vectors : torch.Tensor
        float32 [n_items, f].
    n : int
        Items per user; at most ``n_items``.
    exclude : scipy.sparse.csr_matrix, optional
        [k, n_items]; the stored entries of row j are never recommended to user j (seen items).
    item_mask : torch.Tensor, optional
        bool [n_items] or [k, n_items]; False entries are never recommended.
    offset : float, optional
        Added to every score (e.g. a global mean).

    Returns
    -------
    (ids, scores) : int64 [k, n], float32 [k, n]. When fewer than ``n`` items are eligible the remaining slots hold
    id -1 and score -inf.
    """
    k, n_items = user_vectors.shape[0], item_vectors.shape[0]
    if n > n_items:
        raise ValueError(f"asked for {n} items but the catalog has only {n_items}")
    device = item_vectors.device
    if device.type == "cpu" and kernel_is_built():
        kernel = fused_kernel_or_none()
        if kernel is not None:
            return _fused_top_k(kernel, user_vectors, item_vectors, n, exclude, item_mask, offset)
    ids = torch.empty(k, n, dtype=torch.int64)
    scores = torch.empty(k, n, dtype=torch.float32)
    batch = max(1, min(k, _SCORE_BUDGET // max(n_items, 1)))
    # One score buffer reused by every batch: a fresh block per batch would page-fault its way through memory.
    buffer = torch.empty(batch, n_items, dtype=torch.float32, device=device)
    if exclude is not None:
        ex_indptr = exclude.indptr
        ex_rows = torch.from_numpy(np.repeat(np.arange(k), np.diff(ex_indptr))).to(device)
        ex_cols = torch.from_numpy(exclude.indices.astype(np.int64)).to(device)
    neg_inf = float("-inf")
    for start in range(0, k, batch):
        stop = min(start + batch, k)
        block = torch.mm(user_vectors[start:stop].to(device), item_vectors.T, out=buffer[: stop - start])
        if exclude is not None:
            lo, hi = int(ex_indptr[start]), int(ex_indptr[stop])
            if hi > lo:
                block.index_put_((ex_rows[lo:hi] - start, ex_cols[lo:hi]), torch.tensor(neg_inf, device=device))
        if item_mask is not None:
            allowed = item_mask.to(device) if item_mask.dim() == 1 else item_mask[start:stop].to(device)
            block.masked_fill_(~allowed, neg_inf)
        top_scores, top_ids = torch.topk(block, n, dim=1, sorted=True)
        top_ids[torch.isneginf(top_scores)] = -1
        if offset:
            top_scores += offset
        ids[start:stop] = top_ids.cpu()
        scores[start:stop] = top_scores.cpu()
    return ids, scores
