"""Helpers for the deployment tests (imported as ``deploy_support``)."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

from hybrec.data.demo import generate_demo_shop

HYBREC = str(Path(sys.executable).parent / "hybrec")  # the console script of this environment


def write_small_shop(directory: Path, *, n_users: int = 300, n_items: int = 240) -> Path:
    """A small demo shop (about 20k events) written in the seed-CSV layout, so HYBREC_DATASET can name it as a path.

    The synthetic shop generator gives realistic categories and prices (the chat tests filter on them) while
    ingesting, training and indexing in seconds rather than the full demo's minute."""
    shop = generate_demo_shop(seed=7, n_users=n_users, n_items=n_items)
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / "items.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["item_id", "name", "category", "brand", "description", "features", "price"])
        for item in shop.items:
            features = "|".join(item.features)
            writer.writerow(
                [item.external_id, item.name, item.category, item.brand, item.description, features, item.price]
            )
    with (directory / "interactions.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["user_id", "item_id", "timestamp", "kind", "rating"])
        for event in shop.interactions:
            rating = "" if event.rating is None else event.rating
            writer.writerow([event.user_id, event.item_id, event.ts.isoformat(), event.kind, rating])
    return directory


def run_hybrec(
    args: list[str], env: dict[str, str], cwd: Path, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """``hybrec ARGS`` as its own process (settings are read once per process, so each case gets a fresh one)."""
    return subprocess.run(
        [HYBREC, *args], env={**os.environ, **env}, cwd=cwd, capture_output=True, text=True, timeout=timeout
    )
