"""The catalogs ``hybrec evaluate-chat`` runs on: real Amazon datasets from ``../shared/data``, ingested into a
scratch SQLite store through the real pipeline and indexed with the configured embedder (exact index).

* ``gift_cards`` — Amazon 2018 Gift Cards, the reviewed products (148) with their metadata (brand, price; ratings
  computed from the reviews); queries say "gift card".
* ``industrial`` — Amazon 2018 Industrial & Scientific 5-core ratings with the UniSRec item texts (brand, category,
  no prices), cut to ``max_items`` products of brands with several products (embedding all 5,334 takes many
  minutes on two cores); queries say "supplies".
"""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from hybrec.config import Settings
from hybrec.data.records import ErrorCollector, InteractionRecord, ItemRecord, SourceData

DATASETS: dict[str, str] = {"gift_cards": "gift card", "industrial": "supplies"}


@dataclass(frozen=True, slots=True)
class EvalCatalog:
    name: str
    product_type: str
    settings: Settings


def _source(name: str, data_dir: Path, max_items: int) -> SourceData:
    errors = ErrorCollector(skip_invalid=True)
    if name == "gift_cards":
        from hybrec.data.amazon import read_amazon

        folder = data_dir / "amazon" / "gift_cards_2018"
        return read_amazon(
            folder / "Gift_Cards_5.json.gz", folder / "meta_Gift_Cards.json.gz", errors, catalog="reviewed"
        )
    if name == "industrial":
        from hybrec.data.csv_formats import read_ratings_csv

        folder = data_dir / "amazon" / "industrial_scientific_2018"
        full = read_ratings_csv(
            folder / "Industrial_and_Scientific_5core_ratings.csv", folder / "items_from_unisrec_text.csv", errors
        )
        return _subset(full, max_items)
    raise ValueError(f"unknown evaluation dataset {name!r}; expected one of {sorted(DATASETS)}")


def _subset(source: SourceData, max_items: int, per_brand: int = 10) -> SourceData:
    """Up to ``per_brand`` products of each brand with at least 3 products (most products first), ``max_items`` in
    all, and their ratings: many brands, so that brand queries have competitors."""
    items: list[ItemRecord] = list(source.items)
    counts = Counter(i.brand.strip() for i in items if i.brand and i.brand.strip())
    by_brand: dict[str, list[ItemRecord]] = {}
    for item in sorted(items, key=lambda i: i.external_id):
        if item.brand and counts[item.brand.strip()] >= 3:
            by_brand.setdefault(item.brand.strip(), []).append(item)
    keep: list[ItemRecord] = []
    for brand, _count in counts.most_common():
        if brand in by_brand and len(keep) < max_items:
            keep.extend(by_brand[brand][:per_brand])
    keep = keep[:max_items]
    ids = {i.external_id for i in keep}

    def interactions() -> Iterator[InteractionRecord]:
        return (r for r in source.interactions if r.item_id in ids)

    return SourceData(f"{source.name}[{len(keep)} items]", source.users, keep, interactions())


def prepare_catalog(name: str, settings: Settings, max_items: int = 300, *, progress: bool = True) -> EvalCatalog:
    """Ingest and index dataset ``name`` into a fresh scratch store under ``settings.var_dir / "eval-chat"``."""
    from hybrec.ingest import ingest
    from hybrec.retrieval.catalog_index import CatalogIndex
    from hybrec.retrieval.embedder import get_embedder
    from hybrec.vectors.exact_index import ExactVectorIndex

    root = settings.var_dir / "eval-chat" / name
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    scratch = settings.model_copy(
        update={"var_dir": root, "database_url": f"sqlite:///{root / 'catalog.db'}", "chroma_url": None}
    )
    ingest(_source(name, settings.shared_data_dir, max_items), scratch.database_url, ErrorCollector(True), progress)
    index = ExactVectorIndex(root / "index")
    try:
        CatalogIndex(index, get_embedder(scratch)).sync_from_store(scratch.database_url, show_progress=progress)
    finally:
        index.close()
    return EvalCatalog(name, DATASETS[name], scratch)
