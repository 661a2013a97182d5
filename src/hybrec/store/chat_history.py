"""Chat sessions and messages: what the shopping assistant said, recommended and understood, per session."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from hybrec.store.models import ChatMessage, ChatSession, utcnow
from hybrec.store.queries import get_or_create_users


def create_chat_session(session: Session, user_external_id: str | None = None) -> ChatSession:
    """A new chat session (uuid id), optionally tied to a user (created if unknown)."""
    user_id = get_or_create_users(session, [user_external_id])[user_external_id] if user_external_id else None
    chat = ChatSession(user_id=user_id, created_at=utcnow())
    session.add(chat)
    session.flush()
    return chat


def get_chat_session(session: Session, session_id: str) -> ChatSession | None:
    return session.get(ChatSession, session_id)


def add_chat_message(
    session: Session,
    session_id: str,
    *,
    message: str,
    reply: str,
    mode: str,
    recommended_item_ids: Sequence[str] = (),
    category: str | None = None,
    filters: dict[str, Any] | None = None,
    user_external_id: str | None = None,
) -> ChatMessage:
    """Append one exchange to ``session_id``; :class:`LookupError` when the session does not exist."""
    chat = session.get(ChatSession, session_id)
    if chat is None:
        raise LookupError(f"chat session {session_id!r} does not exist")
    user_id = get_or_create_users(session, [user_external_id])[user_external_id] if user_external_id else chat.user_id
    row = ChatMessage(
        session_id=session_id,
        user_id=user_id,
        message=message,
        reply=reply,
        mode=mode,
        recommended_item_ids=list(recommended_item_ids),
        category=category,
        filters=dict(filters or {}),
        created_at=utcnow(),
    )
    session.add(row)
    session.flush()
    return row


def chat_history(session: Session, session_id: str, limit: int | None = None) -> list[ChatMessage]:
    """The messages of a session, oldest first (the most recent ``limit`` when given)."""
    query = (
        select(ChatMessage)
        .where(ChatMessage.session_id == session_id)
        .order_by(ChatMessage.created_at.desc(), ChatMessage.id.desc())
    )
    if limit is not None:
        query = query.limit(limit)
    rows = list(session.scalars(query))
    rows.reverse()
    return rows


def set_chat_summary(session: Session, session_id: str, summary: str) -> None:
    chat = session.get(ChatSession, session_id)
    if chat is None:
        raise LookupError(f"chat session {session_id!r} does not exist")
    chat.summary = summary
    session.flush()
