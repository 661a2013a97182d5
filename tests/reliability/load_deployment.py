"""The deployment the load test and ``bench/soak.py`` drive: ``hybrec serve`` (reco + chat in one uvicorn process)
on loopback over a PostgreSQL store holding a small synthetic shop, trained and indexed.

The user-vector cache and the vector index are the in-process ones (the fault tests cover Redis and Chroma); the
LLM backend is ``none`` (rules and templates), so a chat turn costs retrieval and rerank, not generation.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from mixed_traffic import Mix
from reliability_servers import HYBREC, ServerProcess, http_ok, hybrec_settings_env
from sqlalchemy import select

from hybrec.cli.index import sync_catalog
from hybrec.config import Settings
from hybrec.data.demo import generate_demo_shop
from hybrec.store.engine import session_scope
from hybrec.store.models import Interaction, Item, User
from hybrec.training.job import run_training
from reco_support import ingest, make_settings
from servers import find_free_port


@dataclass(frozen=True)
class Deployment:
    """A running ``hybrec serve``: its URL and process, the settings it runs on, and the traffic mix for it."""

    url: str
    server: ServerProcess
    settings: Settings
    mix: Mix


def shop_mix(database_url: str) -> Mix:
    """Shoppers and items of the trained shop: every item with an interaction has factors in the model."""
    with session_scope(database_url) as session:
        users = list(session.scalars(select(User.external_id).join(Interaction).distinct().limit(200)))
        items = list(session.scalars(select(Item.external_id).join(Interaction).distinct()))
    return Mix(users=sorted(users), items=sorted(items))


def prepare_shop(settings: Settings, *, n_users: int = 300, n_items: int = 150, seed: int = 11) -> None:
    """Ingest the synthetic shop, train and publish version 1, embed the catalog into the product index."""
    ingest(settings, generate_demo_shop(seed=seed, n_users=n_users, n_items=n_items))
    outcome = run_training(settings)
    if outcome.status != "published":
        raise RuntimeError(f"training the load-test shop failed: {outcome.error}")
    sync_catalog(settings)


@contextmanager
def serve_shop(root: Path, database_url: str, *, n_users: int = 300, n_items: int = 150) -> Iterator[Deployment]:
    """Prepare the shop under ``root`` in ``database_url`` (an empty database) and run ``hybrec serve`` on it."""
    settings = make_settings(root, database_url, llm_backend="none")
    prepare_shop(settings, n_users=n_users, n_items=n_items)
    env = hybrec_settings_env(
        database_url=settings.database_url,
        var_dir=settings.var_dir,
        als_params_path=settings.als_params_path,
        llm_backend="none",
        train_interval_minutes=24 * 60,  # no scheduled retraining inside a load run
    )
    port = find_free_port()
    url = f"http://127.0.0.1:{port}"
    command = [HYBREC, "serve", "--host", "127.0.0.1", "--port", str(port)]
    server = ServerProcess("hybrec serve", command, http_ok(f"{url}/ready"), root / "serve.log", env=env, cwd=root)
    server.start()
    try:
        # The first chat turn loads the embedder and the reranker: slow once, and not what a load run measures.
        warm = httpx.post(f"{url}/v1/chat", json={"user_id": "warm-up", "message": "headphones"}, timeout=300)
        if warm.status_code != 200:
            raise RuntimeError(f"the warm-up chat turn failed: {warm.status_code} {warm.text[:500]}")
        yield Deployment(url, server, settings, shop_mix(settings.database_url))
    finally:
        server.stop()


def rss_bytes(pid: int) -> int:
    """Resident set size of process ``pid`` (Linux ``/proc``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")
