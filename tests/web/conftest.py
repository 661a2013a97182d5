"""The shop the web tests run against: a small demo shop in a SQLite store, a trained ALS model and the product
index (exact in-process index, real MiniLM) — what ``hybrec up`` prepares, built once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from hybrec.cli.index import sync_catalog
from hybrec.config import Settings
from hybrec.data.demo import generate_demo_shop
from hybrec.training.job import run_training
from reco_support import ingest, make_settings


@pytest.fixture(scope="session")
def web_shop(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Settings of a ready shop: 150 shoppers, 200 products (a dozen of categories, coffee among them), trained and
    indexed. Tests may add interactions and chat turns to it, never remove anything."""
    root: Path = tmp_path_factory.mktemp("web_shop")
    settings = make_settings(root, llm_backend="none")
    ingest(settings, generate_demo_shop(seed=5, n_users=150, n_items=200))
    outcome = run_training(settings)
    assert outcome.status == "published", f"training the web shop failed: {outcome.error}"
    report = sync_catalog(settings)
    assert report.total == 200, report
    return settings
