"""The fused pruned scan of the exact index (``csrc/pruned_scan.c``), compiled once per machine and called via ctypes.

The numpy scan (:class:`hybrec.vectors.exact_search._BatchScan`) spends a third of its time between matrix products:
masking, thresholds, ``flatnonzero``, holding the GIL that the serving event loop needs. The C kernel does the same
work in one pass per block of rows, with no score matrix and with the GIL released (ctypes releases it for the call),
and each query stops at its own block, by a running ``k``-th best rather than one settled on the first rows. It
returns the same candidates' superset guarantee, and the exact ranking stays in numpy, so answers are the same bit for
bit with or without it.

The shared object is built with the machine's C compiler (``cc -O3 -march=native``) on first use, or ahead of time by
``python -m hybrec.vectors.scan_kernel``, into ``~/.cache/hybrec/kernels``, named by a hash of the source, the flags,
the compiler and the CPU's feature flags (a cache shared between machines never loads code for another CPU). Without
a compiler, or when the build fails, :func:`pruned_scan_kernel` returns ``None`` (logged once) and the numpy scan
runs.
"""

from __future__ import annotations

import argparse
import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

SOURCE = Path(__file__).resolve().parent / "csrc" / "pruned_scan.c"
FLAGS = ("-O3", "-march=native", "-shared", "-fPIC")
#: Rows per panel of the kernel's matrix form (``PANEL`` in the C source).
PANEL = 64
_COMPILERS = ("cc", "gcc", "clang")

_lock = threading.Lock()
_kernel: PrunedScanKernel | None = None
_failure: str | None = None


def default_cache_directory() -> Path:
    return Path.home() / ".cache" / "hybrec" / "kernels"


def _cpu_flags() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith(("flags", "Features")):
                    return line
    except OSError:
        pass
    return platform.processor()


def _compiler() -> tuple[str, str]:
    for name in _COMPILERS:
        path = shutil.which(name)
        if path is not None:
            version = subprocess.run([path, "--version"], capture_output=True, text=True, check=False).stdout
            return path, version
    raise RuntimeError(f"no C compiler found (looked for {', '.join(_COMPILERS)})")


def build(cache_directory: str | Path | None = None) -> Path:
    """Compile the kernel unless the cache holds it already; returns the shared object's path."""
    compiler, version = _compiler()
    source = SOURCE.read_bytes()
    parts = [source, " ".join(FLAGS).encode(), version.encode(), _cpu_flags().encode(), platform.machine().encode()]
    key = hashlib.sha256(b"\0".join(parts)).hexdigest()[:16]
    directory = Path(cache_directory) if cache_directory is not None else default_cache_directory()
    target = directory / f"pruned_scan-{key}.so"
    if target.exists():
        return target
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".pruned_scan-", suffix=".so", dir=directory)
    os.close(fd)
    try:
        done = subprocess.run(
            [compiler, *FLAGS, "-o", tmp, str(SOURCE), "-lm"], capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"{compiler} failed on {SOURCE}: {done.stderr.strip()[-2000:]}")
        os.replace(tmp, target)  # atomic: a concurrent process loads the old file or the new one
    finally:
        Path(tmp).unlink(missing_ok=True)
    logger.info("compiled the pruned-scan kernel into %s", target)
    return target


