"""Cross-encoder reranking of retrieval candidates, and the fallback when no cross-encoder weights are available.

A cross-encoder reads the query and a candidate's text together through one transformer and outputs a relevance
score (Nogueira & Cho, *Passage Re-ranking with BERT*, 2019); it is far more accurate than comparing two
independently computed embeddings, and far too slow to run over a whole catalog, so it only reorders the few dozen
candidates the bi-encoder and BM25 found. The default is ``cross-encoder/ms-marco-MiniLM-L-6-v2`` (a 6-layer MiniLM
trained on MS MARCO), loaded by :class:`sentence_transformers.CrossEncoder` from a hub name (the local Hugging Face
cache when ``HF_HUB_OFFLINE`` is set) or a local folder.

No PyPI package ships those weights, so a machine without the hub may have none. Then :func:`load_reranker` logs a
WARNING, records the reason in :func:`reranker_status` (``/ready`` shows it) and returns None; the search ranks by
the fused dense + lexical score instead.

Latency. A rerank costs time in proportion to the word pieces it reads (about 21 MFLOP per token for MiniLM-L6), so
the search reranks a short text per candidate (name, brand, category: see
:func:`~hybrec.retrieval.product_text.rerank_text`), cuts pairs at ``max_length`` 64, scores them in length-sorted
batches of 16 (sentence-transformers sorts by length, so small batches pad little) and, on CPU, can run the Linear
layers in int8 (dynamic quantization: Jacob et al., *Quantization and Training of Neural Networks for Efficient
Integer-Arithmetic-Only Inference*, CVPR 2018; weights quantized once, activations per batch).
"""

from __future__ import annotations

import logging
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from hybrec.retrieval.embedder import hub_offline, hub_reachable

if TYPE_CHECKING:
    from sentence_transformers import CrossEncoder

    from hybrec.config import Settings

logger = logging.getLogger(__name__)

RerankerState = Literal["not_loaded", "ready", "fallback"]
RerankerBackend = Literal["torch", "onnx"]
DEFAULT_MAX_LENGTH = 64
DEFAULT_BATCH_SIZE = 16


@dataclass(frozen=True, slots=True)
class RerankerStatus:
    """What ``/ready`` reports about the reranker.

    Attributes
    ----------
    model : str
        The configured model name or path ("" before any load was attempted).
    state : {"not_loaded", "ready", "fallback"}
        ``fallback``: the weights could not be loaded and search ranks by dense + lexical scores.
    reason : str or None
        Why the reranker is in fallback.
    quantized : bool
        Whether its Linear layers (torch) or matrix products (ONNX Runtime) run in int8 (CPU).
    max_length : int or None
        Word pieces of query + product text it reads.
    backend : {"torch", "onnx"}
        What runs the model: torch, or ONNX Runtime on an export of it.
    """

    model: str
    state: RerankerState
    reason: str | None = None
    quantized: bool = False
    max_length: int | None = None
    backend: RerankerBackend = "torch"

    def describe(self) -> str:
        """One line for ``/ready``: which model ranks, how, or why none does."""
        if self.state == "ready":
            precision = "int8 dynamic quantization" if self.quantized else "fp32"
            runtime = "onnxruntime" if self.backend == "onnx" else "torch"
            return f"cross-encoder {self.model} ({runtime}, {precision}, max_length {self.max_length})"
        if self.state == "fallback":
            return f"fallback to dense + lexical ranking: {self.reason}"
        return "not loaded yet (loads with the first chat request)"

    @property
    def available(self) -> bool:
        return self.state == "ready"


