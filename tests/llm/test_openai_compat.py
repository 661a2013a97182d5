"""OpenAICompatLLM against real servers: llama-cpp-python's server with the 0.5B model, and a scripted loopback server
for the failure paths (5xx, 429, timeouts, invalid JSON) that a healthy model server cannot be made to produce."""

from __future__ import annotations

import json

import pytest
from llm_testing import Reply, ScriptedServer, chat_reply
from pydantic import BaseModel

from hybrec.llm.base import ChatMessage, LLMOutputError, LLMRequestError, LLMUnavailable
from hybrec.llm.openai_compat import OpenAICompatLLM
from servers import find_free_port

USER_HI = [ChatMessage("user", "Say hello in one short sentence.")]


class Answer(BaseModel):
    answer: str


# --- scripted server: protocol details and failure paths ---------------------------------------------------------
def test_complete_sends_openai_payload_and_bearer_key(scripted_server: ScriptedServer) -> None:
    scripted_server.script = [chat_reply("Hello!")]
    llm = OpenAICompatLLM(scripted_server.url, "m1", api_key="s3cret", backoff_s=0)
    text = llm.complete([ChatMessage("system", "be brief"), *USER_HI], max_tokens=7, temperature=0.1, stop=["\n"])
    assert text == "Hello!"
    request = scripted_server.requests[0]
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["Authorization"] == "Bearer s3cret"
    assert request["json"] == {
        "model": "m1",
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": USER_HI[0].content}],
        "max_tokens": 7,
        "temperature": 0.1,
        "stop": ["\n"],
    }


def test_no_authorization_header_without_key(scripted_server: ScriptedServer) -> None:
    scripted_server.script = [chat_reply("x")]
    OpenAICompatLLM(scripted_server.url, "m1").complete(USER_HI)
    assert "Authorization" not in scripted_server.requests[0]["headers"]


def test_retries_5xx_then_succeeds(scripted_server: ScriptedServer) -> None:
    scripted_server.script = [
        Reply(status=500, body={"error": "boom"}),
        Reply(status=503, body="busy"),
        chat_reply("ok"),
    ]
    llm = OpenAICompatLLM(scripted_server.url, "m1", max_retries=2, backoff_s=0.01)
    assert llm.complete(USER_HI) == "ok"
    assert len(scripted_server.requests) == 3


def test_retries_429_honouring_retry_after(scripted_server: ScriptedServer) -> None:
    scripted_server.script = [
        Reply(status=429, body={"error": "slow down"}, headers={"Retry-After": "0"}),
        chat_reply("ok"),
    ]
    assert OpenAICompatLLM(scripted_server.url, "m1", backoff_s=0.01).complete(USER_HI) == "ok"
    assert len(scripted_server.requests) == 2


def test_5xx_after_retries_is_unavailable(scripted_server: ScriptedServer) -> None:
    scripted_server.script = [Reply(status=502, body="bad gateway")] * 3
    llm = OpenAICompatLLM(scripted_server.url, "m1", max_retries=2, backoff_s=0.01)
    with pytest.raises(LLMUnavailable, match="HTTP 502 after 3 attempts"):
        llm.complete(USER_HI)
    assert len(scripted_server.requests) == 3


def test_4xx_is_a_request_error_without_retry(scripted_server: ScriptedServer) -> None:
    scripted_server.script = [Reply(status=404, body={"error": "model 'nope' not found"})]
    with pytest.raises(LLMRequestError, match="not found"):
        OpenAICompatLLM(scripted_server.url, "nope", backoff_s=0.01).complete(USER_HI)
    assert len(scripted_server.requests) == 1


def test_read_timeout_is_unavailable_and_not_retried(scripted_server: ScriptedServer) -> None:
    scripted_server.script = [Reply(delay_s=1.5, body={"choices": []})]
    llm = OpenAICompatLLM(scripted_server.url, "m1", timeout_s=0.3, backoff_s=0)
    with pytest.raises(LLMUnavailable, match="no answer"):
        llm.complete(USER_HI)
    assert len(scripted_server.requests) == 1


def test_server_down_is_unavailable() -> None:
    llm = OpenAICompatLLM(f"http://127.0.0.1:{find_free_port()}/v1", "m1", max_retries=1, backoff_s=0.01)
    with pytest.raises(LLMUnavailable, match="cannot reach"):
        llm.complete(USER_HI)
    with pytest.raises(LLMUnavailable):
        list(llm.stream(USER_HI))
    assert llm.health() is False


def test_structured_retries_once_with_the_error_then_validates(scripted_server: ScriptedServer) -> None:
    scripted_server.script = [chat_reply('{"answr": 1}'), chat_reply('{"answer": "yes"}')]
    llm = OpenAICompatLLM(scripted_server.url, "m1", backoff_s=0)
    assert llm.structured(USER_HI, Answer) == Answer(answer="yes")
    first, second = (r["json"] for r in scripted_server.requests)
    assert first["response_format"]["type"] == "json_schema"
    assert first["response_format"]["json_schema"]["schema"]["required"] == ["answer"]
    assert second["messages"][-2] == {"role": "assistant", "content": '{"answr": 1}'}
    assert "answer" in second["messages"][-1]["content"] and "not valid" in second["messages"][-1]["content"]


