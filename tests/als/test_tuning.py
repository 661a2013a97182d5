"""Hyperparameter search and the params file that training reads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import scipy.sparse as sp

from hybrec.als.tuning import (
    DEFAULT_PARAMS,
    grid_candidates,
    load_params,
    random_candidates,
    save_params,
    search,
)

REPO_PARAMS = Path(__file__).resolve().parents[2] / "params" / "als_params.json"


def test_grid_and_random_candidates() -> None:
    space = {"factors": [8, 16], "alpha": [1.0, 2.0, 4.0]}
    grid = grid_candidates(space)
    assert len(grid) == 6 and {"factors": 16, "alpha": 4.0} in grid
    drawn = random_candidates(space, 4, seed=1)
    assert len(drawn) == 4 and all(c in grid for c in drawn)
    assert len({tuple(sorted(c.items())) for c in drawn}) == 4
    assert random_candidates(space, 4, seed=1) == drawn
    with pytest.raises(ValueError, match="unknown hyperparameter"):
        grid_candidates({"learning_rate": [0.1]})
    with pytest.raises(ValueError, match="no candidate values"):
        grid_candidates({"alpha": []})


def test_search_ranks_trials_by_the_metric(small_matrix: sp.csr_matrix) -> None:
    candidates = grid_candidates({"factors": [4, 16], "regularization": [0.1]})
    result = search(small_matrix, candidates, {"iterations": 4}, metric="ndcg@10")
    assert len(result.trials) == 2
    assert result.best.metrics["ndcg@10"] >= result.trials[1].metrics["ndcg@10"]
    assert result.best.params["iterations"] == 4


def test_params_file_round_trip(tmp_path: Path) -> None:
    path = save_params(tmp_path / "p.json", {"factors": 32, "alpha": 4.0}, dataset="ml-100k", score=0.4)
    content = json.loads(path.read_text())
    assert content["dataset"] == "ml-100k" and content["params"]["factors"] == 32
    loaded = load_params(path)
    assert loaded == {**DEFAULT_PARAMS, "factors": 32, "alpha": 4.0}


def test_bad_params_files_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="hybrec tune"):
        load_params(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_params(tmp_path / "bad.json")
    (tmp_path / "shape.json").write_text(json.dumps({"factors": 3}))
    with pytest.raises(ValueError, match="'params' object"):
        load_params(tmp_path / "shape.json")
    (tmp_path / "value.json").write_text(json.dumps({"params": {"factors": 0}}))
    with pytest.raises(ValueError, match="factors"):
        load_params(tmp_path / "value.json")
    (tmp_path / "key.json").write_text(json.dumps({"params": {"lr": 0.1}}))
    with pytest.raises(ValueError, match="unknown ALS parameter"):
        load_params(tmp_path / "key.json")


def test_the_seed_params_file_of_the_repository_is_valid() -> None:
    assert load_params(REPO_PARAMS)["factors"] > 0
