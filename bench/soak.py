"""Soak test: the reliability suite's load test (tests/reliability/test_load.py) for longer, with measurements.

Usage::

    python bench/soak.py [--duration 1800] [--concurrency 4] [--chat-workers 1] [--sample-every 10]

Creates a PostgreSQL database on HYBREC_TEST_POSTGRES_URL's server (dropped at the end), ingests, trains and indexes
the small synthetic shop, starts ``hybrec serve`` (reco + chat, one uvicorn process) on loopback and drives the same
mixed traffic as the load test (recommendations, similar items, interaction events, chat turns with the ``none``
LLM) from ``--concurrency`` reco workers and ``--chat-workers`` chat workers, closed loop. Prints one JSON object::

    {"duration_s", "requests", "errors", "accepted_interactions", "missing_interactions",
     "endpoints": {name: {"requests", "errors", "statuses", "p50_ms", "p99_ms"}},
     "rss_mb": {"start", "end", "max", "growth"}, "rss_samples_mb": [...]}

``errors`` counts answers other than each endpoint's all-up status; ``missing_interactions`` counts events answered
201 that the store does not hold (both must be 0). RSS is the server process's, sampled every ``--sample-every``
seconds from the start of the traffic (after a warm-up chat turn).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

_TESTS = Path(__file__).resolve().parent.parent / "tests"
sys.path[:0] = [str(_TESTS), str(_TESTS / "reliability")]  # the suite's helpers, shared by path

from load_deployment import rss_bytes, serve_shop  # noqa: E402
from mixed_traffic import missing_keys, traffic  # noqa: E402

from servers import create_postgres_database, drop_postgres_database  # noqa: E402

MB = 1024 * 1024


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=1800.0, help="Seconds of traffic (default 1800).")
    parser.add_argument("--concurrency", type=int, default=4, help="Reco workers (requests in flight).")
    parser.add_argument("--chat-workers", type=int, default=1, help="Chat workers (0: no chat traffic).")
    parser.add_argument("--sample-every", type=float, default=10.0, help="Seconds between RSS samples.")
    parser.add_argument("--users", type=int, default=300, help="Shoppers in the synthetic shop.")
    parser.add_argument("--items", type=int, default=150, help="Products in the synthetic shop.")
    args = parser.parse_args(argv)
    if args.duration <= 0 or args.concurrency < 1 or args.chat_workers < 0 or args.sample_every <= 0:
        parser.error("--duration and --sample-every must be > 0, --concurrency >= 1, --chat-workers >= 0")
    return args


def soak(args: argparse.Namespace) -> dict[str, object]:
    database_url = create_postgres_database("hybrec_soak")
    try:
        with (
            tempfile.TemporaryDirectory(prefix="hybrec-soak-") as root,
            serve_shop(Path(root), database_url, n_users=args.users, n_items=args.items) as deployment,
        ):
            pid = deployment.server.pid
            assert pid is not None
            samples = [rss_bytes(pid)]
            started = time.monotonic()
            with traffic(
                deployment.url,
                deployment.mix,
                reco_workers=args.concurrency,
                chat_url=deployment.url if args.chat_workers else None,
                chat_workers=args.chat_workers,
                chat_pause_s=0.2,
                keep_bodies=False,
            ) as log:
                while (left := started + args.duration - time.monotonic()) > 0:
                    time.sleep(min(args.sample_every, left))
                    samples.append(rss_bytes(pid))
            duration = time.monotonic() - started
            samples.append(rss_bytes(pid))
            summary = log.summary()
            missing = missing_keys(database_url, log.accepted_keys)
    finally:
        drop_postgres_database(database_url)
    rss = [s / MB for s in samples]
    return {
        "duration_s": round(duration, 1),
        **summary,
        "missing_interactions": len(missing),
        "rss_mb": {
            "start": round(rss[0], 1),
            "end": round(rss[-1], 1),
            "max": round(max(rss), 1),
            "growth": round(rss[-1] - rss[0], 1),
        },
        "rss_samples_mb": [round(r, 1) for r in rss],
    }


def main(argv: list[str] | None = None) -> int:
    result = soak(parse_args(argv))
    print(json.dumps(result, indent=2))
    return 0 if result["errors"] == 0 and result["missing_interactions"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
