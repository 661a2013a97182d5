"""Limit torch's intra-op threads inside a block, safely when several request threads enter it at once.

A query embedding or the rerank of 50 candidates is a few small matrix products. On a busy machine with few cores,
torch's default pool (one thread per core) spends its time waiting for threads the OS does not schedule: measured on
the shared 2-core development machine, embedding one query took 1.3-1.8 s with 2 threads and 26-45 ms with one.
Request-time inference therefore runs on one thread by default, while bulk indexing keeps torch's pool.

``torch.set_num_threads`` is process-wide, so one reference count decides: the first thread in sets the limit, the
last one out restores the previous value.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import torch

_lock = threading.Lock()
_depth = 0
_previous: int | None = None


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Context in which torch runs on ``threads`` intra-op threads; ``None`` leaves torch's setting alone."""
    global _depth, _previous
    if threads is None:
        yield
        return
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    with _lock:
        if _depth == 0:
            _previous = torch.get_num_threads()
            if _previous != threads:
                torch.set_num_threads(threads)
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _previous is not None:
                if torch.get_num_threads() != _previous:
                    torch.set_num_threads(_previous)
                _previous = None
