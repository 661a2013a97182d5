"""Run a loaded :class:`~sentence_transformers.CrossEncoder` on ONNX Runtime, from an export cached on disk.

Why not ``CrossEncoder(..., backend="onnx")``: sentence-transformers' ONNX backend needs ``optimum-onnx``, whose
only release (0.1.0) requires ``transformers<4.58`` while sentence-transformers 6.2 requires ``transformers>=5``, so
``sentence-transformers[onnx]==6.2.0`` cannot be installed. This module does what that backend does, with the two
pieces the project already has (torch's exporter and ``onnxruntime``): the cross-encoder is loaded by
sentence-transformers as usual (tokenizer, length-sorted batching, activation and ``predict`` stay its own), then its
transformers model is exported once with :func:`torch.onnx.export`, optionally int8-quantized with
:func:`onnxruntime.quantization.quantize_dynamic`, and replaced inside the CrossEncoder by
:class:`OnnxSequenceClassifier`, a module whose ``forward`` runs the ONNX Runtime session.

The export is cached under ``<var_dir>/models/reranker-onnx/<name>-<key>/``, ``name`` being the last part of the
model's name or path and ``key`` a SHA-256 of its config and weights (so changed weights in the same folder get a new
export) and of the export recipe; a later load, in this process or another, only opens the file. Exporting and
quantizing a MiniLM-L6 took 8 s on the shared 2-core machine (33 s while tests ran beside it); a cached load ~1.2 s.

Quantization: weights int8 per output channel with 7-bit range (``reduce_range``), activations uint8 per batch. On
CPUs without AVX-512 VNNI, ONNX Runtime multiplies uint8 by int8 with ``vpmaddubsw``, whose 16-bit sums of two
products saturate for full-range int8 weights (2 x 255 x 127 > 32,767); 7-bit weights cannot saturate.
"""

from __future__ import annotations

import contextvars
import hashlib
import json
import logging
import os
import re
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    import onnxruntime
    from sentence_transformers import CrossEncoder, SentenceTransformer
    from transformers import PretrainedConfig, PreTrainedModel

logger = logging.getLogger(__name__)

#: Changes whenever the export or quantization recipe changes, so that old cached files are not reused.
EXPORT_RECIPE = "torchscript-opset17-eager-first-token-last-layer-v2"
QUANT_RECIPE = "dynamic-qint8-per-channel-reduce-range-v1"
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")


