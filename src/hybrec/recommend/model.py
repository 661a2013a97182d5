"""The ALS model of one version as the serving path uses it: numpy factors for lookups, the ALS object for fold-in.

Loading goes through :class:`hybrec.als.ModelArtifact` (the one artifact format); this class only keeps the factors
as float32 numpy arrays (what the vector index and the cache take) and turns a user's interactions into the sparse
row :meth:`hybrec.als.ImplicitALS.fold_in` expects.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from hybrec.als import ModelArtifact


class ALSModel:
    """Factors, id maps and fold-in of one loaded artifact."""

    def __init__(self, artifact: ModelArtifact) -> None:
        self.artifact = artifact
        X, Y = artifact.model._require_fitted()
        self.user_factors = np.ascontiguousarray(X.detach().cpu().numpy(), dtype=np.float32)
        self.item_factors = np.ascontiguousarray(Y.detach().cpu().numpy(), dtype=np.float32)
        self.user_ids = list(artifact.user_ids)
        self.item_ids = list(artifact.item_ids)
        trained = self.user_factors[np.any(self.user_factors != 0, axis=1)]
        self.mean_user_vector = (
            trained.mean(axis=0) if len(trained) else np.zeros(self.item_factors.shape[1], np.float32)
        ).astype(np.float32)
        # fold_in caches the item Gramian on first use; serialise that first call across request threads.
        self._lock = threading.Lock()

    @property
    def factors(self) -> int:
        return int(self.item_factors.shape[1])

    def fold_in(self, item_rows: np.ndarray, values: np.ndarray) -> np.ndarray:
        """The user vector solved against the fixed item factors from (item row, value) pairs (Hu et al. 2008)."""
        row = sp.csr_matrix(
            (values.astype(np.float32), (np.zeros(len(item_rows), dtype=np.int64), item_rows)),
            shape=(1, len(self.item_ids)),
        )
        with self._lock:
            vector = self.artifact.model.fold_in(row)
        return np.ascontiguousarray(vector[0].detach().cpu().numpy(), dtype=np.float32)


def load_model(directory: str | Path) -> ALSModel:
    return ALSModel(ModelArtifact.load(directory))
