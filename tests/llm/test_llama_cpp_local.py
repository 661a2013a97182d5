"""LlamaCppLLM: the embedded backend on the real 0.5B GGUF (one model loaded for the whole module)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from llm_testing import require_llama_cpp
from pydantic import BaseModel

from hybrec.config import Settings
from hybrec.llm import LLM, ChatMessage, LLMUnavailable, make_llm
from hybrec.llm.llama_cpp_local import LlamaCppLLM

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def llm(llm_var_dir: Path) -> Iterator[LlamaCppLLM]:
    require_llama_cpp()
    settings = Settings(llm_backend="llama_cpp", llm_profile="qwen2.5-0.5b", var_dir=llm_var_dir, llm_threads=1)
    model = make_llm(settings)
    assert isinstance(model, LlamaCppLLM)
    yield model


def test_is_an_llm_and_healthy(llm: LlamaCppLLM) -> None:
    assert isinstance(llm, LLM)
    assert llm.health() is True
    assert llm.name == "llama_cpp:qwen2.5-0.5b"


def test_complete(llm: LlamaCppLLM) -> None:
    text = llm.complete(
        [ChatMessage("user", "What is the capital of France? Answer with one word.")], max_tokens=8, temperature=0
    )
    assert "paris" in text.lower()


def test_stream_chunks_join_to_the_reply(llm: LlamaCppLLM) -> None:
    chunks = list(
        llm.stream([ChatMessage("user", "Count from 1 to 5, separated by spaces.")], max_tokens=16, temperature=0)
    )
    assert len(chunks) > 1
    assert "1 2 3" in "".join(chunks)


def test_stop_sequence_ends_generation(llm: LlamaCppLLM) -> None:
    text = llm.complete(
        [ChatMessage("user", "Count from 1 to 9, separated by spaces.")], max_tokens=24, temperature=0, stop=["4"]
    )
    assert "4" not in text and "3" in text


@pytest.mark.parametrize(
    ("request_text", "brand", "max_price", "min_rating"),
    [
        ("Nike running shoes under $120", "nike", 120, None),
        ("I want a Samsung phone rated at least 4 stars, max 500 dollars", "samsung", 500, 4),
        ("coffee mug with a rating of 4.5 or more", None, None, 4.5),
    ],
)
def test_structured_shopping_filter_validates(
    llm: LlamaCppLLM,
    shopping_filter: type[BaseModel],
    filter_system_prompt: str,
    request_text: str,
    brand: str | None,
    max_price: float | None,
    min_rating: float | None,
) -> None:
    result = llm.structured(
        [ChatMessage("system", filter_system_prompt), ChatMessage("user", request_text)],
        shopping_filter,
        max_tokens=64,
    )
    assert isinstance(result, shopping_filter)
    assert result.intent == "search"  # type: ignore[attr-defined]
    assert result.product  # type: ignore[attr-defined]
    assert ((result.brand or "").lower() or None) == brand  # type: ignore[attr-defined]
    assert result.max_price == max_price  # type: ignore[attr-defined]
    assert result.min_rating == min_rating  # type: ignore[attr-defined]


def test_prompt_longer_than_context_is_a_clear_error(llm: LlamaCppLLM) -> None:
    from hybrec.llm import LLMRequestError

    with pytest.raises(LLMRequestError, match="context"):
        llm.complete([ChatMessage("user", "word " * 5000)], max_tokens=4)


def test_missing_model_file_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(LLMUnavailable, match="does not exist"):
        LlamaCppLLM(tmp_path / "nope.gguf")


def test_flat_objects_are_decoded_field_by_field_with_fewer_generated_tokens(
    llm: LlamaCppLLM, shopping_filter: type[BaseModel], filter_system_prompt: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The keys are read as prompt (hybrec.llm.guided_json): the same object comes out of fewer model passes."""
    generated: list[int] = []
    real_generate = llm._llama.generate

    def counting_generate(*args: object, **kwargs: object) -> Iterator[int]:
        for token in real_generate(*args, **kwargs):  # type: ignore[arg-type]
            generated.append(token)
            yield token

    monkeypatch.setattr(llm._llama, "generate", counting_generate)
    messages = [
        ChatMessage("system", filter_system_prompt),
        ChatMessage("user", "I want a Samsung phone rated at least 4 stars, max 500 dollars"),
    ]
    assert llm._plan(shopping_filter) is not None  # the GGUF's chat template is known, the schema is flat
    by_fields = llm.structured(messages, shopping_filter, max_tokens=64)
    field_tokens = len(generated)

    generated.clear()
    monkeypatch.setitem(llm._plans, shopping_filter, None)  # the whole-schema grammar, as for nested schemas
    whole = llm.structured(messages, shopping_filter, max_tokens=64)

    assert by_fields == whole
    assert by_fields.max_price == 500 and by_fields.min_rating == 4  # type: ignore[attr-defined]
    assert 0 < field_tokens < len(generated)
