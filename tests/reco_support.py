"""Helpers shared by the collaborative-engine tests (tests/api, tests/recommend, tests/training, integration).

Importable as ``reco_support`` because pytest puts ``tests/`` on ``sys.path`` for the root ``conftest.py``.
Everything here builds real stores: a SQLite file (or a PostgreSQL database) filled through the real bulk loader.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from hybrec.als.tuning import save_params
from hybrec.config import Settings
from hybrec.data.demo import generate_demo_shop
from hybrec.data.movielens import read_movielens
from hybrec.data.records import ErrorCollector, SourceData
from hybrec.ingest import ingest as run_ingest
from hybrec.store.engine import session_scope
from hybrec.store.models import Interaction
from hybrec.training.job import run_training

# Small and quick: the tests check behaviour, not model quality.
TEST_ALS_PARAMS: dict[str, Any] = {"factors": 32, "iterations": 4, "regularization": 0.05, "alpha": 2.0}


def make_settings(root: Path, database_url: str | None = None, **overrides: Any) -> Settings:
    """Embedded settings under ``root`` (SQLite file, in-process cache, exact index) with small ALS params."""
    root.mkdir(parents=True, exist_ok=True)
    params = root / "als_params.json"
    save_params(params, TEST_ALS_PARAMS)
    values: dict[str, Any] = {
        "var_dir": root / "var",
        "database_url": database_url or f"sqlite:///{root / 'hybrec.db'}",
        "als_params_path": params,
        "redis_url": None,
        "chroma_url": None,
    }
    return Settings(**{**values, **overrides})


def ingest(settings: Settings, source: SourceData) -> None:
    """Create the schema and load ``source`` through the real ingestion pipeline."""
    run_ingest(source, settings.database_url, ErrorCollector(), progress=False)


def demo_shop() -> SourceData:
    """A small synthetic shop with categories, brands and prices (about 27k events)."""
    return generate_demo_shop(seed=3, n_users=400, n_items=500)


def movielens(path: Path) -> SourceData:
    return read_movielens(path, ErrorCollector())


def count_interactions(settings: Settings) -> int:
    with session_scope(settings.database_url) as session:
        return int(session.scalar(select(func.count()).select_from(Interaction)) or 0)


def clone_store(template: Settings, root: Path, **overrides: Any) -> Settings:
    """Settings under ``root`` whose SQLite store is a copy of ``template``'s (ingest once, mutate per test)."""
    source = Path(template.database_url.removeprefix("sqlite:///"))
    settings = make_settings(root, **overrides)
    target = Path(settings.database_url.removeprefix("sqlite:///"))
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)
    return settings


def demo_template(root: Path) -> Settings:
    """Settings under ``root`` with :func:`demo_shop` ingested: the store a test module ingests once and clones."""
    settings = make_settings(root)
    ingest(settings, demo_shop())
    return settings


def trained_clone(template: Settings, root: Path) -> Settings:
    """A :func:`clone_store` of ``template`` under ``root`` with a model version trained and published."""
    settings = clone_store(template, root)
    outcome = run_training(settings)
    assert outcome.status == "published", f"training the test store failed: {outcome.error}"
    return settings
