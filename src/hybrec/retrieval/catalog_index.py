"""The product index: one vector per catalog item, with the metadata the search filters read.

:class:`CatalogIndex` keeps the ``products`` collection of a :class:`~hybrec.vectors.base.VectorIndex` (cosine
metric) in step with the catalog. Each entry stores, besides the text embedding, the metadata the filters and the
ranking read — ``brand`` (the index derives the normalised brand from it), ``category``, ``price``, ``avg_rating``,
``num_ratings``, the display ``name`` (HTML entities decoded), the product ``text`` (which the lexical side and the
reranker read, so a search needs nothing but the index) and a ``content_hash``.

Re-indexing is incremental: an item whose content hash (text + metadata + embedding model, see
:func:`~hybrec.retrieval.product_text.content_hash`) equals the stored one is skipped, so only new and changed
items are embedded; items no longer in the catalog are deleted. ``full=True`` re-embeds everything.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from tqdm.auto import tqdm

from hybrec.retrieval.embedder import TextEmbedder
from hybrec.retrieval.product_text import CatalogItem, clean_text, content_hash, product_text
from hybrec.store import queries
from hybrec.store.engine import session_scope
from hybrec.vectors.base import CollectionExists, CollectionNotFound, VectorIndex
from hybrec.vectors.filters import BRAND_KEY, CATEGORY_KEY, PRICE_KEY, RATING_KEY

logger = logging.getLogger(__name__)

PRODUCTS_COLLECTION = "products"
NAME_KEY = "name"
TEXT_KEY = "text"
HASH_KEY = "content_hash"
NUM_RATINGS_KEY = "num_ratings"
_FETCH_CHUNK = 2000  # ids per metadata request (bounded request size against a Chroma server)


@dataclass(frozen=True, slots=True)
class IndexReport:
    """What one :meth:`CatalogIndex.sync` did.

    Attributes
    ----------
    total : int
        Items in the catalog (indexed after the sync).
    added, updated, unchanged, deleted, skipped : int
        New items embedded; changed items re-embedded; items left as they were; index entries removed because the
        catalog no longer has them; catalog items that cannot be indexed (no name), logged as warnings.
    seconds : float
    """

    total: int
    added: int
    updated: int
    unchanged: int
    deleted: int
    skipped: int
    seconds: float

    @property
    def embedded(self) -> int:
        return self.added + self.updated


def product_metadata(item: CatalogItem, text: str, digest: str) -> dict[str, Any]:
    """The metadata stored with ``item``'s vector (``None`` values are left out by the index)."""
    return {
        NAME_KEY: clean_text(item.name),
        BRAND_KEY: item.brand.strip() if item.brand and item.brand.strip() else None,
        CATEGORY_KEY: item.category,
        PRICE_KEY: item.price,
        RATING_KEY: item.avg_rating,
        NUM_RATINGS_KEY: int(item.num_ratings or 0),
        TEXT_KEY: text,
        HASH_KEY: digest,
    }


