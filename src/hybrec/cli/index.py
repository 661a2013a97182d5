"""``hybrec index catalog``: (re)build the product search index from the items of the store, incrementally."""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Annotated

import typer

from hybrec.cli import app
from hybrec.cli.options import DatabaseUrlOption, settings_with
from hybrec.config import Settings

if TYPE_CHECKING:  # the retrieval stack (torch, transformers) loads only when a command runs
    from hybrec.retrieval.catalog_index import IndexReport

log = logging.getLogger(__name__)

index_app = typer.Typer(help="Search indexes built from the store.", no_args_is_help=True)
app.add_typer(index_app, name="index")


def sync_catalog(settings: Settings, *, full: bool = False) -> IndexReport:
    """Bring the product index in line with the store's items (only new and changed items are embedded)."""
    from hybrec.retrieval.catalog_index import CatalogIndex
    from hybrec.retrieval.embedder import get_embedder
    from hybrec.store.migrate import upgrade
    from hybrec.vectors import make_vector_index

    upgrade(settings.database_url)  # an empty store indexes zero items rather than failing on "no such table"
    index = make_vector_index(settings)
    try:
        return CatalogIndex(index, get_embedder(settings)).sync_from_store(settings.database_url, full=full)
    finally:
        index.close()


@index_app.command("catalog")
def catalog_command(
    database_url: str | None = DatabaseUrlOption,
    full: Annotated[
        bool, typer.Option("--full", help="Re-embed every item (e.g. after changing the embedding model).")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as one JSON object.")] = False,
) -> None:
    """Embed the catalog's product texts into the product index; only new and changed items are embedded."""
    from hybrec.retrieval.embedder import EmbeddingModelError
    from hybrec.vectors import VectorStoreError

    try:
        report = sync_catalog(settings_with(database_url), full=full)
    except (EmbeddingModelError, VectorStoreError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=1) from exc
    fields = {
        "total": report.total,
        "added": report.added,
        "updated": report.updated,
        "unchanged": report.unchanged,
        "deleted": report.deleted,
        "skipped": report.skipped,
        "seconds": round(report.seconds, 2),
    }
    if as_json:
        typer.echo(json.dumps(fields))
    else:
        typer.echo(
            f"product index: {report.total} items ({report.added} added, {report.updated} updated, "
            f"{report.unchanged} unchanged, {report.deleted} deleted, {report.skipped} skipped) "
            f"in {report.seconds:.1f}s"
        )
