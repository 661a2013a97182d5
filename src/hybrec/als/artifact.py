"""A fitted model with everything needed to serve it: factors (safetensors) + id maps, params, metrics (JSON)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from safetensors.torch import load_file, save_file

from hybrec.als.base import AlternatingLeastSquaresBase
from hybrec.als.explicit import ExplicitALS
from hybrec.als.implicit import ImplicitALS

FORMAT_VERSION = 1
FACTORS_FILE = "factors.safetensors"
META_FILE = "artifact.json"
_KINDS: dict[str, type[AlternatingLeastSquaresBase]] = {"implicit": ImplicitALS, "explicit": ExplicitALS}


class ArtifactMismatchError(ValueError):
    """The artifact's id map or data fingerprint does not match the data it is used with."""


def data_fingerprint(matrix: sp.csr_matrix, user_ids: Sequence[str], item_ids: Sequence[str]) -> str:
    """A short SHA-256 over the shape, id maps and stored entries of an interaction matrix."""
    csr = sp.csr_matrix(matrix)
    digest = hashlib.sha256()
    digest.update(json.dumps([list(csr.shape), list(user_ids), list(item_ids)]).encode())
    for array in (csr.indptr.astype(np.int64), csr.indices.astype(np.int64), csr.data.astype(np.float32)):
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()[:16]


def _id_mismatch(kind: str, expected: Sequence[str], actual: Sequence[str]) -> str | None:
    if len(expected) != len(actual):
        return f"{kind} id map has {len(actual)} entries, the data has {len(expected)}"
    for position, (want, have) in enumerate(zip(expected, actual, strict=True)):
        if want != have:
            return f"{kind} id at row {position} is {have!r} in the artifact but {want!r} in the data"
    return None


@dataclass
class ModelArtifact:
    """A fitted ALS model plus its id maps (row -> external id), data fingerprint, metrics and params."""

    model: AlternatingLeastSquaresBase
    user_ids: list[str]
    item_ids: list[str]
    fingerprint: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        X, Y = self.model._require_fitted()
        if len(self.user_ids) != X.shape[0] or len(self.item_ids) != Y.shape[0]:
            raise ArtifactMismatchError(
                f"id maps ({len(self.user_ids)} users, {len(self.item_ids)} items) do not match the factors "
                f"({X.shape[0]} users, {Y.shape[0]} items)"
            )
        if not self.params:
            self.params = self.model.get_params()

    @property
    def kind(self) -> str:
        return "explicit" if isinstance(self.model, ExplicitALS) else "implicit"

    def save(self, directory: str | Path) -> Path:
        """Write ``factors.safetensors`` and ``artifact.json`` into ``directory`` (created); returns it."""
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        X, Y = self.model._require_fitted()
        save_file(
            {"user_factors": X.detach().cpu().contiguous(), "item_factors": Y.detach().cpu().contiguous()},
            str(path / FACTORS_FILE),
        )
        meta = {
            "format_version": FORMAT_VERSION,
            "kind": self.kind,
            "params": self.params,
            "global_mean": getattr(self.model, "global_mean", 0.0),
            "user_ids": list(self.user_ids),
            "item_ids": list(self.item_ids),
            "fingerprint": self.fingerprint,
            "metrics": self.metrics,
        }
        (path / META_FILE).write_text(json.dumps(meta, indent=1))
        return path

    @classmethod
    def load(
        cls,
        directory: str | Path,
        user_ids: Sequence[str] | None = None,
        item_ids: Sequence[str] | None = None,
        fingerprint: str | None = None,
        device: str = "cpu",
    ) -> ModelArtifact:
        """Read an artifact; when ids / a fingerprint of the data at hand are given, they must match.

        Raises
        ------
        FileNotFoundError
            A file of the artifact is missing.
        ArtifactMismatchError
            The id maps or fingerprint differ from those given (the factors' rows would mean other users/items).
        """
        path = Path(directory)
        for name in (FACTORS_FILE, META_FILE):
            if not (path / name).exists():
                raise FileNotFoundError(f"{path / name} is missing: not a hybrec ALS artifact")
        meta = json.loads((path / META_FILE).read_text())
        if meta.get("format_version") != FORMAT_VERSION or meta.get("kind") not in _KINDS:
            raise ValueError(f"{path}: unsupported artifact (format {meta.get('format_version')}, {meta.get('kind')})")
        tensors = load_file(str(path / FACTORS_FILE))
        model = _KINDS[meta["kind"]](**meta["params"], device=device)
        model.user_factors = tensors["user_factors"].to(device)
        model.item_factors = tensors["item_factors"].to(device)
        if isinstance(model, ExplicitALS):
            model.global_mean = float(meta["global_mean"])
        artifact = cls(model, meta["user_ids"], meta["item_ids"], meta["fingerprint"], meta["metrics"], meta["params"])
        artifact.check_matches(user_ids, item_ids, fingerprint)
        return artifact

    def check_matches(
        self,
        user_ids: Sequence[str] | None = None,
        item_ids: Sequence[str] | None = None,
        fingerprint: str | None = None,
    ) -> None:
        """Raise :class:`ArtifactMismatchError` when the given id maps / fingerprint differ from the artifact's."""
        problems = []
        if user_ids is not None and (problem := _id_mismatch("user", list(user_ids), self.user_ids)):
            problems.append(problem)
        if item_ids is not None and (problem := _id_mismatch("item", list(item_ids), self.item_ids)):
            problems.append(problem)
        if fingerprint is not None and fingerprint != self.fingerprint:
            problems.append(f"data fingerprint {fingerprint} differs from the artifact's {self.fingerprint}")
        if problems:
            raise ArtifactMismatchError("artifact does not match the data: " + "; ".join(problems))

    def user_row(self, user_id: str) -> int:
        """The factor row of an external user id (KeyError naming it when unknown)."""
        try:
            return self._user_index[user_id]
        except KeyError:
            raise KeyError(f"unknown user id {user_id!r}") from None

    def item_row(self, item_id: str) -> int:
        try:
            return self._item_index[item_id]
        except KeyError:
            raise KeyError(f"unknown item id {item_id!r}") from None

    @property
    def _user_index(self) -> dict[str, int]:
        if getattr(self, "_user_index_cache", None) is None:
            self._user_index_cache = {u: i for i, u in enumerate(self.user_ids)}
        return self._user_index_cache

    @property
    def _item_index(self) -> dict[str, int]:
        if getattr(self, "_item_index_cache", None) is None:
            self._item_index_cache = {u: i for i, u in enumerate(self.item_ids)}
        return self._item_index_cache