class CatalogIndex:
    """Builds and incrementally updates the product collection of a vector index.

    Parameters
    ----------
    index : VectorIndex
        The backend (exact in-process or Chroma), from ``hybrec.vectors.make_vector_index``.
    embedder : TextEmbedder
        The bi-encoder that embeds product texts (and, at search time, queries).
    collection : str, default "products"
    batch_size : int, default 256
        Items embedded and written per batch; a crash loses at most one batch of work.
    """

    def __init__(
        self,
        index: VectorIndex,
        embedder: TextEmbedder,
        *,
        collection: str = PRODUCTS_COLLECTION,
        batch_size: int = 256,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.index = index
        self.embedder = embedder
        self.collection = collection
        self.batch_size = batch_size

    def _ensure_collection(self, full: bool) -> None:
        dim = self.embedder.dimension
        try:
            self.index.create_collection(self.collection, dim, "cosine", exist_ok=True)
        except CollectionExists as exc:
            if not full:
                raise CollectionExists(
                    f"{exc}; the embedding model {self.embedder.model_name!r} gives dimension {dim} with cosine "
                    "similarity: rebuild with `hybrec index catalog --full`"
                ) from exc
            logger.info("dropping collection %s to rebuild it with dimension %d", self.collection, dim)
            self.index.delete_collection(self.collection)
            self.index.create_collection(self.collection, dim, "cosine", exist_ok=False)

    def stored_hashes(self) -> dict[str, str]:
        """``id -> content hash`` of every entry in the collection ({} when it does not exist)."""
        try:
            ids = self.index.ids(self.collection)
        except CollectionNotFound:
            return {}
        hashes: dict[str, str] = {}
        for start in range(0, len(ids), _FETCH_CHUNK):
            metas = self.index.get_metadata(self.collection, ids[start : start + _FETCH_CHUNK])
            for item_id in ids[start : start + _FETCH_CHUNK]:
                value = metas.get(item_id, {}).get(HASH_KEY)
                hashes[item_id] = value if isinstance(value, str) else ""
        return hashes

    def sync(
        self, items: Iterable[CatalogItem], *, full: bool = False, show_progress: bool | None = None
    ) -> IndexReport:
        """Make the collection hold exactly ``items``, embedding only the new and changed ones.

        Parameters
        ----------
        items : iterable of CatalogItem
            The whole catalog (store ``Item`` rows or ``ItemRecord``s); ids must be unique.
        full : bool, default False
            Re-embed every item (and recreate the collection if its dimension no longer fits the model).
        show_progress : bool or None
            Progress bar over the items being embedded; None shows it on a terminal only.

        Raises
        ------
        ValueError
            When two items share an external id.
        """
        started = time.perf_counter()
        self._ensure_collection(full)
        stored = {} if full else self.stored_hashes()
        existing = set(self.index.ids(self.collection)) if full else set(stored)
        seen: set[str] = set()
        unindexable: set[str] = set()
        pending: list[tuple[CatalogItem, str, str]] = []
        added = updated = unchanged = skipped = 0
        for item in items:
            item_id = item.external_id
            if item_id in seen:
                raise ValueError(f"catalog item id {item_id!r} appears twice")
            seen.add(item_id)
            try:
                text = product_text(item)
            except ValueError as exc:
                logger.warning("not indexing item: %s", exc)
                unindexable.add(item_id)
                skipped += 1
                continue
            digest = content_hash(item, text, model=self.embedder.model_name)
            if stored.get(item_id) == digest:
                unchanged += 1
                continue
            if item_id in existing:
                updated += 1
            else:
                added += 1
            pending.append((item, text, digest))
        self._embed_and_write(pending, show_progress)
        # An item still in the catalog that can no longer be indexed (it lost its name) must not stay findable.
        gone = sorted(existing - (seen - unindexable))
        if gone:
            self.index.delete(self.collection, gone)
        report = IndexReport(
            total=self.index.count(self.collection),
            added=added,
            updated=updated,
            unchanged=unchanged,
            deleted=len(gone),
            skipped=skipped,
            seconds=time.perf_counter() - started,
        )
        logger.info(
            "catalog index %s: %d items (%d added, %d updated, %d unchanged, %d deleted, %d skipped) in %.1fs",
            self.collection,
            report.total,
            report.added,
            report.updated,
            report.unchanged,
            report.deleted,
            report.skipped,
            report.seconds,
        )
        return report

    def _embed_and_write(self, pending: list[tuple[CatalogItem, str, str]], show_progress: bool | None) -> None:
        if not pending:
            return
        disable = None if show_progress is None else not show_progress
        with tqdm(total=len(pending), desc="embedding products", unit="items", disable=disable, leave=False) as bar:
            for start in range(0, len(pending), self.batch_size):
                batch = pending[start : start + self.batch_size]
                vectors = self.embedder.encode([text for _, text, _ in batch])
                self.index.upsert(
                    self.collection,
                    [item.external_id for item, _, _ in batch],
                    vectors,
                    [product_metadata(item, text, digest) for item, text, digest in batch],
                )
                bar.update(len(batch))

    def sync_from_store(
        self, database_url: str, *, full: bool = False, show_progress: bool | None = None
    ) -> IndexReport:
        """:meth:`sync` with every item of the relational store at ``database_url``."""
        with session_scope(database_url) as session:
            return self.sync(queries.iter_items(session), full=full, show_progress=show_progress)
