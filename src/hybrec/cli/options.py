"""Options shared by several commands."""

from __future__ import annotations

import typer

from hybrec.config import Settings, get_settings

DatabaseUrlOption = typer.Option(
    None, "--database-url", help="SQLAlchemy URL of the store; overrides HYBREC_DATABASE_URL."
)


def settings_with(database_url: str | None = None) -> Settings:
    """The process settings, with the command-line overrides applied."""
    settings = get_settings()
    if database_url:
        settings = settings.model_copy(update={"database_url": database_url})
    return settings
