"""The web page (plugged into the app as the ``web`` component): a shop front over both engines.

* ``GET /`` — the page (``hybrec/api/web/index.html``; plain HTML, CSS and JavaScript, no build step, no CDN);
* ``/static/...`` — its script and style sheet;
* ``GET /v1/users?limit=20`` — the most active shoppers with their interaction counts, for the page's user
  switcher (and any client that wants sample users to try).

The page itself calls the public API only: ``POST /v1/chat/stream`` for the assistant, ``GET
/v1/users/{id}/recommendations`` and ``GET /v1/items/{id}/similar`` for the collaborative engine, ``POST
/v1/interactions`` when a product card is clicked. The page and its files need no API key (a visitor must be able to
load the page to type one in); ``/v1/users`` is a read like the recommendations (a key only with
``HYBREC_API_KEYS_ON_READS``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Query
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from hybrec.api.deps import SettingsDep, require_read_key
from hybrec.config import Settings
from hybrec.store.engine import session_scope
from hybrec.store.queries import most_active_users

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
MAX_USERS = 200

router = APIRouter(tags=["web"])


class ActiveUser(BaseModel):
    user_id: str
    interactions: int = Field(description="Stored interactions of this user (all kinds).")


class UsersResponse(BaseModel):
    users: list[ActiveUser] = Field(description="Most interactions first; users without any are not listed.")


def setup(app: FastAPI, settings: Settings) -> None:
    """Called by ``create_app``: serve the page's script and style sheet under ``/static``."""
    app.mount("/static", StaticFiles(directory=WEB_DIR), name="static")


@router.get("/", include_in_schema=False)
async def index_page() -> FileResponse:
    """The page: chat with the assistant, recommendations "for you", similar items."""
    return FileResponse(WEB_DIR / "index.html", media_type="text/html")


@router.get("/v1/users", response_model=UsersResponse, dependencies=[Depends(require_read_key)])
def list_users(
    settings: SettingsDep,
    limit: Annotated[int, Query(ge=1, le=MAX_USERS, description=f"How many users (1..{MAX_USERS}).")] = 20,
) -> UsersResponse:
    """The ``limit`` shoppers with the most interactions, with their counts (a plain ``def``: it reads the store)."""
    with session_scope(settings.database_url) as session:
        rows = most_active_users(session, limit)
    return UsersResponse(users=[ActiveUser(user_id=u, interactions=n) for u, n in rows])
