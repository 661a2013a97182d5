"""Building and incrementally updating the product collection, on the exact index and on a real Chroma server."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from retrieval_catalogs import tool_shop

from hybrec.data.records import ItemRecord
from hybrec.retrieval.catalog_index import HASH_KEY, TEXT_KEY, CatalogIndex
from hybrec.retrieval.embedder import TextEmbedder
from hybrec.retrieval.product_text import product_text
from hybrec.vectors.base import CollectionExists, VectorIndex
from hybrec.vectors.filters import Filter


class CountingEmbedder(TextEmbedder):
    """The session's real MiniLM, recording every text it is asked to embed."""

    def __init__(self, real: TextEmbedder) -> None:
        super().__init__(real.model_name)
        self.real = real
        self.embedded: list[str] = []

    def encode(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray:
        self.embedded.extend(texts)
        return self.real.encode(texts, show_progress=show_progress)

    @property
    def dimension(self) -> int:
        return self.real.dimension


@pytest.fixture
def counting(embedder: TextEmbedder) -> CountingEmbedder:
    return CountingEmbedder(embedder)


@pytest.fixture
def catalog(vector_index: VectorIndex, counting: CountingEmbedder, collection_name: str) -> CatalogIndex:
    return CatalogIndex(vector_index, counting, collection=collection_name, batch_size=5)


def test_first_sync_embeds_everything_with_filterable_metadata(
    catalog: CatalogIndex, counting: CountingEmbedder, vector_index: VectorIndex, collection_name: str
) -> None:
    items = tool_shop()
    report = catalog.sync(items)
    assert (report.added, report.updated, report.unchanged, report.deleted, report.total) == (13, 0, 0, 0, 13)
    assert len(counting.embedded) == 13
    assert vector_index.collection_info(collection_name).metric == "cosine"
    meta = vector_index.get_metadata(collection_name, ["T6", "T5"])
    assert "price" not in meta["T6"]  # unknown price is absent, not 0
    assert meta["T5"]["brand"] == "Black + Decker" and meta["T5"]["price"] == 49.0
    assert meta["T5"][TEXT_KEY] == product_text(items[4]) and len(str(meta["T5"][HASH_KEY])) == 64
    # The stored vector is the embedding of the product text.
    stored = vector_index.get_vectors(collection_name, ["T3"])[0]
    np.testing.assert_allclose(stored, counting.encode_one(product_text(items[2])), atol=1e-5)
    # The index derived the normalised brand, so a differently spelled brand filter finds the item.
    hits = vector_index.query(collection_name, stored, 5, Filter(brand="black+decker"))[0]
    assert [h.id for h in hits] == ["T5"]


def test_resync_embeds_only_new_and_changed_items_and_deletes_removed_ones(
    catalog: CatalogIndex, counting: CountingEmbedder, vector_index: VectorIndex, collection_name: str
) -> None:
    items = tool_shop()
    catalog.sync(items)
    counting.embedded.clear()

    assert catalog.sync(items).embedded == 0 and counting.embedded == []

    changed = {item.external_id: item for item in items}
    changed["T1"] = dataclasses.replace(changed["T1"], price=89.0)  # metadata only
    changed["K3"] = dataclasses.replace(changed["K3"], description="Gooseneck pour-over kettle")
    del changed["X2"]
    changed["N1"] = ItemRecord("N1", "Festool Track Saw TS 55", brand="Festool", price=650.0, avg_rating=4.9)
    report = catalog.sync(changed.values())
    assert (report.added, report.updated, report.deleted, report.unchanged) == (1, 2, 1, 10)
    assert sorted(t.split(".")[0] for t in counting.embedded) == [
        "DEWALT 20V MAX Cordless Drill Driver Kit DCD771C2",
        "Festool Track Saw TS 55",
        "Hamilton Beach Electric Kettle 1",
    ]
    assert sorted(vector_index.ids(collection_name)) == sorted(changed)
    assert vector_index.get_metadata(collection_name, ["T1"])["T1"]["price"] == 89.0


def test_full_rebuild_reembeds_everything(catalog: CatalogIndex, counting: CountingEmbedder) -> None:
    catalog.sync(tool_shop())
    counting.embedded.clear()
    report = catalog.sync(tool_shop(), full=True)
    assert report.updated == 13 and report.added == 0 and len(counting.embedded) == 13


def test_items_that_cannot_be_indexed(catalog: CatalogIndex, vector_index: VectorIndex, collection_name: str) -> None:
    items = tool_shop()
    with pytest.raises(ValueError, match="'T1' appears twice"):
        catalog.sync([*items, items[0]])
    catalog.sync(items)
    nameless = [dataclasses.replace(i, name=" ") if i.external_id == "K1" else i for i in items]
    report = catalog.sync(nameless)
    assert report.skipped == 1 and report.deleted == 1
    assert "K1" not in vector_index.ids(collection_name)


def test_collection_of_another_dimension_needs_a_full_rebuild(
    catalog: CatalogIndex, vector_index: VectorIndex, collection_name: str
) -> None:
    vector_index.create_collection(collection_name, 8, "cosine")
    with pytest.raises(CollectionExists, match="--full"):
        catalog.sync(tool_shop())
    assert catalog.sync(tool_shop(), full=True).total == 13
    assert vector_index.collection_info(collection_name).dim == 384


def test_sync_from_store(tmp_path: Path, embedder: TextEmbedder) -> None:
    from hybrec.store.engine import dispose_engine, session_scope
    from hybrec.store.migrate import upgrade
    from hybrec.store.models import Item
    from hybrec.vectors.exact_index import ExactVectorIndex

    url = f"sqlite:///{tmp_path / 'store.db'}"
    upgrade(url)
    with session_scope(url) as session:
        for record in tool_shop()[:4]:
            fields = {f.name: getattr(record, f.name) for f in dataclasses.fields(record)}
            session.add(Item(**fields))
    try:
        catalog = CatalogIndex(ExactVectorIndex(tmp_path / "index"), embedder)
        report = catalog.sync_from_store(url)
        assert report.added == 4 and sorted(catalog.index.ids("products")) == ["T1", "T2", "T3", "T4"]
        assert catalog.sync_from_store(url).embedded == 0
    finally:
        dispose_engine(url)
