"""LLM protocol and backends: embedded llama.cpp, OpenAI-compatible servers (Ollama, vLLM, llama.cpp), rules.

Import the protocol and the factory from here; backends import their heavy dependencies lazily, so importing
``hybrec.llm`` never loads llama.cpp.
"""

from hybrec.llm.base import (
    LLM,
    ChatMessage,
    LLMError,
    LLMOutputError,
    LLMRequestError,
    LLMUnavailable,
)
from hybrec.llm.factory import make_llm

__all__ = [
    "LLM",
    "ChatMessage",
    "LLMError",
    "LLMOutputError",
    "LLMRequestError",
    "LLMUnavailable",
    "make_llm",
]
