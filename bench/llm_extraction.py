"""Benchmark the embedded LLM: decode speed and JSON-constrained shopping-filter extraction (latency, accuracy).

Usage::

    python bench/llm_extraction.py --profile qwen2.5-0.5b --threads 1 [--var-dir var]

Prints one JSON object: load time, decode tokens/s (streamed chunks after the first, one token each), and for 10
labelled shopping requests the latency of ``structured()`` and whether intent, brand, max price and min rating were
extracted exactly.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from hybrec.config import Settings
from hybrec.llm.base import ChatMessage, LLMError
from hybrec.llm.llama_cpp_local import LlamaCppLLM


class ShoppingFilter(BaseModel):
    intent: Literal["search", "small_talk"]
    product: str | None
    brand: str | None
    max_price: float | None
    min_rating: float | None


SYSTEM = (
    "Extract the shopper's request as JSON with keys intent (search or small_talk), product, brand, max_price, "
    "min_rating. Use null for anything not stated. Prices are numbers without currency signs.\n"
    'Example: "Sony headphones under $80" -> {"intent": "search", "product": "headphones", "brand": "Sony", '
    '"max_price": 80, "min_rating": null}\n'
    'Example: "hi there!" -> {"intent": "small_talk", "product": null, "brand": null, "max_price": null, '
    '"min_rating": null}'
)

# (request, intent, brand, max_price, min_rating)
LABELLED: list[tuple[str, str, str | None, float | None, float | None]] = [
    ("Show me Bose noise cancelling headphones below $250", "search", "bose", 250, None),
    ("I need a gift card for a coffee lover, under $30", "search", None, 30, None),
    ("Any Logitech mouse with at least 4 stars?", "search", "logitech", None, 4),
    ("cheap Anker phone charger, no more than 25 bucks, rated 4.5 or better", "search", "anker", 25, 4.5),
    ("hello! how are you today?", "small_talk", None, None, None),
    ("Looking for a KitchenAid stand mixer, max 300 dollars, rating of at least 4.2", "search", "kitchenaid", 300, 4.2),
    ("What's a good laptop backpack?", "search", None, None, None),
    ("Starbucks gift card up to $50 please", "search", "starbucks", 50, None),
    ("I'd like Adidas running shoes, budget 90, 4 stars minimum", "search", "adidas", 90, 4),
    ("thanks, that's all for now", "small_talk", None, None, None),
]


def _norm(brand: str | None) -> str | None:
    return "".join(brand.lower().split()) or None if brand else None


def decode_speed(llm: LlamaCppLLM, max_tokens: int) -> dict[str, float]:
    """Time to first token and decode speed of one streamed answer.

    Besides wall-clock tokens/s it reports tokens per CPU-second of this process: with ``n_threads=1`` that is the
    speed the model reaches when it has a core to itself, which a busy shared machine's wall clock hides.
    """
    prompt = [ChatMessage("user", "Write a short paragraph about why people like gift cards.")]
    start = time.perf_counter()
    first = first_cpu = 0.0
    n = 0
    for _ in llm.stream(prompt, max_tokens=max_tokens, temperature=0):
        n += 1
        if n == 1:
            first, first_cpu = time.perf_counter(), time.process_time()
    end, end_cpu = time.perf_counter(), time.process_time()
    return {
        "tokens": n,
        "time_to_first_token_s": round(first - start, 3),
        "decode_tokens_per_s": round((n - 1) / (end - first), 2) if n > 1 else 0.0,
        "decode_tokens_per_cpu_s": round((n - 1) / (end_cpu - first_cpu), 2) if n > 1 else 0.0,
    }


def extraction(llm: LlamaCppLLM) -> dict[str, object]:
    """Run the labelled requests; per-field and all-fields accuracy plus latency."""
    rows = []
    for text, intent, brand, max_price, min_rating in LABELLED:
        start, start_cpu = time.perf_counter(), time.process_time()
        try:
            got = llm.structured(
                [ChatMessage("system", SYSTEM), ChatMessage("user", text)], ShoppingFilter, max_tokens=80
            )
            error = None
        except LLMError as exc:
            got, error = None, str(exc)
        latency, cpu = time.perf_counter() - start, time.process_time() - start_cpu
        checks = {
            "intent": got is not None and got.intent == intent,
            "brand": got is not None and _norm(got.brand) == brand,
            "max_price": got is not None and got.max_price == max_price,
            "min_rating": got is not None and got.min_rating == min_rating,
        }
        rows.append(
            {
                "request": text,
                "latency_s": round(latency, 3),
                "cpu_s": round(cpu, 3),
                **checks,
                "all": all(checks.values()),
                "output": got.model_dump() if got else error,
            }
        )
    n = len(rows)
    latencies = [r["latency_s"] for r in rows]
    cpu_times = [r["cpu_s"] for r in rows]
    return {
        "n": n,
        **{
            f"{k}_correct": sum(bool(r[k]) for r in rows) for k in ("intent", "brand", "max_price", "min_rating", "all")
        },
        "latency_median_s": round(statistics.median(latencies), 3),
        "latency_max_s": round(max(latencies), 3),
        "cpu_median_s": round(statistics.median(cpu_times), 3),
        "rows": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="qwen2.5-0.5b", choices=["qwen2.5-0.5b", "qwen2.5-1.5b"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--var-dir", type=Path, default=Path("var"))
    parser.add_argument("--decode-tokens", type=int, default=96)
    args = parser.parse_args()
    settings = Settings(
        llm_backend="llama_cpp", llm_profile=args.profile, llm_threads=args.threads, var_dir=args.var_dir
    )
    start = time.perf_counter()
    llm = LlamaCppLLM.from_settings(settings)
    load_s = time.perf_counter() - start
    report = {
        "profile": args.profile,
        "threads": args.threads,
        "load_s": round(load_s, 2),
        "decode": decode_speed(llm, args.decode_tokens),
        "extraction": extraction(llm),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
