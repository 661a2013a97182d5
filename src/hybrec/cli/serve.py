"""``hybrec serve`` (everything in one process: embedded mode), ``hybrec serve reco`` and ``hybrec serve chat`` (one
engine per process: production)."""

from __future__ import annotations

import importlib.util
import os
from typing import TYPE_CHECKING

import typer
import uvicorn

from hybrec.cli import app
from hybrec.cli.options import DatabaseUrlOption, settings_with
from hybrec.config import Settings, get_settings

if TYPE_CHECKING:
    from fastapi import FastAPI

serve_app = typer.Typer(help="Run the HTTP API.", no_args_is_help=False)
app.add_typer(serve_app, name="serve")

HostOption = typer.Option("127.0.0.1", "--host", help="Interface to listen on.")
PortOption = typer.Option(8000, "--port", min=1, max=65535, help="TCP port.")
WorkersOption = typer.Option(
    1,
    "--workers",
    min=1,
    help="Server processes sharing the port (uvicorn workers): one Python process answers from one core at a time. "
    "More than one needs HYBREC_REDIS_URL, so that an event posted to one process reaches every process's next "
    "recommendation.",
)
#: How ``run_server`` tells the worker processes which components to serve (they build their app from scratch).
COMPONENTS_ENV = "HYBREC_SERVE_COMPONENTS"


def all_components() -> tuple[str, ...]:
    """Every engine installed in this package: reco and its trainer, plus chat and the web page when they exist."""
    components = ["reco", "trainer"]
    for optional in ("chat", "web"):
        if importlib.util.find_spec(f"hybrec.api.routes.{optional}") is not None:
            components.append(optional)
    return tuple(components)


def run_server(settings: Settings, components: tuple[str, ...], host: str, port: int, workers: int = 1) -> None:
    """Serve ``components`` of the API with uvicorn until interrupted, in ``workers`` processes.

    Several workers each load the model and hold their own item index; they share the store and the user-vector cache,
    which must then be Redis (an in-process cache would keep an event's refolded vector in the one process that took
    the event). Each worker rebuilds the settings from the environment, so the command-line overrides travel there.
    """
    from hybrec.api.app import create_app

    if workers > 1 and not settings.redis_url:
        raise typer.BadParameter(
            "more than one worker needs HYBREC_REDIS_URL: with the in-process user cache, a vector refolded after an "
            "event would stay in the one process that took the event",
            param_hint="--workers",
        )
    typer.echo(f"hybrec API ({', '.join(components)}) on http://{host}:{port}", err=True)
    if workers == 1:
        _uvicorn(create_app(settings, components, warm_up=True, freeze_gc=True), host, port)
        return
    os.environ["HYBREC_DATABASE_URL"] = settings.database_url
    os.environ[COMPONENTS_ENV] = ",".join(components)
    _uvicorn("hybrec.cli.serve:worker_app", host, port, workers=workers)


def _uvicorn(app: FastAPI | str, host: str, port: int, workers: int | None = None) -> None:
    # An import string (of an app factory) for several workers: each process builds its own app.
    uvicorn.run(
        app,
        host=host,
        port=port,
        factory=isinstance(app, str),
        workers=workers,
        log_level="info",
        access_log=False,
        server_header=False,  # no "server: uvicorn" on every response
    )


def worker_app() -> FastAPI:
    """The app of one ``--workers`` process: settings from the environment, the components ``run_server`` named."""
    from hybrec.api.app import create_app

    components = tuple(c for c in os.environ.get(COMPONENTS_ENV, "reco").split(",") if c)
    return create_app(get_settings(), components, warm_up=True, freeze_gc=True)


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
def serve_reco(
    host: str = HostOption,
    port: int = PortOption,
    database_url: str | None = DatabaseUrlOption,
    workers: int = WorkersOption,
) -> None:
    """The collaborative engine's API alone (production: one service per engine, trainer as its own process)."""
    run_server(settings_with(database_url), ("reco",), host, port, workers)


@serve_app.command("chat")
def serve_chat(host: str = HostOption, port: int = PortOption, database_url: str | None = DatabaseUrlOption) -> None:
    """The shopping assistant's API alone, personalised by the live model read from the shared stores."""
    run_server(settings_with(database_url), ("chat",), host, port)
