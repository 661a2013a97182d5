"""How many threads the embedded LLM should decode with, from how many CPUs are idle right now.

Token-by-token decoding is memory-bound and splits each step across its threads, which meet at a barrier: on the
2-core development machine two threads decode the 1.5B model at 13.6 tokens/s against 7.7 for one when the other
core is free, but at 4.5 against 7.6 when another process keeps that core busy (a descheduled thread stalls the
step). So, unless pinned by ``HYBREC_LLM_THREADS``, each call samples ``/proc/stat`` for a tenth of a second and
decodes on as many threads as there are idle CPUs (at least one). The sample is taken before the call, while this
process's own model threads are idle, so it measures the neighbours.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

logger = logging.getLogger(__name__)

#: How long :func:`idle_cpus` watches the CPUs (ten scheduler ticks per CPU at the usual 100 Hz).
SAMPLE_S = 0.1
#: A CPU counts as free when at least this share of it was idle during the sample.
FREE_SHARE = 0.7


def _read_proc_stat() -> str:
    return Path("/proc/stat").read_text()


def cpu_times(read: Callable[[], str] = _read_proc_stat) -> tuple[int, int]:
    """``(idle, total)`` jiffies of all CPUs together, from the first ``cpu`` line of ``/proc/stat``."""
    first = read().splitlines()[0].split()
    if not first or first[0] != "cpu":
        raise ValueError("unexpected /proc/stat format")
    values = [int(v) for v in first[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    return idle, sum(values[:8])  # guest time is already counted in user time


def idle_cpus(
    n_cpus: int,
    window_s: float = SAMPLE_S,
    read: Callable[[], str] = _read_proc_stat,
    sleep: Callable[[float], None] = time.sleep,
) -> float | None:
    """How many of ``n_cpus`` CPUs were idle over the next ``window_s`` seconds; None where it cannot be measured."""
    try:
        idle0, total0 = cpu_times(read)
        sleep(window_s)
        idle1, total1 = cpu_times(read)
    except (OSError, ValueError, IndexError):
        return None
    if total1 <= total0:
        return None
    return n_cpus * (idle1 - idle0) / (total1 - total0)


def threads_for(idle: float | None, max_threads: int) -> int:
    """Decoding threads for ``idle`` free CPUs: one per CPU that was at least ``FREE_SHARE`` idle, 1..max."""
    if idle is None:
        return 1
    return max(1, min(max_threads, int(idle + (1 - FREE_SHARE))))
