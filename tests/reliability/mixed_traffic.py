"""Mixed API traffic from threads, every answer recorded: the load test, the fault tests and ``bench/soak.py``.

A reco worker loops over ``GET /v1/users/{id}/recommendations`` (trained shoppers and newcomers), ``GET
/v1/items/{id}/similar`` and ``POST /v1/interactions`` (each event with its own idempotency key, so the events a
``201`` accepted can be looked up in the store afterwards); a chat worker sends shopping requests to ``POST
/v1/chat``. Each answer becomes an :class:`Outcome` (status 0 = no HTTP answer at all: refused, reset, timed out).

Plain threads and ``httpx`` only (no pytest), so the benchmark script can import it too.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import httpx
import numpy as np

RECOMMEND = "recommendations"
SIMILAR = "similar"
INTERACT = "interactions"
CHAT = "chat"
#: The answer each endpoint gives when everything is up.
EXPECTED = {RECOMMEND: 200, SIMILAR: 200, INTERACT: 201, CHAT: 200}

CHAT_MESSAGES = (
    "wireless headphones under $80",
    "a gift for a runner with at least 4 stars",
    "show me some kitchen gadgets",
    "something cheap for the office",
    "a good camera under $300",
)


@dataclass(frozen=True, slots=True)
class Outcome:
    """One request: when it ended (``time.monotonic``), the endpoint, the HTTP status (0: no answer), how long it
    took, and the answer's ``detail`` (errors) or ``degraded`` notes (successes)."""

    at: float
    endpoint: str
    status: int
    latency_s: float
    detail: str = ""
    degraded: tuple[str, ...] = ()
    body: dict[str, Any] | None = None


@dataclass(frozen=True)
class Mix:
    """What the traffic asks about: shoppers the model knows, items it has factors for, interaction kinds."""

    users: Sequence[str]
    items: Sequence[str]
    newcomer_share: float = 0.2
    weights: dict[str, float] = field(default_factory=lambda: {RECOMMEND: 0.45, SIMILAR: 0.2, INTERACT: 0.35})


class TrafficLog:
    """Thread-safe record of outcomes and of the idempotency keys of every event a ``201`` accepted."""

    def __init__(self, *, keep_bodies: bool = True) -> None:
        self._lock = threading.Lock()
        self.keep_bodies = keep_bodies  # off for long runs: a body per request adds up to gigabytes in an hour
        self.outcomes: list[Outcome] = []
        self.accepted_keys: list[str] = []

    def add(self, outcome: Outcome, accepted: Sequence[str] = ()) -> None:
        if not self.keep_bodies:
            outcome = replace(outcome, body=None)
        with self._lock:
            self.outcomes.append(outcome)
            self.accepted_keys.extend(accepted)

    def between(self, start: float, end: float = float("inf")) -> list[Outcome]:
        """Requests sent and answered within ``[start, end]`` (``time.monotonic`` seconds)."""
        with self._lock:
            return [o for o in self.outcomes if start <= o.at - o.latency_s and o.at <= end]

    def unexpected(self, start: float = 0.0, end: float = float("inf")) -> list[Outcome]:
        """Outcomes that are not the all-up answer of their endpoint."""
        return [o for o in self.between(start, end) if o.status != EXPECTED[o.endpoint]]

    def summary(self) -> dict[str, Any]:
        """Requests, errors and latency percentiles (ms) per endpoint."""
        with self._lock:
            outcomes = list(self.outcomes)
        per: dict[str, list[Outcome]] = defaultdict(list)
        for outcome in outcomes:
            per[outcome.endpoint].append(outcome)
        endpoints = {}
        for name, rows in sorted(per.items()):
            latencies = np.array([o.latency_s for o in rows]) * 1000.0
            statuses: dict[str, int] = defaultdict(int)
            for o in rows:
                statuses[str(o.status)] += 1
            endpoints[name] = {
                "requests": len(rows),
                "errors": sum(o.status != EXPECTED[name] for o in rows),
                "statuses": dict(statuses),
                "p50_ms": round(float(np.percentile(latencies, 50)), 2),
                "p99_ms": round(float(np.percentile(latencies, 99)), 2),
            }
        return {
            "requests": len(outcomes),
            "errors": sum(o.status != EXPECTED[o.endpoint] for o in outcomes),
            "accepted_interactions": len(self.accepted_keys),
            "endpoints": endpoints,
        }


