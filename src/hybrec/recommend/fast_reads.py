"""The one store read on every recommendation request, as a prebuilt statement on a plain connection.

TEMPORARY ADAPTER (to move into ``hybrec.store.queries``, engineer A): ``queries.user_interactions`` builds its
``select()`` and an ORM session on every call, about 4 ms per request on this machine; the same SQL prebuilt once
and run on a pooled Core connection takes about 0.4 ms (SQLAlchemy's compiled cache then hits every time). Once
``hybrec.store.queries`` offers the same fast path, this file is deleted.
"""

from __future__ import annotations

from sqlalchemy import bindparam, select

from hybrec.store.engine import get_engine
from hybrec.store.models import Interaction, Item, User
from hybrec.store.queries import UserInteraction

_USER_INTERACTIONS = (
    select(Item.external_id, Interaction.kind, Interaction.rating, Interaction.weight, Interaction.ts)
    .join(Interaction, Interaction.item_id == Item.id)
    .join(User, Interaction.user_id == User.id)
    .where(User.external_id == bindparam("user_id"))
    .order_by(Interaction.ts, Interaction.id)
)


def user_interactions(database_url: str, user_external_id: str) -> list[UserInteraction]:
    """Every interaction of one user, oldest first; [] for an unknown user (same rows as the store's query)."""
    with get_engine(database_url).connect() as connection:
        rows = connection.execute(_USER_INTERACTIONS, {"user_id": user_external_id}).all()
    return [UserInteraction(*row) for row in rows]
