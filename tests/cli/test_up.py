"""``hybrec up`` (what ``make run`` runs): prepares data, model and product index once, then reuses them."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

import hybrec.cli.options
from hybrec.cli import app
from hybrec.config import Settings
from hybrec.store.engine import session_scope
from hybrec.store.migrate import upgrade
from hybrec.store.queries import store_counts
from reco_support import make_settings

N_USERS, N_ITEMS = 40, 15


def _ratings_csv(path: Path) -> Path:
    """Two taste groups over 15 items: users 0-19 like items 0-7, users 20-39 items 7-14."""
    lines = ["user,item,value"]
    for user in range(N_USERS):
        liked = range(0, 8) if user < N_USERS // 2 else range(7, N_ITEMS)
        lines += [f"u{user},i{item},{1 + (user + item) % 3}" for item in liked if (user + item) % 4 != 0]
    path.write_text("\n".join(lines) + "\n")
    return path


def _use(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hybrec.cli.options, "get_settings", lambda: settings)


def test_up_prepares_everything_then_reuses_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dataset = _ratings_csv(tmp_path / "ratings.csv")
    settings = make_settings(tmp_path, dataset=str(dataset), llm_backend="none")
    _use(settings, monkeypatch)

    first = CliRunner().invoke(app, ["up", "--no-serve"])
    assert first.exit_code == 0, first.output
    assert f"empty: loading {dataset}" in first.output
    assert "model version 1 published" in first.output
    assert f"{N_ITEMS} products ({N_ITEMS} added, 0 updated, 0 unchanged)" in first.output
    assert "open http://127.0.0.1:8000/ in a browser" in first.output
    with session_scope(settings.database_url) as session:
        counts = store_counts(session)
    assert counts["users"] == N_USERS and counts["items"] == N_ITEMS and counts["model_versions"] == 1

    second = CliRunner().invoke(app, ["up", "--no-serve"])
    assert second.exit_code == 0, second.output
    assert "loading" not in second.output
    assert "version 1 is active" in second.output
    assert f"{N_ITEMS} products (0 added, 0 updated, {N_ITEMS} unchanged)" in second.output
    with session_scope(settings.database_url) as session:
        assert store_counts(session) == counts


def test_up_names_a_dataset_that_does_not_exist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = make_settings(tmp_path, dataset=str(tmp_path / "missing"), llm_backend="none")
    _use(settings, monkeypatch)
    result = CliRunner().invoke(app, ["up", "--no-serve"])
    assert result.exit_code == 2
    message = " ".join(result.output.replace("│", " ").split())  # Typer draws the error in a wrapped box
    assert "HYBREC_DATASET" in message and "does not exist" in message
    upgrade(settings.database_url)
    with session_scope(settings.database_url) as session:
        assert store_counts(session)["interactions"] == 0
