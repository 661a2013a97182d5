"""The exact index's search as one compiled call (``csrc/pruned_scan.c``), built once per machine, called via ctypes.

The numpy scan (:class:`hybrec.vectors.exact_search._BatchScan`) spends much of its time between matrix products,
masking, thresholding and ranking with numpy calls that hold the GIL the serving event loop needs. The C kernel does
it all in one call with the GIL released (ctypes releases it): it reads the norm-sorted matrix in 64-row panels, in
vectors of the machine's width, as many queries sharing each load as its registers hold; it keeps a running ``k``-th
best per query, stops each query at its own block, then ranks the candidates by exact score with the arithmetic of
:func:`~hybrec.vectors.exact_search.exact_scores`. So its answers are the numpy scan's, bit for bit. On the
benchmark's 100k x 64 items, a batch of 8 costs 0.10 ms per query against numpy's 0.31-0.43 ms on a 2-core EPYC with
AVX-512, and 0.14 ms against 0.31 ms on a 2-core Zen 3 with AVX2.

The shared object is built with the machine's C compiler (``cc -O3 -march=native``) on first use, or ahead of time by
``python -m hybrec.vectors.scan_kernel`` (``make install``, the Dockerfile), into ``~/.cache/hybrec/kernels``, named
by a hash of the source, the flags, the compiler and the CPU's feature flags (a cache shared between machines never
loads code built for another CPU). Without a compiler, or when the build fails, :func:`pruned_scan_kernel` returns
``None`` (logged once) and the numpy scan runs.
"""

from __future__ import annotations

import argparse
import ctypes
import hashlib
import logging
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

SOURCE = Path(__file__).resolve().parent / "csrc" / "pruned_scan.c"
FLAGS = ("-O3", "-march=native", "-shared", "-fPIC", "-pthread")
#: Rows per panel of the kernel's matrix form (``PANEL`` in the C source).
PANEL = 64
#: Relative rounding of a float32 value stored as float16 (11 significant bits), above float16's subnormals.
HALF_ROUNDING = 2.0**-11
#: Absolute rounding of a float16 subnormal (below 2**-14): half the spacing of 2**-24.
HALF_SUBNORMAL_ROUNDING = 2.0**-25
#: Values of this size or more do not fit a float16 panel (its largest finite value is 65504).
HALF_LIMIT = 65504.0
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


def build(cache_directory: str | Path | None = None, defines: Sequence[str] = ()) -> Path:
    """Compile the kernel unless the cache holds it already; returns the shared object's path.

    ``defines`` (``"WIDTH=4"``, ...) override the source's choices for this machine, to test or measure the code
    another machine would run; the product never passes any.
    """
    compiler, version = _compiler()
    source = SOURCE.read_bytes()
    flags = [*FLAGS, *(f"-D{define}" for define in defines)]
    parts = [source, " ".join(flags).encode(), version.encode(), _cpu_flags().encode(), platform.machine().encode()]
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
            [compiler, *flags, "-o", tmp, str(SOURCE), "-lm"], capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"{compiler} failed on {SOURCE}: {done.stderr.strip()[-2000:]}")
        os.replace(tmp, target)  # atomic: a concurrent process loads the old file or the new one
    finally:
        Path(tmp).unlink(missing_ok=True)
    logger.info("compiled the pruned-scan kernel into %s", target)
    return target


