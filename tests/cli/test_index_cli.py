"""``hybrec index catalog`` through Typer's test runner, on a SQLite store and the exact index."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hybrec.cli import app
from hybrec.config import Settings
from hybrec.data.records import ItemRecord
from hybrec.retrieval import embedder as embedder_module
from hybrec.retrieval.embedder import TextEmbedder

SHOP = [
    ItemRecord("T1", "DEWALT 20V MAX Cordless Drill DCD771C2", brand="DEWALT", price=99.0, avg_rating=4.7),
    ItemRecord("T2", "Makita 18V LXT Driver-Drill XFD131", brand="Makita", price=129.0),
    ItemRecord("T3", "Ryobi ONE+ 18V Cordless Drill P215", brand="Ryobi", category="Power Tools"),
    ItemRecord("T4", "Cuisinart 12-Cup Coffee Maker DCC-3200", brand="Cuisinart", price=79.0, category="Kitchen"),
]

runner = CliRunner()


@pytest.fixture(scope="module")
def minilm() -> TextEmbedder:
    return TextEmbedder("all-MiniLM-L6-v2")


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, minilm: TextEmbedder) -> Settings:
    settings = Settings(var_dir=tmp_path / "var", database_url=f"sqlite:///{tmp_path / 'store.db'}", _env_file=None)  # type: ignore[call-arg]
    monkeypatch.setattr("hybrec.cli.options.get_settings", lambda: settings)
    # One MiniLM load for the module: the command's process-wide embedder is this module's.
    monkeypatch.setitem(embedder_module._SHARED, (settings.embedding_model, None), minilm)
    return settings


def _add_items(url: str, items: list[ItemRecord]) -> None:
    from hybrec.store.engine import session_scope
    from hybrec.store.migrate import upgrade
    from hybrec.store.models import Item

    upgrade(url)
    with session_scope(url) as session:
        for record in items:
            session.add(Item(**{f.name: getattr(record, f.name) for f in dataclasses.fields(record)}))


def _index(settings: Settings, *extra: str) -> dict[str, float]:
    result = runner.invoke(app, ["index", "catalog", "--json", "--database-url", settings.database_url, *extra])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_index_catalog_is_incremental(settings: Settings) -> None:
    from hybrec.store.engine import dispose_engine
    from hybrec.vectors.exact_index import ExactVectorIndex

    try:
        _add_items(settings.database_url, SHOP[:3])
        first = _index(settings)
        assert (first["total"], first["added"], first["unchanged"]) == (3, 3, 0)
        assert sorted(ExactVectorIndex(settings.var_dir / "index").ids("products")) == ["T1", "T2", "T3"]

        _add_items(settings.database_url, SHOP[3:])
        second = _index(settings)
        assert (second["total"], second["added"], second["unchanged"]) == (4, 1, 3)

        full = _index(settings, "--full")
        assert (full["total"], full["updated"], full["added"]) == (4, 4, 0)

        plain = runner.invoke(app, ["index", "catalog", "--database-url", settings.database_url])
        assert plain.exit_code == 0 and "product index: 4 items (0 added" in plain.stdout
    finally:
        dispose_engine(settings.database_url)


def test_an_empty_store_indexes_nothing(settings: Settings) -> None:
    from hybrec.store.engine import dispose_engine

    try:
        assert _index(settings)["total"] == 0
    finally:
        dispose_engine(settings.database_url)
