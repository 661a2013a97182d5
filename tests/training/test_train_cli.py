"""``hybrec train``: exit status and output for a published, a failed and a busy run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import hybrec.cli.options
from hybrec.cli import app
from hybrec.config import Settings
from hybrec.store import migrate
from hybrec.training.lock import trainer_lock
from reco_support import demo_shop, ingest, make_settings


def _use(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hybrec.cli.options, "get_settings", lambda: settings)


def test_train_publishes_and_prints_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = make_settings(tmp_path)
    ingest(settings, demo_shop())
    _use(settings, monkeypatch)
    result = CliRunner().invoke(app, ["train", "--json"])
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout.strip().splitlines()[-1])
    assert body["status"] == "published" and body["version"] == 1 and body["metrics"]["ndcg@10"] > 0
    with trainer_lock(settings.database_url, Path(settings.var_dir)):
        busy = CliRunner().invoke(app, ["train"])
    assert busy.exit_code == 3 and "another trainer" in busy.output


def test_train_on_an_empty_store_fails_with_the_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = make_settings(tmp_path)
    migrate.upgrade(settings.database_url)
    _use(settings, monkeypatch)
    result = CliRunner().invoke(app, ["train"])
    assert result.exit_code == 1 and "no interactions" in result.output
