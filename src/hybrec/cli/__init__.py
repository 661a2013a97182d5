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


# Each module adds its commands to `app` when imported (at the end: they import `app` from here).
from hybrec.cli import als, chat, db, index, ingest, provision, serve, train, up  # noqa: E402, F401
