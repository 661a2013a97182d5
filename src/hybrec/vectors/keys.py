"""Validation of the names a user-vector cache stores under, and the Redis key layout.

Keys (``{ns}`` is the cache namespace, letters/digits/``._-`` only, so it never needs escaping in a SCAN pattern)::

    hybrec:{ns}:v{version}:user:{user_id}   float32 little-endian vector
    hybrec:{ns}:v{version}:blob:{name}      small per-version extra (JSON, bytes)
    hybrec:{ns}:versions                    set of versions that hold anything
    hybrec:{ns}:active_version              the version readers serve
"""

from __future__ import annotations

import re

import numpy as np

MAX_USER_ID_LENGTH = 1024
_NAME = re.compile(r"^[A-Za-z0-9._-]{1,128}$")


def validate_version(version: int) -> int:
    if isinstance(version, bool) or not isinstance(version, int | np.integer) or version < 0:
        raise ValueError(f"version must be a non-negative integer, got {version!r}")
    return int(version)


def validate_user_id(user_id: str) -> str:
    if not isinstance(user_id, str) or not user_id:
        raise ValueError(f"user id must be a non-empty string, got {user_id!r}")
    if len(user_id) > MAX_USER_ID_LENGTH:
        raise ValueError(f"user id is {len(user_id)} characters long; at most {MAX_USER_ID_LENGTH} are allowed")
    return user_id


def validate_namespace(namespace: str) -> str:
    if not isinstance(namespace, str) or not _NAME.match(namespace):
        raise ValueError(f"invalid cache namespace {namespace!r}: use 1-128 characters from [A-Za-z0-9._-]")
    return namespace


def validate_blob_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"invalid blob name {name!r}: use 1-128 characters from [A-Za-z0-9._-]")
    return name


class KeyLayout:
    """The Redis keys of one namespace."""

    def __init__(self, namespace: str) -> None:
        self.namespace = validate_namespace(namespace)
        self.root = f"hybrec:{self.namespace}"
        self.versions = f"{self.root}:versions"
        self.active_version = f"{self.root}:active_version"

    def version_prefix(self, version: int) -> str:
        return f"{self.root}:v{version}:"

    def user(self, version: int, user_id: str) -> str:
        return f"{self.root}:v{version}:user:{user_id}"

    def blob(self, version: int, name: str) -> str:
        return f"{self.root}:v{version}:blob:{name}"
