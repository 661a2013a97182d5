"""Ask hybrec's collaborative engine for recommendations, record a click, and see the list react at once.

Run against a running hybrec (``make run``, ``hybrec serve`` or the production ``als_reco_engine``)::

    python examples/recommend.py --user 42
    python examples/recommend.py --base-url http://reco.internal:8000 --api-key "$HYBREC_API_KEY" --user 42 \
        --max-price 30 --n 5

Only ``httpx`` is needed (installed with hybrec).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import httpx


def recommendations(client: httpx.Client, user: str, n: int, filters: dict[str, Any]) -> dict[str, Any]:
    """``GET /v1/users/{user}/recommendations``; filters are applied inside the vector search."""
    params = {"n": n, **{key: value for key, value in filters.items() if value is not None}}
    response = client.get(f"/v1/users/{user}/recommendations", params=params)
    response.raise_for_status()
    return response.json()


def record_click(client: httpx.Client, user: str, item: str) -> dict[str, Any]:
    """``POST /v1/interactions``: stored durably, then the user's vector is refolded against the live model."""
    response = client.post("/v1/interactions", json={"user_id": user, "item_id": item, "kind": "click"})
    response.raise_for_status()
    return response.json()


def show(title: str, answer: dict[str, Any]) -> None:
    print(f"{title} (model v{answer['model_version']}, strategy {answer['strategy']}):")
    for rank, item in enumerate(answer["items"], 1):
        price = f"${item['price']:.2f}" if item.get("price") is not None else "-"
        print(f"  {rank:2d}. {item['name'][:60]:60s} {price:>9s}  score {item['score']:.3f}  [{item['item_id']}]")
    if not answer["items"]:
        print("  (no item matches the filters)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", default="http://127.0.0.1:8000")
    parser.add_argument("--api-key", default=None, help="X-API-Key, when the server requires one for writes.")
    parser.add_argument("--user", required=True)
    parser.add_argument("--n", type=int, default=10)
    parser.add_argument("--category")
    parser.add_argument("--brand")
    parser.add_argument("--max-price", type=float)
    parser.add_argument("--min-rating", type=float)
    args = parser.parse_args(argv)

    filters = {
        "category": args.category,
        "brand": args.brand,
        "max_price": args.max_price,
        "min_rating": args.min_rating,
    }
    headers = {"X-API-Key": args.api_key} if args.api_key else {}
    with httpx.Client(base_url=args.base_url, headers=headers, timeout=30.0) as client:
        try:
            before = recommendations(client, args.user, args.n, filters)
            show(f"Recommendations for {args.user}", before)
            if not before["items"]:
                return 0
            clicked = before["items"][-1]
            update = record_click(client, args.user, clicked["item_id"])
            print(f"\nClicked {clicked['name']!r}: stored {update['stored']} event(s)")
            after = recommendations(client, args.user, args.n, filters)
            show(f"Recommendations for {args.user} right after the click", after)
        except httpx.HTTPStatusError as exc:
            print(f"error: {exc.response.status_code} {exc.response.text}", file=sys.stderr)
            return 1
        except httpx.HTTPError as exc:
            print(f"error: cannot reach {args.base_url}: {exc}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
