"""Build and load the fused C++ row solvers (``csrc/als_cg.cpp``) as a torch extension.

The extension is compiled with :func:`torch.utils.cpp_extension.load` the first time it is needed (or ahead of time by
``python -m hybrec.als.build``) and cached in a build directory keyed by the torch version, so later processes only
load the shared object. When no compiler is available the caller falls back to the vectorised PyTorch solvers.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from types import ModuleType

import torch

log = logging.getLogger(__name__)

SOURCE = Path(__file__).resolve().parent / "csrc" / "als_cg.cpp"
EXTENSION_NAME = "hybrec_als_cg"
_lock = threading.Lock()
_loaded: ModuleType | None = None
_failure: str | None = None


def default_build_directory() -> Path:
    """``~/.cache/hybrec/torch_extensions/torch-<version>``: one cache per torch build."""
    version = torch.__version__.replace("+", "_")
    return Path.home() / ".cache" / "hybrec" / "torch_extensions" / f"torch-{version}"


def load_kernel(build_directory: str | Path | None = None, verbose: bool = False) -> ModuleType:
    """Compile (if needed) and import the fused solvers; raises ``RuntimeError`` when the build fails."""
    global _loaded, _failure
    with _lock:
        if _loaded is not None:
            return _loaded
        from torch.utils import cpp_extension

        directory = Path(build_directory) if build_directory else default_build_directory()
        directory.mkdir(parents=True, exist_ok=True)
        log.info("loading the fused ALS kernel (compiling into %s if needed)", directory)
        try:
            _loaded = cpp_extension.load(
                name=EXTENSION_NAME,
                sources=[str(SOURCE)],
                extra_cflags=["-O3", "-march=native", "-fopenmp"],
                extra_ldflags=["-fopenmp"],
                build_directory=str(directory),
                verbose=verbose,
            )
        except Exception as exc:  # compiler missing, headers missing, ...: the caller decides whether to fall back
            _failure = f"{type(exc).__name__}: {exc}"
            raise RuntimeError(f"could not build the fused ALS kernel from {SOURCE}: {_failure}") from exc
        return _loaded


def kernel_is_loaded() -> bool:
    """Whether the fused solvers are already loaded in this process."""
    return _loaded is not None


def kernel_is_built(build_directory: str | Path | None = None) -> bool:
    """Whether a compiled kernel sits in the build directory, so loading it is quick (no compile)."""
    directory = Path(build_directory) if build_directory else default_build_directory()
    return _loaded is not None or (_failure is None and (directory / f"{EXTENSION_NAME}.so").exists())


def fused_kernel_or_none() -> ModuleType | None:
    """The fused solvers, or ``None`` (logged once) when they cannot be built on this machine."""
    if _loaded is not None:
        return _loaded
    if _failure is not None:
        return None
    try:
        return load_kernel()
    except RuntimeError as exc:
        log.warning("%s; using the PyTorch solvers instead", exc)
        return None
