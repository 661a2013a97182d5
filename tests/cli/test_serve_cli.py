"""``hybrec serve reco --workers N``: several processes only with a shared user cache, each building its own app."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from hybrec.cli import app
from hybrec.cli.serve import COMPONENTS_ENV, worker_app


def test_several_workers_without_redis_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HYBREC_REDIS_URL", raising=False)
    result = CliRunner().invoke(app, ["serve", "reco", "--workers", "2", "--port", "1"])
    assert result.exit_code == 2
    assert "HYBREC_REDIS_URL" in result.output


def test_a_worker_builds_the_components_named_in_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HYBREC_DATABASE_URL", f"sqlite:///{tmp_path}/hybrec.db")
    monkeypatch.setenv("HYBREC_VAR_DIR", str(tmp_path))
    monkeypatch.setenv(COMPONENTS_ENV, "reco")
    paths = worker_app().openapi()["paths"]
    assert "/v1/users/{user_id}/recommendations" in paths and "/health" in paths
