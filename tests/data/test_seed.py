from __future__ import annotations

import json
from pathlib import Path

import pytest

from hybrec.data.csv_formats import read_seed_csv
from hybrec.data.records import DataError, ErrorCollector, SourceData


def _consume(source: SourceData) -> tuple[list, list, list]:
    return list(source.users), list(source.items), list(source.interactions)


ITEMS = (
    "item_id,name,category,brand,price,avg_rating,description\n"
    'B001,Espresso Maker,Kitchen,Brewmaster,"$1,299.00",4.5,<p>Makes <b>great</b> coffee</p>\n'
    "B002,Green Tea,,,,,\n"
)
INTERACTIONS = (
    "user_id,item_id,rating,timestamp,review\n"
    "u1,B001,5,2020-01-01T10:00:00,Love it &amp; use it daily\n"
    "u2,B002,3,1577872800,\n"
    "u3,B001,,1577872801,\n"
)
RAG = [
    {
        "asin": "B002",
        "title": "Ignored title",
        "description": ["Fresh", "green tea"],
        "features": ["Loose leaf"],
        "price": "$7.50",
        "brand": "Leafy",
        "category": ["Grocery", "Tea"],
    },
    {"item_id": "B001", "name": "Other", "brand": "Other", "features": "Steam wand"},
    {"asin": "B003", "title": "Tea Kettle", "price": 20},
]


def _seed(
    folder: Path,
    *,
    items: str = ITEMS,
    interactions: str = INTERACTIONS,
    users: str | None = "user_id,name\nu1,Ann\nu2,\n",
    rag: list | str | None = None,
) -> Path:
    folder.mkdir(exist_ok=True)
    (folder / "items.csv").write_text(items)
    (folder / "interactions.csv").write_text(interactions)
    if users is not None:
        (folder / "users.csv").write_text(users)
    if rag is not None:
        (folder / "ProductsRAG.json").write_text(rag if isinstance(rag, str) else json.dumps(rag, indent=2))
    return folder


def test_reads_and_merges_products(tmp_path: Path) -> None:
    folder = _seed(tmp_path / "seed", rag=RAG)
    users, items, interactions = _consume(read_seed_csv(folder, ErrorCollector()))
    assert [(u.external_id, u.attributes) for u in users] == [("u1", {"name": "Ann"}), ("u2", {}), ("u3", {})]
    by_id = {i.external_id: i for i in items}
    b1, b2, b3 = by_id["B001"], by_id["B002"], by_id["B003"]
    # items.csv wins; ProductsRAG.json fills the gaps
    assert (b1.name, b1.brand, b1.price, b1.avg_rating, b1.description, b1.features) == (
        "Espresso Maker",
        "Brewmaster",
        1299.0,
        4.5,
        "Makes great coffee",
        ["Steam wand"],
    )
    assert (b2.name, b2.brand, b2.price, b2.description, b2.category, b2.features) == (
        "Green Tea",
        "Leafy",
        7.5,
        "Fresh green tea",
        "Tea",
        ["Loose leaf"],
    )
    assert (b3.name, b3.price) == ("Tea Kettle", 20.0)
    assert [(i.kind, i.rating, i.review_text) for i in interactions] == [
        ("review", 5.0, "Love it & use it daily"),
        ("rating", 3.0, None),
        ("purchase", None, None),
    ]
    assert interactions[1].ts.isoformat() == "2020-01-01T10:00:00+00:00"


def test_users_csv_optional(tmp_path: Path) -> None:
    folder = _seed(tmp_path / "seed", users=None)
    assert [u.external_id for u in read_seed_csv(folder, ErrorCollector()).users] == ["u1", "u2", "u3"]


def test_missing_required_file(tmp_path: Path) -> None:
    folder = _seed(tmp_path / "seed")
    (folder / "items.csv").unlink()
    with pytest.raises(DataError, match=r"seed folder without items\.csv"):
        read_seed_csv(folder, ErrorCollector())


@pytest.mark.parametrize(
    ("items", "match"),
    [
        (ITEMS + "B001,Again,,,,,\n", r"items\.csv:4: field 'item_id': duplicate id 'B001'"),
        (ITEMS + "B009,Cheap,,,-1.00,,\n", r"items\.csv:4: field 'price': negative price"),
        (ITEMS + "B009,Odd,,,about ten,,\n", r"items\.csv:4: field 'price': not a price"),
        (ITEMS + "B009,Odd,,,,9,\n", r"items\.csv:4: field 'avg_rating': rating 9 is outside the range 0-5"),
        (ITEMS + "B009,,,,,,\n", r"items\.csv:4: field 'name': missing value"),
        ("item_id,category\nB001,Kitchen\n", r"items\.csv:1: field 'title': missing required column"),
        ("", "file is empty"),
    ],
)
def test_bad_items(tmp_path: Path, items: str, match: str) -> None:
    folder = _seed(tmp_path / "seed", items=items)
    with pytest.raises(DataError, match=match):
        list(read_seed_csv(folder, ErrorCollector()).items)


