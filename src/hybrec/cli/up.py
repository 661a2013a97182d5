"""``hybrec up``: the one command behind ``make run`` — prepare data, train, index, serve.

Each step is skipped when its result already exists (data in the store, an active model, an up-to-date product
index), so a second run starts in seconds.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import typer

from hybrec.cli import app
from hybrec.cli.ingest import run_ingest
from hybrec.cli.options import DatabaseUrlOption, settings_with
from hybrec.config import Settings
from hybrec.data.records import ErrorCollector, SourceData

# Datasets `HYBREC_DATASET` may name, relative to HYBREC_SHARED_DATA_DIR.
NAMED_DATASETS: dict[str, str] = {
    "amazon-gift-cards": "amazon/gift_cards_2018",
    "amazon-industrial": "amazon/industrial_scientific_2018",
    "movielens-100k": "movielens-100k",
    "movielens-latest-small": "movielens-latest-small",
}


def dataset_reader(settings: Settings) -> tuple[str, Callable[[ErrorCollector], SourceData]]:
    """What `hybrec up` loads into an empty store: the demo shop, a named public dataset, or a path."""
    from hybrec.data.amazon import read_amazon
    from hybrec.data.csv_formats import read_ratings_csv, read_seed_csv
    from hybrec.data.demo import generate_demo_shop
    from hybrec.data.movielens import read_movielens

    name = settings.dataset
    if not name or name == "demo":
        return "the synthetic demo shop", lambda _errors: generate_demo_shop()
    path = settings.shared_data_dir / NAMED_DATASETS[name] if name in NAMED_DATASETS else Path(name)
    if not path.exists():
        raise typer.BadParameter(
            f"dataset {name!r}: {path} does not exist (named datasets: {', '.join(NAMED_DATASETS)}, or a path)",
            param_hint="HYBREC_DATASET",
        )
    if path.is_file():
        return str(path), lambda errors: read_ratings_csv(path, None, errors)
    if (path / "u.data").exists() or (path / "ratings.csv").exists():
        return str(path), lambda errors: read_movielens(path, errors)
    if (path / "interactions.csv").exists():
        return str(path), lambda errors: read_seed_csv(path, errors)
    reviews = sorted(path.glob("*_5.json.gz"))
    if reviews:
        metas = sorted(path.glob("meta_*.json.gz"))
        return str(path), lambda errors: read_amazon(reviews[0], metas[0] if metas else None, errors)
    ratings = sorted(path.glob("*ratings.csv"))
    if ratings:
        items = path / "items_from_unisrec_text.csv"
        return str(path), lambda errors: read_ratings_csv(ratings[0], items if items.exists() else None, errors)
    raise typer.BadParameter(f"dataset {path}: no known file layout in it", param_hint="HYBREC_DATASET")


@app.command("up")
def up(
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on."),
    port: int = typer.Option(8000, "--port", min=1, max=65535, help="TCP port."),
    database_url: str | None = DatabaseUrlOption,
    serve: bool = typer.Option(True, "--serve/--no-serve", help="Start the API at the end."),
) -> None:
    """Prepare everything the product needs (data, model, product index), then serve it."""
    from hybrec.cli.serve import all_components, run_server
    from hybrec.store.engine import session_scope
    from hybrec.store.migrate import upgrade
    from hybrec.store.model_versions import active_model_version
    from hybrec.store.queries import store_counts
    from hybrec.training.job import run_training

    settings = settings_with(database_url)
    typer.echo(f"[1/4] store: {settings.database_url}")
    upgrade(settings.database_url)
    with session_scope(settings.database_url) as session:
        counts = store_counts(session)
    if counts["interactions"] == 0:
        label, read = dataset_reader(settings)
        typer.echo(f"      empty: loading {label}")
        run_ingest(read, settings.database_url, skip_invalid=False, progress=True)
    else:
        typer.echo(
            f"      {counts['users']:,} users, {counts['items']:,} items, {counts['interactions']:,} interactions"
        )

    with session_scope(settings.database_url) as session:
        active = active_model_version(session)
        active_version = active.id if active is not None else None
    if active_version is None:
        typer.echo("[2/4] model: none yet, training ALS")
        outcome = run_training(settings, show_progress=True)
        if outcome.status != "published":
            typer.echo(f"error: training {outcome.status}: {outcome.error}", err=True)
            raise typer.Exit(1)
        typer.echo(f"      model version {outcome.version} published in {outcome.duration_s:.1f}s")
    else:
        typer.echo(f"[2/4] model: version {active_version} is active (the trainer refreshes it on its schedule)")

    components = all_components()
    if "chat" in components:
        typer.echo("[3/4] product index: embedding new and changed products")
        _index_catalog(settings)
    else:
        typer.echo("[3/4] product index: skipped (the chat engine is not installed)")

    base = f"http://{host}:{port}"
    typer.echo(f"[4/4] serving {', '.join(components)} on {base}")
    if "web" in components:
        typer.echo(f"      open {base}/ in a browser: the shopping assistant, recommendations, similar items")
    typer.echo(f"      API docs {base}/docs  ·  readiness {base}/ready  ·  metrics {base}/metrics")
    if serve:
        run_server(settings, components, host, port)


def _index_catalog(settings: Settings) -> None:
    from hybrec.cli.index import sync_catalog

    report = sync_catalog(settings)
    typer.echo(
        f"      {report.total:,} products ({report.added:,} added, {report.updated:,} updated, "
        f"{report.unchanged:,} unchanged) in {report.seconds:.1f}s"
    )
