"""Benchmark the recommendation API under load, for both item-index backends, against a trivial endpoint.

Usage::

    python bench/reco_api.py --json [--items 100000 --users 50000 --factors 64 --duration 15 --concurrency 16]

Builds a store (SQLite) with ``--items`` items and ``--users`` users (``--per-user`` interactions each), an ALS model of
``--factors`` factors with ALS-like random factors (serving cost does not depend on how factors were fitted), and
publishes it through the real publish path (:func:`hybrec.training.publish.publish_version`): once into the exact
in-process index, once into a Chroma server started here. For each backend it starts ``hybrec serve reco`` (uvicorn,
one process) and drives it from a separate load process on loopback (httpx async, closed loop, ``--concurrency``
requests in flight; ``wrk`` instead when installed, see ``--load-generator``) with
``GET /v1/users/{random user}/recommendations?n=10``, then the trivial ``GET /health`` of the same server (a
coroutine, answered on the event loop) as the ceiling. Prints one JSON object per backend (``--json``: a JSON list)::

    {"backend", "rps", "p50_ms", "p99_ms", "ceiling_rps", "ceiling_p50_ms", "ceiling_p99_ms", "errors",
     "cpu_ms_per_request", "ceiling_cpu_ms_per_request", "load_avg", "ceiling_load_avg", ...}

plus ``recall_at_10_vs_exact`` for Chroma (top-10 of 200 user vectors, Chroma against exact).

``--concurrency 16,64`` measures both endpoints at each level (``by_concurrency``: rps, p99, the ceiling and the share
at that level); the top-level figures are the first level's. The levels answer different questions: a closed loop of
16 requests measures latency-bound throughput, and the exact index's server spends part of it idle there (its event
loop waits while every request in flight is in the search thread's batch, and the search thread waits while the loop
answers them), so only more requests in flight measure the most it can serve.

``--workers N`` runs ``hybrec serve reco --workers N`` (uvicorn worker processes; it needs a shared user-vector cache,
so the bench points them at ``--redis-url``, a Redis database whose hybrec ``default`` namespace it clears first).

``cpu_ms_per_request`` is the server's CPU time (every process and thread of it, from ``/proc``) over the requests the
load generator completed while it was measured (after a warm-up run). On a machine shared with other
work, req/s and latencies move with the neighbours' load (``load_avg`` is sampled right after each load); CPU per
request moves much less, so it is the number to compare variants measured at different times.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from vector_index import als_like, start_chroma  # bench scripts share helpers by path

HYBREC = str(Path(sys.executable).parent / "hybrec")


# --- load generator (runs in its own process) ------------------------------------------------------------------------


async def _drive(
    base_url: str, template: str, n_ids: int, duration: float, concurrency: int, warmup: float
) -> dict[str, Any]:
    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=30) as client:
        start = time.perf_counter()
        measure_from = start + warmup
        stop_at = measure_from + duration

        async def worker(seed: int) -> None:
            nonlocal errors
            rng = random.Random(seed)
            while True:
                t0 = time.perf_counter()
                if t0 >= stop_at:
                    return
                try:
                    response = await client.get(template.format(rng.randrange(n_ids)))
                    ok = response.status_code == 200
                except httpx.HTTPError:
                    ok = False
                t1 = time.perf_counter()
                if t0 >= measure_from:
                    if ok:
                        latencies.append(t1 - t0)
                    else:
                        errors += 1

        await asyncio.gather(*(worker(i) for i in range(concurrency)))
    ms = np.asarray(latencies) * 1000
    return {
        "rps": len(latencies) / duration,
        "p50_ms": float(np.percentile(ms, 50)) if len(ms) else None,
        "p99_ms": float(np.percentile(ms, 99)) if len(ms) else None,
        "errors": errors,
        "requests": len(latencies),
    }


_WRK_SCRIPT = """
math.randomseed(%(seed)d)
local prefix, suffix, n_ids = %(prefix)s, %(suffix)s, %(n_ids)d
request = function()
  local path = prefix
  if n_ids > 1 or suffix ~= "" then path = prefix .. math.random(0, n_ids - 1) .. suffix end
  return wrk.format("GET", path)
