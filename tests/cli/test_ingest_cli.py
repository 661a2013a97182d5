"""``hybrec ingest``, ``hybrec demo-data`` and ``hybrec db`` through Typer's test runner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hybrec.cli import app

runner = CliRunner()


def _stats(url: str) -> dict[str, int]:
    result = runner.invoke(app, ["db", "stats", "--json", "--database-url", url])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.mark.shared_data
def test_movielens_100k_acceptance_and_idempotent_rerun(movielens_100k: Path, store_url: str) -> None:
    command = ["ingest", "movielens", str(movielens_100k), "--database-url", store_url, "--no-progress"]
    result = runner.invoke(app, command)
    assert result.exit_code == 0, result.output
    expected = {"users": 943, "items": 1682, "interactions": 100000, "chat_messages": 0, "model_versions": 0}
    assert _stats(store_url) == expected

    again = runner.invoke(app, command)
    assert again.exit_code == 0, again.output
    assert "interactions +0 " in again.stdout
    assert _stats(store_url) == expected


def test_invalid_rows_exit_1_naming_file_line_and_field(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    path = tmp_path / "ratings.csv"
    path.write_text("userid,itemid,timestamp,rating\nu1,a,2020-01-01,4\nu2,a,2020-01-01,seven\nu3,b,2020-01-02,5\n")

    failed = runner.invoke(app, ["ingest", "ratings-csv", str(path), "--database-url", url, "--no-progress"])
    assert failed.exit_code == 1
    assert f"{path}:3: field 'rating'" in failed.stderr
    assert "nothing was written" in failed.stderr and "Traceback" not in failed.output
    assert _stats(url)["interactions"] == 0

    skipped = runner.invoke(
        app, ["ingest", "ratings-csv", str(path), "--database-url", url, "--no-progress", "--skip-invalid"]
    )
    assert skipped.exit_code == 0, skipped.output
    assert "skipped 1 invalid row(s)" in skipped.stdout and f"{path}:3" in skipped.stdout
    assert _stats(url)["interactions"] == 2


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    result = runner.invoke(app, ["ingest", "movielens", str(tmp_path / "nope"), "--database-url", url])
    assert result.exit_code == 1
    assert "nope" in result.stderr and "Traceback" not in result.output


def test_demo_data_and_db_upgrade(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'demo' / 'hybrec.db'}"
    upgraded = runner.invoke(app, ["db", "upgrade", "--database-url", url])
    assert upgraded.exit_code == 0, upgraded.output
    assert _stats(url)["users"] == 0

    command = ["demo-data", "--users", "40", "--items", "60", "--seed", "7", "--database-url", url, "--no-progress"]
    result = runner.invoke(app, command)
    assert result.exit_code == 0, result.output
    first = _stats(url)
    assert first["users"] == 40 and first["items"] == 60 and first["interactions"] > 40
    assert runner.invoke(app, command).exit_code == 0
    assert _stats(url) == first  # the same seed gives the same shop: nothing new


def test_interaction_naming_an_absent_item(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    seed = tmp_path / "seed"
    seed.mkdir()
    (seed / "items.csv").write_text("item_id,name\nB001,Espresso Maker\nB002,Green Tea\n")
    (seed / "interactions.csv").write_text(
        "user_id,item_id,rating,timestamp\nu1,B001,5,2020-01-01T10:00:00\nu2,B999,3,1577872800\nu3,B002,4,1577872801\n"
    )
    command = ["ingest", "seed-csv", str(seed), "--database-url", url, "--no-progress"]

    failed = runner.invoke(app, command)
    assert failed.exit_code == 1
    assert f"{seed / 'interactions.csv'}:3: field 'item_id': item 'B999' is absent from the catalog" in failed.stderr
    assert _stats(url) == {"users": 0, "items": 0, "interactions": 0, "chat_messages": 0, "model_versions": 0}

    skipped = runner.invoke(app, [*command, "--skip-invalid"])
    assert skipped.exit_code == 0, skipped.output
    assert "skipped 1 invalid row(s)" in skipped.stdout and "B999" in skipped.stdout
    assert _stats(url)["interactions"] == 2
