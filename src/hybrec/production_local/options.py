"""The options of ``scripts/run-production-local``: what to start and where (``--help`` shows them all)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from hybrec.production_local.stores import DEFAULT_DATABASE, DEFAULT_POSTGRES_SERVER

LLM_CHOICES = ("llama-cpp-server", "none")


@dataclass(frozen=True)
class Options:
    """What ``scripts/run-production-local`` was asked to run (see :func:`parse_args` for each option's meaning)."""

    database_url: str | None
    redis_url: str | None
    chroma_url: str | None
    dataset: str
    llm: str
    llm_profile: str
    host: str
    reco_port: int
    chat_port: int
    run_dir: Path
    weights_dir: Path
    train_interval_minutes: float
    ready_timeout_s: float


def parse_args(argv: Sequence[str] | None = None) -> Options:
    """Options from the command line; defaults come from this process's hybrec settings where one applies."""
    from hybrec.config import get_settings

    settings = get_settings()
    parser = argparse.ArgumentParser(
        prog="run-production-local",
        description="Start hybrec's production topology (PostgreSQL, Redis, Chroma, an LLM server, the one-shot "
        "ingests, the trainer, the reco API and the chat API) as local processes; Ctrl-C stops them all.",
    )
    parser.add_argument(
        "--database-url",
        help=f"PostgreSQL URL of the store (default: database {DEFAULT_DATABASE} on {DEFAULT_POSTGRES_SERVER}, "
        "created if missing)",
    )
    parser.add_argument("--redis-url", help="Redis URL (default: a private redis-server on a free port)")
    parser.add_argument("--chroma-url", help="Chroma server URL (default: a private `chroma run` on a free port)")
    parser.add_argument(
        "--dataset",
        default=settings.dataset or "demo",
        help="HYBREC_DATASET loaded into an empty store: demo, a named dataset or a path (default: %(default)s)",
    )
    parser.add_argument(
        "--llm", choices=LLM_CHOICES, default="llama-cpp-server", help="LLM server (default: %(default)s)"
    )
    parser.add_argument(
        "--llm-profile",
        default="qwen2.5-0.5b",
        choices=("qwen2.5-0.5b", "qwen2.5-1.5b"),
        help="embedded GGUF weights the llama.cpp server loads (default: %(default)s)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface the APIs listen on (default: %(default)s)")
    parser.add_argument("--reco-port", type=_port, default=8000, help="reco API port (default: %(default)s)")
    parser.add_argument("--chat-port", type=_port, default=8001, help="chat API port (default: %(default)s)")
    parser.add_argument(
        "--run-dir",
        type=Path,
        default=None,
        help="logs, Chroma data and model artifacts; keep one per database (default: var/production-local)",
    )
    parser.add_argument(
        "--weights-dir",
        type=Path,
        default=Path(settings.var_dir),
        help="where the assembled GGUF weights are kept between runs (default: %(default)s)",
    )
    parser.add_argument(
        "--train-interval-minutes",
        type=float,
        default=settings.train_interval_minutes,
        help="the trainer's period (default: %(default)s)",
    )
    parser.add_argument(
        "--ready-timeout",
        type=float,
        default=600.0,
        help="seconds each service may take to get ready (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    if args.reco_port == args.chat_port:
        parser.error("--reco-port and --chat-port must differ")
    if args.train_interval_minutes <= 0 or args.ready_timeout <= 0:
        parser.error("--train-interval-minutes and --ready-timeout must be positive")
    # One folder by default, like the default database: Chroma's data and the model artifacts must stay with the
    # store they were built from, so a second run reuses all three.
    run_dir = args.run_dir or Path("var") / "production-local"
    return Options(
        database_url=args.database_url,
        redis_url=args.redis_url,
        chroma_url=args.chroma_url,
        dataset=args.dataset,
        llm=args.llm,
        llm_profile=args.llm_profile,
        host=args.host,
        reco_port=args.reco_port,
        chat_port=args.chat_port,
        run_dir=run_dir.resolve(),
        weights_dir=args.weights_dir.resolve(),
        train_interval_minutes=args.train_interval_minutes,
        ready_timeout_s=args.ready_timeout,
    )


def _port(text: str) -> int:
    port = int(text)
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a TCP port (1-65535)")
    return port
