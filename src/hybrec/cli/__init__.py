"""The ``hybrec`` command line: one Typer app assembled from one module per concern.

Each concern registers its commands in its own module (``cli/ingest.py``, ``cli/db.py``, ``cli/als.py`` ...), so a
file stays readable in one sitting; this module only wires them together.
"""

from __future__ import annotations

import logging

import typer

app = typer.Typer(
    name="hybrec",
    help="hybrec: a self-hostable hybrid recommendation platform (ALS + LLM shopping assistant).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def main(verbose: bool = typer.Option(False, "--verbose", "-v", help="Log debug lines.")) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not verbose:
        # Alembic logs every plugin and migration step at INFO on each command that checks the schema.
        logging.getLogger("alembic").setLevel(logging.WARNING)


def _register() -> None:
    # Imported for their side effect of adding commands to `app`; each module is optional while the product grows.
    import importlib

    for name in ("db", "ingest", "als", "train", "serve", "index", "chat", "up"):
        try:
            importlib.import_module(f"hybrec.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"hybrec.cli.{name}":
                raise


_register()