@dataclass(frozen=True)
class KernelMatrix:
    """One norm-sorted matrix in the kernel's form, checked once, with the addresses each call passes.

    ``panels`` holds the ``n`` norm-sorted rows (:func:`panels_of`), ``vectors`` the ``[n, dim]`` rows in their own
    order (the exact rescoring reads them), ``norms`` the ``[n + 1]`` float64 sorted norms ending in 0, ``order`` the
    row at each position and ``position`` its inverse.
    """

    panels: np.ndarray
    vectors: np.ndarray
    norms: np.ndarray
    order: np.ndarray
    position: np.ndarray
    addresses: tuple[int, int, int, int, int] = field(init=False)

    def __post_init__(self) -> None:
        n, dim = self.vectors.shape
        if self.panels.dtype not in (np.float32, np.float16) or not self.panels.flags.c_contiguous:
            raise ValueError(f"panels: expected a C-contiguous float32 or float16 array, got {self.panels.dtype}")
        for name, array, dtype in (
            ("vectors", self.vectors, np.float32),
            ("norms", self.norms, np.float64),
            ("order", self.order, np.int64),
            ("position", self.position, np.int64),
        ):
            if array.dtype != dtype or not array.flags.c_contiguous:
                raise ValueError(f"{name}: expected a C-contiguous {np.dtype(dtype)} array, got {array.dtype}")
        if self.panels.shape != (-(-n // PANEL), dim, PANEL):
            raise ValueError(f"panels of shape {self.panels.shape} do not hold {n} rows of dimension {dim}")
        if self.norms.shape != (n + 1,) or self.order.shape != (n,) or self.position.shape != (n,):
            raise ValueError(f"norms, order and position do not match {n} rows")
        arrays = (self.panels, self.vectors, self.norms, self.order, self.position)
        object.__setattr__(self, "addresses", tuple(int(a.ctypes.data) for a in arrays))

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    @property
    def rows(self) -> int:
        return int(self.vectors.shape[0])


class PrunedScanKernel:
    """The loaded kernel: :meth:`search` runs it over one batch of queries."""

    def __init__(self, path: Path) -> None:
        self.path = path
        library = ctypes.CDLL(str(path))  # CDLL (not PyDLL): the GIL is released during each call
        function = library.hybrec_exact_search
        pointer, int64 = ctypes.c_void_p, ctypes.c_int64
        function.argtypes = [
            pointer, pointer, int64, int64,  # panels, vectors, dim, n
            pointer, pointer, pointer,  # norms, order, position
            ctypes.c_double, pointer, int64, pointer, pointer,  # relative_error, queries, n_queries, k, allowed
            pointer, pointer, int64,  # excluded_start, excluded_rows, k_max
            pointer, pointer, pointer, pointer,  # out_rows, out_scores, out_count, out_read
        ]  # fmt: skip
        function.restype = ctypes.c_int
        self._function = function
        self.library = library  # its scan worker too (hybrec.vectors.scan_worker)
        #: What the panels hold: float16 where the CPU converts it in one instruction (F16C), else float32.
        self.panel_dtype = np.dtype(np.float16 if library.hybrec_panel_bytes() == 2 else np.float32)

    def search(
        self,
        matrix: KernelMatrix,
        queries: np.ndarray,
        k: Sequence[int],
        allowed: Sequence[np.ndarray | None],
        excluded: Sequence[np.ndarray],
        relative_error: float,
    ) -> tuple[list[tuple[np.ndarray, np.ndarray]], np.ndarray]:
        """Each query's top ``k`` allowed rows and their exact scores, best first, ties by lower row; and the
        positions each query read.

        ``queries`` is ``[q, dim]`` float32; per query, ``allowed`` is the filter's bool array by row (or ``None``)
        and ``excluded`` the int64 rows it must not return. ``relative_error`` bounds a float32 score's error
        relative to ``|q| |v|`` (:func:`~hybrec.vectors.exact_search.error_bound`).
        """
        call = self.prepare(matrix, queries, k, allowed, excluded, relative_error)
        if self._function(*call.arguments) != 0:
            raise MemoryError("the exact-search kernel ran out of memory")
        return call.results(), call.read

    def prepare(
        self,
        matrix: KernelMatrix,
        queries: np.ndarray,
        k: Sequence[int],
        allowed: Sequence[np.ndarray | None],
        excluded: Sequence[np.ndarray],
        relative_error: float,
    ) -> KernelCall:
        """:meth:`search`'s arguments checked and laid out for the kernel, with its output arrays: for a caller that
        runs the call elsewhere (:mod:`hybrec.vectors.scan_worker`)."""
        n_queries = len(k)
        if matrix.panels.dtype != self.panel_dtype:
            raise ValueError(f"panels: this kernel reads {self.panel_dtype} panels, got {matrix.panels.dtype}")
        if self.panel_dtype == np.float16:
            relative_error = half_relative_error(relative_error, matrix.dim, float(matrix.norms[0]))
        if queries.dtype != np.float32 or not queries.flags.c_contiguous or queries.shape != (n_queries, matrix.dim):
            raise ValueError(f"queries: expected a C-contiguous float32 array of shape ({n_queries}, {matrix.dim})")
        if len(allowed) != n_queries or len(excluded) != n_queries:
            raise ValueError("allowed and excluded need one entry per query")
        k_array = np.array(k, dtype=np.int64)
        if n_queries and (k_array.min() < 0 or k_array.max() > matrix.rows):
            raise ValueError(f"k must be between 0 and the {matrix.rows} rows")
        masks = np.array([0 if a is None else _bool_address(a, matrix.rows) for a in allowed], dtype=np.uintp)
        excluded_start = np.zeros(n_queries + 1, dtype=np.int64)
        np.cumsum([e.size for e in excluded], out=excluded_start[1:])
        excluded_rows = np.concatenate([*excluded, _NO_ROWS]).astype(np.int64, copy=False)
        if excluded_rows.size and (excluded_rows.min() < 0 or excluded_rows.max() >= matrix.rows):
            raise ValueError("excluded rows must be rows of the matrix")
        k_max = max(1, int(k_array.max())) if n_queries else 1
        rows = np.empty((n_queries, k_max), dtype=np.int64)
        scores = np.empty((n_queries, k_max), dtype=np.float32)
        count = np.empty(n_queries, dtype=np.int64)
        read = np.empty(n_queries, dtype=np.int64)
        panels, vectors, norms, order, position = matrix.addresses
        arguments = (
            panels, vectors, matrix.dim, matrix.rows, norms, order, position,
            relative_error, queries.ctypes.data, n_queries, k_array.ctypes.data, masks.ctypes.data,
            excluded_start.ctypes.data, excluded_rows.ctypes.data, k_max,
            rows.ctypes.data, scores.ctypes.data, count.ctypes.data, read.ctypes.data,
        )  # fmt: skip
        # Every array the addresses point into, the matrix and the filters' masks included, lives as long as the call.
        alive = (matrix, queries, k_array, masks, list(allowed), excluded_start, excluded_rows)
        return KernelCall(arguments, rows, scores, count, read, alive)


@dataclass(frozen=True, slots=True)
class KernelCall:
    """One prepared call of the kernel: its arguments (addresses into the arrays it holds) and its output arrays."""

    arguments: tuple[Any, ...]
    rows: np.ndarray
    scores: np.ndarray
    count: np.ndarray
    read: np.ndarray
    alive: tuple[Any, ...]

    def results(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """Each query's rows and scores, best first (after the call returned)."""
        return [(self.rows[j, :c], self.scores[j, :c]) for j, c in enumerate(self.count.tolist())]


_NO_ROWS = np.empty(0, dtype=np.int64)


def half_relative_error(relative_error: float, dim: int, max_norm: float) -> float:
    """The error bound of a score read from float16 panels, relative to ``|q| * max_norm`` like ``relative_error``
    (float32 arithmetic's bound): each stored value is off by at most ``HALF_ROUNDING`` of itself, or
    ``HALF_SUBNORMAL_ROUNDING`` below float16's normal range, so a score by at most ``HALF_ROUNDING |q| |v| +
    HALF_SUBNORMAL_ROUNDING sqrt(dim) |q|`` (Cauchy-Schwarz), on top of the float32 sum's own error over the
    rounded values (whose norm is ``1 + HALF_ROUNDING`` times at most)."""
    subnormal = HALF_SUBNORMAL_ROUNDING * math.sqrt(dim) / max_norm if max_norm > 0 else 0.0
    return relative_error * (1 + 2 * HALF_ROUNDING) + HALF_ROUNDING + subnormal


def fits_half(vectors: np.ndarray) -> bool:
    """Whether every value of ``vectors`` is finite in a float16 panel (no copy of the matrix: its extremes)."""
    return vectors.size == 0 or (float(vectors.max()) < HALF_LIMIT and float(vectors.min()) > -HALF_LIMIT)


def panels_of(sorted_vectors: np.ndarray, dtype: np.dtype | type = np.float32) -> np.ndarray:
    """The kernel's form of an ``[n, dim]`` matrix: ``[ceil(n / 64), dim, 64]`` of ``dtype`` (float32, or float16
    for a kernel whose :attr:`~PrunedScanKernel.panel_dtype` it is), panel ``p`` holding rows ``64 p ... 64 p + 63``
    as columns (zero columns past ``n``), starting on a 64-byte boundary (a cache line: an unaligned array made every
    load span two lines, and the scan 1.5 times slower)."""
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float16):
        raise ValueError(f"panels hold float32 or float16, not {dtype}")
    if dtype == np.float16 and not fits_half(sorted_vectors):
        raise ValueError(f"values of {HALF_LIMIT:g} or more do not fit float16 panels")
    n, dim = sorted_vectors.shape
    count = -(-n // PANEL)
    buffer = np.empty(count * dim * PANEL + 64 // dtype.itemsize, dtype=dtype)
    skip = (-buffer.ctypes.data % 64) // dtype.itemsize
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
