"""One turn per chat mode with the real embedded model (Qwen2.5-Coder-0.5B-Instruct through llama.cpp).

Skipped only when llama-cpp-python is not importable (it is an optional extra that compiles from source)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hybrec.chat.grounding import ground_reply
from hybrec.config import Settings, get_settings

pytestmark = [pytest.mark.shared_data, pytest.mark.slow]

COFFEE = "I need a gift card for a coffee lover, under $30"


@pytest.fixture(scope="module")
def embedded_llm() -> Iterator[object]:
    pytest.importorskip("llama_cpp")
    from hybrec.llm import make_llm

    # The repository's var/ (git-ignored) keeps the assembled, verified weights between runs.
    settings = Settings(llm_backend="llama_cpp", llm_profile="qwen2.5-0.5b", var_dir=get_settings().var_dir)
    yield make_llm(settings)


def test_each_mode_end_to_end_with_the_embedded_model(gift_shop, embedded_llm) -> None:
    engine = gift_shop.engine(embedded_llm)
    search = engine.turn("qwen", COFFEE)
    assert search.mode == "new_search" and search.items
    assert all(i.price is not None and i.price <= 30 for i in search.items)
    # The reply names only returned items: grounding the final reply again removes nothing.
    assert ground_reply(search.reply, search.items, COFFEE).clean
    more = engine.turn("qwen", "show me more", search.session_id)
    assert more.mode in ("more_of_category", "new_search") and more.items
    assert all(i.price is not None and i.price <= 30 for i in more.items)
    follow = engine.turn("qwen", "which of those is cheapest?", more.session_id)
    assert follow.mode in ("follow_up", "new_search")
    hello = engine.turn("qwen", "hello!")
    assert hello.mode == "small_talk" and hello.items == [] and hello.reply