def test_structured_invalid_twice_raises_output_error(scripted_server: ScriptedServer) -> None:
    scripted_server.script = [chat_reply("not json"), chat_reply("{still not")]
    with pytest.raises(LLMOutputError, match="Answer after one retry"):
        OpenAICompatLLM(scripted_server.url, "m1", json_mode="json_object").structured(USER_HI, Answer)
    assert scripted_server.requests[0]["json"]["response_format"]["type"] == "json_object"
    assert len(scripted_server.requests) == 2


def test_stream_parses_sse_and_stops_at_done(scripted_server: ScriptedServer) -> None:
    events = [
        {"choices": [{"delta": {"role": "assistant"}}]},
        {"choices": [{"delta": {"content": "Hel"}}]},
        {"choices": [{"delta": {"content": "lo"}}]},
    ]
    body = ": keep-alive\n\n" + "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
    body += f"data: {json.dumps({'choices': [{'delta': {'content': 'AFTER DONE'}}]})}\n\n"
    scripted_server.script = [Reply(body=body, headers={"Content-Type": "text/event-stream"})]
    assert list(OpenAICompatLLM(scripted_server.url, "m1").stream(USER_HI)) == ["Hel", "lo"]
    assert scripted_server.requests[0]["json"]["stream"] is True


@pytest.mark.parametrize("bad", [{"base_url": "ollama:11434"}, {"model": ""}, {"json_mode": "xml"}])
def test_bad_configuration_is_rejected(bad: dict[str, str]) -> None:
    kwargs = {"base_url": "http://x/v1", "model": "m", **bad}
    with pytest.raises(ValueError):
        OpenAICompatLLM(**kwargs)  # type: ignore[arg-type]


def test_bad_messages_are_rejected(scripted_server: ScriptedServer) -> None:
    llm = OpenAICompatLLM(scripted_server.url, "m1")
    with pytest.raises(ValueError, match="non-empty"):
        llm.complete([])
    with pytest.raises(TypeError, match="ChatMessage"):
        llm.complete([{"role": "user", "content": "hi"}])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="max_tokens"):
        llm.complete(USER_HI, max_tokens=0)
    assert scripted_server.requests == []


# --- real llama.cpp server with the 0.5B model -------------------------------------------------------------------
@pytest.mark.slow
def test_real_server_complete_and_health(llama_server: str) -> None:
    llm = OpenAICompatLLM(llama_server, "qwen-test", timeout_s=120)
    assert llm.health() is True
    text = llm.complete(
        [ChatMessage("user", "What is the capital of France? Answer with one word.")], max_tokens=8, temperature=0
    )
    assert "paris" in text.lower()


@pytest.mark.slow
def test_real_server_stream(llama_server: str) -> None:
    llm = OpenAICompatLLM(llama_server, "qwen-test", timeout_s=120)
    chunks = list(
        llm.stream([ChatMessage("user", "Count from 1 to 5, separated by spaces.")], max_tokens=16, temperature=0)
    )
    assert len(chunks) > 1
    assert "1 2 3" in "".join(chunks)


@pytest.mark.slow
def test_real_server_structured_json_object_mode(
    llama_server: str, shopping_filter: type[BaseModel], filter_system_prompt: str
) -> None:
    llm = OpenAICompatLLM(llama_server, "qwen-test", timeout_s=120, json_mode="json_object")
    result = llm.structured(
        [ChatMessage("system", filter_system_prompt), ChatMessage("user", "Nike running shoes under $120")],
        shopping_filter,
        max_tokens=64,
    )
    assert isinstance(result, shopping_filter)
    assert result.intent == "search"  # type: ignore[attr-defined]
    assert (result.brand or "").lower() == "nike"  # type: ignore[attr-defined]
    assert result.max_price == 120  # type: ignore[attr-defined]


@pytest.mark.slow
def test_real_server_json_schema_mode_fails_with_the_servers_reason(
    llama_server: str, shopping_filter: type[BaseModel]
) -> None:
    """llama-cpp-python's server only takes ``json_object`` + ``schema`` (the reason ``json_mode`` exists); it
    answers the ``json_schema`` dialect with a 500, so the client gives up with the server's own explanation."""
    llm = OpenAICompatLLM(llama_server, "qwen-test", timeout_s=120, json_mode="json_schema", backoff_s=0)
    with pytest.raises(LLMUnavailable, match="json_object"):
        llm.structured([ChatMessage("user", "Nike shoes")], shopping_filter, max_tokens=16)


@pytest.mark.slow
def test_real_server_timeout_is_unavailable(llama_server: str) -> None:
    llm = OpenAICompatLLM(llama_server, "qwen-test", timeout_s=0.05, backoff_s=0)
    with pytest.raises(LLMUnavailable):
        llm.complete([ChatMessage("user", "Write a long story about a dragon.")], max_tokens=48)
