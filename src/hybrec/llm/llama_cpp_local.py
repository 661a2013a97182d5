"""Embedded LLM backend: llama.cpp in-process through llama-cpp-python, on a GGUF file.

The chat template comes from the GGUF's own metadata (``tokenizer.chat_template``), so any instruct model works
without naming its format. Structured output of a flat object is decoded field by field (:mod:`hybrec.llm.guided_json`:
the keys are read as prompt, only the values are generated, each under its property's grammar); other schemas use
llama-cpp-python's ``response_format={"type": "json_object", "schema": ...}``, which compiles the whole JSON schema to
a GBNF grammar. Either way sampling is constrained token by token, so the output parses; pydantic validation (with
one retry) still guards what the grammar cannot express.

llama.cpp's context is not thread-safe: calls are serialised by a lock, a stream holding it until it is exhausted
or closed. Generation threads are fixed (``n_threads``) or chosen per call from the idle CPUs (``n_threads=None``, the
setting's default; see :mod:`hybrec.llm.cpu_threads`), because on a small shared machine a second decoding thread
helps only when a core is free.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hybrec.llm.base import (
    DEFAULT_MAX_TOKENS,
    DEFAULT_TEMPERATURE,
    ChatMessage,
    LLMRequestError,
    LLMUnavailable,
    ModelT,
    completion_content,
    delta_content,
    json_schema_of,
    structured_with_retry,
    validate_messages,
    wire_messages,
)
from hybrec.llm.cpu_threads import idle_cpus, threads_for
from hybrec.llm.guided_json import FieldPlan, TokenBudgetExceeded, decode_fields, field_plan
from hybrec.llm.prefix_cache import PrefixStates, prefix_caching_llama_class

if TYPE_CHECKING:
    from hybrec.config import Settings

logger = logging.getLogger(__name__)


class LlamaCppLLM:
    """LLM backend running a GGUF model in this process.

    Parameters
    ----------
    model_path : Path
        The GGUF file (see :func:`hybrec.llm.weights.ensure_weights` for the verified embedded profiles).
    n_threads : int or None, default 1
        Generation threads; None chooses them before every call from the CPUs idle at that moment
        (:mod:`hybrec.llm.cpu_threads`: two threads decode ~1.8x faster on a free 2-core machine, ~1.7x slower when
        another process holds the second core).
    n_threads_batch : int, optional
        Prompt-processing threads (default: ``n_threads``). Reading a prompt is compute-bound work in large batches,
        which a second core speeds up even where token-by-token generation on two threads stalls.
    prompt_cache_bytes : int, default 256 MiB
        Memory for the KV states of recent prompts (:mod:`hybrec.llm.prefix_cache`), so a prompt sharing a prefix
        with an earlier one (every understanding call shares its instruction) reads only the rest; 0 turns it off.
    n_ctx : int, default 4096
        Context window in tokens; prompt + ``max_tokens`` must fit.
    seed : int, default 0
        Sampling seed, so a given prompt at a given temperature gives the same answer.
    chat_format : str, optional
        llama-cpp-python chat format name; None uses the template stored in the GGUF.
    name : str, optional
        Backend name; defaults to ``llama_cpp:<file stem>``.

    Raises
    ------
    LLMUnavailable
        When llama-cpp-python is not installed or the model cannot be loaded.
    """

    def __init__(
        self,
        model_path: Path,
        *,
        n_threads: int | None = 1,
        n_threads_batch: int | None = None,
        prompt_cache_bytes: int = 256 << 20,
        n_ctx: int = 4096,
        seed: int = 0,
        chat_format: str | None = None,
        name: str | None = None,
    ) -> None:
        self._adaptive = n_threads is None
        self._cpus = os.cpu_count() or 1
        n_threads = 1 if n_threads is None else n_threads
        n_threads_batch = n_threads if n_threads_batch is None else n_threads_batch
        if n_threads < 1 or n_threads_batch < 1 or n_ctx < 64 or prompt_cache_bytes < 0:
            raise ValueError(
                "n_threads and n_threads_batch must be >= 1, n_ctx >= 64 and prompt_cache_bytes >= 0, got "
                f"{n_threads}, {n_threads_batch}, {n_ctx}, {prompt_cache_bytes}"
            )
        model_path = Path(model_path)
        if not model_path.is_file():
            raise LLMUnavailable(f"GGUF model file {model_path} does not exist")
        try:
            from llama_cpp import Llama
        except ImportError as exc:
            raise LLMUnavailable(
                "llama-cpp-python is not installed: pip install 'hybrec[llm]' (it compiles llama.cpp from source)"
            ) from exc
        self.model_path = model_path
        self.name = name or f"llama_cpp:{model_path.stem}"
        self._lock = threading.Lock()
        #: Saved prompt states (None when the prompt cache is off).
        self.prefix_states = PrefixStates(max_bytes=prompt_cache_bytes) if prompt_cache_bytes else None
        llama_class = Llama if self.prefix_states is None else prefix_caching_llama_class(Llama, self.prefix_states)
        try:
            self._llama = llama_class(
                model_path=str(model_path),
                n_ctx=n_ctx,
                n_threads=n_threads,
                n_threads_batch=n_threads_batch,
                seed=seed,
                chat_format=chat_format,
                verbose=False,
            )
        except (ValueError, RuntimeError, OSError) as exc:
            raise LLMUnavailable(f"cannot load GGUF model {model_path}: {exc}") from exc
        self._threads = (n_threads, n_threads_batch)
        self._plans: dict[type, FieldPlan | None] = {}
        self._formatter = self._template_formatter()
        logger.info(
            "loaded %s (n_ctx=%d, n_threads=%s, n_threads_batch=%d, prompt cache %d MiB)",
            model_path,
            n_ctx,
            "auto" if self._adaptive else n_threads,
            n_threads_batch,
            prompt_cache_bytes >> 20,
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> LlamaCppLLM:
        """The embedded model of ``settings.llm_profile``, assembled and verified under ``settings.var_dir``."""
        from hybrec.llm.weights import WeightsError, ensure_weights

        try:
            path = ensure_weights(settings.llm_profile, settings.var_dir)
        except WeightsError as exc:
            raise LLMUnavailable(str(exc)) from exc
        return cls(
            path,
            n_threads=settings.llm_threads,
            n_threads_batch=settings.llm_batch_threads,
            prompt_cache_bytes=settings.llm_prompt_cache_mb << 20,
            name=f"llama_cpp:{settings.llm_profile}",
        )

    # --- protocol ----------------------------------------------------------------------------------------------
    def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        temperature: float = DEFAULT_TEMPERATURE,
        stop: Sequence[str] | None = None,
    ) -> str:
        """The assistant's reply as one string (see :class:`~hybrec.llm.base.LLM`)."""
        with self._lock:
            result = self._chat(messages, max_tokens=max_tokens, temperature=temperature, stop=stop)
        return completion_content(result, self.name)

    def stream(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        temperature: float = DEFAULT_TEMPERATURE,
        stop: Sequence[str] | None = None,
    ) -> Iterator[str]:
        """The reply token by token; the model is locked until the iterator is exhausted or closed."""
        conversation = validate_messages(messages)  # fail on bad input now, not at the first next()
        return self._stream(conversation, max_tokens=max_tokens, temperature=temperature, stop=stop)

    def structured(
        self,
        messages: Sequence[ChatMessage],
        schema: type[ModelT],
        *,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        temperature: float = 0.0,
    ) -> ModelT:
        """A ``schema`` instance decoded under grammars compiled from its JSON schema, retried once if invalid."""
        response_format = {"type": "json_object", "schema": json_schema_of(schema)}
        plan = self._plan(schema)

        def generate(conversation: list[ChatMessage]) -> str:
            with self._lock:
                if plan is not None:
                    return self._decode_fields(conversation, plan, max_tokens=max_tokens, temperature=temperature)
                result = self._chat(
                    conversation,
                    max_tokens=max_tokens,
                    temperature=temperature,
                    stop=None,
                    response_format=response_format,
                )
            return completion_content(result, self.name)

        return structured_with_retry(generate, messages, schema, backend=self.name)

    def health(self) -> bool:
        """True: a loaded in-process model is always available."""
        return True

    # --- helpers -----------------------------------------------------------------------------------------------
    def _stream(
        self, conversation: list[ChatMessage], *, max_tokens: int, temperature: float, stop: Sequence[str] | None
    ) -> Iterator[str]:
        with self._lock:
            chunks = self._chat(conversation, max_tokens=max_tokens, temperature=temperature, stop=stop, stream=True)
            for chunk in chunks:
                content = delta_content(chunk)
                if content:
                    yield content

    def _chat(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int,
        temperature: float,
        stop: Sequence[str] | None,
        stream: bool = False,
        response_format: dict[str, Any] | None = None,
    ) -> Any:
        wire = wire_messages(messages, max_tokens=max_tokens, temperature=temperature)
        self._choose_generation_threads()
        try:
            return self._llama.create_chat_completion(
                messages=wire,  # type: ignore[arg-type]
                max_tokens=max_tokens,
                temperature=temperature,
                stop=list(stop) if stop else [],
                stream=stream,
                response_format=response_format,  # type: ignore[arg-type]
            )
        except ValueError as exc:  # llama-cpp-python's error for a prompt longer than the context window
            raise LLMRequestError(f"{self.name}: {exc}") from exc

    def _plan(self, schema: type) -> FieldPlan | None:
        """The field-by-field plan of ``schema`` (None: decode under the whole-schema grammar), built once."""
        if self._formatter is None:
            return None
        if schema not in self._plans:
            self._plans[schema] = field_plan(json_schema_of(schema))
        return self._plans[schema]

    def _template_formatter(self) -> Any:
        """The GGUF chat template as a prompt formatter (what llama-cpp-python's chat handler applies), or None when
        the model uses another chat format (then structured output keeps the whole-schema grammar)."""
        if self._llama.chat_format != "chat_template.default" or "tokenizer.chat_template" not in self._llama.metadata:
            return None
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        def text(token: int) -> str:
            return self._llama._model.token_get_text(token) if token != -1 else ""

        eos = self._llama.token_eos()
        return Jinja2ChatFormatter(
            template=self._llama.metadata["tokenizer.chat_template"],
            eos_token=text(eos),
            bos_token=text(self._llama.token_bos()),
            stop_token_ids=[eos],
        )

    def _decode_fields(
        self, messages: Sequence[ChatMessage], plan: FieldPlan, *, max_tokens: int, temperature: float
    ) -> str:
        """One object of ``plan`` generated value by value after the chat prompt (called with the model lock held)."""
        from llama_cpp import LlamaGrammar

        llama = self._llama
        formatted = self._formatter(messages=wire_messages(messages, max_tokens=max_tokens, temperature=temperature))
        prompt = llama.tokenize(formatted.prompt.encode("utf-8"), add_bos=not formatted.added_special, special=True)
        if len(prompt) + max_tokens > llama.n_ctx():
            raise LLMRequestError(
                f"{self.name}: the prompt ({len(prompt)} tokens) and max_tokens ({max_tokens}) exceed the context "
                f"window of {llama.n_ctx()} tokens"
            )
        self._choose_generation_threads()

        def generate(tokens: list[int], grammar: str) -> Any:
            return llama.generate(
                tokens,
                temp=temperature,
                top_k=40,
                top_p=0.95,
                min_p=0.05,
                repeat_penalty=1.0,
                grammar=LlamaGrammar.from_string(grammar, verbose=False),
            )

        try:
            return decode_fields(
                plan,
                prompt,
                tokenize=lambda text: llama.tokenize(text.encode("utf-8"), add_bos=False, special=False),
                detokenize=lambda tokens, previous: llama.detokenize(tokens, prev_tokens=previous),
                generate=generate,
                max_tokens=max_tokens,
            )
        except TokenBudgetExceeded as exc:
            logger.warning("%s: structured output ran out of tokens (%d)", self.name, max_tokens)
            return str(exc.args[0])

    def _choose_generation_threads(self) -> None:
        """With adaptive threads, decode the next call on one thread per CPU idle now (model lock held)."""
        if self._adaptive:
            self._set_generation_threads(threads_for(idle_cpus(self._cpus), self._cpus))

    def _set_generation_threads(self, n_threads: int) -> None:
        """Decode on ``n_threads`` threads from the next call on (called with the model lock held)."""
        if n_threads == self._threads[0]:
            return
        from llama_cpp import llama_cpp

        llama_cpp.llama_set_n_threads(self._llama._ctx.ctx, n_threads, self._threads[1])
        logger.debug("decoding on %d thread(s)", n_threads)
        self._threads = (n_threads, self._threads[1])

    @property
    def generation_threads(self) -> int:
        """The threads the last call decoded on (fixed unless the model was built with ``n_threads=None``)."""
        return self._threads[0]
