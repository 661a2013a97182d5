"""Chat endpoints: the shopping assistant over HTTP (plugged into the app as the ``chat`` component).

* ``POST /v1/chat`` ``{user_id, message, session_id?}`` → ``{session_id, reply, mode, filters, items, ...}``;
* ``POST /v1/chat/stream`` — server-sent events: one ``items`` event, then ``token`` events, then ``done`` (or an
  ``error`` event ``{"detail": "internal server error"}`` when the turn fails mid-stream);
* ``GET /v1/users/{user_id}/chat-history`` — the user's turns, oldest first (404 for a user the store lacks);
* ``POST /get_reco`` ``{user_id, text}`` → ``{user_id, response}`` — the seed's endpoint.

An empty or whitespace-only message is a 422. A long message is **truncated** (not rejected): the engine reads the
first 2000 characters and the reply starts with a notice saying so; bodies over ``HYBREC_MAX_REQUEST_BYTES`` (1 MB)
are refused with 413 before parsing (:mod:`hybrec.api.security`, for every endpoint). An unknown ``session_id`` is a
404. When the LLM is down the answer is degraded (rules + template), never a 5xx; a missing product index is a 503
naming the command that builds it.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field, field_validator
from starlette.concurrency import run_in_threadpool

from hybrec.api.app import add_error_statuses
from hybrec.api.deps import require_read_key, require_write_key
from hybrec.chat.engine import ChatEngine
from hybrec.chat.memory import UnknownSession
from hybrec.chat.schemas import ChatTurn, Personaliser
from hybrec.config import Settings
from hybrec.retrieval.reranker import reranker_status
from hybrec.vectors.base import CollectionNotFound

logger = logging.getLogger(__name__)

# Asking the assistant counts as a read (a key only with HYBREC_API_KEYS_ON_READS); the history is guarded below.
router = APIRouter(tags=["chat"], dependencies=[Depends(require_read_key)])

_ID = Field(min_length=1, max_length=255)


class ChatRequest(BaseModel):
    user_id: str = _ID
    message: str = Field(description="The shopper's message; longer than 2000 characters is truncated.")
    session_id: str | None = Field(default=None, max_length=64)

    @field_validator("message")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("message must not be empty or whitespace")
        return value

    @field_validator("user_id")
    @classmethod
    def _id_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("user_id must not be blank")
        return value


class ChatItemOut(BaseModel):
    item_id: str
    name: str
    brand: str | None
    price: float | None
    avg_rating: float | None
    score: float
    reason: str = Field("", description="Why it was chosen: the constraints it met, relevance vs. the shopper's taste.")


class ChatResponse(BaseModel):
    session_id: str
    reply: str
    mode: str
    filters: dict[str, Any]
    items: list[ChatItemOut]
    relaxed: list[str] = []
    notices: list[str] = []
    degraded: list[str] = []
    timings_ms: dict[str, float] = {}


class HistoryTurn(BaseModel):
    session_id: str
    message: str
    reply: str
    mode: str
    item_ids: list[str]
    category: str | None
    filters: dict[str, Any]
    created_at: str


class ChatHistory(BaseModel):
    user_id: str
    turns: list[HistoryTurn]


class SeedRequest(BaseModel):
    user_id: str = _ID
    text: str

    @field_validator("text")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("text must not be empty or whitespace")
        return value


class SeedResponse(BaseModel):
    user_id: str
    response: str


def setup(app: FastAPI, settings: Settings) -> None:
    """Called by ``create_app``: the engine is built lazily on first use (or injected as ``app.state.chat_engine``),
    or at startup by :func:`warm_up` when the server asks for it."""
    if not hasattr(app.state, "chat_engine"):
        app.state.chat_engine = None
    app.state.chat_engine_lock = threading.Lock()
    app.state.chat_warm_up = "not started (the models load with the first chat request)"
    # An unknown session is the client's 404; a product index not built yet is a 503 naming the command to run.
    add_error_statuses(app, {UnknownSession: 404, CollectionNotFound: 503})
    app.state.readiness_checks = [
        *getattr(app.state, "readiness_checks", ()),
        _reranker_check,
        lambda: {"chat_warm_up": (True, app.state.chat_warm_up)},
    ]


def warm_up(app: FastAPI) -> threading.Thread:
    """Build the engine and run :meth:`ChatEngine.warm_up` in a background thread (called at startup by servers).

    Loading the models and reading the routing instruction take 10-30 s on a CPU with the embedded LLM; done here,
    the first shopper after a start does not pay for them. ``/ready`` reports the progress (``chat_warm_up``) but
    does not wait for it: requests arriving meanwhile wait for the engine as they would without a warm-up.
    """

    def run() -> None:
        app.state.chat_warm_up = "loading the models"
        try:
            seconds = engine_of(app).warm_up()
        except Exception as exc:  # the first request will try again and answer (degraded if need be)
            logger.exception("chat warm-up failed")
            app.state.chat_warm_up = f"failed ({type(exc).__name__}); the first chat request loads the models"
            return
        app.state.chat_warm_up = f"done in {seconds:.1f} s"
        logger.info("chat engine warmed up in %.1f s", seconds)

    thread = threading.Thread(target=run, name="chat-warm-up", daemon=True)
    thread.start()
    return thread


def _reranker_check() -> dict[str, tuple[bool, str]]:
    """``/ready``'s line on the reranker: the cross-encoder and its precision, or the fallback and why. A fallback
    still answers (dense + lexical ranking), so it does not make the service unready."""
    return {"reranker": (True, reranker_status().describe())}


def engine_of(app: FastAPI) -> ChatEngine:
    """The app's chat engine, built on first use (by one caller: concurrent ones wait for it)."""
    engine: ChatEngine | None = getattr(app.state, "chat_engine", None)
    if engine is not None:
        return engine
    # Concurrent first requests would otherwise each load the models (the embedded 1.5B LLM takes ~1.8 GB a copy).
    with app.state.chat_engine_lock:
        engine = getattr(app.state, "chat_engine", None)
        if engine is None:
            # In the same process as the collaborative engine, its recommender personalises the ranking once it
            # offers the Personaliser methods (user_vector, score_items).
            recommender = getattr(app.state, "recommender", None)
            personaliser = recommender if isinstance(recommender, Personaliser) else None
            engine = ChatEngine.from_settings(app.state.settings, personaliser=personaliser)
            app.state.chat_engine = engine
    return engine


