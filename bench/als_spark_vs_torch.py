"""hybrec's torch ALS vs the Spark MLlib backend, on the same data, split and hyperparameters.

    python bench/als_spark_vs_torch.py --dataset ml-100k --master 'local[2]' --threads 2

Fits each backend ``--repeats`` times (keeping the fastest fit) after one warm-up fit, so the Spark number excludes
JVM start-up and first-job compilation, which are reported separately (``session_start_s``, ``first_fit_s``).
Prints one JSON line: {"dataset", "params", "torch": {...}, "spark": {...}, "popularity": {...}, "machine": {...}}.
"""

from __future__ import annotations

import argparse
import json
import os
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (match the local master's cores)")
    parser.add_argument("--factors", type=int, default=64)
    parser.add_argument("--regularization", type=float, default=0.01)
    parser.add_argument("--alpha", type=float, default=1.0)
    parser.add_argument("--iterations", type=int, default=15)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import torch

    from hybrec.als import ImplicitALS
    from hybrec.als.evaluation import PopularityModel, evaluate_model, split_random
    from hybrec.als.kernel import fused_kernel_or_none
    from hybrec.als.spark import SparkImplicitALS, get_spark_session, mllib_reg_param, stop_spark_session
    from hybrec.data.matrices import load_dataset

    torch.set_num_threads(args.threads)
    data = load_dataset(args.dataset, seed=args.seed)
    split = split_random(data.matrix, 0.2, seed=args.seed)
    params = {
        "factors": args.factors,
        "regularization": args.regularization,
        "alpha": args.alpha,
        "iterations": args.iterations,
        "seed": args.seed,
    }
    k = (10, 20)

    def timed_fits(make) -> tuple[object, float, float]:  # type: ignore[no-untyped-def]
        started = time.perf_counter()
        model = make().fit(split.train, show_progress=False)
        first = time.perf_counter() - started
        best = float("inf")
        for _ in range(args.repeats):
            started = time.perf_counter()
            model = make().fit(split.train, show_progress=False)
            best = min(best, time.perf_counter() - started)
        return model, first, best

    def quality(model: object) -> dict[str, float]:
        metrics = evaluate_model(model, split.train, split.test, k=k)
        return {name: round(metrics[name], 4) for name in ("ndcg@10", "recall@20")}

    fused_kernel_or_none()
    torch_model, torch_first, torch_best = timed_fits(lambda: ImplicitALS(**params, num_threads=args.threads))
    started = time.perf_counter()
    get_spark_session(args.master)
    session_s = time.perf_counter() - started
    try:
        spark_model, spark_first, spark_best = timed_fits(lambda: SparkImplicitALS(**params, master=args.master))
    finally:
        stop_spark_session()
    result = {
        "dataset": args.dataset,
        "shape": list(data.matrix.shape),
        "train_nnz": int(split.train.nnz),
        "params": params,
        "torch": {"fit_s": round(torch_best, 3), "first_fit_s": round(torch_first, 3), **quality(torch_model)},
        "spark": {
            "master": args.master,
            "reg_param": mllib_reg_param(split.train, args.regularization),
            "session_start_s": round(session_s, 3),
            "first_fit_s": round(spark_first, 3),
            "fit_s": round(spark_best, 3),
            **quality(spark_model),
        },
        "popularity": quality(PopularityModel().fit(split.train)),
        "machine": {"cpus": os.cpu_count(), "torch_threads": args.threads},
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
