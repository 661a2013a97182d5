"""``hybrec serve`` (everything in one process: embedded mode), ``hybrec serve reco`` and ``hybrec serve chat`` (one
engine per process: production)."""

from __future__ import annotations

import importlib.util

import typer
import uvicorn

from hybrec.cli import app
from hybrec.cli.options import DatabaseUrlOption, settings_with
from hybrec.config import Settings

serve_app = typer.Typer(help="Run the HTTP API.", no_args_is_help=False)
app.add_typer(serve_app, name="serve")

HostOption = typer.Option("127.0.0.1", "--host", help="Interface to listen on.")
PortOption = typer.Option(8000, "--port", min=1, max=65535, help="TCP port.")


def all_components() -> tuple[str, ...]:
    """Every engine installed in this package: reco and its trainer, plus chat and the web page when they exist."""
    components = ["reco", "trainer"]
    for optional in ("chat", "web"):
        if importlib.util.find_spec(f"hybrec.api.routes.{optional}") is not None:
            components.append(optional)
    return tuple(components)


def run_server(settings: Settings, components: tuple[str, ...], host: str, port: int) -> None:
    """Serve ``components`` of the API with uvicorn until interrupted."""
    from hybrec.api.app import create_app

    typer.echo(f"hybrec API ({', '.join(components)}) on http://{host}:{port}", err=True)
    uvicorn.run(
        create_app(settings, components),
        host=host,
        port=port,
        log_level="info",
        access_log=False,
        server_header=False,  # no "server: uvicorn" on every response
    )


@serve_app.callback(invoke_without_command=True)
def serve(
    ctx: typer.Context,
    host: str = HostOption,
    port: int = PortOption,
    database_url: str | None = DatabaseUrlOption,
) -> None:
    """Everything in one process (embedded mode): recommendations, the trainer on its schedule, chat if present."""
    if ctx.invoked_subcommand is None:
        run_server(settings_with(database_url), all_components(), host, port)


@serve_app.command("reco")
def serve_reco(host: str = HostOption, port: int = PortOption, database_url: str | None = DatabaseUrlOption) -> None:
    """The collaborative engine's API alone (production: one service per engine, trainer as its own process)."""
    run_server(settings_with(database_url), ("reco",), host, port)


@serve_app.command("chat")
def serve_chat(host: str = HostOption, port: int = PortOption, database_url: str | None = DatabaseUrlOption) -> None:
    """The shopping assistant's API alone, personalised by the live model read from the shared stores."""
    run_server(settings_with(database_url), ("chat",), host, port)