def model_key(model: PreTrainedModel, *, quantize: bool) -> str:
    """SHA-256 (hex) of ``model``'s config, weights and the export recipe: the name of its cached ONNX export."""
    digest = hashlib.sha256()
    digest.update(EXPORT_RECIPE.encode())
    digest.update((QUANT_RECIPE if quantize else "fp32").encode())
    config = {k: v for k, v in model.config.to_dict().items() if k != "_name_or_path"}  # where, not what
    digest.update(json.dumps(config, sort_keys=True, default=str).encode())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(str(tensor.dtype).encode())
        digest.update(json.dumps(list(tensor.shape)).encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def cache_folder(cache_dir: Path, model_name: str, key: str, kind: str = "reranker") -> Path:
    """Where the export of ``model_name`` with content key ``key`` lives (``kind``: reranker or embedder)."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(model_name.rstrip("/")).name or model_name).strip("_") or "model"
    return Path(cache_dir) / "models" / f"{kind}-onnx" / f"{slug[:60]}-{key[:16]}"


def _export(model: PreTrainedModel, path: Path) -> None:
    """Export a sequence-classification model (output ``logits``) or a bare encoder (output ``last_hidden_state``,
    see :func:`is_classifier`) to ONNX with dynamic batch and sequence axes."""
    example = {
        "input_ids": torch.tensor([[101, 2000, 102, 2001, 2002, 102]] * 2),
        "attention_mask": torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]]),
        "token_type_ids": torch.tensor([[0, 0, 0, 1, 1, 1]] * 2),
    }
    names = [name for name in INPUT_NAMES if name in _forward_inputs(model)]
    output = "logits" if is_classifier(model) else "last_hidden_state"
    axes: dict[str, dict[int, str]] = {name: {0: "batch", 1: "sequence"} for name in names}
    axes[output] = {0: "batch"} if output == "logits" else {0: "batch", 1: "sequence"}
    previous = model.config._attn_implementation
    # The eager attention is the plain graph ONNX Runtime's CPU kernels and fusions know best.
    model.set_attn_implementation("eager")
    exported: torch.nn.Module = model if output == "logits" else _HiddenStates(model, names)
    if FirstTokenLastLayer.applies_to(model) and names == list(INPUT_NAMES):
        exported = FirstTokenLastLayer(model)
    try:
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore")  # tracer notes on Python-level shape checks of the attention mask code
            torch.onnx.export(
                exported.eval(),
                tuple(example[name] for name in names),
                str(path),
                input_names=names,
                output_names=[output],
                dynamic_axes=axes,
                opset_version=17,
                dynamo=False,
            )
    finally:
        model.set_attn_implementation(previous)


def is_classifier(model: torch.nn.Module) -> bool:
    """Whether ``model`` outputs ``logits`` (a ``*ForSequenceClassification``) rather than token vectors."""
    return "ForSequenceClassification" in type(model).__name__


class _HiddenStates(torch.nn.Module):
    """An encoder called with named inputs, returning its last hidden states: what the export traces."""

    def __init__(self, model: PreTrainedModel, names: list[str]) -> None:
        super().__init__()
        self.model: Any = model
        self.names = names

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.model(**dict(zip(self.names, inputs, strict=True))).last_hidden_state


class FirstTokenLastLayer(torch.nn.Module):
    """A BERT sequence classifier whose last layer computes the first token's output only: the same logits, less work.

    The classification head reads nothing but the last layer's first-token ([CLS]) vector (BERT's pooler). In that
    layer every token still supplies keys and values, but the query, attention output, feed-forward and LayerNorms
    are needed for the first token alone: about 80% of the layer's multiply-adds, so 13% of a 6-layer model's, are
    skipped. The earlier layers run as transformers defines them (its masks included); the last one is written out
    here with the same operations as transformers' eager attention.
    """

    def __init__(self, model: PreTrainedModel) -> None:
        super().__init__()
        self.model: Any = model  # a BertForSequenceClassification (see applies_to); its submodules are untyped

    @staticmethod
    def applies_to(model: torch.nn.Module) -> bool:
        """Whether ``model`` is a BERT-style sequence classifier with a pooler (what this rewrite reproduces)."""
        config: Any = getattr(model, "config", None)
        bert: Any = getattr(model, "bert", None)
        return (
            getattr(config, "model_type", None) == "bert"
            and not getattr(config, "is_decoder", True)
            and bert is not None
            and getattr(bert, "pooler", None) is not None
            and hasattr(model, "classifier")
            and len(bert.encoder.layer) >= 1
        )

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor
    ) -> torch.Tensor:
        bert = self.model.bert
        layers = bert.encoder.layer
        *body, last = list(layers)
        bert.encoder.layer = torch.nn.ModuleList(body)
        try:
            hidden = bert(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state
        finally:
            bert.encoder.layer = layers
        attention = last.attention.self
        batch, length, _ = hidden.shape
        heads, size = attention.num_attention_heads, attention.attention_head_size
        first = hidden[:, :1]
        query = attention.query(first).view(batch, 1, heads, size).transpose(1, 2)
        key = attention.key(hidden).view(batch, length, heads, size).transpose(1, 2)
        value = attention.value(hidden).view(batch, length, heads, size).transpose(1, 2)
        blocked = (1.0 - attention_mask[:, None, None, :].to(hidden.dtype)) * torch.finfo(hidden.dtype).min
        weights = torch.softmax(torch.matmul(query, key.transpose(2, 3)) * attention.scaling + blocked, dim=-1)
        context = torch.matmul(weights, value).transpose(1, 2).reshape(batch, 1, heads * size)
        attended = last.attention.output(context, first)
        output = last.output(last.intermediate(attended), attended)
        return self.model.classifier(self.model.dropout(bert.pooler(output)))


def _forward_inputs(model: PreTrainedModel) -> set[str]:
    import inspect

    return set(inspect.signature(model.forward).parameters)


class _QuietQuantizer(logging.Filter):
    """Drops ONNX Runtime's quantizer chatter (a line per tensor, logged on the root logger) below ERROR."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR or "onnxruntime" not in record.pathname


