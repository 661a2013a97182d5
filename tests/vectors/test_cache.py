"""Behaviour of the user-vector cache, the same on the in-process map and on real Redis."""

from __future__ import annotations

import numpy as np
import pytest

from hybrec.vectors.base import UserVectorCache


def _vectors(rows: int, dim: int = 8, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((rows, dim)).astype(np.float32)


def test_round_trip_is_bit_exact(user_cache: UserVectorCache) -> None:
    vector = _vectors(1)[0]
    user_cache.set(3, "alice", vector)
    got = user_cache.get(3, "alice")
    assert got is not None
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, vector)


def test_unknown_user_is_none(user_cache: UserVectorCache) -> None:
    user_cache.set(1, "alice", _vectors(1)[0])
    assert user_cache.get(1, "bob") is None
    assert user_cache.get(2, "alice") is None


def test_returned_vector_is_a_copy(user_cache: UserVectorCache) -> None:
    user_cache.set(1, "alice", np.ones(4, np.float32))
    got = user_cache.get(1, "alice")
    assert got is not None
    got[:] = 5.0
    np.testing.assert_array_equal(user_cache.get(1, "alice"), np.ones(4, np.float32))


def test_set_many_and_get_many_keep_order(user_cache: UserVectorCache) -> None:
    ids = [f"u{i}" for i in range(1234)] + ["ünïcode user", "with:colons:and*stars"]
    matrix = _vectors(len(ids))
    user_cache.set_many(7, ids, matrix)
    asked = ["u5", "nobody", "with:colons:and*stars", "u1233", "ünïcode user"]
    got = user_cache.get_many(7, asked)
    assert got[1] is None
    np.testing.assert_array_equal(got[0], matrix[5])
    np.testing.assert_array_equal(got[2], matrix[-1])
    np.testing.assert_array_equal(got[3], matrix[1233])
    np.testing.assert_array_equal(got[4], matrix[-2])


def test_versions_are_isolated(user_cache: UserVectorCache) -> None:
    user_cache.set(1, "alice", np.full(4, 1.0, np.float32))
    user_cache.set(2, "alice", np.full(4, 2.0, np.float32))
    np.testing.assert_array_equal(user_cache.get(1, "alice"), np.full(4, 1.0, np.float32))
    np.testing.assert_array_equal(user_cache.get(2, "alice"), np.full(4, 2.0, np.float32))
    assert user_cache.list_versions() == [1, 2]


def test_delete_version_removes_only_that_version(user_cache: UserVectorCache) -> None:
    ids = [f"u{i}" for i in range(300)]
    user_cache.set_many(1, ids, _vectors(300, seed=1))
    user_cache.set_many(11, ids, _vectors(300, seed=11))  # "v1" must not match "v11"
    user_cache.set_json(1, "popular", ["a", "b"])
    removed = user_cache.delete_version(1)
    assert removed == 301
    assert user_cache.get(1, "u0") is None
    assert user_cache.get_json(1, "popular") is None
    assert user_cache.get(11, "u0") is not None
    assert user_cache.list_versions() == [11]
    assert user_cache.delete_version(1) == 0


def test_blobs_json_and_arrays(user_cache: UserVectorCache) -> None:
    user_cache.set_blob(4, "raw", b"\x00\x01binary")
    user_cache.set_json(4, "popular", {"items": ["i1", "i2"], "scores": [3.5, 1.0]})
    mean = _vectors(1, dim=16)[0]
    user_cache.set_array(4, "mean_user", mean)
    assert user_cache.get_blob(4, "raw") == b"\x00\x01binary"
    assert user_cache.get_json(4, "popular") == {"items": ["i1", "i2"], "scores": [3.5, 1.0]}
    np.testing.assert_array_equal(user_cache.get_array(4, "mean_user"), mean)
    assert user_cache.get_blob(4, "absent") is None
    assert user_cache.get_blob(5, "raw") is None


def test_active_version_pointer(user_cache: UserVectorCache) -> None:
    assert user_cache.get_active_version() is None
    user_cache.set_active_version(3)
    assert user_cache.get_active_version() == 3
    user_cache.set_active_version(4)
    assert user_cache.get_active_version() == 4
    assert user_cache.ping() is True


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda c: c.get(-1, "u"), "version"),
        (lambda c: c.get(True, "u"), "version"),
        (lambda c: c.get(1, ""), "user id"),
        (lambda c: c.get(1, "x" * 10_000), "at most"),
        (lambda c: c.set(1, "u", np.array([1.0, np.nan])), "NaN"),
        (lambda c: c.set_many(1, ["a", "b"], np.zeros((3, 4))), "3 rows for 2"),
        (lambda c: c.set_many(1, ["a", "a"], np.zeros((2, 4))), "duplicate"),
        (lambda c: c.set_blob(1, "bad name!", b""), "blob name"),
        (lambda c: c.set_active_version(-2), "version"),
        (lambda c: c.set_array(1, "mean", np.ones((2, 3))), "one vector"),
    ],
    ids=[
        "negative-version",
        "bool-version",
        "empty-user",
        "10kb-user",
        "nan-vector",
        "row-count",
        "duplicate-ids",
        "blob-name",
        "negative-active",
        "array-rows",
    ],
)
def test_bad_input_is_rejected_with_a_clear_error(user_cache: UserVectorCache, call, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=message):
        call(user_cache)
