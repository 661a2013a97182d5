"""``hybrec train`` (one training run now) and ``hybrec trainer`` (the scheduler process)."""

from __future__ import annotations

import json
import signal
from types import FrameType

import typer

from hybrec.cli import app
from hybrec.cli.options import DatabaseUrlOption, settings_with
from hybrec.training.job import run_training
from hybrec.training.lock import TrainerBusy
from hybrec.training.scheduler import TrainingScheduler

EXIT_FAILED = 1
EXIT_REJECTED = 2
EXIT_BUSY = 3


@app.command("train")
def train(
    database_url: str | None = DatabaseUrlOption,
    as_json: bool = typer.Option(False, "--json", help="Print the outcome as JSON."),
) -> None:
    """Train ALS on the stored interactions, evaluate, gate and publish a new model version.

    Exit status: 0 published, 1 failed, 2 not published by the gate (worse than the live model), 3 another trainer
    is running.
    """
    settings = settings_with(database_url)
    try:
        outcome = run_training(settings, show_progress=not as_json)
    except TrainerBusy as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(EXIT_BUSY) from exc
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "version": outcome.version,
                    "status": outcome.status,
                    "metrics": outcome.metrics,
                    "duration_s": round(outcome.duration_s, 3),
                    "error": outcome.error,
                }
            )
        )
    elif outcome.status == "published":
        shown = ", ".join(f"{k} {outcome.metrics[k]:.4f}" for k in ("ndcg@10", "recall@20") if k in outcome.metrics)
        typer.echo(f"model version {outcome.version} published and active ({shown}) in {outcome.duration_s:.1f}s")
    else:
        typer.echo(f"model version {outcome.version} {outcome.status}: {outcome.error}", err=True)
    if outcome.status != "published":
        raise typer.Exit(EXIT_REJECTED if outcome.status == "rejected" else EXIT_FAILED)


@app.command("trainer")
def trainer(
    database_url: str | None = DatabaseUrlOption,
    interval_minutes: float | None = typer.Option(
        None, "--interval-minutes", min=0.01, help="Override HYBREC_TRAIN_INTERVAL_MINUTES."
    ),
    wait_first: bool = typer.Option(False, "--wait-first", help="Wait one interval before the first run."),
) -> None:
    """Run the training scheduler in the foreground: train now, then every interval, until SIGTERM/SIGINT."""
    settings = settings_with(database_url)
    if interval_minutes is not None:
        settings = settings.model_copy(update={"train_interval_minutes": interval_minutes})
    scheduler = TrainingScheduler(settings, run_first=not wait_first)

    def stop(_signum: int, _frame: FrameType | None) -> None:
        scheduler.stop(timeout=0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    scheduler.run_forever()
