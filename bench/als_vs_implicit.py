"""hybrec ALS vs benfred/implicit, side by side on the same data, split, hyperparameters and threads.

    python bench/als_vs_implicit.py --dataset ml-100k --json
    python bench/als_vs_implicit.py --dataset path/to/file.csv --json     # header user,item,value

Each model runs in a child process of this one invocation (so peak RSS is measured per model; implicit's child gets
``OPENBLAS_NUM_THREADS=1`` as its documentation asks); all children load the same data and the same seeded split.
``--repeats N`` alternates the ALS children N times and keeps the fastest fit, which matters on a shared machine.
``--device cuda`` fits hybrec on a GPU (its PyTorch solvers; ``gpu_peak_mb`` is then reported); ``--models hybrec``
leaves implicit out (a GPU machine without it), and the ratios are reported only when both ran.
Prints one JSON line: {"dataset", "hybrec": {...}, "implicit": {...}, "popularity": {...}, "machine": {...}}.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _worker(args: argparse.Namespace) -> dict:
    import numpy as np
    import psutil
    import torch

    from hybrec.als import ImplicitALS
    from hybrec.als.evaluation import ImplicitBaseline, PopularityModel, evaluate_model, split_random
    from hybrec.data.matrices import load_dataset

    torch.set_num_threads(args.threads)
    data = load_dataset(args.dataset, seed=args.seed)
    split = split_random(data.matrix, 0.2, seed=args.seed)
    rss_before = psutil.Process().memory_info().rss / 2**20
    if args.worker == "hybrec":
        model = ImplicitALS(
            factors=args.factors,
            regularization=args.regularization,
            alpha=args.alpha,
            iterations=args.iterations,
            num_threads=args.threads,
            seed=args.seed,
            device=args.device,
        )
        from hybrec.als.kernel import fused_kernel_or_none

        if args.device == "cpu":
            fused_kernel_or_none()  # load (or build) the kernel outside the timed fit
        else:
            torch.zeros(1, device=args.device).sum().item()  # CUDA context created outside the timed fit
    elif args.worker == "implicit":
        model = ImplicitBaseline(
            args.factors, args.regularization, args.alpha, args.iterations, args.threads, args.seed
        )
    else:
        model = PopularityModel()
    started = time.perf_counter()
    model.fit(split.train, show_progress=False)
    fit_s = time.perf_counter() - started
    peak_fit = _peak_rss_mb()
    result = {"fit_s": round(fit_s, 4), "s_per_iter": round(fit_s / args.iterations, 4)}
    rng = np.random.default_rng(args.seed)
    users = rng.choice(split.train.shape[0], size=min(args.recommend_users, split.train.shape[0]), replace=False)
    if args.worker in ("hybrec", "implicit"):
        model.recommend(users[:100], n=10)  # warm-up
        started = time.perf_counter()
        model.recommend(users, n=10)
        result["recommend_s"] = round(time.perf_counter() - started, 4)
        result["recommend_users"] = len(users)
    eval_users = None
    if args.eval_users:
        eval_users = np.random.default_rng(args.seed + 1).choice(
            split.train.shape[0], size=min(args.eval_users, split.train.shape[0]), replace=False
        )
    metrics = evaluate_model(model, split.train, split.test, k=(10, 20), users=eval_users)
    result.update(
        {
            "recall@20": round(metrics["recall@20"], 4),
            "ndcg@10": round(metrics["ndcg@10"], 4),
            "map@10": round(metrics["map@10"], 4),
            "mrr": round(metrics["mrr"], 4),
            "coverage@10": round(metrics["coverage@10"], 4),
        }
    )
    result["peak_rss_mb"] = round(peak_fit, 1)
    if args.worker == "hybrec" and args.device != "cpu":
        result["device"] = torch.cuda.get_device_name()
        result["gpu_peak_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    result["fit_rss_delta_mb"] = round(peak_fit - rss_before, 1)
    result["shape"] = list(data.matrix.shape)
    result["nnz"] = int(data.matrix.nnz)
    return result


def _run_child(args: argparse.Namespace, worker: str) -> dict:
    env = dict(os.environ)
    if worker == "implicit":
        env["OPENBLAS_NUM_THREADS"] = "1"
    command = [
        sys.executable,
        __file__,
        "--worker",
        worker,
        "--dataset",
        args.dataset,
        "--factors",
        str(args.factors),
        "--iterations",
        str(args.iterations),
        "--regularization",
        str(args.regularization),
        "--alpha",
        str(args.alpha),
        "--threads",
        str(args.threads),
        "--seed",
        str(args.seed),
        "--recommend-users",
        str(args.recommend_users),
        "--eval-users",
        str(args.eval_users),
        "--device",
        args.device if worker == "hybrec" else "cpu",
    ]
    out = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{worker} child failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    parser.add_argument("--factors", type=int, default=64)
    parser.add_argument("--iterations", type=int, default=15)
    parser.add_argument("--regularization", type=float, default=0.01)
    parser.add_argument("--alpha", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--recommend-users", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--eval-users", type=int, default=0, help="evaluate a seeded sample of users (0 = all)")
    parser.add_argument("--device", default="cpu", help="torch device of hybrec's model (cpu, cuda)")
    parser.add_argument("--models", default="implicit,hybrec", help="ALS models to run, comma-separated")
    parser.add_argument("--worker", choices=["hybrec", "implicit", "popularity"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(_worker(args)))
        return 0
    load_before = os.getloadavg()
    models = [m for m in ("implicit", "hybrec") if m in args.models.split(",")]
    if not models:
        parser.error(f"--models must name implicit and/or hybrec, got {args.models!r}")
    runs: dict[str, list[dict]] = {model: [] for model in models}
    for _ in range(max(1, args.repeats)):
        for worker in models:
            runs[worker].append(_run_child(args, worker))
    report: dict = {"dataset": args.dataset}
    for worker, results in runs.items():
        best = min(results, key=lambda r: r["s_per_iter"])
        best["s_per_iter_all"] = [r["s_per_iter"] for r in results]
        if len(results) > 1:
            best["recommend_s"] = min(r["recommend_s"] for r in results)
        report[worker] = best
    report["popularity"] = _run_child(args, "popularity")
    for key in ("fit_s", "s_per_iter", "shape", "nnz", "peak_rss_mb", "fit_rss_delta_mb"):
        report["popularity"].pop(key, None)
    if "hybrec" in report:
        h = report["hybrec"]
        report["ratios"] = {
            "ndcg@10_vs_popularity": round(h["ndcg@10"] / max(report["popularity"]["ndcg@10"], 1e-12), 3)
        }
        if "implicit" in report:
            i = report["implicit"]
            report["ratios"].update(
                {
                    "s_per_iter": round(h["s_per_iter"] / i["s_per_iter"], 3),
                    "recommend_s": round(h["recommend_s"] / i["recommend_s"], 3),
                    "peak_rss_mb": round(h["peak_rss_mb"] / i["peak_rss_mb"], 3),
                    "recall@20_diff": round(h["recall@20"] - i["recall@20"], 4),
                    "ndcg@10_diff": round(h["ndcg@10"] - i["ndcg@10"], 4),
                }
            )
    report["params"] = {
        "factors": args.factors,
        "iterations": args.iterations,
        "regularization": args.regularization,
        "alpha": args.alpha,
        "threads": args.threads,
        "device": args.device,
        "split": "random 80/20 per user",
        "eval_users": args.eval_users or "all",
        "seed": args.seed,
    }
    report["machine"] = {
        "cpus": os.cpu_count(),
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
    }
    line = json.dumps(report)
    if not args.json:
        print(json.dumps(report, indent=1), file=sys.stderr)
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
