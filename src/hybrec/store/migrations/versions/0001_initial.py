"""Initial schema: users, items, interactions, chat sessions/messages, model versions.

Revision ID: 0001_initial
Revises:
Create Date: 2026-11-26

"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0001_initial"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the model column types (a migration must not change when the models do).
JSONType = sa.JSON().with_variant(JSONB(), "postgresql")
BigIntPK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)
IdString = sa.Text().with_variant(sa.Text(collation="C"), "postgresql")
KeyString = sa.String(128).with_variant(sa.String(128, collation="C"), "postgresql")


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("external_id", IdString, nullable=False),
        sa.Column("attributes", JSONType, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.UniqueConstraint("external_id", name="uq_users_external_id"),
    )
    op.create_table(
        "items",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("external_id", IdString, nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("category", sa.Text(), nullable=True),
        sa.Column("brand", sa.Text(), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("features", JSONType, nullable=False),
        sa.Column("price", sa.Float(), nullable=True),
        sa.Column("avg_rating", sa.Float(), nullable=True),
        sa.Column("num_ratings", sa.Integer(), nullable=False),
        sa.Column("attributes", JSONType, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.UniqueConstraint("external_id", name="uq_items_external_id"),
    )
    op.create_index("ix_items_category", "items", ["category"])
    op.create_table(
        "interactions",
        sa.Column("id", BigIntPK, primary_key=True),
        sa.Column(
            "user_id",
            sa.Integer(),
            sa.ForeignKey("users.id", ondelete="CASCADE", name="fk_interactions_user_id"),
            nullable=False,
        ),
        sa.Column(
            "item_id",
            sa.Integer(),
            sa.ForeignKey("items.id", ondelete="CASCADE", name="fk_interactions_item_id"),
            nullable=False,
        ),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("rating", sa.Float(), nullable=True),
        sa.Column("weight", sa.Float(), nullable=False),
        sa.Column("review_text", sa.Text(), nullable=True),
        sa.Column("verified", sa.Boolean(), nullable=True),
        sa.Column("ts", TS, nullable=False),
        sa.Column("idempotency_key", KeyString, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.UniqueConstraint("idempotency_key", name="uq_interactions_idempotency_key"),
    )
    op.create_index("ix_interactions_user_id_ts", "interactions", ["user_id", "ts"])
    op.create_index("ix_interactions_item_id", "interactions", ["item_id"])
    op.create_table(
        "chat_sessions",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column(
            "user_id",
            sa.Integer(),
            sa.ForeignKey("users.id", ondelete="CASCADE", name="fk_chat_sessions_user_id"),
            nullable=True,
        ),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("summary", sa.Text(), nullable=True),
    )
    op.create_index("ix_chat_sessions_user_id", "chat_sessions", ["user_id"])
    op.create_table(
        "chat_messages",
        sa.Column("id", BigIntPK, primary_key=True),
        sa.Column(
            "session_id",
            sa.String(36),
            sa.ForeignKey("chat_sessions.id", ondelete="CASCADE", name="fk_chat_messages_session_id"),
            nullable=False,
        ),
        sa.Column(
            "user_id",
            sa.Integer(),
            sa.ForeignKey("users.id", ondelete="CASCADE", name="fk_chat_messages_user_id"),
            nullable=True,
        ),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("reply", sa.Text(), nullable=False),
        sa.Column("mode", sa.String(32), nullable=False),
        sa.Column("recommended_item_ids", JSONType, nullable=False),
        sa.Column("category", sa.Text(), nullable=True),
        sa.Column("filters", JSONType, nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_index("ix_chat_messages_session_id_created_at", "chat_messages", ["session_id", "created_at"])
    op.create_table(
        "model_versions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("metrics", JSONType, nullable=False),
        sa.Column("params", JSONType, nullable=False),
        sa.Column("artifact_path", sa.Text(), nullable=True),
        sa.Column("n_users", sa.Integer(), nullable=False),
        sa.Column("n_items", sa.Integer(), nullable=False),
        sa.Column("n_interactions", sa.BigInteger(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("model_versions")
    op.drop_index("ix_chat_messages_session_id_created_at", table_name="chat_messages")
    op.drop_table("chat_messages")
    op.drop_index("ix_chat_sessions_user_id", table_name="chat_sessions")
    op.drop_table("chat_sessions")
    op.drop_index("ix_interactions_item_id", table_name="interactions")
    op.drop_index("ix_interactions_user_id_ts", table_name="interactions")
    op.drop_table("interactions")
    op.drop_index("ix_items_category", table_name="items")
    op.drop_table("items")
    op.drop_table("users")
