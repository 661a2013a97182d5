"""Plain helpers for tests that need real servers or the shared datasets (imported as ``servers``).

Kept out of conftest.py on purpose: with several conftest.py files in the tree, ``from conftest import x`` resolves
to whichever was imported first.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("HYBREC_SHARED_DATA_DIR", REPO_ROOT.parent / "shared" / "data")).resolve()
POSTGRES_URL = os.environ.get("HYBREC_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("HYBREC_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def find_free_port() -> int:
    """A TCP port on 127.0.0.1 nothing listens on right now (for a server a test starts, or a "server down" URL)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def create_postgres_database(prefix: str = "hybrec_test") -> str:
    """A new, empty, uniquely named database on the test server; returns its URL (drop it with
    :func:`drop_postgres_database`)."""
    import uuid

    from sqlalchemy import create_engine, make_url

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = create_engine(make_url(POSTGRES_URL).set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    finally:
        admin.dispose()
    return make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)


def drop_postgres_database(url: str) -> None:
    from sqlalchemy import create_engine, make_url

    from hybrec.store.engine import dispose_engine

    dispose_engine(url)
    admin = create_engine(make_url(url).set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)')
    finally:
        admin.dispose()


@contextmanager
def running_server(
    command: list[str],
    ready_url: str,
    log_path: Path,
    *,
    what: str,
    timeout_s: float = 60.0,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """Start ``command`` (output to ``log_path``), wait until ``GET ready_url`` answers 200, stop it on exit.

    Fails the test, quoting the end of the log, when the process exits first or does not get ready in ``timeout_s``.
    """
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if process.poll() is not None:
                pytest.fail(f"{what} exited with {process.returncode}: {log_path.read_text()[-2000:]}")
            try:
                if httpx.get(ready_url, timeout=2.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(
                    f"{what} at {ready_url} was not ready within {timeout_s:g} s: {log_path.read_text()[-2000:]}"
                )
            time.sleep(0.2)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass(frozen=True)
class LlamaServer:
    """A running ``python -m llama_cpp.server``: its ``/v1`` URL, the model alias it serves and its process."""

    url: str
    model: str
    process: subprocess.Popen[bytes]


def llama_server_command(gguf: Path, port: int, *, n_ctx: int = 2048, model_alias: str = "qwen-test") -> list[str]:
    """``python -m llama_cpp.server`` serving ``gguf`` on loopback ``port`` with one thread (generation collapses with
    two on a busy 2-core machine)."""
    return [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(gguf),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_threads",
        "1",
        "--n_threads_batch",
        "1",
        "--n_ctx",
        str(n_ctx),
        "--model_alias",
        model_alias,
    ]


@contextmanager
def llama_cpp_server(
    gguf: Path, log_path: Path, *, n_ctx: int = 2048, model_alias: str = "qwen-test", timeout_s: float = 180.0
) -> Iterator[LlamaServer]:
    """Serve ``gguf`` with llama-cpp-python's OpenAI-compatible server on loopback (one thread; stopped on exit).

    Skips the test when llama-cpp-python is not importable (an optional extra that compiles from source)."""
    pytest.importorskip("llama_cpp")
    port = find_free_port()
    cmd = llama_server_command(gguf, port, n_ctx=n_ctx, model_alias=model_alias)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    url = f"http://127.0.0.1:{port}/v1"
    with running_server(cmd, url + "/models", log_path, what="llama_cpp.server", timeout_s=timeout_s, env=env) as proc:
        yield LlamaServer(url, model_alias, proc)
