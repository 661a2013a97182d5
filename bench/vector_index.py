"""Benchmark the vector indexes: Chroma's recall@10 against exact search, and single-query latencies.

Usage::

    python bench/vector_index.py --items 100000 --dim 64 --queries 200 [--chroma-url http://127.0.0.1:8000]
                                 [--data als|gaussian] [--ef-search 800]

Without ``--chroma-url`` a Chroma server is started on a free port in a temporary directory (``chroma run`` from
this virtualenv) and stopped at the end. Items are ALS-like vectors (a low-rank Gaussian mix plus noise, with
popularity-skewed norms; ``--data gaussian`` for i.i.d. Gaussian, the hard case for HNSW); queries are drawn the
same way. The Chroma collection is built with the default :class:`HnswSettings` (``--ef-search`` overrides its
ef_search; Chroma only honours ef_search given at creation, changing it later with ``modify`` had no effect on
recall in 1.5.9). Prints one JSON object: Chroma upsert seconds; unfiltered recall@10 and per-query p50/p99
latency (ms) of both backends; and, on fewer queries (Chroma's filtered search is slow), recall and latency with
a category filter and with category + max price.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np

from hybrec.vectors.base import Hit
from hybrec.vectors.chroma_index import ChromaVectorIndex
from hybrec.vectors.chroma_translation import HnswSettings
from hybrec.vectors.exact_index import ExactVectorIndex
from hybrec.vectors.filters import Filter

CATEGORIES = ["books", "games", "tools", "garden", "music"]
FILTERS = {"category": Filter(category="games"), "category+max_price": Filter(category="games", max_price=80)}


def als_like(rows: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    """Vectors with the structure of ALS factors: a few latent directions dominate and norms vary widely."""
    basis = rng.standard_normal((dim // 4, dim))
    mix = rng.standard_normal((rows, dim // 4)) @ basis
    noise = 0.5 * rng.standard_normal((rows, dim))
    scale = rng.lognormal(0.0, 0.5, size=(rows, 1))
    return ((mix + noise) * scale / np.sqrt(dim)).astype(np.float32)


def start_chroma(folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    exe = Path(sys.executable).parent / "chroma"
    log = open(folder / "chroma.log", "wb")  # noqa: SIM115 - lives as long as the server
    proc = subprocess.Popen(
        [str(exe), "run", "--path", str(folder / "db"), "--host", "127.0.0.1", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(f"{url}/api/v2/heartbeat", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.2)
    proc.terminate()
    raise RuntimeError("chroma server did not start")


def timed(search: Callable[[np.ndarray], list[Hit]], queries: np.ndarray) -> tuple[list[list[str]], dict[str, float]]:
    """Run one query at a time; the ids found and the p50/p99 latency in ms."""
    found, times = [], []
    for q in queries:
        start = time.perf_counter()
        hits = search(q)
        times.append((time.perf_counter() - start) * 1000)
        found.append([h.id for h in hits])
    return found, {
        "p50_ms": round(float(np.percentile(times, 50)), 2),
        "p99_ms": round(float(np.percentile(times, 99)), 2),
    }


def recall(truth: list[list[str]], got: list[list[str]], k: int = 10) -> float:
    shares = [len(set(t[:k]) & set(g[:k])) / max(1, min(k, len(t))) for t, g in zip(truth, got, strict=True)]
    return round(float(np.mean(shares)), 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--filtered-queries", type=int, default=20)
    parser.add_argument("--chroma-url", default=None)
    parser.add_argument("--ef-search", type=int, default=None, help="override HnswSettings.ef_search")
    parser.add_argument("--data", choices=["als", "gaussian"], default="als")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    if args.data == "als":
        vectors, queries = als_like(args.items, args.dim, rng), als_like(args.queries, args.dim, rng)
    else:
        vectors = rng.standard_normal((args.items, args.dim)).astype(np.float32)
        queries = rng.standard_normal((args.queries, args.dim)).astype(np.float32)
    ids = [f"item-{i}" for i in range(args.items)]
    metas = [{"category": CATEGORIES[i % 5], "price": float(i % 100)} for i in range(args.items)]
    name = f"bench-{uuid.uuid4().hex[:8]}"

    with tempfile.TemporaryDirectory() as tmp:
        proc, url = (None, args.chroma_url) if args.chroma_url else start_chroma(Path(tmp))
        try:
            exact = ExactVectorIndex()
            exact.create_collection(name, args.dim, "ip")
            exact.upsert(name, ids, vectors, metas)
            hnsw = HnswSettings() if args.ef_search is None else HnswSettings(ef_search=args.ef_search)
            chroma = ChromaVectorIndex.from_url(url, hnsw=hnsw)
            chroma.create_collection(name, args.dim, "ip")
            start = time.perf_counter()
            chroma.upsert(name, ids, vectors, metas)
            out: dict[str, object] = {"data": args.data, "items": args.items, "dim": args.dim, "hnsw": str(chroma.hnsw)}
            out["chroma_upsert_s"] = round(time.perf_counter() - start, 1)

            truth, out["exact"] = timed(lambda q: exact.query(name, q, 10)[0], queries)
            got, latency = timed(lambda q: chroma.query(name, q, 10)[0], queries)
            out["chroma"] = {"recall@10": recall(truth, got), **latency}
            few = queries[: args.filtered_queries]
            for label, where in FILTERS.items():
                truth, exact_latency = timed(lambda q, w=where: exact.query(name, q, 10, where=w)[0], few)
                got, chroma_latency = timed(lambda q, w=where: chroma.query(name, q, 10, where=w)[0], few)
                out[f"filtered_{label}"] = {
                    "recall@10": recall(truth, got),
                    "exact": exact_latency,
                    "chroma": chroma_latency,
                }
            chroma.delete_collection(name)
            print(json.dumps(out, indent=2))
        finally:
            if proc is not None:
                proc.terminate()
                proc.wait()


if __name__ == "__main__":
    main()
