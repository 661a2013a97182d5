"""Commands a production deployment runs around the servers (``deploy/docker-compose.yaml``,
``scripts/run-production-local``):

* ``hybrec ingest configured`` — migrate the schema, then load ``HYBREC_DATASET`` into a store that has no
  interactions yet (a one-shot container: running it again on a loaded store changes nothing);
* ``hybrec llm pull`` — make the Ollama server download ``HYBREC_LLM_MODEL`` through its native ``/api/pull``;
* ``hybrec model active`` — print the live model version, exit 1 when there is none (the trainer's health check:
  the engines start once a model is live).
"""

from __future__ import annotations

import json
import logging
from typing import Annotated

import typer

from hybrec.cli import app
from hybrec.cli.ingest import ProgressOption, ingest_app, run_ingest
from hybrec.cli.options import DatabaseUrlOption, settings_with
from hybrec.config import Settings

log = logging.getLogger(__name__)

llm_app = typer.Typer(help="The LLM server: pull the configured model.", no_args_is_help=True)
app.add_typer(llm_app, name="llm")
model_app = typer.Typer(help="ALS model versions in the store.", no_args_is_help=True)
app.add_typer(model_app, name="model")


def load_configured_dataset(settings: Settings, *, progress: bool = True) -> bool:
    """Migrate the store's schema and load ``settings.dataset`` into it when it holds no interactions.

    Parameters
    ----------
    settings : Settings
        ``database_url`` (the store), ``dataset`` and ``shared_data_dir`` (what to load, as ``hybrec up`` reads them:
        unset or ``demo`` = the synthetic demo shop, a named public dataset, or a path).
    progress : bool, default True
        Show progress bars while reading and loading.

    Returns
    -------
    bool
        True when the dataset was loaded; False when the store already had interactions and was left alone.
    """
    from hybrec.cli.up import dataset_reader
    from hybrec.store.engine import session_scope
    from hybrec.store.migrate import upgrade
    from hybrec.store.queries import store_counts

    upgrade(settings.database_url)
    with session_scope(settings.database_url) as session:
        counts = store_counts(session)
    if counts["interactions"] > 0:
        typer.echo(
            f"store already loaded: {counts['users']:,} users, {counts['items']:,} items, "
            f"{counts['interactions']:,} interactions; nothing to do"
        )
        return False
    label, read = dataset_reader(settings)  # raises BadParameter for an unknown name or a missing path
    typer.echo(f"store is empty: loading {label}")
    run_ingest(read, settings.database_url, skip_invalid=False, progress=progress)
    return True


@ingest_app.command("configured")
def configured_command(database_url: str | None = DatabaseUrlOption, progress: bool = ProgressOption) -> None:
    """Migrate the schema, then load HYBREC_DATASET (default: the demo shop) if the store has no interactions yet."""
    load_configured_dataset(settings_with(database_url), progress=progress)


@llm_app.command("pull")
def pull_command(
    model: Annotated[str | None, typer.Option("--model", help="Model tag; default HYBREC_LLM_MODEL.")] = None,
    base_url: Annotated[
        str | None, typer.Option("--base-url", help="Ollama URL (with or without /v1); default HYBREC_LLM_BASE_URL.")
    ] = None,
    progress: bool = ProgressOption,
) -> None:
    """Make the Ollama server download the chat model (a quick no-op when it already has it)."""
    from hybrec.llm.base import LLMError
    from hybrec.llm.ollama import pull_model

    settings = settings_with(None)
    url = base_url or settings.llm_base_url
    tag = model or settings.llm_model
    if base_url is None and settings.llm_backend != "ollama":
        # Only Ollama has /api/pull; a vLLM or llama.cpp server loads its model at start and would answer 404.
        typer.echo(
            f"error: HYBREC_LLM_BACKEND is {settings.llm_backend!r}: pulling needs an Ollama server "
            "(set HYBREC_LLM_BACKEND=ollama, or name the server with --base-url)",
            err=True,
        )
        raise typer.Exit(1)
    typer.echo(f"pulling {tag} through {url}")
    try:
        pull_model(url, tag, progress=progress)
    except (LLMError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"{tag} is on the server")


@model_app.command("active")
def active_command(
    database_url: str | None = DatabaseUrlOption,
    as_json: Annotated[bool, typer.Option("--json", help="Print the version as one JSON object.")] = False,
) -> None:
    """Print the live model version; exit 1 when none is live (or the store cannot be read)."""
    # Only SQLAlchemy here: this runs as a health check every few seconds, so it must not load torch.
    from sqlalchemy.exc import SQLAlchemyError

    from hybrec.store.engine import session_scope
    from hybrec.store.model_versions import active_model_version

    url = settings_with(database_url).database_url
    try:
        with session_scope(url) as session:
            row = active_model_version(session)
            found = (
                None
                if row is None
                else {"version": row.id, "created_at": row.created_at.isoformat(), "metrics": dict(row.metrics or {})}
            )
    except SQLAlchemyError as exc:
        typer.echo(f"error: cannot read the model versions: {type(exc).__name__}: {exc}".splitlines()[0], err=True)
        raise typer.Exit(1) from exc
    if found is None:
        typer.echo("no model version is live yet (the trainer publishes one after its first run)", err=True)
        raise typer.Exit(1)
    typer.echo(json.dumps(found) if as_json else f"model version {found['version']} is live")