@pytest.mark.parametrize(
    ("row", "match"),
    [
        ("u1,B001,7,2020-01-02,\n", r"interactions\.csv:5: field 'rating': rating 7 is outside the range 1-5"),
        ("u1,B001,x,2020-01-02,\n", r"interactions\.csv:5: field 'rating': rating is not a number"),
        ("u1,B001,5,2020-01-01T10:00:00,dup\n", r"interactions\.csv:5: duplicate interaction"),
        ("u1,B001,5,,\n", r"interactions\.csv:5: field 'timestamp': timestamp is missing"),
        ("u1,,5,2020-01-02,\n", r"interactions\.csv:5: field 'item_id': missing value"),
    ],
)
def test_bad_interactions(tmp_path: Path, row: str, match: str) -> None:
    folder = _seed(tmp_path / "seed", interactions=INTERACTIONS + row)
    with pytest.raises(DataError, match=match):
        list(read_seed_csv(folder, ErrorCollector()).interactions)
    errors = ErrorCollector(skip_invalid=True)
    assert len(list(read_seed_csv(folder, errors).interactions)) == 3
    assert [e.line for e in errors.errors] == [5]


def test_kind_verified_and_weight_columns(tmp_path: Path) -> None:
    interactions = (
        "user_id,item_id,timestamp,kind,verified,weight\nu1,B001,1,cart,yes,2\nu1,B002,2,,no,\n"
        "u1,B002,3,teleport,,\nu1,B002,4,view,maybe,\nu1,B002,5,view,,-1\n"
    )
    folder = _seed(tmp_path / "seed", interactions=interactions)
    errors = ErrorCollector(skip_invalid=True)
    records = list(read_seed_csv(folder, errors).interactions)
    assert [(r.kind, r.verified, r.weight) for r in records] == [("cart", True, 2.0), ("purchase", False, 1.0)]
    assert [(e.line, e.field) for e in errors.errors] == [(4, "kind"), (5, "verified"), (6, "weight")]


def test_products_rag_bad_elements(tmp_path: Path) -> None:
    rag = '[\n  {"asin": "B001", "price": "-$2"},\n  "not an object",\n  {"title": "no id"},\n  {"asin": "B7"}\n]\n'
    folder = _seed(tmp_path / "seed", rag=rag)
    with pytest.raises(DataError, match=r"ProductsRAG\.json:2: field 'price': negative price"):
        list(read_seed_csv(folder, ErrorCollector()).items)
    errors = ErrorCollector(skip_invalid=True)
    items = list(read_seed_csv(folder, errors).items)
    assert [i.external_id for i in items] == ["B001", "B002"]
    assert [(e.line, e.field) for e in errors.errors] == [(2, "price"), (3, None), (4, "item_id"), (5, "name")]


def test_products_rag_malformed_and_json_lines(tmp_path: Path) -> None:
    folder = _seed(tmp_path / "seed", rag='[\n  {"asin": "B001",\n  "title": }\n]')
    with pytest.raises(DataError, match=r"ProductsRAG\.json:3: malformed JSON"):
        list(read_seed_csv(folder, ErrorCollector(skip_invalid=True)).items)
    _seed(folder, rag='{"asin": "B003", "title": "Kettle"}\n{"asin": "B004", "title": "Cup"}\n')
    assert [i.external_id for i in read_seed_csv(folder, ErrorCollector()).items] == ["B001", "B002", "B003", "B004"]


def test_non_utf8_interactions(tmp_path: Path) -> None:
    folder = _seed(tmp_path / "seed")
    (folder / "interactions.csv").write_bytes(INTERACTIONS.encode() + b"u9,B001,4,2021-01-01,caf\xe9\n")
    with pytest.raises(DataError, match=r"interactions\.csv:5: not valid UTF-8"):
        list(read_seed_csv(folder, ErrorCollector()).interactions)


def test_duplicate_user_id_in_users_csv(tmp_path: Path) -> None:
    folder = _seed(tmp_path / "seed", users="user_id,name\nu1,Ann\nu1,Bob\n")
    with pytest.raises(DataError, match=r"users\.csv:3: field 'user_id': duplicate id 'u1' \(first seen on line 2\)"):
        list(read_seed_csv(folder, ErrorCollector()).users)
