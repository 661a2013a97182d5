"""``hybrec evaluate`` (offline metrics table + report folder with plots) and ``hybrec tune`` (parameter search)."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from hybrec.cli import app
from hybrec.config import get_settings

log = logging.getLogger(__name__)

MODELS = ("als", "explicit", "popularity", "random", "implicit")
SPLITS = ("random", "leave-last-out", "strong")
TABLE_COLUMNS = ("recall@20", "ndcg@10", "precision@10", "map@10", "mrr", "hitrate@10", "coverage@10", "rmse")


def _split(data: Any, kind: str, seed: int) -> Any:
    from hybrec.als.evaluation import split_leave_last_out, split_random, split_strong_generalization

    if kind == "random":
        return split_random(data.matrix, 0.2, seed=seed)
    if kind == "leave-last-out":
        return split_leave_last_out(data.matrix, data.timestamps)
    if kind == "strong":
        return split_strong_generalization(data.matrix, 0.1, 0.2, seed=seed)
    raise typer.BadParameter(f"--split must be one of {SPLITS}, got {kind!r}")


def _als_params(params_path: Path | None) -> dict[str, Any]:
    from hybrec.als.tuning import DEFAULT_PARAMS, load_params

    path = params_path or get_settings().als_params_path
    if path.exists():
        return load_params(path)
    if params_path is not None:
        raise typer.BadParameter(f"params file {params_path} does not exist")
    return dict(DEFAULT_PARAMS)


def _make_model(name: str, params: dict[str, Any], threads: int, seed: int) -> Any:
    from hybrec.als import ExplicitALS, ImplicitALS
    from hybrec.als.evaluation import ImplicitBaseline, PopularityModel, RandomModel

    if name == "als":
        return ImplicitALS(**params, num_threads=threads, calculate_training_loss=True)
    if name == "explicit":
        return ExplicitALS(
            factors=params["factors"],
            iterations=params["iterations"],
            seed=seed,
            num_threads=threads,
            calculate_training_loss=True,
        )
    if name == "popularity":
        return PopularityModel()
    if name == "random":
        return RandomModel(seed)
    if name == "implicit":
        return ImplicitBaseline(
            params["factors"], params["regularization"], params["alpha"], params["iterations"], threads, seed
        )
    raise typer.BadParameter(f"--model must be among {MODELS}, got {name!r}")


def _write_report(directory: Path, report: dict[str, Any], losses: dict[str, list[float]]) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory.mkdir(parents=True, exist_ok=True)
    written = [directory / "metrics.json"]
    written[0].write_text(json.dumps(report, indent=2))
    names = list(report["models"])
    shown = [c for c in ("recall@20", "ndcg@10", "map@10", "mrr", "hitrate@10") if c in report["models"][names[0]]]
    fig, ax = plt.subplots(figsize=(1.6 * len(shown) + 3, 4))
    width = 0.8 / max(len(names), 1)
    for n, name in enumerate(names):
        values = [report["models"][name].get(c, 0.0) for c in shown]
        ax.bar([i + n * width for i in range(len(shown))], values, width, label=name)
    ax.set_xticks([i + width * (len(names) - 1) / 2 for i in range(len(shown))], shown)
    ax.set_title(f"{report['dataset']} ({report['split']} split): metrics per model")
    ax.legend()
    fig.tight_layout()
    fig.savefig(directory / "metrics.png", dpi=110)
    plt.close(fig)
    written.append(directory / "metrics.png")
    if losses:
        fig, ax = plt.subplots(figsize=(6, 4))
        for name, history in losses.items():
            ax.plot(range(1, len(history) + 1), history, marker="o", label=name)
        ax.set_xlabel("iteration")
        ax.set_ylabel("training loss (explicit: RMSE)")
        ax.set_title(f"{report['dataset']}: loss per iteration")
        ax.legend()
        fig.tight_layout()
        fig.savefig(directory / "loss.png", dpi=110)
        plt.close(fig)
        written.append(directory / "loss.png")
    return written


def _table(models: dict[str, dict[str, float]]) -> str:
    columns = [c for c in TABLE_COLUMNS if any(c in m for m in models.values())]
    lines = [f"{'model':<12}" + "".join(f"{c:>13}" for c in columns) + f"{'fit s':>9}"]
    for name, metrics in models.items():
        cells = "".join(f"{metrics[c]:>13.4f}" if c in metrics else f"{'-':>13}" for c in columns)
        lines.append(f"{name:<12}{cells}{metrics.get('fit_s', 0.0):>9.2f}")
    return "\n".join(lines)


@app.command("evaluate")
def evaluate(
    dataset: str = typer.Option(..., "--dataset", help="ml-100k | ml-latest-small | amazon-industrial | a CSV path."),
    model: Annotated[
        list[str] | None, typer.Option("--model", help=f"Model(s) to evaluate, among {MODELS}; default all.")
    ] = None,
    split: str = typer.Option("random", "--split", help=f"One of {SPLITS}."),
    k: Annotated[list[int] | None, typer.Option("--k", help="Cut-offs (repeat the option); default 10 and 20.")] = None,
    params: Annotated[
        Path | None, typer.Option("--params", help="ALS params file (default: settings.als_params_path).")
    ] = None,
    report_dir: Annotated[
        Path | None, typer.Option("--report-dir", help="Report folder (default var/reports/...).")
    ] = None,
    threads: int = typer.Option(0, "--threads", help="CPU threads (0 = torch default)."),
    seed: int = typer.Option(0, "--seed"),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Fit each model on a holdout split and print full-catalog metrics (training items excluded)."""
    from hybrec.als.evaluation import evaluate_model
    from hybrec.data.matrices import load_dataset

    settings = get_settings()
    names = model or [m for m in MODELS if m != "implicit" or _implicit_available()]
    unknown = [m for m in names if m not in MODELS]
    if unknown:
        raise typer.BadParameter(f"unknown model(s) {unknown}; choose among {MODELS}")
    try:
        data = load_dataset(dataset, data_dir=settings.shared_data_dir)
    except (ValueError, FileNotFoundError) as exc:
        raise typer.BadParameter(str(exc), param_hint="--dataset") from exc
    holdout = _split(data, split, seed)
    als_params = _als_params(params)
    results: dict[str, dict[str, float]] = {}
    losses: dict[str, list[float]] = {}
    for name in names:
        estimator = _make_model(name, als_params, threads, seed)
        started = time.perf_counter()
        estimator.fit(holdout.train, show_progress=not as_json)
        fit_s = time.perf_counter() - started
        metrics = evaluate_model(estimator, holdout.train, holdout.test, k=k or (10, 20), fold_in=holdout.fold_in)
        if name == "explicit" and holdout.fold_in is None:
            metrics["rmse"] = estimator.rmse(holdout.test)
        metrics["fit_s"] = fit_s
        results[name] = metrics
        if getattr(estimator, "loss_history", None):
            losses[name] = list(estimator.loss_history)
        log.info("%s on %s: %s", name, dataset, {m: round(v, 4) for m, v in metrics.items()})
    slug = Path(dataset).stem if dataset.endswith(".csv") else dataset
    directory = report_dir or settings.var_dir / "reports" / f"evaluate-{slug}-{split}-{time.strftime('%Y%m%d-%H%M%S')}"
    report = {
        "dataset": dataset,
        "split": split,
        "shape": list(data.matrix.shape),
        "nnz": int(data.matrix.nnz),
        "als_params": als_params,
        "models": results,
        "loss_history": losses,
    }
    _write_report(Path(directory), report, losses)
    report["report_dir"] = str(directory)
    if as_json:
        typer.echo(json.dumps(report))
    else:
        typer.echo(
            f"{dataset}: {data.matrix.shape[0]} users x {data.matrix.shape[1]} items, {data.matrix.nnz} "
            f"interactions, {split} split"
        )
        typer.echo(_table(results))
        typer.echo(f"report: {directory}")


