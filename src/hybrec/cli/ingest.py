"""``hybrec ingest ...`` and ``hybrec demo-data``: load a dataset into the store.

Every command upgrades the schema first and loads in one transaction. Invalid input prints one line per bad row
(``file:line: field 'x': what is wrong``) to stderr and exits 1 with nothing written; ``--skip-invalid`` loads the
valid rows and prints the rows it skipped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from hybrec.cli import app
from hybrec.cli.options import DatabaseUrlOption, settings_with
from hybrec.data.records import DataError, ErrorCollector, SourceData

log = logging.getLogger(__name__)

ingest_app = typer.Typer(help="Load a dataset into the relational store (idempotent: re-running changes nothing).",
                         no_args_is_help=True)
app.add_typer(ingest_app, name="ingest")

SkipInvalidOption = typer.Option(
    False, "--skip-invalid", help="Skip bad input rows (and report them) instead of stopping with nothing written."
)
ProgressOption = typer.Option(True, "--progress/--no-progress", help="Show progress bars.")
MAX_LISTED_SKIPS = 50


def run_ingest(
    read: Callable[[ErrorCollector], SourceData], database_url: str | None, skip_invalid: bool, progress: bool
) -> None:
    """Read with ``read`` and load into the store; prints the report, or the bad rows and exits 1."""
    from hybrec.data.progress import set_progress_enabled
    from hybrec.ingest import ingest

    if not progress:
        set_progress_enabled(False)  # the readers' byte bars too
    url = settings_with(database_url).database_url
    errors = ErrorCollector(skip_invalid=skip_invalid)
    try:
        report = ingest(read(errors), url, errors, progress=progress)
    except DataError as exc:
        typer.echo(f"error: invalid input, nothing was written ({len(exc.errors)} bad row(s)):", err=True)
        for row in exc.errors[:MAX_LISTED_SKIPS]:
            typer.echo(f"  {row}", err=True)
        if len(exc.errors) > MAX_LISTED_SKIPS:
            typer.echo(f"  ... and {len(exc.errors) - MAX_LISTED_SKIPS} more", err=True)
        typer.echo("Fix the input, or pass --skip-invalid to load the valid rows only.", err=True)
        raise typer.Exit(1) from None
    typer.echo(
        f"{report.source}: users +{report.users.inserted:,} ({report.users.read:,} read), "
        f"items +{report.items.inserted:,} / {report.items.updated:,} updated ({report.items.read:,} read), "
        f"interactions +{report.interactions.inserted:,} ({report.interactions.read:,} read) "
        f"in {report.seconds:.1f}s"
    )
    if report.skipped_rows:
        typer.echo(f"skipped {len(report.skipped_rows)} invalid row(s):")
        for row in report.skipped_rows[:MAX_LISTED_SKIPS]:
            typer.echo(f"  {row}")
        if len(report.skipped_rows) > MAX_LISTED_SKIPS:
            typer.echo(f"  ... and {len(report.skipped_rows) - MAX_LISTED_SKIPS} more")


@ingest_app.command("amazon")
def amazon_command(
    reviews: Annotated[Path, typer.Option("--reviews", help="Amazon 2018 reviews file (*_5.json.gz or .json).")],
    meta: Annotated[Path | None, typer.Option("--meta", help="Its metadata file (meta_*.json.gz).")] = None,
    database_url: str | None = DatabaseUrlOption,
    skip_invalid: bool = SkipInvalidOption,
    progress: bool = ProgressOption,
) -> None:
    """Amazon Review Data (2018): reviews joined with product metadata on asin."""
    from hybrec.data.amazon import read_amazon

    run_ingest(lambda errors: read_amazon(reviews, meta, errors), database_url, skip_invalid, progress)


@ingest_app.command("ratings-csv")
def ratings_csv_command(
    path: Annotated[Path, typer.Argument(help="Ratings CSV (userid,itemid,timestamp,rating or user,item,value).")],
    items: Annotated[Path | None, typer.Option("--items", help="Item-text CSV (asin, title, brand ...).")] = None,
    database_url: str | None = DatabaseUrlOption,
    skip_invalid: bool = SkipInvalidOption,
    progress: bool = ProgressOption,
) -> None:
    """A ratings / implicit-feedback CSV with an optional item-text CSV."""
    from hybrec.data.csv_formats import read_ratings_csv

    run_ingest(lambda errors: read_ratings_csv(path, items, errors), database_url, skip_invalid, progress)


@ingest_app.command("seed-csv")
def seed_csv_command(
    directory: Annotated[Path, typer.Argument(help="Folder of users.csv, items.csv, interactions.csv.")],
    database_url: str | None = DatabaseUrlOption,
    skip_invalid: bool = SkipInvalidOption,
    progress: bool = ProgressOption,
) -> None:
    """The seed project's cleaned CSV format."""
    from hybrec.data.csv_formats import read_seed_csv

    run_ingest(lambda errors: read_seed_csv(directory, errors), database_url, skip_invalid, progress)


@ingest_app.command("movielens")
def movielens_command(
    directory: Annotated[Path, typer.Argument(help="MovieLens folder: ml-100k (u.data ...) or ml-latest-small.")],
    database_url: str | None = DatabaseUrlOption,
    skip_invalid: bool = SkipInvalidOption,
    progress: bool = ProgressOption,
) -> None:
    """MovieLens 100K or ml-latest-small."""
    from hybrec.data.movielens import read_movielens

    run_ingest(lambda errors: read_movielens(directory, errors), database_url, skip_invalid, progress)


@app.command("demo-data")
def demo_data_command(
    seed: Annotated[int, typer.Option(help="Random seed: the same seed gives the same shop.")] = 42,
    users: Annotated[int, typer.Option("--users", min=1, help="Number of shoppers.")] = 2000,
    items: Annotated[int, typer.Option("--items", min=1, help="Number of products.")] = 3000,
    database_url: str | None = DatabaseUrlOption,
    progress: bool = ProgressOption,
) -> None:
    """Generate the synthetic demo shop and load it into the store."""
    from hybrec.data.demo import generate_demo_shop

    run_ingest(lambda _errors: generate_demo_shop(seed=seed, n_users=users, n_items=items), database_url, False,
               progress)