end
done = function(summary, latency, requests)
  local e = summary.errors
  local fmt = 'WRK_JSON {"requests": %%d, "duration_us": %%d, "errors": %%d, "p50_us": %%f, "p99_us": %%f}\\n'
  io.write(string.format(fmt,
    summary.requests, summary.duration, e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


def load_wrk(
    base_url: str, template: str, n_ids: int, duration: float, concurrency: int, warmup: float = 2.0
) -> dict[str, Any]:
    """Drive the server with ``wrk`` (C, one thread, ``concurrency`` connections): a load generator that is not
    itself the ceiling, unlike a Python client on a 2-core machine. Same result keys as :func:`load`."""
    prefix, _, suffix = template.partition("{}")
    wrk = shutil.which("wrk")
    if wrk is None:
        raise RuntimeError("wrk is not installed")
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(
            _WRK_SCRIPT % {"seed": 0, "prefix": json.dumps(prefix), "suffix": json.dumps(suffix), "n_ids": n_ids}
        )
    try:
        common = [wrk, "-t1", f"-c{concurrency}", "-s", script.name, "--timeout", "30s"]
        if warmup > 0:
            subprocess.run([*common, f"-d{max(1, round(warmup))}s", base_url], capture_output=True, check=True)
        out = subprocess.run(
            [*common, f"-d{max(1, round(duration))}s", base_url], capture_output=True, text=True, check=True
        ).stdout
    finally:
        Path(script.name).unlink(missing_ok=True)
    line = next(x for x in out.splitlines() if x.startswith("WRK_JSON "))
    raw = json.loads(line.removeprefix("WRK_JSON "))
    ok = raw["requests"] - raw["errors"]
    return {
        "rps": ok / (raw["duration_us"] / 1e6),
        "p50_ms": raw["p50_us"] / 1000 if ok else None,
        "p99_ms": raw["p99_us"] / 1000 if ok else None,
        "errors": raw["errors"],
        "requests": ok,
    }


def load(
    base_url: str, template: str, n_ids: int, duration: float, concurrency: int, warmup: float = 2.0
) -> dict[str, Any]:
    """Run the load generator in a separate process (it must not share the server's interpreter).

    Each request path is ``template.format(random id in [0, n_ids))``.
    """
    spec = json.dumps(
        {
            "base_url": base_url,
            "template": template,
            "n_ids": n_ids,
            "duration": duration,
            "concurrency": concurrency,
            "warmup": warmup,
        }
    )
    result = subprocess.run([sys.executable, __file__, "--load", spec], capture_output=True, text=True, check=True)
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


# --- fixtures: store, model, publish ---------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def build_store(database_url: str, n_items: int, n_users: int, per_user: int, seed: int) -> Any:
    """Items with category/brand/price, users with ``per_user`` interactions each; returns the interaction matrix."""
    from hybrec.data.matrices import from_triples
    from hybrec.data.records import ErrorCollector, InteractionRecord, ItemRecord, SourceData, UserRecord
    from hybrec.ingest import ingest

    rng = np.random.default_rng(seed)
    popularity = 1.0 / np.arange(1, n_items + 1) ** 0.8
    picks = rng.choice(n_items, size=(n_users, per_user), p=popularity / popularity.sum())
    ts = datetime(2025, 1, 1, tzinfo=UTC)
    items = [
        ItemRecord(
            f"i{i}",
            f"item {i}",
            category=f"cat{i % 20}",
            brand=f"brand{i % 300}",
            price=float(5 + (i * 37) % 200),
            avg_rating=float(1 + (i * 13) % 40 / 10),
        )
        for i in range(n_items)
    ]
    users = [UserRecord(f"u{u}") for u in range(n_users)]
    interactions = [
        InteractionRecord(f"u{u}", f"i{int(i)}", "click", ts, weight=1.0, idempotency_key=f"b{u}-{k}")
        for u in range(n_users)
        for k, i in enumerate(picks[u])
    ]
    ingest(SourceData("bench", users, items, interactions), database_url, ErrorCollector(), progress=False)
    rows = np.repeat([f"u{u}" for u in range(n_users)], per_user)
    cols = np.asarray([f"i{int(i)}" for i in picks.ravel()])
    return from_triples(rows, cols, np.ones(len(rows)), name="bench")


def publish(settings: Any, data: Any, factors: int, index: Any, seed: int) -> int:
    """Publish an ALS model with ALS-like random factors for ``data`` through the real publish path."""
    import torch

    from hybrec.als import ImplicitALS
    from hybrec.training import versions
    from hybrec.training.publish import publish_version
    from hybrec.vectors.memory_cache import MemoryUserVectorCache

    rng = np.random.default_rng(seed)
    model = ImplicitALS(factors=factors)
    model.user_factors = torch.from_numpy(als_like(len(data.user_ids), factors, rng))
    model.item_factors = torch.from_numpy(als_like(len(data.item_ids), factors, rng))
    version = versions.start_version(settings, model.get_params())
    versions.update_version(
        settings, version, n_users=len(data.user_ids), n_items=len(data.item_ids), n_interactions=int(data.matrix.nnz)
    )
    # The serving process has its own in-process cache: users are served from the artifact's factors (as after
    # `hybrec train` in another process), so no vectors need to be cached here.
    publish_version(settings, version, model, data, {"ndcg@10": 0.0}, MemoryUserVectorCache(), index)
    return version


def chroma_recall(chroma_url: str, var_dir: Path, exact_version: int, chroma_version: int, seed: int) -> float:
    """Recall@10 of the Chroma collection against exact search, over 200 random item vectors as queries."""
    from hybrec.vectors.chroma_index import ChromaVectorIndex
    from hybrec.vectors.exact_index import ExactVectorIndex

    exact = ExactVectorIndex(var_dir / "index")
    chroma = ChromaVectorIndex.from_url(chroma_url)
    ids = exact.ids(f"als_items_v{exact_version}")
    rng = np.random.default_rng(seed)
    queries = exact.get_vectors(f"als_items_v{exact_version}", [ids[i] for i in rng.choice(len(ids), 200)])
    truth = exact.query(f"als_items_v{exact_version}", queries, 10)
    got = chroma.query(f"als_items_v{chroma_version}", queries, 10)
    shares = [len({h.id for h in t} & {h.id for h in g}) / 10 for t, g in zip(truth, got, strict=True)]
    return float(np.mean(shares))


# --- one backend ------------------------------------------------------------------------------------------------------


def serve_and_measure(env: dict[str, str], workdir: Path, n_users: int, args: argparse.Namespace) -> dict[str, Any]:
    port = _free_port()
    log = (workdir / f"serve-{port}.log").open("wb")
    server = subprocess.Popen(
        [HYBREC, "serve", "reco", "--host", "127.0.0.1", "--port", str(port), "--workers", str(args.workers)],
        env=env,
        cwd=workdir,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"server exited: {(workdir / f'serve-{port}.log').read_text()[-2000:]}")
            try:
                if httpx.get(f"{base}/ready", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("server never became ready")
            time.sleep(0.5)
        drive = load_wrk if args.load_generator == "wrk" else load

        def measured(
            template: str, n_ids: int, concurrency: int
        ) -> tuple[dict[str, Any], float | None, tuple[float, ...]]:
            drive(base, template, n_ids, 2.0, concurrency, warmup=0)  # warm-up, not counted
            cpu_before = server_cpu_s(server.pid)
            result = drive(base, template, n_ids, args.duration, concurrency, warmup=0)
            load_avg = os.getloadavg()
            cpu = 1000 * (server_cpu_s(server.pid) - cpu_before) / result["requests"] if result["requests"] else None
            return result, None if cpu is None else round(cpu, 3), load_avg

        first, *more = args.concurrency
        reco, reco_cpu, reco_load_avg = measured("/v1/users/u{}/recommendations?n=10", n_users, first)
        server_side = server_means(httpx.get(f"{base}/metrics", timeout=30).text)
        ceiling, ceiling_cpu, ceiling_load_avg = measured("/health", 1, first)
        levels = [_level(first, reco, reco_cpu, ceiling)]
        for concurrency in more:
            at_level, at_level_cpu, _ = measured("/v1/users/u{}/recommendations?n=10", n_users, concurrency)
            levels.append(_level(concurrency, at_level, at_level_cpu, measured("/health", 1, concurrency)[0]))
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
    return {
        "rps": round(reco["rps"], 1),
        "p50_ms": round(reco["p50_ms"], 2) if reco["p50_ms"] is not None else None,
        "p99_ms": round(reco["p99_ms"], 2) if reco["p99_ms"] is not None else None,
        "ceiling_rps": round(ceiling["rps"], 1),
        "ceiling_p50_ms": round(ceiling["p50_ms"], 2) if ceiling["p50_ms"] is not None else None,
        "ceiling_p99_ms": round(ceiling["p99_ms"], 2) if ceiling["p99_ms"] is not None else None,
        "share_of_ceiling": round(reco["rps"] / ceiling["rps"], 3) if ceiling["rps"] else None,
        "errors": reco["errors"] + ceiling["errors"],
        "load_generator": args.load_generator,
        "workers": args.workers,
        "cpu_ms_per_request": reco_cpu,
        "ceiling_cpu_ms_per_request": ceiling_cpu,
        "load_avg": [round(x, 2) for x in reco_load_avg],
        "ceiling_load_avg": [round(x, 2) for x in ceiling_load_avg],
        "server_mean_ms": server_side,
        "by_concurrency": levels,
    }


def _level(concurrency: int, reco: dict[str, Any], cpu: float | None, ceiling: dict[str, Any]) -> dict[str, Any]:
    """The recommendation endpoint and the ceiling measured at one ``concurrency`` (``--concurrency`` lists several)."""
    return {
        "concurrency": concurrency,
        "rps": round(reco["rps"], 1),
        "p99_ms": round(reco["p99_ms"], 2) if reco["p99_ms"] is not None else None,
        "ceiling_rps": round(ceiling["rps"], 1),
        "share_of_ceiling": round(reco["rps"] / ceiling["rps"], 3) if ceiling["rps"] else None,
        "cpu_ms_per_request": cpu,
        "errors": reco["errors"] + ceiling["errors"],
    }


def server_cpu_s(pid: int) -> float:
    """User + system CPU seconds the process ``pid`` and its worker processes have used so far (threads included)."""
    import psutil

    root = psutil.Process(pid)
    total = 0.0
    for process in (root, *root.children(recursive=True)):
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def server_means(metrics_text: str) -> dict[str, float]:
    """Mean server-side milliseconds per stage and for the recommendation endpoint, from ``/metrics``.

    Under CPU contention from other processes the client-side latencies include queueing; these say what the
    server itself spent.
    """
    sums: dict[str, float] = {}
    counts: dict[str, float] = {}
    for line in metrics_text.splitlines():
        for family, key in (
            ("hybrec_stage_duration_seconds", "stage"),
            ("hybrec_request_duration_seconds", "endpoint"),
        ):
            for suffix, target in (("_sum{", sums), ("_count{", counts)):
                if line.startswith(family + suffix) and f'{key}="' in line:
                    label = line.split(f'{key}="', 1)[1].split('"', 1)[0]
                    if key == "endpoint" and "recommendations" not in label:
                        continue
                    name = "request" if key == "endpoint" else label
                    target[name] = target.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    return {name: round(1000 * sums[name] / counts[name], 3) for name in sums if counts.get(name)}


def _levels(text: str) -> list[int]:
    try:
        levels = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not levels or min(levels) < 1:
        raise argparse.ArgumentTypeError(f"expected at least one level, each 1 or more, got {text!r}")
    return levels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="Print one JSON list of per-backend results.")
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=50_000)
    parser.add_argument("--per-user", type=int, default=5)
    parser.add_argument("--factors", type=int, default=64)
    parser.add_argument("--duration", type=float, default=15.0, help="Measured seconds per endpoint.")
    parser.add_argument(
        "--concurrency",
        type=_levels,
        default=[16],
        help="Requests in flight; a comma-separated list (16,64) measures both endpoints at each level, the first "
        "one giving the top-level figures and every one an entry of by_concurrency.",
    )
    parser.add_argument("--backends", default="exact,chroma")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--load-generator",
        choices=("auto", "wrk", "httpx"),
        default="auto",
        help="wrk when installed (auto), else the Python httpx client; the httpx client may itself be the ceiling.",
    )
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes of the server")
    parser.add_argument(
        "--redis-url",
        default="redis://127.0.0.1:6379/15",
        help="user-vector cache shared by several workers (its hybrec 'default' namespace is cleared first)",
    )
    parser.add_argument("--load", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load_generator == "auto":
        args.load_generator = "wrk" if shutil.which("wrk") else "httpx"
    if args.load:  # the load-generator process
        spec = json.loads(args.load)
        print(json.dumps(asyncio.run(_drive(**spec))))
        return

    from hybrec.config import Settings
    from hybrec.vectors.exact_index import ExactVectorIndex

    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="hybrec-bench-reco-") as tmp:
        workdir = Path(tmp)
        settings = Settings(
            var_dir=workdir / "var", database_url=f"sqlite:///{workdir / 'bench.db'}", redis_url=None, chroma_url=None
        )
        started = time.perf_counter()
        data = build_store(settings.database_url, args.items, args.users, args.per_user, args.seed)
        print(f"store built in {time.perf_counter() - started:.0f}s", file=sys.stderr)
        base_env = {k: v for k, v in os.environ.items() if not k.startswith("HYBREC_")}
        base_env.update({"HYBREC_DATABASE_URL": settings.database_url, "HYBREC_VAR_DIR": str(settings.var_dir)})
        if args.workers > 1:
            from hybrec.vectors.redis_cache import RedisUserVectorCache

            RedisUserVectorCache(args.redis_url).delete_namespace()  # versions restart at 1 in this fresh store
            base_env["HYBREC_REDIS_URL"] = args.redis_url
        exact_version = publish(settings, data, args.factors, ExactVectorIndex(settings.var_dir / "index"), args.seed)
        if "exact" in backends:
            results.append({"backend": "exact", **serve_and_measure(base_env, workdir, args.users, args)})
            print(json.dumps(results[-1]), file=sys.stderr)
        if "chroma" in backends:
            from hybrec.vectors.chroma_index import ChromaVectorIndex

            chroma, url = start_chroma(workdir)
            try:
                started = time.perf_counter()
                version = publish(settings, data, args.factors, ChromaVectorIndex.from_url(url), args.seed)
                upsert_s = time.perf_counter() - started
                measured = serve_and_measure({**base_env, "HYBREC_CHROMA_URL": url}, workdir, args.users, args)
                recall = chroma_recall(url, settings.var_dir, exact_version, version, args.seed)
                results.append(
                    {
                        "backend": "chroma",
                        **measured,
                        "recall_at_10_vs_exact": round(recall, 4),
                        "publish_s": round(upsert_s, 1),
                    }
                )
                print(json.dumps(results[-1]), file=sys.stderr)
            finally:
                chroma.terminate()
                chroma.wait(timeout=30)
    meta = {
        "items": args.items,
        "users": args.users,
        "factors": args.factors,
        "concurrency": args.concurrency[0],
        "duration_s": args.duration,
        "cpus": os.cpu_count(),
    }
    out = [{**r, **meta} for r in results]
    print(json.dumps(out, indent=None if args.json else 1))


if __name__ == "__main__":
    main()
