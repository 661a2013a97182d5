"""Chat sessions and messages, on both backends."""

from __future__ import annotations

import pytest

from hybrec.store.chat_history import (
    add_chat_message,
    chat_history,
    create_chat_session,
    get_chat_session,
    set_chat_summary,
)
from hybrec.store.engine import session_scope
from hybrec.store.queries import store_counts


def test_messages_are_kept_in_order_with_their_filters(store_url: str) -> None:
    with session_scope(store_url) as session:
        chat_id = create_chat_session(session, "shopper-1").id
    for n in range(3):
        with session_scope(store_url) as session:
            add_chat_message(session, chat_id, message=f"q{n}", reply=f"a{n}", mode="search",
                             recommended_item_ids=["i1", "i2"], category="tools",
                             filters={"max_price": 50.0, "brand": "Acme"})
    with session_scope(store_url) as session:
        history = chat_history(session, chat_id)
        assert [m.message for m in history] == ["q0", "q1", "q2"]
        assert [m.message for m in chat_history(session, chat_id, limit=2)] == ["q1", "q2"]
        assert history[0].recommended_item_ids == ["i1", "i2"]
        assert history[0].filters == {"max_price": 50.0, "brand": "Acme"}
        assert history[0].user_id == get_chat_session(session, chat_id).user_id  # type: ignore[union-attr]
        set_chat_summary(session, chat_id, "wants a drill")
        assert store_counts(session)["chat_messages"] == 3
    with session_scope(store_url) as session:
        assert get_chat_session(session, chat_id).summary == "wants a drill"  # type: ignore[union-attr]


def test_message_for_unknown_session_is_an_error(store_url: str) -> None:
    with session_scope(store_url) as session, pytest.raises(LookupError, match="does not exist"):
        add_chat_message(session, "no-such-session", message="hi", reply="hello", mode="chat")
