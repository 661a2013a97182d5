"""PrefixStates: the bookkeeping of saved prompt states, and their reuse on the real 0.5B model."""

from __future__ import annotations

from pathlib import Path

import pytest
from llm_testing import require_llama_cpp

from hybrec.llm import ChatMessage
from hybrec.llm.llama_cpp_local import LlamaCppLLM
from hybrec.llm.prefix_cache import PrefixStates, common_prefix


def test_common_prefix() -> None:
    assert common_prefix([1, 2, 3], [1, 2, 4]) == 2
    assert common_prefix([1, 2], [1, 2, 3]) == 2
    assert common_prefix([], [1]) == 0
    assert common_prefix([5], [1]) == 0


def test_best_is_the_longest_shared_prefix() -> None:
    states = PrefixStates()
    states.put([1, 2, 3, 4], b"a")
    states.put([1, 2, 9, 9, 9], b"b")
    key, data, shared = states.best([1, 2, 3, 4, 5]) or ((), b"", 0)
    assert (key, data, shared) == ((1, 2, 3, 4), b"a", 4)
    assert states.best([7, 8]) is None


def test_a_longer_state_replaces_its_own_prefix() -> None:
    states = PrefixStates()
    states.put([1, 2, 3], b"a")
    states.put([1, 2, 3, 4], b"b")
    assert len(states) == 1 and states.best([1, 2, 3]) == ((1, 2, 3, 4), b"b", 3)


def test_least_recently_used_state_goes_first() -> None:
    states = PrefixStates(max_entries=2, max_bytes=100)
    states.put([1], b"x" * 10)
    states.put([2], b"y" * 10)
    states.touch((1,))
    states.put([3], b"z" * 10)
    assert states.best([2]) is None and states.best([1]) is not None
    states.put([4], b"w" * 95)  # over the byte budget with anything else kept
    assert len(states) == 1 and states.nbytes == 95
    states.put([5], b"v" * 101)  # larger than the whole budget: not kept
    assert states.best([5]) is None


def test_bad_limits_are_rejected() -> None:
    with pytest.raises(ValueError, match="max_entries"):
        PrefixStates(max_entries=0)


@pytest.mark.slow
def test_alternating_prompts_reuse_their_prefix_and_answer_the_same(gguf_05b: Path) -> None:
    """Two prompt families alternate (as understanding and answer calls do every chat turn): with the cache, the
    second call of a family restores its prefix instead of re-reading it, and decoding gives the same text as a
    model without the cache."""
    require_llama_cpp()
    instruction = "You sort words. " + " ".join(f"Rule {i}: keep word {i} in its place." for i in range(40))

    def calls(llm: LlamaCppLLM) -> list[str]:
        out = []
        for word in ("apple", "pear"):
            out.append(
                llm.complete(
                    [ChatMessage("system", instruction), ChatMessage("user", f"Repeat the word {word} once.")],
                    max_tokens=8,
                    temperature=0,
                )
            )
            out.append(llm.complete([ChatMessage("user", "Say hello in French.")], max_tokens=8, temperature=0))
        return out

    cached = LlamaCppLLM(gguf_05b, n_threads=1, n_threads_batch=2)
    with_cache = calls(cached)
    assert cached.prefix_states is not None
    assert cached.prefix_states.restores >= 1
    assert cached.prefix_states.reused_tokens > 200  # the instruction, read once instead of twice
    plain = LlamaCppLLM(gguf_05b, n_threads=1, prompt_cache_bytes=0)
    assert plain.prefix_states is None
    assert calls(plain) == with_cache


def test_thread_and_cache_arguments_are_checked(gguf_05b: Path) -> None:
    with pytest.raises(ValueError, match="n_threads_batch"):
        LlamaCppLLM(gguf_05b, n_threads_batch=0)
    with pytest.raises(ValueError, match="prompt_cache_bytes"):
        LlamaCppLLM(gguf_05b, prompt_cache_bytes=-1)
