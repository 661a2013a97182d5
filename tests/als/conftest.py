"""Small deterministic interaction matrices for the ALS tests (seconds, not minutes)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from hybrec.data.matrices import synthetic_interactions


@pytest.fixture(scope="session")
def small_matrix() -> sp.csr_matrix:
    """300 users x 200 items, power-law popularity with planted clusters, counts as values."""
    return synthetic_interactions(300, 200, 12, rank=8, seed=3, taste_share=0.8).matrix


@pytest.fixture(scope="session")
def tiny_matrix() -> sp.csr_matrix:
    rng = np.random.default_rng(0)
    dense = (rng.random((40, 30)) < 0.2) * rng.integers(1, 5, (40, 30))
    dense[0, :3] = [1, 2, 3]  # user 0 has some items for sure
    return sp.csr_matrix(dense.astype(np.float32))
