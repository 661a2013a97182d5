"""Choosing the embedded LLM's decoding threads from the CPUs idle right now."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from llm_testing import require_llama_cpp

from hybrec.llm import ChatMessage
from hybrec.llm.cpu_threads import cpu_times, idle_cpus, threads_for
from hybrec.llm.llama_cpp_local import LlamaCppLLM

# /proc/stat's first line: user nice system idle iowait irq softirq steal guest guest_nice
BEFORE = "cpu  1000 0 500 8000 100 0 0 0 0 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n"


def stat_after(busy: int, idle: int) -> str:
    return f"cpu  {1000 + busy} 0 500 {8000 + idle} 100 0 0 0 0 0\n"


def reader(*texts: str) -> Iterator[str]:
    yield from texts


def test_cpu_times_counts_iowait_as_idle() -> None:
    assert cpu_times(lambda: BEFORE) == (8100, 9600)


@pytest.mark.parametrize(
    ("busy", "idle", "expected_idle", "threads"),
    [
        (0, 20, 2.0, 2),  # both CPUs free: two threads
        (10, 10, 1.0, 1),  # a neighbour holds one CPU: one thread
        (4, 16, 1.6, 1),  # the second CPU only 60% free: still one
        (2, 18, 1.8, 2),
        (20, 0, 0.0, 1),  # fully busy: never fewer than one
    ],
)
def test_idle_cpus_and_threads(busy: int, idle: int, expected_idle: float, threads: int) -> None:
    texts = reader(BEFORE, stat_after(busy, idle))
    measured = idle_cpus(2, read=lambda: next(texts), sleep=lambda _: None)
    assert measured == pytest.approx(expected_idle)
    assert threads_for(measured, max_threads=2) == threads


def test_unreadable_or_frozen_counters_mean_one_thread() -> None:
    def broken() -> str:
        raise OSError("no /proc here")

    assert idle_cpus(2, read=broken, sleep=lambda _: None) is None
    assert idle_cpus(2, read=lambda: BEFORE, sleep=lambda _: None) is None  # no tick elapsed
    assert idle_cpus(2, read=lambda: "intr 1 2 3\n", sleep=lambda _: None) is None
    assert threads_for(None, max_threads=8) == 1
    assert threads_for(7.9, max_threads=4) == 4


def test_the_real_counters_are_readable() -> None:
    if not Path("/proc/stat").exists():
        pytest.skip("no /proc/stat on this platform")
    idle = idle_cpus(2, window_s=0.05)
    assert idle is not None and 0.0 <= idle <= 2.0


@pytest.mark.slow
def test_adaptive_model_answers_and_picks_a_thread_count(gguf_05b: Path) -> None:
    require_llama_cpp()
    llm = LlamaCppLLM(gguf_05b, n_threads=None, n_threads_batch=2, prompt_cache_bytes=0)
    text = llm.complete(
        [ChatMessage("user", "What is the capital of France? Answer with one word.")], max_tokens=8, temperature=0
    )
    assert "paris" in text.lower()
    assert 1 <= llm.generation_threads <= (os.cpu_count() or 1)
