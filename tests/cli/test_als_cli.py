"""``hybrec evaluate`` and ``hybrec tune`` end to end on a small CSV."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from hybrec.cli import app
from hybrec.data.matrices import synthetic_interactions


@pytest.fixture(scope="module")
def csv_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = synthetic_interactions(120, 80, 10, rank=4, seed=5, taste_share=0.8)
    coo = data.matrix.tocoo()
    path = tmp_path_factory.mktemp("csv") / "interactions.csv"
    lines = ["user,item,value"] + [f"u{u},i{i},{v:g}" for u, i, v in zip(coo.row, coo.col, coo.data, strict=True)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_evaluate_prints_json_and_writes_plots(csv_path: Path, tmp_path: Path) -> None:
    params = tmp_path / "params.json"
    params.write_text(json.dumps({"params": {"factors": 8, "iterations": 3, "regularization": 0.1}}))
    report = tmp_path / "report"
    result = CliRunner().invoke(
        app,
        [
            "evaluate",
            "--dataset",
            str(csv_path),
            "--model",
            "als",
            "--model",
            "popularity",
            "--params",
            str(params),
            "--report-dir",
            str(report),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output.strip().splitlines()[-1])
    assert set(payload["models"]) == {"als", "popularity"}
    assert 0.0 <= payload["models"]["als"]["ndcg@10"] <= 1.0
    assert len(payload["loss_history"]["als"]) == 3
    for name in ("metrics.json", "metrics.png", "loss.png"):
        assert (report / name).stat().st_size > 0
    assert (report / "metrics.png").read_bytes()[:4] == b"\x89PNG"


def test_evaluate_table_with_explicit_model(csv_path: Path, tmp_path: Path) -> None:
    params = tmp_path / "params.json"
    params.write_text(json.dumps({"params": {"factors": 4, "iterations": 2}}))
    result = CliRunner().invoke(
        app,
        [
            "evaluate",
            "--dataset",
            str(csv_path),
            "--model",
            "explicit",
            "--params",
            str(params),
            "--report-dir",
            str(tmp_path / "r"),
            "--split",
            "strong",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "explicit" in result.output and "ndcg@10" in result.output


def test_evaluate_rejects_unknown_dataset_and_model(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["evaluate", "--dataset", "no-such-set", "--report-dir", str(tmp_path)])
    assert result.exit_code != 0 and "unknown dataset" in result.output
    result = CliRunner().invoke(app, ["evaluate", "--dataset", "ml-100k", "--model", "svd"])
    assert result.exit_code != 0 and "unknown model" in result.output


def test_tune_writes_the_best_params(csv_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "als_params.json"
    result = CliRunner().invoke(
        app,
        [
            "tune",
            "--dataset",
            str(csv_path),
            "--search",
            "random",
            "--trials",
            "2",
            "--factors",
            "4,8",
            "--regularization",
            "0.1",
            "--alpha",
            "1,2",
            "--iterations",
            "2",
            "--out",
            str(out),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output.strip().splitlines()[-1])
    written = json.loads(out.read_text())
    assert written["params"] == payload["best"] and len(payload["trials"]) == 2
    assert written["params"]["factors"] in (4, 8) and np.isfinite(written["score"])
