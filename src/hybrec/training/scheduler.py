"""The trainer process: run the training job now and then every ``train_interval_minutes``.

The scheduler owns no state; everything it produces lives in the stores (gorse's master/worker split), so it can be
stopped and restarted at any time. A failed run is recorded by the job itself and the loop carries on.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from hybrec.config import Settings
from hybrec.training.job import TrainingOutcome, run_training
from hybrec.training.lock import TrainerBusy
from hybrec.vectors.base import UserVectorCache, VectorIndex

log = logging.getLogger(__name__)


class TrainingScheduler:
    """Run :func:`~hybrec.training.job.run_training` every ``settings.train_interval_minutes`` on a thread.

    Parameters
    ----------
    settings : Settings
        The process settings (interval, stores, params file).
    run_first : bool
        Train immediately on start instead of waiting one interval.
    on_outcome : callable, optional
        Called with each run's :class:`~hybrec.training.job.TrainingOutcome` (metrics, tests).
    user_cache, item_index : optional
        Backends to publish into (embedded mode shares the API's in-process ones); default: built from settings.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        run_first: bool = True,
        on_outcome: Callable[[TrainingOutcome], None] | None = None,
        user_cache: UserVectorCache | None = None,
        item_index: VectorIndex | None = None,
    ) -> None:
        self.settings = settings
        self.run_first = run_first
        self.on_outcome = on_outcome
        self.user_cache = user_cache
        self.item_index = item_index
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def interval_s(self) -> float:
        return self.settings.train_interval_minutes * 60.0

    def run_once(self) -> TrainingOutcome | None:
        """One training run; None when another trainer holds the lock. Never raises for a failed training."""
        try:
            outcome = run_training(self.settings, user_cache=self.user_cache, item_index=self.item_index)
        except TrainerBusy as exc:
            log.info("%s", exc)
            return None
        except Exception:  # the job records its own failures; this is the last line so the loop survives
            log.exception("training run crashed")
            return None
        if self.on_outcome is not None:
            self.on_outcome(outcome)
        return outcome

    def trigger(self) -> None:
        """Train as soon as possible (the admin endpoint) instead of waiting for the interval."""
        self._wake.set()

    def run_forever(self) -> None:
        """Block, training every interval, until :meth:`stop` is called."""
        log.info("trainer: every %.1f minutes", self.settings.train_interval_minutes)
        if not self.run_first:
            self._wake.wait(self.interval_s)
        while not self._stop.is_set():
            self._wake.clear()
            self.run_once()
            self._wake.wait(self.interval_s)

    def start(self) -> None:
        """Run :meth:`run_forever` on a daemon thread (embedded mode: trainer inside the API process)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self.run_forever, name="hybrec-trainer", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
