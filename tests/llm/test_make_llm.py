"""make_llm picks the backend settings name."""

from __future__ import annotations

from pathlib import Path

import pytest
from llm_testing import Reply, ScriptedServer

from hybrec.config import Settings
from hybrec.llm import LLM, ChatMessage, LLMUnavailable, make_llm
from hybrec.llm.openai_compat import OpenAICompatLLM
from hybrec.llm.rules import RuleBasedLLM


def test_none_backend_is_rule_based() -> None:
    llm = make_llm(Settings(llm_backend="none"))
    assert isinstance(llm, RuleBasedLLM) and isinstance(llm, LLM)


def test_openai_backend_uses_url_model_and_key(scripted_server: ScriptedServer) -> None:
    settings = Settings(
        llm_backend="openai",
        llm_base_url=scripted_server.url,
        llm_model="gpt-x",
        llm_api_key="k-123",
        llm_timeout_s=5,
        llm_json_mode="json_object",
    )
    llm = make_llm(settings)
    assert isinstance(llm, OpenAICompatLLM) and llm.name == "openai:gpt-x"
    scripted_server.script = [Reply(body={"choices": [{"message": {"content": "hi"}}]})]
    assert llm.complete([ChatMessage("user", "hello")]) == "hi"
    assert scripted_server.requests[0]["headers"]["Authorization"] == "Bearer k-123"
    assert scripted_server.requests[0]["json"]["model"] == "gpt-x"
    assert llm.json_mode == "json_object"


def test_ollama_backend_pulls_then_talks_v1(scripted_server: ScriptedServer) -> None:
    settings = Settings(llm_backend="ollama", llm_base_url=scripted_server.url, llm_model="mistral:7b")
    scripted_server.script = [Reply(body='{"status": "success"}\n')]
    llm = make_llm(settings, pull=True)
    assert isinstance(llm, OpenAICompatLLM) and llm.name == "ollama:mistral:7b"
    assert scripted_server.requests[0]["path"] == "/api/pull"


def test_llama_cpp_without_weights_is_unavailable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from hybrec.llm import weights

    ghost = weights.WeightProfile("qwen2.5-0.5b", ("hybrec-no-such-part1",), "0" * 64, 1, "x")
    monkeypatch.setitem(weights.PROFILES, "qwen2.5-0.5b", ghost)
    with pytest.raises(LLMUnavailable, match="weight package"):
        make_llm(Settings(llm_backend="llama_cpp", llm_profile="qwen2.5-0.5b", var_dir=tmp_path))
