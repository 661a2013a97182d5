"""pull_model against a real loopback HTTP server speaking Ollama's streamed /api/pull protocol."""

from __future__ import annotations

import json

import pytest
from llm_testing import Reply, ScriptedServer

from hybrec.llm.base import LLMRequestError, LLMUnavailable
from hybrec.llm.ollama import native_root, pull_model
from servers import find_free_port


def ndjson(*events: dict[str, object]) -> str:
    return "".join(json.dumps(e) + "\n" for e in events)


def test_native_root_strips_v1() -> None:
    assert native_root("http://ollama:11434/v1/") == "http://ollama:11434"
    assert native_root("http://ollama:11434") == "http://ollama:11434"


def test_pull_streams_progress_until_success(scripted_server: ScriptedServer) -> None:
    scripted_server.script = [
        Reply(
            body=ndjson(
                {"status": "pulling manifest"},
                {"status": "pulling abc", "digest": "sha256:abc", "total": 100, "completed": 40},
                {"status": "pulling abc", "digest": "sha256:abc", "total": 100, "completed": 100},
                {"status": "verifying sha256 digest"},
                {"status": "success"},
            )
        )
    ]
    pull_model(scripted_server.url, "mistral:7b", progress=False)
    request = scripted_server.requests[0]
    assert (request["method"], request["path"]) == ("POST", "/api/pull")
    assert request["json"] == {"model": "mistral:7b", "stream": True}


def test_pull_error_event_is_a_request_error(scripted_server: ScriptedServer) -> None:
    scripted_server.script = [
        Reply(body=ndjson({"status": "pulling manifest"}, {"error": "pull model manifest: file does not exist"}))
    ]
    with pytest.raises(LLMRequestError, match="file does not exist"):
        pull_model(scripted_server.url, "no-such-model", progress=False)


def test_pull_without_success_is_an_error(scripted_server: ScriptedServer) -> None:
    scripted_server.script = [Reply(body=ndjson({"status": "pulling manifest"}))]
    with pytest.raises(Exception, match="without success"):
        pull_model(scripted_server.url, "m", progress=False)


def test_pull_5xx_and_down_server_are_unavailable(scripted_server: ScriptedServer) -> None:
    scripted_server.script = [Reply(status=500, body={"error": "disk full"})]
    with pytest.raises(LLMUnavailable, match="disk full"):
        pull_model(scripted_server.url, "m", progress=False)
    with pytest.raises(LLMUnavailable, match="cannot reach"):
        pull_model(f"http://127.0.0.1:{find_free_port()}/v1", "m", progress=False)
