"""Conversation memory in the relational store: sessions, turns, summaries, and the catalog facts the chat reads.

Every turn is one ``chat_messages`` row (message, reply, mode, recommended item ids, category, filters). A session
longer than :data:`SUMMARY_AFTER` turns gets its older turns summarised into ``chat_sessions.summary`` (by the LLM,
or by a plain listing of the shopper's earlier requests when the LLM cannot answer), and only the last
:data:`RECENT_TURNS` turns are sent to the model verbatim.

An unknown user id is a new shopper: a ``users`` row is created on their first message.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from hybrec.chat.rules import CatalogVocabulary
from hybrec.chat.schemas import ChatItem
from hybrec.store.chat_history import (
    add_chat_message,
    chat_history,
    create_chat_session,
    get_chat_session,
    set_chat_summary,
)
from hybrec.store.engine import session_scope
from hybrec.store.models import ChatMessage as ChatMessageRow
from hybrec.store.models import Interaction, Item, User
from hybrec.store.queries import get_or_create_users, items_by_external_ids

logger = logging.getLogger(__name__)

RECENT_TURNS = 3
SUMMARY_AFTER = 6
HISTORY_LIMIT = 50  # turns loaded per request; older ones live on in the session summary
_SNIPPET_CHARS = 200


class UnknownSession(LookupError):
    """A session id that does not exist, or that belongs to another user."""


@dataclass(frozen=True, slots=True)
class StoredTurn:
    """One stored turn of a session."""

    session_id: str
    message: str
    reply: str
    mode: str
    item_ids: list[str]
    category: str | None
    filters: dict[str, Any]
    created_at: datetime


@dataclass(slots=True)
class SessionContext:
    """What the engine knows of a session before the turn: its id, summary and turns (oldest first)."""

    session_id: str
    user_pk: int
    summary: str | None
    turns: list[StoredTurn] = field(default_factory=list)

    @property
    def recent(self) -> list[tuple[str, str]]:
        return [(t.message, t.reply) for t in self.turns[-RECENT_TURNS:]]

    @property
    def last_with_items(self) -> StoredTurn | None:
        return next((t for t in reversed(self.turns) if t.item_ids), None)

    @property
    def last_search(self) -> StoredTurn | None:
        """The latest turn that ran a search; its constraints are what "more of the same" continues (a follow-up
        only narrows the products already shown, so it never replaces them)."""
        return next((t for t in reversed(self.turns) if t.mode in ("new_search", "more_of_category")), None)

    @property
    def shown_ids(self) -> set[str]:
        return {i for t in self.turns for i in t.item_ids}


def _turn(row: ChatMessageRow) -> StoredTurn:
    return StoredTurn(
        row.session_id,
        row.message,
        row.reply,
        row.mode,
        list(row.recommended_item_ids or []),
        row.category,
        dict(row.filters or {}),
        row.created_at,
    )


class ChatStore:
    """Chat history and catalog reads/writes against the store at ``database_url`` (SQLite or PostgreSQL)."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url

    def open_session(self, user_id: str, session_id: str | None) -> SessionContext:
        """The session ``session_id`` of ``user_id`` (a new one when None), creating the user on first contact.

        Raises
        ------
        UnknownSession
            When ``session_id`` is given but is not one of this user's sessions.
        """
        with session_scope(self.database_url) as db:
            user_pk = get_or_create_users(db, [user_id])[user_id]
            if session_id is None:
                created = create_chat_session(db, user_id)
                return SessionContext(created.id, user_pk, None, [])
            chat = get_chat_session(db, session_id)
            if chat is None or chat.user_id != user_pk:
                raise UnknownSession(f"chat session {session_id!r} does not exist for user {user_id!r}")
            rows = chat_history(db, session_id, limit=HISTORY_LIMIT)
            return SessionContext(chat.id, user_pk, chat.summary, [_turn(r) for r in rows])

    def save_turn(
        self,
        context: SessionContext,
        message: str,
        reply: str,
        mode: str,
        item_ids: Sequence[str],
        category: str | None,
        filters: dict[str, Any],
    ) -> None:
        """Store one turn."""
        with session_scope(self.database_url) as db:
            add_chat_message(
                db,
                context.session_id,
                message=message,
                reply=reply,
                mode=mode,
                recommended_item_ids=item_ids,
                category=category,
                filters=filters,
            )

    def set_summary(self, session_id: str, summary: str) -> None:
        with session_scope(self.database_url) as db:
            set_chat_summary(db, session_id, summary)

    def user_history(self, user_id: str, limit: int = 50) -> list[StoredTurn] | None:
        """The user's last ``limit`` turns over all sessions, oldest first; None for a user the store lacks."""
        with session_scope(self.database_url) as db:
            user_pk = db.scalar(select(User.id).where(User.external_id == user_id))
            if user_pk is None:
                return None
            rows = db.scalars(
                select(ChatMessageRow)
                .where(ChatMessageRow.user_id == user_pk)
                .order_by(ChatMessageRow.created_at.desc(), ChatMessageRow.id.desc())
                .limit(limit)
            ).all()
            return [_turn(r) for r in reversed(rows)]

    def items(self, external_ids: Sequence[str]) -> list[ChatItem]:
        """The catalog items ``external_ids``, in that order (ids the catalog no longer has are left out)."""
        if not external_ids:
            return []
        with session_scope(self.database_url) as db:
            rows = items_by_external_ids(db, external_ids)
            return [
                ChatItem(i, rows[i].name, rows[i].brand, rows[i].price, rows[i].avg_rating, 0.0, rows[i].category)
                for i in external_ids
                if i in rows
            ]

    def review_snippets(self, item_ids: Iterable[str], per_item: int = 2) -> dict[str, list[str]]:
        """Up to ``per_item`` review texts per item (the highest-rated first), cut to 200 characters."""
        ids = list(item_ids)
        if not ids:
            return {}
        out: dict[str, list[str]] = {}
        with session_scope(self.database_url) as db:
            rows = db.execute(
                select(Item.external_id, Interaction.review_text)
                .join(Interaction, Interaction.item_id == Item.id)
                .where(Item.external_id.in_(ids), Interaction.review_text.is_not(None))
                .order_by(Item.external_id, Interaction.rating.desc(), Interaction.id)
            )
            for item_id, text in rows:
                snippets = out.setdefault(item_id, [])
                if len(snippets) < per_item and text and text.strip():
                    clean = " ".join(text.split())
                    snippets.append(clean if len(clean) <= _SNIPPET_CHARS else clean[:_SNIPPET_CHARS] + "...")
        return out

    def vocabulary(self) -> CatalogVocabulary:
        """The catalog's brands and categories (for the rule-based parser)."""
        with session_scope(self.database_url) as db:
            brands = list(db.scalars(select(Item.brand).where(Item.brand.is_not(None)).distinct()))
            categories: dict[str, int] = {
                str(c): int(n)
                for c, n in db.execute(
                    select(Item.category, func.count()).where(Item.category.is_not(None)).group_by(Item.category)
                )
            }
        return CatalogVocabulary.build(brands, categories)


def plain_summary(turns: Sequence[tuple[str, str, str]]) -> str:
    """A summary without a model: the shopper's earlier requests ``(message, reply, mode)``, oldest first."""
    asked = "; ".join(message[:80] for message, _reply, mode in turns if mode != "small_talk")
    text = f"Earlier the shopper asked for: {asked}." if asked else "Earlier the shopper only chatted."
    return text[-1000:]
