"""Fixtures shared by the whole suite: real datasets, real servers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("HYBREC_SHARED_DATA_DIR", REPO_ROOT.parent / "shared" / "data")).resolve()
POSTGRES_URL = os.environ.get("HYBREC_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("HYBREC_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def require_shared(relative: str) -> Path:
    """The path of a dataset under ../shared/data; skips the test when absent, fails in CI."""
    path = SHARED_DATA / relative
    if not path.exists():
        message = f"dataset {path} is missing"
        if os.environ.get("HYBREC_REQUIRE_SHARED_DATA") == "1":
            pytest.fail(message + " and HYBREC_REQUIRE_SHARED_DATA=1")
        pytest.skip(message)
    return path


@pytest.fixture
def movielens_100k() -> Path:
    return require_shared("movielens-100k")


@pytest.fixture
def movielens_latest_small() -> Path:
    return require_shared("movielens-latest-small")


@pytest.fixture
def amazon_gift_cards() -> Path:
    return require_shared("amazon/gift_cards_2018")


@pytest.fixture
def amazon_industrial() -> Path:
    return require_shared("amazon/industrial_scientific_2018")