class PrunedScanKernel:
    """The loaded kernel: :meth:`scan` runs it over one batch."""

    def __init__(self, path: Path) -> None:
        self.path = path
        library = ctypes.CDLL(str(path))  # CDLL (not PyDLL): the GIL is released during each call
        function = library.hybrec_pruned_scan
        pointer, int64 = ctypes.c_void_p, ctypes.c_int64
        function.argtypes = [
            pointer, int64, int64, pointer, pointer,  # matrix_t, dim, n, norms, order
            pointer, int64, pointer, pointer, pointer,  # queries, n_queries, k, slack, stop_scale
            pointer, pointer, pointer,  # allowed, excluded_start, excluded
            int64, pointer, pointer, pointer, pointer,  # capacity, out_count, out_positions, out_scores, out_read
        ]  # fmt: skip
        function.restype = ctypes.c_int
        self._function = function

    def scan(
        self,
        panels: np.ndarray,
        n: int,
        norms: np.ndarray,
        order: np.ndarray,
        queries: np.ndarray,
        k: np.ndarray,
        slack: np.ndarray,
        stop_scale: np.ndarray,
        allowed: Sequence[np.ndarray | None],
        excluded_start: np.ndarray,
        excluded: np.ndarray,
        capacity: int,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """One batch's candidates: ``(count [q], positions [q, capacity], scores [q, capacity], read [q])``, where
        ``count`` is -1 for a query that had more than ``capacity`` candidates at once, and ``read`` the positions
        each query read.

        ``panels`` holds the ``n`` norm-sorted rows (:func:`panels_of`), ``norms`` their ``[n + 1]`` float64 norms,
        ``order`` the row at each position; per query: ``k`` (int64), ``slack`` and ``stop_scale`` (float64,
        ``|q| (1 + error)``), the filter's ``allowed`` bool array by row (or ``None``), and its excluded positions,
        ascending, ``excluded[excluded_start[j]:excluded_start[j + 1]]``.
        """
        n_queries, dim = queries.shape
        for name, array, dtype in (
            ("panels", panels, np.float32),
            ("norms", norms, np.float64),
            ("order", order, np.int64),
            ("queries", queries, np.float32),
            ("k", k, np.int64),
            ("slack", slack, np.float64),
            ("stop_scale", stop_scale, np.float64),
            ("excluded_start", excluded_start, np.int64),
            ("excluded", excluded, np.int64),
        ):
            if array.dtype != dtype or not array.flags.c_contiguous:
                raise ValueError(f"{name}: expected a C-contiguous {np.dtype(dtype)} array, got {array.dtype}")
        if panels.shape != (-(-n // PANEL), dim, PANEL) or norms.shape != (n + 1,) or order.shape != (n,):
            raise ValueError(f"panels, norms and order do not hold {n} rows of dimension {dim}")
        if k.shape != (n_queries,) or slack.shape != (n_queries,) or stop_scale.shape != (n_queries,):
            raise ValueError("k, slack and stop_scale need one entry per query")
        if len(allowed) != n_queries or excluded_start.shape != (n_queries + 1,):
            raise ValueError("allowed and excluded_start need one entry per query")
        if excluded_start[0] != 0 or excluded_start[-1] > excluded.size or np.any(np.diff(excluded_start) < 0):
            raise ValueError("excluded_start must rise from 0 to at most len(excluded)")
        if capacity < 1 or np.any(k > n):
            raise ValueError("capacity must be positive and k at most n")
        masks = np.array([0 if a is None else _bool_address(a, n) for a in allowed], dtype=np.uintp)
        count = np.empty(n_queries, dtype=np.int64)
        positions = np.empty((n_queries, capacity), dtype=np.int64)
        scores = np.empty((n_queries, capacity), dtype=np.float32)
        read = np.empty(n_queries, dtype=np.int64)
        status = self._function(
            panels.ctypes.data, dim, n, norms.ctypes.data, order.ctypes.data,
            queries.ctypes.data, n_queries, k.ctypes.data, slack.ctypes.data, stop_scale.ctypes.data,
            masks.ctypes.data, excluded_start.ctypes.data, excluded.ctypes.data,
            capacity, count.ctypes.data, positions.ctypes.data, scores.ctypes.data, read.ctypes.data,
        )  # fmt: skip
        if status != 0:
            raise MemoryError("the pruned-scan kernel could not allocate its working memory")
        return count, positions, scores, read


def panels_of(sorted_vectors: np.ndarray) -> np.ndarray:
    """The kernel's form of an ``[n, dim]`` matrix: ``[ceil(n / 64), dim, 64]`` float32, panel ``p`` holding rows
    ``64 p ... 64 p + 63`` as columns (zero columns past ``n``), starting on a 64-byte boundary (a cache line: an
    unaligned array made every load span two lines, and the scan 1.5 times slower)."""
    n, dim = sorted_vectors.shape
    count = -(-n // PANEL)
    buffer = np.empty(count * dim * PANEL + 16, dtype=np.float32)
    skip = (-buffer.ctypes.data % 64) // 4
    panels = buffer[skip : skip + count * dim * PANEL].reshape(count, dim, PANEL)
    padded = np.zeros((count * PANEL, dim), dtype=np.float32)
    padded[:n] = sorted_vectors
    panels[:] = padded.reshape(count, PANEL, dim).transpose(0, 2, 1)
    return panels


def _bool_address(allowed: np.ndarray, rows: int) -> int:
    if allowed.dtype != np.bool_ or allowed.shape != (rows,) or not allowed.flags.c_contiguous:
        raise ValueError(f"allowed: expected a contiguous bool array of {rows} rows")
    return int(allowed.ctypes.data)


def pruned_scan_kernel() -> PrunedScanKernel | None:
    """The kernel, built and loaded on first call; ``None`` (logged once) where it cannot be built here."""
    global _kernel, _failure
    if _kernel is not None or _failure is not None:
        return _kernel
    with _lock:
        if _kernel is None and _failure is None:
            try:
                _kernel = PrunedScanKernel(build())
            except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
                _failure = f"{type(exc).__name__}: {exc}"
                logger.warning("pruned-scan kernel unavailable, the exact index scans with numpy: %s", _failure)
        return _kernel


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Compile the exact index's pruned-scan kernel ahead of time.")
    parser.add_argument("--cache-dir", default=None, help=f"where to put it (default {default_cache_directory()})")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        path = build(args.cache_dir)
        PrunedScanKernel(path)
    except (OSError, RuntimeError) as exc:
        logger.error("%s", exc)
        return 1
    print(f"pruned-scan kernel ready: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
