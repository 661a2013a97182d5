"""The training job with ``als_backend=spark`` on a MovieLens-100K SQLite store, served by the reco API.

The module shares one local[2] SparkSession; the job reuses it (and leaves it running, since it did not start it).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from hybrec.als import ImplicitALS, ModelArtifact
from hybrec.als.spark import get_spark_session, stop_spark_session
from hybrec.api.app import create_app
from hybrec.config import Settings
from hybrec.store.engine import session_scope
from hybrec.store.models import Interaction, Item, ModelVersion, User
from hybrec.training import versions
from hybrec.training.job import run_training
from reco_support import ingest, make_settings, movielens

pytestmark = pytest.mark.shared_data


@pytest.fixture(scope="module")
def spark() -> Iterator[None]:
    get_spark_session("local[2]")
    try:
        yield
    finally:
        stop_spark_session()


def _seen(settings: Settings, user_id: str) -> set[str]:
    with session_scope(settings.database_url) as session:
        rows = session.execute(
            select(Item.external_id)
            .join(Interaction, Interaction.item_id == Item.id)
            .join(User, User.id == Interaction.user_id)
            .where(User.external_id == user_id)
        )
        return {r[0] for r in rows}


def test_spark_trained_version_is_published_and_served(spark: None, movielens_100k: Path, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, als_backend="spark", spark_master="local[2]")
    ingest(settings, movielens(movielens_100k))
    outcome = run_training(settings)
    assert outcome.status == "published", outcome.error
    assert outcome.metrics["ndcg@10"] > 0.1  # ML-100K holdout; popularity scores about 0.1 at these params
    with session_scope(settings.database_url) as session:
        row = session.get(ModelVersion, outcome.version)
        assert row is not None and row.is_active
        assert row.params["als_backend"] == "spark" and row.params["factors"] == 32
        artifact_path = row.artifact_path
    assert artifact_path is not None

    # The artifact is the torch model's: it loads as ImplicitALS with one factor row per stored user.
    artifact = ModelArtifact.load(artifact_path)
    assert type(artifact.model) is ImplicitALS and artifact.model.factors == 32
    assert len(artifact.user_ids) == 943 and len(artifact.item_ids) == 1682

    with TestClient(create_app(settings)) as client:
        response = client.get("/v1/users/1/recommendations", params={"n": 10})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["model_version"] == outcome.version and body["strategy"] == "trained"
        items = [entry["item_id"] for entry in body["items"]]
        assert len(items) == 10 and not set(items) & _seen(settings, "1")
        scores = [entry["score"] for entry in body["items"]]
        assert scores == sorted(scores, reverse=True)
        # Served scores are dot products with the Spark-trained factors of the published artifact.
        user = artifact.model.user_factors[artifact.user_row("1")].numpy()
        expected = [float(artifact.model.item_factors[artifact.item_row(i)].numpy() @ user) for i in items]
        np.testing.assert_allclose(scores, expected, rtol=1e-4, atol=1e-5)

        similar = client.get(f"/v1/items/{items[0]}/similar", params={"n": 5})
        assert similar.status_code == 200 and len(similar.json()["items"]) == 5

    # Switching backends keeps the version flow: a torch run is gated against the Spark version and published.
    before = versions.active_version(settings)
    assert before is not None and before.params["als_backend"] == "spark"
    outcome = run_training(settings.model_copy(update={"als_backend": "torch"}))
    assert outcome.status == "published", outcome.error
    after = versions.active_version(settings)
    assert after is not None and after.version == outcome.version and after.params["als_backend"] == "torch"
    # The torch and Spark holdout scores agree within the publish gate's margin.
    assert abs(outcome.metrics["ndcg@10"] - float(before.metrics["ndcg@10"])) < 0.05
