"""``hybrec db``: schema migrations and store statistics."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from sqlalchemy import make_url

from hybrec.cli import app
from hybrec.cli.options import DatabaseUrlOption, settings_with

db_app = typer.Typer(help="The relational store: migrations and statistics.", no_args_is_help=True)
app.add_typer(db_app, name="db")


def _display(database_url: str) -> str:
    return make_url(database_url).render_as_string(hide_password=True)


@db_app.command("upgrade")
def upgrade_command(
    database_url: str | None = DatabaseUrlOption,
    revision: Annotated[str, typer.Option(help="Alembic revision to upgrade to.")] = "head",
) -> None:
    """Create or migrate the schema of the store to the latest revision."""
    from hybrec.store.migrate import current_revision, upgrade

    url = settings_with(database_url).database_url
    upgrade(url, revision)
    typer.echo(f"{_display(url)}: schema at revision {current_revision(url)}")


@db_app.command("stats")
def stats_command(
    database_url: str | None = DatabaseUrlOption,
    as_json: Annotated[bool, typer.Option("--json", help="Print the counts as one JSON object.")] = False,
) -> None:
    """Row counts of users, items, interactions, chat messages and model versions."""
    from hybrec.store.engine import session_scope
    from hybrec.store.migrate import upgrade
    from hybrec.store.queries import store_counts

    url = settings_with(database_url).database_url
    upgrade(url)  # an empty store reports zeros rather than "no such table"
    with session_scope(url) as session:
        counts = store_counts(session)
    if as_json:
        typer.echo(json.dumps(counts))
        return
    typer.echo(_display(url))
    for name, count in counts.items():
        typer.echo(f"  {name:<15} {count:>12,}")
