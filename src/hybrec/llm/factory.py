"""Choose the LLM backend from settings: the one place that maps ``settings.llm_backend`` to a class."""

from __future__ import annotations

import logging

from hybrec.config import Settings
from hybrec.llm.base import LLM

logger = logging.getLogger(__name__)


def make_llm(settings: Settings, *, pull: bool = False) -> LLM:
    """The LLM backend ``settings.llm_backend`` names.

    Parameters
    ----------
    settings : Settings
        ``llm_backend`` picks the backend:

        * ``llama_cpp`` — embedded model of ``llm_profile`` (weights assembled and verified under ``var_dir``),
          ``llm_threads`` threads;
        * ``openai`` — OpenAI-compatible server at ``llm_base_url`` serving ``llm_model``, ``llm_api_key`` as bearer
          token, ``llm_timeout_s``, ``llm_json_mode`` (``json_object`` for llama-cpp-python's server);
        * ``ollama`` — the same client against Ollama's ``/v1``;
        * ``none`` — :class:`~hybrec.llm.rules.RuleBasedLLM` with no rules registered (the chat engine registers its
          own).
    pull : bool, default False
        With ``ollama``, first make the server pull ``llm_model`` through its native ``/api/pull``.

    Raises
    ------
    LLMUnavailable
        ``llama_cpp`` when llama-cpp-python or the weights are missing; ``ollama`` with ``pull`` when the server is
        down.
    """
    backend = settings.llm_backend
    if backend == "none":
        from hybrec.llm.rules import RuleBasedLLM

        return RuleBasedLLM()
    if backend == "llama_cpp":
        from hybrec.llm.llama_cpp_local import LlamaCppLLM

        return LlamaCppLLM.from_settings(settings)
    if backend in ("openai", "ollama"):
        from hybrec.llm.openai_compat import OpenAICompatLLM

        if backend == "ollama" and pull:
            from hybrec.llm.ollama import pull_model

            pull_model(settings.llm_base_url, settings.llm_model)
        api_key = settings.llm_api_key.get_secret_value() if settings.llm_api_key else None
        return OpenAICompatLLM(
            settings.llm_base_url,
            settings.llm_model,
            api_key=api_key,
            timeout_s=settings.llm_timeout_s,
            json_mode=settings.llm_json_mode,
            name=f"{backend}:{settings.llm_model}",
        )
    raise ValueError(f"unknown llm_backend {backend!r}; expected llama_cpp, openai, ollama or none")