class Reranker:
    """Scores ``(query, text)`` pairs with a sentence-transformers :class:`CrossEncoder`.

    Parameters
    ----------
    model : CrossEncoder
        A loaded cross-encoder with one output label (a relevance score).
    model_name : str
        The name or path it was loaded from (for logs and status).
    batch_size : int, default 16
        Pairs per forward pass. Pairs are sorted by length before batching, so smaller batches pad less: on the
        shared 2-core CPU 50 candidates took 0.73 s in batches of 16 and 0.94 s in one batch of 64 (max_length 64).
    quantized : bool, default False
        Whether the model runs in int8 (for logs and status).
    backend : {"torch", "onnx"}, default "torch"
        What runs the model inside the CrossEncoder (for logs and status; see :mod:`hybrec.retrieval.onnx_reranker`).
    """

    def __init__(
        self,
        model: CrossEncoder,
        model_name: str,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        quantized: bool = False,
        backend: RerankerBackend = "torch",
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model = model
        self.model_name = model_name
        self.batch_size = batch_size
        self.quantized = quantized
        self.backend = backend

    def score(self, query: str, texts: Sequence[str], *, threads: int | None = None) -> np.ndarray:
        """Relevance of each of ``texts`` to ``query`` (higher is more relevant), as a float array.

        ``threads``: intra-op threads of this call (torch's, or ONNX Runtime's for the ``onnx`` backend); None
        keeps the current setting.
        """
        if not texts:
            return np.zeros(0, dtype=np.float64)
        if self.backend == "onnx":
            from hybrec.retrieval.onnx_reranker import onnx_threads as call_threads
        else:
            from hybrec.retrieval.torch_threads import torch_threads as call_threads
        with call_threads(threads):
            scores = self.model.predict(
                [(query, text) for text in texts], batch_size=self.batch_size, show_progress_bar=False
            )
        return np.asarray(scores, dtype=np.float64).reshape(len(texts), -1)[:, 0]


_status = RerankerStatus(model="", state="not_loaded")
_loaded: dict[tuple[object, ...], tuple[Reranker | None, RerankerStatus]] = {}
_lock = threading.Lock()


def reranker_status() -> RerankerStatus:
    """The status of the most recent reranker load in this process (``not_loaded`` before any)."""
    return _status


def quantize_linear_int8(model: CrossEncoder) -> CrossEncoder:
    """``model`` with every ``torch.nn.Linear`` replaced by an int8 dynamically quantized one (CPU only).

    Weights are quantized once (one scale per tensor); activations are quantized per batch at run
    time (``torch.ao.quantization.quantize_dynamic``). The embeddings and layer norms stay in fp32.
    """
    import warnings

    import torch

    with warnings.catch_warnings():  # torch deprecates the eager API in favour of torchao, not installed here
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


def load_reranker(
    model_name_or_path: str,
    *,
    device: str | None = None,
    max_length: int | None = DEFAULT_MAX_LENGTH,
    quantize: bool = False,
    batch_size: int = DEFAULT_BATCH_SIZE,
    backend: RerankerBackend = "torch",
    cache_dir: Path | None = None,
    threads: int = 1,
) -> Reranker | None:
    """Load a cross-encoder by name or local path; None (with a WARNING and a ``fallback`` status) if impossible.

    Parameters
    ----------
    model_name_or_path : str
        A hub name (read from the local HF cache when ``HF_HUB_OFFLINE`` is set or the hub does not answer) or a
        folder written by ``CrossEncoder.save_pretrained``.
    device : str or None, default None
        torch device; None lets sentence-transformers choose.
    max_length : int or None, default 64
        Longest query + text, in word pieces; texts are cut there. A rerank costs time in proportion to the tokens
        it reads: 50 full product texts took 5.4 s at 128 and 11.8 s at 256 with a MiniLM-L6 cross-encoder on the
        shared 2-core CPU (``bench/retrieval.py``). The short rerank texts (name, brand, category) average ~31
        word pieces with a query, so 64 cuts almost none of them.
    quantize : bool, default False
        Run the model in int8 when it runs on CPU; ignored on other devices. torch: the Linear layers
        (:func:`quantize_linear_int8`); onnx: every matrix product of the export (see
        :mod:`hybrec.retrieval.onnx_reranker`). ``settings.reranker_quantize`` turns it on for the process-wide
        reranker.
    batch_size : int, default 16
        Pairs per forward pass (see :class:`Reranker`).
    backend : {"torch", "onnx"}, default "torch"
        ``onnx`` runs the CrossEncoder's transformers model on ONNX Runtime (CPU only), from an export cached in
        ``cache_dir`` (made on the first load of these weights, a few seconds). If the export or ONNX Runtime
        fails, the torch model is kept, with a WARNING. On the shared 2-core CPU the int8 ONNX Runtime model
        reranked 50 candidates about 1.3-1.5 times faster than torch's int8 model (``bench/retrieval.py``).
    cache_dir : Path or None
        Root of the export cache (``settings.var_dir``); None: a ``hybrec`` folder in the system's temporary dir.
    threads : int, default 1
        ONNX Runtime intra-op threads when :meth:`Reranker.score` is not given any (the torch backend takes its
        threads from the caller, see :mod:`hybrec.retrieval.torch_threads`).
    """
    global _status
    name = model_name_or_path.strip()
    if not name:
        _status = RerankerStatus(model="", state="fallback", reason="reranker_model is empty")
        logger.warning("no reranker configured (HYBREC_RERANKER_MODEL is empty): ranking by dense + lexical scores")
        return None
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    local = Path(name).expanduser()
    is_local = local.exists()
    try:
        from sentence_transformers import CrossEncoder

        model = CrossEncoder(
            str(local) if is_local else name,
            device=device,
            max_length=max_length,
            # Unreachable hub: the local cache only, rather than retrying each file with backoff for a minute.
            local_files_only=is_local or hub_offline() or not hub_reachable(),
        )
    except Exception as exc:  # any failure to load means the same thing: no reranker, degrade
        reason = f"cannot load cross-encoder {name!r}: {type(exc).__name__}: {exc}".splitlines()[0]
        _status = RerankerStatus(model=name, state="fallback", reason=reason)
        logger.warning("%s; ranking by dense + lexical scores instead", reason)
        return None
    if model.config.num_labels != 1:
        reason = f"cross-encoder {name!r} has {model.config.num_labels} labels; a reranker needs exactly 1"
        _status = RerankerStatus(model=name, state="fallback", reason=reason)
        logger.warning("%s; ranking by dense + lexical scores instead", reason)
        return None
    on_cpu = model.device.type == "cpu"
    quantized = quantize and on_cpu
    runs_on: RerankerBackend = "torch"
    if backend == "onnx" and not on_cpu:
        logger.warning("the ONNX reranker runs on CPU only; keeping torch on %s", model.device)
    elif backend == "onnx":
        from hybrec.retrieval.onnx_reranker import to_onnx

        root = cache_dir if cache_dir is not None else Path(tempfile.gettempdir()) / "hybrec"
        try:
            to_onnx(model, name, root, quantize=quantized, threads=threads)
            runs_on = "onnx"
        except Exception as exc:  # a failed export still leaves a working torch reranker
            logger.warning(
                "cannot run cross-encoder %r on ONNX Runtime (%s: %s); using torch",
                name,
                type(exc).__name__,
                str(exc).splitlines()[0] if str(exc) else "",
            )
    if quantized and runs_on == "torch":
        model = quantize_linear_int8(model)
    _status = RerankerStatus(model=name, state="ready", quantized=quantized, max_length=max_length, backend=runs_on)
    logger.info("loaded cross-encoder %s (%s, max_length %s, int8: %s)", name, runs_on, max_length, quantized)
    return Reranker(model, name, batch_size=batch_size, quantized=quantized, backend=runs_on)


def get_reranker(settings: Settings, *, device: str | None = None) -> Reranker | None:
    """The process-wide reranker for ``settings.reranker_model`` (loaded, or found missing, once per process), with
    ``settings.reranker_backend``, ``reranker_max_length``, ``reranker_quantize``, ``reranker_batch_size`` and
    ``reranker_threads``; ONNX exports are cached under ``settings.var_dir``."""
    global _status
    key = (
        settings.reranker_model,
        device,
        settings.reranker_max_length,
        settings.reranker_quantize,
        settings.reranker_batch_size,
        settings.reranker_backend,
        settings.reranker_threads,
        str(settings.var_dir),
    )
    with _lock:
        if key not in _loaded:
            reranker = load_reranker(
                settings.reranker_model,
                device=device,
                max_length=settings.reranker_max_length,
                quantize=settings.reranker_quantize,
                batch_size=settings.reranker_batch_size,
                backend=settings.reranker_backend,
                cache_dir=settings.var_dir,
                threads=settings.reranker_threads or 1,
            )
            _loaded[key] = (reranker, _status)
        reranker, _status = _loaded[key]  # another model may have been loaded since; report this caller's
        return reranker
