"""One loaded model version: factors, id maps, popularity and item metadata, as the serving path needs them.

A :class:`ServingState` is immutable once built; the recommender swaps the whole object when a new version becomes
active, so a request in flight keeps a consistent view of one version.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from hybrec.config import Settings
from hybrec.recommend.model import ALSModel, load_model
from hybrec.recommend.types import ScoredItem
from hybrec.store import queries
from hybrec.store.engine import session_scope
from hybrec.vectors.base import VectorIndex
from hybrec.vectors.exact_index import ExactVectorIndex

log = logging.getLogger(__name__)

POPULAR_FILE = "popular.json"
ITEM_META_KEYS = ("name", "category", "brand", "price", "avg_rating")
#: The metadata fields of a :class:`ScoredItem`, in its order.
SHOWN_KEYS = tuple(f.name for f in fields(ScoredItem))[2:]
_NOTHING_SHOWN = (None,) * len(SHOWN_KEYS)


def collection_name(version: int) -> str:
    """The item-index collection that holds version ``version``'s item factors."""
    return f"als_items_v{version}"


def artifact_dir(settings: Settings, version: int) -> Path:
    return Path(settings.var_dir) / "models" / f"v{version}"


@dataclass
class ServingState:
    version: int
    collection: str
    model: ALSModel
    item_pos: dict[str, int]
    user_pos: dict[str, int]
    popular: list[str]
    popular_counts: dict[str, float]
    item_meta: dict[str, dict[str, Any]]
    _fallback: VectorIndex | None = field(default=None, repr=False)
    _fallback_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    #: :class:`ScoredItem`'s metadata fields in its order, per item: built with the state (so that a server freezing
    #: the loaded model out of the garbage collector's sight freezes these too), read ten times per answer.
    _shown: dict[str, tuple[Any, ...]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._shown = {item: tuple(meta.get(key) for key in SHOWN_KEYS) for item, meta in self.item_meta.items()}

    @property
    def item_factors(self) -> np.ndarray:
        return self.model.item_factors

    @property
    def mean_user_vector(self) -> np.ndarray:
        return self.model.mean_user_vector

    @property
    def popularity_rank(self) -> dict[str, int]:
        return {item: rank for rank, item in enumerate(self.popular)}

    def popularity_score(self, item_id: str) -> float:
        top = self.popular_counts.get(self.popular[0], 1.0) if self.popular else 1.0
        return float(self.popular_counts.get(item_id, 0.0) / top) if top else 0.0

    def trained_vector(self, user_id: str) -> np.ndarray | None:
        row = self.user_pos.get(user_id)
        return None if row is None else self.model.user_factors[row]

    def is_trained_vector(self, user_id: str, vector: np.ndarray) -> bool:
        trained = self.trained_vector(user_id)
        return trained is not None and trained.shape == vector.shape and bool(np.allclose(trained, vector, atol=1e-6))

    def fold_in(self, rows: np.ndarray, values: np.ndarray) -> np.ndarray:
        return self.model.fold_in(rows, values)

    def scored(self, item_id: str, score: float) -> ScoredItem:
        """``item_id`` with its score and the metadata answers show (``None`` for what the catalog lacks)."""
        return ScoredItem(item_id, float(score), *self._shown.get(item_id, _NOTHING_SHOWN))

    def fallback_index(self) -> VectorIndex | None:
        """An exact in-process index over this version's item factors (built on first use), for when the item
        index server is down."""
        with self._fallback_lock:
            if self._fallback is None:
                log.warning("building the exact fallback index for version %d from the model artifact", self.version)
                index = ExactVectorIndex()
                index.create_collection(self.collection, self.item_factors.shape[1], "ip")
                ids = self.model.item_ids
                index.upsert(
                    self.collection, ids, self.item_factors, [item_metadata(self.item_meta.get(i, {})) for i in ids]
                )
                self._fallback = index
            return self._fallback


def item_metadata(meta: dict[str, Any]) -> dict[str, Any]:
    """The metadata stored with an item vector in the index (what filters and responses read)."""
    return {k: meta.get(k) for k in ITEM_META_KEYS}


def load_item_meta(settings: Settings, item_ids: list[str]) -> dict[str, dict[str, Any]]:
    """Name, category, brand, price and rating of each item (what answers show and filters test)."""
    with session_scope(settings.database_url) as session:
        items = queries.items_by_external_ids(session, item_ids)
        return {ext: item_metadata(queries.item_metadata(item)) for ext, item in items.items()}


def load_serving_state(settings: Settings, version: int, artifact_path: str | None, index: VectorIndex) -> ServingState:
    """Load version ``version`` from its artifact folder (``model_versions.artifact_path``) and the store."""
    directory = Path(artifact_path) if artifact_path else artifact_dir(settings, version)
    model = load_model(directory)
    popular_raw = json.loads((directory / POPULAR_FILE).read_text())
    popular = list(popular_raw["items"])
    counts = dict(zip(popular, (float(c) for c in popular_raw["counts"]), strict=True))
    return ServingState(
        version=version,
        collection=collection_name(version),
        model=model,
        item_pos={item: row for row, item in enumerate(model.item_ids)},
        user_pos={user: row for row, user in enumerate(model.user_ids)},
        popular=popular,
        popular_counts=counts,
        item_meta=load_item_meta(settings, model.item_ids),
    )