def _call(client: httpx.Client, log: TrafficLog, endpoint: str, method: str, url: str, **kwargs: Any) -> Outcome:
    started = time.monotonic()
    try:
        response = client.request(method, url, **kwargs)
    except httpx.HTTPError as exc:
        ended = time.monotonic()
        outcome = Outcome(ended, endpoint, 0, ended - started, f"{type(exc).__name__}: {exc}")
        log.add(outcome)
        return outcome
    try:
        body = response.json()
    except ValueError:
        body = {"detail": response.text[:300]}
    if not isinstance(body, dict):
        body = {"detail": str(body)[:300]}
    ended = time.monotonic()
    accepted: list[str] = []
    if endpoint == INTERACT and response.status_code == 201:
        payload = kwargs["json"]
        events = payload.get("interactions", [payload])
        accepted = [e["idempotency_key"] for e in events]
    outcome = Outcome(
        ended,
        endpoint,
        response.status_code,
        ended - started,
        str(body.get("detail", ""))[:500],
        tuple(body.get("degraded") or ()),
        body,
    )
    log.add(outcome, accepted)
    return outcome


def reco_requests(client: httpx.Client, mix: Mix, log: TrafficLog, rng: random.Random) -> None:
    """One request of the collaborative-engine mix."""
    endpoints, weights = zip(*mix.weights.items(), strict=True)
    endpoint = rng.choices(endpoints, weights)[0]
    newcomer = rng.random() < mix.newcomer_share
    user = f"newcomer-{rng.randrange(50)}" if newcomer else rng.choice(mix.users)
    if endpoint == RECOMMEND:
        _call(client, log, RECOMMEND, "GET", f"/v1/users/{user}/recommendations", params={"n": 10})
    elif endpoint == SIMILAR:
        _call(client, log, SIMILAR, "GET", f"/v1/items/{rng.choice(mix.items)}/similar", params={"n": 5})
    else:
        events = [
            {
                "user_id": user,
                "item_id": rng.choice(mix.items),
                "kind": rng.choice(("view", "click", "cart", "purchase")),
                "idempotency_key": uuid.uuid4().hex,
            }
            for _ in range(rng.choice((1, 1, 1, 3)))
        ]
        body: dict[str, Any] = events[0] if len(events) == 1 else {"interactions": events}
        _call(client, log, INTERACT, "POST", "/v1/interactions", json=body)


def chat_request(client: httpx.Client, mix: Mix, log: TrafficLog, rng: random.Random) -> None:
    """One shopping request to the assistant."""
    body = {"user_id": rng.choice(mix.users), "message": rng.choice(CHAT_MESSAGES)}
    _call(client, log, CHAT, "POST", "/v1/chat", json=body)


@contextmanager
def traffic(
    reco_url: str,
    mix: Mix,
    *,
    reco_workers: int = 2,
    chat_url: str | None = None,
    chat_workers: int = 1,
    chat_pause_s: float = 0.0,
    timeout_s: float = 60.0,
    keep_bodies: bool = True,
    seed: int = 0,
) -> Iterator[TrafficLog]:
    """Run the mix from threads until the block exits (each worker finishes its request in flight), closed loop: a
    worker sends its next request when the previous one answered. ``keep_bodies=False`` keeps only statuses,
    latencies and notes (long runs)."""
    log = TrafficLog(keep_bodies=keep_bodies)
    stop = threading.Event()

    def loop(url: str, step: Any, worker_seed: int, pause_s: float) -> None:
        rng = random.Random(worker_seed)
        with httpx.Client(base_url=url, timeout=timeout_s) as client:
            while not stop.is_set():
                step(client, mix, log, rng)
                if pause_s:
                    stop.wait(pause_s)

    reco = [
        threading.Thread(target=loop, args=(reco_url, reco_requests, seed * 1000 + i, 0.0), daemon=True)
        for i in range(reco_workers)
    ]
    chat = [
        threading.Thread(target=loop, args=(chat_url, chat_request, seed * 1000 + 500 + i, chat_pause_s), daemon=True)
        for i in range(chat_workers if chat_url is not None else 0)
    ]
    for thread in reco + chat:
        thread.start()
    try:
        yield log
    finally:
        stop.set()
        for thread in reco + chat:
            thread.join(timeout=timeout_s + 5)


def missing_keys(database_url: str, keys: Sequence[str]) -> list[str]:
    """The idempotency keys among ``keys`` that no stored interaction carries (must be none)."""
    from sqlalchemy import select

    from hybrec.store.engine import session_scope
    from hybrec.store.models import Interaction

    found: set[str] = set()
    with session_scope(database_url) as session:
        for start in range(0, len(keys), 1000):
            chunk = list(keys[start : start + 1000])
            found.update(
                session.scalars(select(Interaction.idempotency_key).where(Interaction.idempotency_key.in_(chunk)))
            )
    return [k for k in keys if k not in found]
