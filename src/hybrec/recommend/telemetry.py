"""What the serving logic reports about itself, without knowing who listens.

:class:`hybrec.api.metrics.PrometheusTelemetry` implements this protocol for ``/metrics``; library users and tests
get :class:`NullTelemetry`. Keeping the protocol here means ``recommend`` never imports ``api`` (arrows point down).
"""

from __future__ import annotations

import time
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


class timed:  # lower case: used like the function it was, ``with timed(telemetry, "stage"):``
    """Report the time spent inside the ``with`` block as ``stage``.

    A class rather than a generator-based context manager: it runs several times per recommendation request, and
    entering and leaving one costs a third of :func:`contextlib.contextmanager`'s.
    """

    __slots__ = ("_stage", "_start", "_telemetry")

    def __init__(self, telemetry: Telemetry, stage: str) -> None:
        self._telemetry = telemetry
        self._stage = stage

    def __enter__(self) -> None:
        self._start = time.perf_counter()

    def __exit__(self, *_exc: object) -> None:
        self._telemetry.observe_stage(self._stage, time.perf_counter() - self._start)
