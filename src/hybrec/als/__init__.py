"""hybrec.als: alternating-least-squares matrix factorisation in PyTorch (pure library, no I/O beyond artifacts).

``ImplicitALS`` (Hu et al. 2008 + iALS refinements), ``ExplicitALS`` (ALS-WR), ``ModelArtifact`` (save/load),
and the ``evaluation`` and ``tuning`` submodules.
"""

from hybrec.als.artifact import ArtifactMismatchError, ModelArtifact, data_fingerprint
from hybrec.als.base import AlternatingLeastSquaresBase
from hybrec.als.explicit import ExplicitALS
from hybrec.als.implicit import ImplicitALS

__all__ = [
    "AlternatingLeastSquaresBase",
    "ArtifactMismatchError",
    "ExplicitALS",
    "ImplicitALS",
    "ModelArtifact",
    "data_fingerprint",
]
