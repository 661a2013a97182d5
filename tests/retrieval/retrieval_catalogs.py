"""Helpers of the retrieval tests: small catalogs (a hand-made tool shop, a slice of the real Amazon gift-card
metadata) and the vector backends every behavioural test runs on."""

from __future__ import annotations

import gzip
import json
import re
from collections import defaultdict
from pathlib import Path

import pytest

from hybrec.data.records import ItemRecord
from hybrec.vectors.base import VectorIndex

# The Chroma backend talks to a real server (the session's `chroma_server`), hence the integration mark.
BACKENDS = ("exact", pytest.param("chroma", marks=pytest.mark.integration))

_PRICE = re.compile(r"^\$([0-9][0-9,]*(?:\.[0-9]+)?)$")


def open_vector_index(kind: str, request: pytest.FixtureRequest, folder: Path) -> VectorIndex:
    """An exact index persisted under ``folder``, or a client of the session's Chroma server."""
    if kind == "exact":
        from hybrec.vectors.exact_index import ExactVectorIndex

        return ExactVectorIndex(folder / "index")
    from hybrec.vectors.chroma_index import ChromaVectorIndex

    return ChromaVectorIndex.from_url(str(request.getfixturevalue("chroma_server")))


def tool_shop() -> list[ItemRecord]:
    """Drills with model numbers, brands spelled in different cases/spacings, unknown prices/ratings, and two
    brands that look like SQL / Chroma-operator injections."""

    def item(item_id: str, name: str, brand: str | None, price: float | None, rating: float | None, **kw: object):
        return ItemRecord(
            item_id,
            name,
            brand=brand,
            price=price,
            avg_rating=rating,
            num_ratings=0 if rating is None else 40,
            category=str(kw.pop("category", "Power Tools")),
            description=str(kw.pop("description", "")) or None,
            features=list(kw.pop("features", [])),  # type: ignore[call-overload]
        )

    return [
        item(
            "T1",
            "DEWALT 20V MAX Cordless Drill Driver Kit DCD771C2",
            "DEWALT",
            99.0,
            4.7,
            description="Compact lightweight drill driver with two batteries and charger.",
        ),
        item(
            "T2",
            "DEWALT 20V MAX XR Brushless Hammer Drill DCD996B",
            "DeWalt",
            179.0,
            4.8,
            description="Three-speed brushless hammer drill for masonry, tool only.",
        ),
        item(
            "T3",
            "Makita 18V LXT Lithium-Ion Cordless Driver-Drill XFD131",
            "Makita",
            129.0,
            4.6,
            description="Compact brushless driver-drill kit.",
        ),
        item(
            "T4",
            "Bosch 12V Max Drill/Driver Kit PS31-2A",
            "Bosch",
            89.0,
            4.5,
            description="Two-speed drill driver, compact and light.",
        ),
        item(
            "T5",
            "BLACK+DECKER 20V Max Cordless Drill LDX120C",
            "Black + Decker",
            49.0,
            4.3,
            description="Cordless drill for home projects with battery.",
        ),
        item(
            "T6",
            "Ryobi ONE+ 18V Cordless Drill Driver P215",
            "Ryobi",
            None,
            4.4,
            description="Cordless drill driver, price on request.",
        ),
        item(
            "T7",
            "Cordless Drill Set with 30 Accessories",
            "Hewlett-Packard",
            25.0,
            None,
            description="Budget cordless drill with accessory set.",
        ),
        item(
            "T8",
            "Milwaukee M18 Fuel Cordless Hammer Drill 2804-20",
            "Milwaukee",
            199.0,
            3.9,
            description="Professional cordless hammer drill.",
        ),
        item(
            "K1",
            "Cuisinart 12-Cup Programmable Coffee Maker DCC-3200",
            "Cuisinart",
            79.0,
            4.4,
            category="Kitchen",
            description="Drip coffee maker with glass carafe.",
        ),
        item(
            "K2",
            "Mr. Coffee Espresso and Cappuccino Machine",
            "Mr. Coffee",
            69.0,
            4.0,
            category="Kitchen",
            description="Steam espresso maker with milk frother.",
        ),
        item(
            "K3",
            "Hamilton Beach Electric Kettle 1.7L",
            "Hamilton Beach",
            29.0,
            4.5,
            category="Kitchen",
            description="Stainless steel kettle that boils water fast.",
        ),
        item(
            "X1",
            "Mystery Widget",
            "' OR 1=1 --",
            10.0,
            4.0,
            category="Gadgets",
            description="A small widget of unknown purpose.",
        ),
        item(
            "X2",
            "Curly Widget",
            '{"$ne": null}',
            12.0,
            4.1,
            category="Gadgets",
            description="A curly widget of unknown purpose.",
        ),
    ]


def _price(value: object) -> float | None:
    match = _PRICE.match(value.strip()) if isinstance(value, str) else None
    return float(match.group(1).replace(",", "")) if match else None


def gift_cards(folder: Path, limit: int = 80) -> list[ItemRecord]:
    """Up to ``limit`` products of the Amazon 2018 gift-card metadata: the coffee and steak ones first (the tests
    query them), then reviewed, then priced ones, with avg_rating/num_ratings computed from the 5-core reviews."""
    ratings: dict[str, list[float]] = defaultdict(list)
    with gzip.open(folder / "Gift_Cards_5.json.gz", "rt", encoding="utf-8") as fh:
        for line in fh:
            review = json.loads(line)
            ratings[review["asin"]].append(float(review["overall"]))
    rows: list[dict] = []
    with gzip.open(folder / "meta_Gift_Cards.json.gz", "rt", encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh]

    def rank(row: dict) -> int:
        text = (row.get("title", "") + " " + " ".join(row.get("description") or [])).lower()
        if "coffee" in text or "steak" in text:
            return 0
        if row["asin"] in ratings:
            return 1
        return 2 if _price(row.get("price")) is not None else 3

    chosen: dict[str, ItemRecord] = {}
    for row in sorted(rows, key=rank):
        if len(chosen) == limit or row["asin"] in chosen or not row.get("title", "").strip():
            continue
        stars = ratings.get(row["asin"], [])
        categories = [c for c in row.get("category") or [] if "<" not in c]
        chosen[row["asin"]] = ItemRecord(
            row["asin"],
            row["title"],
            category=categories[1] if len(categories) > 1 else (categories[0] if categories else None),
            brand=row.get("brand") or None,
            description=" ".join(row.get("description") or []) or None,
            features=list(row.get("feature") or []),
            price=_price(row.get("price")),
            avg_rating=sum(stars) / len(stars) if stars else None,
            num_ratings=len(stars),
        )
    return list(chosen.values())
