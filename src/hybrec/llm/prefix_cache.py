"""Reuse the KV state of earlier prompts that share a prefix with the next one (embedded llama.cpp only).

On a CPU, reading the prompt costs most of a chat turn: the 1.5B model reads ~20-30 tokens/s on one core of the
2-core development machine, so a 280-token understanding prompt takes ~10 s before the first output token. Most of
that prompt is the same every turn (the routing instruction and its examples), but llama-cpp-python only reuses the
prefix that the *previous* call left in the context, and every turn alternates two prompts (understanding, then the
answer), so each evicts the other's prefix.

:class:`PrefixStates` keeps the KV cells of the last few prompts (copied out of the context with
``llama_state_seq_get_data``: about 28 KiB per token for Qwen2.5-1.5B, so ~10 MiB for a typical prompt) keyed by
their tokens. Before a prompt is evaluated, the saved state sharing the longest prefix with it is copied back when
that prefix is longer than what the context already holds; llama-cpp-python's own prefix match then evaluates only
the rest. llama-cpp-python's ``LlamaRAMCache`` does the same job but also copies the whole logits buffer
(``n_batch x n_vocab`` floats, ~300 MiB for Qwen's 152k vocabulary) on every save and load, which costs seconds.

The class touches llama-cpp-python internals (``input_ids``, ``n_tokens``, ``_ctx``), as its ``load_state`` does;
it is written against the pinned version (0.3.36) and its tests run the real model.
"""

from __future__ import annotations

import ctypes
import logging
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

import numpy as np

logger = logging.getLogger(__name__)

LlamaT = TypeVar("LlamaT")

#: Restore a saved state only when it shares this many more tokens with the prompt than the context already does
#: (below that, re-reading the tokens costs less than the bookkeeping is worth).
MIN_GAIN_TOKENS = 16

#: The sequence llama-cpp-python evaluates every prompt in.
SEQUENCE = 0


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the longest common prefix of two token sequences."""
    n = min(len(a), len(b))
    if n == 0:
        return 0
    diff = np.flatnonzero(np.asarray(a[:n], dtype=np.int64) != np.asarray(b[:n], dtype=np.int64))
    return int(diff[0]) if len(diff) else n


class PrefixStates:
    """A small LRU of saved KV states, keyed by the tokens they hold.

    Parameters
    ----------
    max_entries : int
        Most states kept (a chat turn alternates two prompt families; a few entries cover them).
    max_bytes : int
        Most bytes of saved state kept; the least recently used states go first.
    """

    def __init__(self, max_entries: int = 4, max_bytes: int = 256 << 20) -> None:
        if max_entries < 1 or max_bytes < 1:
            raise ValueError(f"max_entries and max_bytes must be >= 1, got {max_entries}, {max_bytes}")
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._states: OrderedDict[tuple[int, ...], bytes] = OrderedDict()
        #: Prompt tokens served from a restored state, and restores done (for logs and tests).
        self.reused_tokens = 0
        self.restores = 0

    def __len__(self) -> int:
        return len(self._states)

    @property
    def nbytes(self) -> int:
        return sum(len(data) for data in self._states.values())

    def best(self, tokens: Sequence[int]) -> tuple[tuple[int, ...], bytes, int] | None:
        """The saved ``(tokens, state, shared prefix length)`` sharing the longest prefix with ``tokens``."""
        found: tuple[tuple[int, ...], bytes, int] | None = None
        for key, data in self._states.items():
            shared = common_prefix(key, tokens)
            if shared and (found is None or shared > found[2]):
                found = (key, data, shared)
        return found

    def put(self, tokens: Sequence[int], data: bytes) -> None:
        """Keep ``data`` (a sequence state holding exactly ``tokens``), evicting the least recently used."""
        key = tuple(int(t) for t in tokens)
        if not key or len(data) > self.max_bytes:
            return
        # A state whose tokens are a prefix of the new one's is redundant: the new one serves every prompt it did.
        for old in [k for k in self._states if len(k) <= len(key) and key[: len(k)] == k]:
            del self._states[old]
        self._states[key] = data
        self._states.move_to_end(key)
        while len(self._states) > self.max_entries or self.nbytes > self.max_bytes:
            self._states.popitem(last=False)

    def touch(self, key: tuple[int, ...]) -> None:
        self._states.move_to_end(key)

    # --- llama-cpp-python glue ----------------------------------------------------------------------------------
    def restore_into(self, llama: Any, tokens: Sequence[int]) -> int:
        """Load the best saved state into ``llama``'s context when it beats what the context holds.

        Returns the number of prompt tokens the context now shares with ``tokens`` (0 when nothing matched).
        """
        held = common_prefix(llama.input_ids[: llama.n_tokens], tokens) if llama.n_tokens else 0
        found = self.best(tokens)
        if found is None or found[2] < held + MIN_GAIN_TOKENS:
            return held
        key, data, shared = found
        llama._ctx.kv_cache_seq_rm(-1, 0, -1)  # empty the context; the saved cells replace them
        buffer = (ctypes.c_uint8 * len(data)).from_buffer_copy(data)
        from llama_cpp import llama_cpp

        if llama_cpp.llama_state_seq_set_data(llama._ctx.ctx, buffer, len(data), SEQUENCE) != len(data):
            logger.warning("could not restore a saved prompt state of %d tokens; reading the prompt", len(key))
            llama.n_tokens = 0
            self._states.pop(key, None)
            return 0
        llama.input_ids[: len(key)] = key
        llama.n_tokens = len(key)
        llama._requires_eval = True  # logits are not part of the state: the suffix decode refreshes them
        self.touch(key)
        self.restores += 1
        self.reused_tokens += shared
        logger.debug("restored a saved prompt state: %d of %d prompt tokens reused", shared, len(tokens))
        return shared

    def save_from(self, llama: Any) -> None:
        """Save the cells of everything ``llama``'s context has evaluated (prompt and generated tokens)."""
        n = int(llama.n_tokens)
        if n == 0:
            return
        from llama_cpp import llama_cpp

        size = llama_cpp.llama_state_seq_get_size(llama._ctx.ctx, SEQUENCE)
        buffer = (ctypes.c_uint8 * size)()
        written = llama_cpp.llama_state_seq_get_data(llama._ctx.ctx, buffer, size, SEQUENCE)
        if not 0 < written <= size:
            logger.warning("could not save the prompt state (%d of %d bytes)", written, size)
            return
        self.put(llama.input_ids[:n].tolist(), bytes(memoryview(buffer)[:written]))


def prefix_caching_llama_class(llama_class: type[LlamaT], states: PrefixStates) -> type[LlamaT]:
    """A subclass of llama-cpp-python's ``Llama`` whose ``generate`` restores and saves prompt states in ``states``.

    ``generate`` receives every completion's full prompt tokens (chat completions included), so this one hook
    covers ``create_chat_completion`` with and without streaming or grammars.
    """

    class PrefixCachingLlama(llama_class):  # type: ignore[valid-type, misc]
        def generate(self, tokens: Sequence[int], *args: Any, **kwargs: Any) -> Iterator[int]:
            states.restore_into(self, tokens)
            try:
                yield from super().generate(tokens, *args, **kwargs)
            finally:  # also when the caller stops early (stop word, max_tokens, a closed stream)
                states.save_from(self)

    return PrefixCachingLlama