def get_engine(request: Request) -> ChatEngine:
    return engine_of(request.app)


EngineDep = Annotated[ChatEngine, Depends(get_engine)]


def _response(turn: ChatTurn) -> ChatResponse:
    return ChatResponse(
        session_id=turn.session_id,
        reply=turn.reply,
        mode=turn.mode,
        filters=turn.filters,
        items=[ChatItemOut(**i.as_dict()) for i in turn.items],
        relaxed=turn.relaxed,
        notices=turn.notices,
        degraded=turn.degraded,
        timings_ms=turn.timings_ms,
    )


@router.post("/v1/chat", response_model=ChatResponse)
async def chat(body: ChatRequest, engine: EngineDep) -> ChatResponse:
    """One turn of the conversation."""
    turn = await run_in_threadpool(engine.turn, body.user_id, body.message, body.session_id)
    return _response(turn)


@router.post("/v1/chat/stream")
async def chat_stream(body: ChatRequest, engine: EngineDep) -> StreamingResponse:
    """One turn as server-sent events: ``items``, then ``token`` events, then ``done`` (the full turn)."""
    events = await run_in_threadpool(engine.stream_turn, body.user_id, body.message, body.session_id)

    def encode() -> Iterator[str]:
        try:
            for name, payload in events:
                data = _response(payload).model_dump() if isinstance(payload, ChatTurn) else payload
                yield f"event: {name}\ndata: {json.dumps(data if name != 'token' else {'text': data})}\n\n"
        except Exception:
            # The 200 and the first events are gone: the app's error handler can no longer answer, so the stream
            # ends with an error event, its cause logged here and never sent.
            logger.exception("chat stream failed for user %r", body.user_id)
            yield f"event: error\ndata: {json.dumps({'detail': 'internal server error'})}\n\n"

    return StreamingResponse(encode(), media_type="text/event-stream")


# A shopper's conversations are private and nothing identifies the caller as that shopper: whenever keys are set,
# reading them needs one, as writes do (HYBREC_API_KEYS_ON_READS or not).
@router.get("/v1/users/{user_id}/chat-history", response_model=ChatHistory, dependencies=[Depends(require_write_key)])
async def chat_history(
    engine: EngineDep,
    user_id: Annotated[str, Path(min_length=1, max_length=255)],
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> ChatHistory:
    """The user's last ``limit`` turns over all sessions, oldest first."""
    turns = await run_in_threadpool(engine.store.user_history, user_id, limit)
    if turns is None:
        raise HTTPException(404, f"unknown user {user_id!r}")
    return ChatHistory(
        user_id=user_id,
        turns=[
            HistoryTurn(
                session_id=t.session_id,
                message=t.message,
                reply=t.reply,
                mode=t.mode,
                item_ids=t.item_ids,
                category=t.category,
                filters=t.filters,
                created_at=t.created_at.isoformat(),
            )
            for t in turns
        ],
    )


@router.post("/get_reco", response_model=SeedResponse)
async def get_reco(body: SeedRequest, engine: EngineDep) -> SeedResponse:
    """The seed's chat endpoint: a new session per call, the reply text only."""
    turn = await run_in_threadpool(engine.turn, body.user_id, body.text, None)
    return SeedResponse(user_id=body.user_id, response=turn.reply)
