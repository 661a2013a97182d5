"""Progress bars for the dataset readers.

Readers show a ``tqdm`` bar over the bytes of the file they stream. The bar is shown on a terminal and hidden
otherwise (``tqdm``'s own tty detection), unless :func:`set_progress_enabled` forces it on or off — the CLI's
``--no-progress`` flag calls it with ``False``.
"""

from __future__ import annotations

from tqdm.auto import tqdm

_enabled: bool | None = None  # None: show when stderr is a terminal


def set_progress_enabled(enabled: bool | None) -> None:
    """Force progress bars on (``True``) or off (``False``), or back to terminal detection (``None``)."""
    global _enabled
    _enabled = enabled


def progress_enabled() -> bool | None:
    """The current setting: ``True``/``False`` when forced, ``None`` when decided by terminal detection."""
    return _enabled


def byte_progress(total: int | None, desc: str) -> tqdm:
    """A bar counting bytes of a file (``total`` may be ``None`` when the size is unknown)."""
    disable = None if _enabled is None else not _enabled
    return tqdm(total=total, desc=desc, unit="B", unit_scale=True, unit_divisor=1024, disable=disable, leave=False)


def count_progress(total: int | None, desc: str, unit: str = "rows") -> tqdm:
    """A bar counting generated or processed records."""
    disable = None if _enabled is None else not _enabled
    return tqdm(total=total, desc=desc, unit=unit, unit_scale=True, disable=disable, leave=False)