def _implicit_available() -> bool:
    try:
        import implicit  # noqa: F401
    except ImportError:
        return False
    return True


def _floats(raw: str | None, name: str) -> list[float] | None:
    if raw is None:
        return None
    try:
        return [float(x) for x in raw.split(",") if x.strip()]
    except ValueError as exc:
        raise typer.BadParameter(f"{name} must be comma-separated numbers, got {raw!r}") from exc


@app.command("tune")
def tune(
    dataset: str = typer.Option(..., "--dataset", help="ml-100k | ml-latest-small | amazon-industrial | a CSV path."),
    search: str = typer.Option("grid", "--search", help="grid | random"),
    trials: int = typer.Option(10, "--trials", help="Random search: number of candidates."),
    factors: str | None = typer.Option(None, "--factors", help="Candidates, e.g. 32,64,128."),
    regularization: str | None = typer.Option(None, "--regularization", help="Candidates, e.g. 0.01,0.1,1."),
    alpha: str | None = typer.Option(None, "--alpha", help="Candidates, e.g. 1,4,16."),
    alpha0: str | None = typer.Option(None, "--alpha0", help="Candidates for the unobserved extra weight."),
    iterations: int = typer.Option(15, "--iterations"),
    metric: str = typer.Option("ndcg@10", "--metric"),
    out: Annotated[
        Path | None, typer.Option("--out", help="Params file to write (default settings.als_params_path).")
    ] = None,
    threads: int = typer.Option(0, "--threads"),
    seed: int = typer.Option(0, "--seed"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Grid or random search over factors, regularisation, alpha (and alpha0) on a validation split; writes the best
    parameters to the params file that training reads."""
    from hybrec.als.tuning import DEFAULT_SPACE, grid_candidates, random_candidates, save_params
    from hybrec.als.tuning import search as run_search
    from hybrec.data.matrices import load_dataset

    settings = get_settings()
    space: dict[str, list[Any]] = dict(DEFAULT_SPACE)
    for name, raw in (("regularization", regularization), ("alpha", alpha), ("alpha0", alpha0)):
        if (values := _floats(raw, f"--{name}")) is not None:
            space[name] = values
    if (values := _floats(factors, "--factors")) is not None:
        space["factors"] = [int(v) for v in values]
    if search not in ("grid", "random"):
        raise typer.BadParameter("--search must be grid or random")
    candidates = grid_candidates(space) if search == "grid" else random_candidates(space, trials, seed)
    try:
        data = load_dataset(dataset, data_dir=settings.shared_data_dir)
    except (ValueError, FileNotFoundError) as exc:
        raise typer.BadParameter(str(exc), param_hint="--dataset") from exc
    result = run_search(
        data.matrix, candidates, {"iterations": iterations, "seed": seed}, metric=metric, seed=seed, num_threads=threads
    )
    best = result.best
    path = save_params(
        out or settings.als_params_path,
        best.params,
        selected_by=f"{search} search ({len(candidates)} candidates) on {dataset}, validation {metric}",
        dataset=dataset,
        metric=metric,
        score=round(best.metrics[metric], 5),
        tuned_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "best": best.params,
                    "score": best.metrics[metric],
                    "params_file": str(path),
                    "trials": [{"params": t.params, metric: t.metrics[metric]} for t in result.trials],
                }
            )
        )
    else:
        for trial in result.trials[:10]:
            shown = {k: trial.params[k] for k in space}
            typer.echo(f"{metric} {trial.metrics[metric]:.4f}  {shown}")
        typer.echo(f"best parameters written to {path}")
