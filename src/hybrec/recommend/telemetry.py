"""What the serving logic reports about itself, without knowing who listens.

:class:`hybrec.api.metrics.PrometheusTelemetry` implements this protocol for ``/metrics``; library users and tests
get :class:`NullTelemetry`. Keeping the protocol here means ``recommend`` never imports ``api`` (arrows point down).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol


class Telemetry(Protocol):
    def observe_stage(self, stage: str, seconds: float) -> None:
        """Time spent in one stage of a request (``user_vector``, ``index_query``, ``fold_in``, ``store_write`` ...)."""

    def user_vector(self, source: str) -> None:
        """Where a user vector came from: ``cache_hit``, ``cache_miss``, ``cache_down``."""

    def fallback(self, reason: str) -> None:
        """A degraded answer: ``user_cache_unavailable``, ``index_unavailable``, ``cold_start`` ..."""


class NullTelemetry:
    def observe_stage(self, stage: str, seconds: float) -> None:
        return None

    def user_vector(self, source: str) -> None:
        return None

    def fallback(self, reason: str) -> None:
        return None


@contextmanager
def timed(telemetry: Telemetry, stage: str) -> Iterator[None]:
    """Report the time spent inside the block as ``stage``."""
    start = time.perf_counter()
    try:
        yield
    finally:
        telemetry.observe_stage(stage, time.perf_counter() - start)
