"""Publishing one trained version: everything is written under version N first, the active pointer flips last.

Order of writes (each step names itself to the optional fault hook once done, so a test can crash it there):

1. ``artifact_saved``      — ``<var_dir>/models/vN``: factors + id maps (:class:`hybrec.als.ModelArtifact`) and the
   popularity list (``popular.json``);
2. ``item_vectors_written`` — collection ``als_items_vN`` with the item metadata filters and answers need;
3. ``user_vectors_written`` — every trained user's vector in the cache under N, plus the popularity list and the mean
   user vector as blobs;
4. ``flipped``             — ``model_versions`` row N published and active, the previous row inactive, in one
   transaction; then the cache's active-version key.

Until step 4 commits, readers see the previous version, whose data nothing here touches, so a crash anywhere leaves
it active and complete; the job then deletes N's partial data (or the next run does, if the process died).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

import numpy as np

from hybrec.als import AlternatingLeastSquaresBase, ModelArtifact, data_fingerprint
from hybrec.config import Settings
from hybrec.data.matrices import InteractionMatrix
from hybrec.recommend.state import POPULAR_FILE, artifact_dir, collection_name, item_metadata, load_item_meta
from hybrec.training import versions
from hybrec.vectors.base import UserVectorCache, VectorIndex

log = logging.getLogger(__name__)

FaultHook = Callable[[str], None]
POPULAR_SIZE = 1000
USER_BATCH = 10_000


def popularity(data: InteractionMatrix, size: int = POPULAR_SIZE) -> tuple[list[str], list[float]]:
    """The ``size`` items with the most distinct users, most popular first (ties: lower row first)."""
    counts = np.diff(data.matrix.tocsc().indptr).astype(np.float64)
    order = np.argsort(-counts, kind="stable")[:size]
    order = order[counts[order] > 0]
    return [data.item_ids[i] for i in order], counts[order].tolist()


def publish_version(
    settings: Settings,
    version: int,
    model: AlternatingLeastSquaresBase,
    data: InteractionMatrix,
    metrics: dict[str, float],
    cache: UserVectorCache,
    index: VectorIndex,
    *,
    fault: FaultHook | None = None,
) -> None:
    """Write version ``version`` everywhere, then make it the active one (see the module docstring)."""
    step = fault or (lambda _name: None)
    user_factors, item_factors = (t.detach().cpu().numpy().astype(np.float32) for t in model._require_fitted())

    directory = artifact_dir(settings, version)
    artifact = ModelArtifact(
        model,
        list(data.user_ids),
        list(data.item_ids),
        data_fingerprint(data.matrix, data.user_ids, data.item_ids),
        dict(metrics),
    )
    artifact.save(directory)
    popular, counts = popularity(data)
    (directory / POPULAR_FILE).write_text(json.dumps({"items": popular, "counts": counts}))
    step("artifact_saved")

    name = collection_name(version)
    meta = load_item_meta(settings, list(data.item_ids))
    index.create_collection(name, item_factors.shape[1], "ip", exist_ok=True)
    index.upsert(name, list(data.item_ids), item_factors, [item_metadata(meta.get(i, {})) for i in data.item_ids])
    step("item_vectors_written")

    trained = np.flatnonzero(np.any(user_factors != 0, axis=1))
    for start in range(0, len(trained), USER_BATCH):
        rows = trained[start : start + USER_BATCH]
        cache.set_many(version, [data.user_ids[r] for r in rows], user_factors[rows])
    cache.set_json(version, "popular", {"items": popular, "counts": counts})
    mean = user_factors[trained].mean(axis=0) if len(trained) else np.zeros(user_factors.shape[1], np.float32)
    cache.set_array(version, "mean_user", mean)
    step("user_vectors_written")

    versions.publish_and_activate(settings, version, metrics=dict(metrics), artifact_path=str(directory), cache=cache)
    step("flipped")
    log.info("version %d is active: %d items in %s, %d user vectors", version, len(data.item_ids), name, len(trained))