def _quantize(source: Path, target: Path) -> None:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quiet = _QuietQuantizer()
    logging.getLogger().addFilter(quiet)
    try:
        quantize_dynamic(
            source,
            target,
            weight_type=QuantType.QInt8,
            per_channel=True,
            reduce_range=True,
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    finally:
        logging.getLogger().removeFilter(quiet)


def export_cached(model: PreTrainedModel, model_name: str, cache_dir: Path, *, quantize: bool) -> Path:
    """The ONNX file for ``model`` (int8 with ``quantize``), exported into ``cache_dir`` unless already there.

    Files are written under a temporary name and renamed, so a concurrent loader sees a whole file or none.
    """
    kind = "reranker" if is_classifier(model) else "embedder"
    folder = cache_folder(cache_dir, model_name, model_key(model, quantize=quantize), kind)
    target = folder / ("model_qint8.onnx" if quantize else "model.onnx")
    if target.is_file():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".export-{os.getpid()}-{id(model)}"
    tmp.mkdir(exist_ok=True)
    try:
        fp32 = tmp / "model.onnx"
        _export(model, fp32)
        produced = fp32
        if quantize:
            produced = tmp / "model_qint8.onnx"
            _quantize(fp32, produced)
        os.replace(produced, target)
        recipe = {"model": model_name, "export": EXPORT_RECIPE, "quantization": QUANT_RECIPE if quantize else None}
        (folder / "source.json").write_text(json.dumps(recipe))
    finally:
        for leftover in tmp.iterdir():
            leftover.unlink()
        tmp.rmdir()
    logger.info("exported cross-encoder %s to %s", model_name, target)
    return target


def make_session(path: Path, threads: int) -> onnxruntime.InferenceSession:
    """A CPU session on ``threads`` intra-op threads that sleep, rather than spin, between operators (on a shared
    2-core machine a spinning pool steals the core another process or request needs)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


_call_threads: contextvars.ContextVar[int | None] = contextvars.ContextVar("onnx_reranker_threads", default=None)


@contextmanager
def onnx_threads(threads: int | None) -> Iterator[None]:
    """Within this context (this thread or task only), :class:`OnnxSequenceClassifier` runs on ``threads``
    intra-op threads; None keeps each model's default."""
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    token = _call_threads.set(threads)
    try:
        yield
    finally:
        _call_threads.reset(token)


class OnnxSequenceClassifier(torch.nn.Module):
    """Stands in for a transformers ``*ForSequenceClassification`` inside a CrossEncoder: same inputs, same
    ``logits`` output, computed by an ONNX Runtime session.

    An ONNX Runtime session has a fixed thread pool, so there is one session per thread count asked for (see
    :func:`onnx_threads`), opened on first use: a MiniLM-L6 int8 session holds ~25 MB.

    Parameters
    ----------
    path : Path
        The exported model.
    config : PretrainedConfig
        The original model's config (sentence-transformers reads ``num_labels`` and friends from it).
    threads : int, default 1
        Intra-op threads when the caller does not choose.
    """

    output_name = "logits"

    def __init__(self, path: Path, config: PretrainedConfig, threads: int = 1) -> None:
        super().__init__()
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        self.path = path
        self.config = config
        self.threads = threads
        self._sessions: dict[int, onnxruntime.InferenceSession] = {}
        self._lock = threading.Lock()
        self.input_names = [i.name for i in self.session(threads).get_inputs()]

    def session(self, threads: int) -> onnxruntime.InferenceSession:
        """The session with ``threads`` intra-op threads (opened once)."""
        found = self._sessions.get(threads)
        if found is None:
            with self._lock:
                found = self._sessions.get(threads)
                if found is None:
                    found = self._sessions[threads] = make_session(self.path, threads)
        return found

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32

    def run(self, input_ids: torch.Tensor | None, features: dict[str, Any]) -> torch.Tensor:
        """The session's output for the model inputs among ``features`` (``token_type_ids`` default to zeros)."""
        features = {"input_ids": input_ids, **features}
        feeds = {}
        for name in self.input_names:
            value = features.get(name)
            if value is None:
                if name != "token_type_ids" or input_ids is None:
                    raise ValueError(f"the ONNX model needs {name!r}")
                value = torch.zeros_like(input_ids)
            feeds[name] = np.ascontiguousarray(value.detach().cpu().numpy(), dtype=np.int64)
        session = self.session(_call_threads.get() or self.threads)
        (output,) = session.run([self.output_name], feeds)
        return torch.from_numpy(output)

    def forward(self, input_ids: torch.Tensor | None = None, **kwargs: Any) -> Any:
        from transformers.modeling_outputs import SequenceClassifierOutput

        return SequenceClassifierOutput(logits=self.run(input_ids, kwargs))


class OnnxEncoder(OnnxSequenceClassifier):
    """Stands in for a transformers encoder (``BertModel`` ...) inside a SentenceTransformer: same inputs, the
    ``last_hidden_state`` output, computed by ONNX Runtime; pooling and normalisation stay sentence-transformers'."""

    output_name = "last_hidden_state"

    def forward(self, input_ids: torch.Tensor | None = None, **kwargs: Any) -> Any:
        from transformers.modeling_outputs import BaseModelOutput

        return BaseModelOutput(last_hidden_state=self.run(input_ids, kwargs))


def to_onnx(
    model: CrossEncoder | SentenceTransformer, model_name: str, cache_dir: Path, *, quantize: bool, threads: int = 1
) -> OnnxSequenceClassifier:
    """Replace ``model``'s transformers model by an ONNX Runtime one (exported to ``cache_dir`` once) in place:
    an :class:`OnnxSequenceClassifier` in a CrossEncoder, an :class:`OnnxEncoder` in a SentenceTransformer.

    Raises whatever the export or ONNX Runtime raises; ``model`` is unchanged then.
    """
    from sentence_transformers.base.modules import Transformer

    module = next((m for m in model.modules() if isinstance(m, Transformer)), None)
    if module is None:
        raise ValueError("the model has no transformers module to export")
    original = module.model
    path = export_cached(original, model_name, cache_dir, quantize=quantize)
    runner = OnnxSequenceClassifier if is_classifier(original) else OnnxEncoder
    onnx_model = runner(path, original.config, threads)
    module.model = onnx_model  # replaces the registered submodule: the torch weights are freed with it
    return onnx_model
