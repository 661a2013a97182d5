"""Ingestion throughput: real and generated ratings files into a fresh PostgreSQL database and a fresh SQLite file.

    python bench/ingest.py --json
    python bench/ingest.py --json --rows 1000000 --postgres-url postgresql+psycopg://postgres@127.0.0.1:5432/test

Datasets: Amazon Industrial & Scientific 5-core ratings (72,025 rows, with its item-text CSV) from ../shared/data,
and a generated ratings CSV (``--rows``, default 1,000,000; Zipf-skewed items, written to a temporary folder). Each
is read with :func:`hybrec.data.csv_formats.read_ratings_csv` and loaded with :func:`hybrec.ingest.ingest` - the
same path as ``hybrec ingest ratings-csv`` - into a fresh database per backend (schema created before the clock
starts). ``*_interactions_per_s`` is interactions read / wall seconds of the whole ingest (reading, validation,
staging, merge, commit) of the generated file; ``reader_interactions_per_s`` is the reader alone (no database), so
the store's share can be told apart. Per run, ``client_cpu_seconds`` (this process) and, for PostgreSQL,
``server_cpu_seconds`` (its backend process, read from /proc: local server only) tell how much of the wall time was
the load's own work on a shared machine; ``machine.load_avg_*`` says how shared it was. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import create_engine, make_url

from hybrec.data.csv_formats import read_ratings_csv
from hybrec.data.progress import set_progress_enabled
from hybrec.data.records import ErrorCollector
from hybrec.ingest import ingest
from hybrec.store.engine import dispose_engine
from hybrec.store.migrate import upgrade

REPO = Path(__file__).resolve().parent.parent
INDUSTRIAL = REPO.parent / "shared" / "data" / "amazon" / "industrial_scientific_2018"


def generate_ratings(path: Path, rows: int, n_users: int, n_items: int, seed: int = 0) -> None:
    """A ratings CSV (``userid,itemid,timestamp,rating``) with Zipf-popular items and unique (user, item, ts)."""
    rng = np.random.default_rng(seed)
    users = rng.integers(0, n_users, rows)
    popularity = 1.0 / np.arange(1, n_items + 1) ** 0.8
    items = rng.choice(n_items, rows, p=popularity / popularity.sum())
    ratings = rng.integers(1, 6, rows)
    start = int(datetime(2015, 1, 1, tzinfo=UTC).timestamp())
    stamps = start + np.arange(rows) * 7  # distinct per row, so no (user, item, ts) repeats
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["userid", "itemid", "timestamp", "rating"])
        writer.writerows(zip((f"U{u:07d}" for u in users), (f"P{i:06d}" for i in items), stamps.tolist(),
                             ratings.tolist(), strict=True))


def _admin(url: str) -> Any:
    return create_engine(make_url(url).set(database="postgres"), isolation_level="AUTOCOMMIT")


def fresh_postgres(base_url: str) -> str:
    name = f"hybrec_bench_{uuid.uuid4().hex[:10]}"
    engine = _admin(base_url)
    with engine.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    engine.dispose()
    return make_url(base_url).set(database=name).render_as_string(hide_password=False)


def drop_postgres(url: str) -> None:
    dispose_engine(url)
    engine = _admin(url)
    with engine.connect() as connection:
        connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)')
    engine.dispose()


def _backend_cpu_seconds(url: str) -> float:
    """CPU seconds used so far by the PostgreSQL backends connected to ``url``'s database (local server only)."""
    if not url.startswith("postgresql"):
        return 0.0
    engine = _admin(url)
    with engine.connect() as connection:
        pids = connection.exec_driver_sql(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (make_url(url).database,),
        ).scalars().all()
    engine.dispose()
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / ticks  # utime + stime
    return total


def time_ingest(ratings: Path, items: Path | None, url: str) -> dict[str, Any]:
    upgrade(url)
    errors = ErrorCollector()
    server_before = _backend_cpu_seconds(url)
    cpu_before = time.process_time()
    started = time.perf_counter()
    report = ingest(read_ratings_csv(ratings, items, errors), url, errors, progress=False, migrate=False)
    seconds = time.perf_counter() - started
    client_cpu = time.process_time() - cpu_before
    server_cpu = _backend_cpu_seconds(url) - server_before
    result = {
        "interactions": report.interactions.read,
        "inserted": report.interactions.inserted,
        "users": report.users.inserted,
        "items": report.items.inserted,
        "seconds": round(seconds, 2),
        "interactions_per_s": round(report.interactions.read / seconds),
        "client_cpu_seconds": round(client_cpu, 2),
    }
    if url.startswith("postgresql"):
        # The load's own CPU time (client + server backend; parallel index-build workers not counted): what the
        # wall time would approach on an otherwise idle machine, where the two overlap at best.
        result["server_cpu_seconds"] = round(server_cpu, 2)
        result["interactions_per_cpu_s"] = round(report.interactions.read / (client_cpu + server_cpu))
    return result


def time_reader(ratings: Path, items: Path | None) -> dict[str, Any]:
    errors = ErrorCollector()
    started = time.perf_counter()
    source = read_ratings_csv(ratings, items, errors)
    n_users = sum(1 for _ in source.users)
    n_items = sum(1 for _ in source.items)
    n = sum(1 for _ in source.interactions)
    seconds = time.perf_counter() - started
    return {"interactions": n, "users": n_users, "items": n_items, "seconds": round(seconds, 2),
            "interactions_per_s": round(n / seconds)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="Print only the JSON result.")
    parser.add_argument("--rows", type=int, default=1_000_000, help="Rows of the generated ratings file.")
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--postgres-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/test",
                        help="Server to create the fresh benchmark databases on (dropped afterwards).")
    parser.add_argument("--skip-reader", action="store_true", help="Do not time the reader alone.")
    args = parser.parse_args()
    set_progress_enabled(False)

    result: dict[str, Any] = {"machine": {"cpus": os.cpu_count(), "load_avg_start": os.getloadavg()[0]}}
    with tempfile.TemporaryDirectory(prefix="hybrec-bench-") as tmp:
        generated = Path(tmp) / "generated_ratings.csv"
        started = time.perf_counter()
        generate_ratings(generated, args.rows, args.users, args.items)
        result["generate_seconds"] = round(time.perf_counter() - started, 2)
        datasets: dict[str, tuple[Path, Path | None]] = {"generated": (generated, None)}
        industrial = INDUSTRIAL / "Industrial_and_Scientific_5core_ratings.csv"
        if industrial.exists():
            datasets["amazon_industrial"] = (industrial, INDUSTRIAL / "items_from_unisrec_text.csv")
        for backend in ("postgres", "sqlite"):
            for name, (ratings, items) in datasets.items():
                url = fresh_postgres(args.postgres_url) if backend == "postgres" else f"sqlite:///{tmp}/{name}.db"
                try:
                    result.setdefault(backend, {})[name] = time_ingest(ratings, items, url)
                finally:
                    if backend == "postgres":
                        drop_postgres(url)
                    else:
                        dispose_engine(url)
        if not args.skip_reader:
            result["reader_only"] = {"generated": time_reader(generated, None)}
    result["postgres_interactions_per_s"] = result["postgres"]["generated"]["interactions_per_s"]
    result["sqlite_interactions_per_s"] = result["sqlite"]["generated"]["interactions_per_s"]
    if "reader_only" in result:
        result["reader_interactions_per_s"] = result["reader_only"]["generated"]["interactions_per_s"]
    result["machine"]["load_avg_end"] = os.getloadavg()[0]
    print(json.dumps(result, indent=None if args.json else 2))


if __name__ == "__main__":
    main()
