"""Recommendation endpoints: per-user top-N, similar items, interaction events and the seed's ``/recommendation``.

Handlers are thin: they validate, call :class:`~hybrec.recommend.service.Recommender` and shape the answer. Errors
of the serving layer become HTTP errors in ``hybrec.api.app`` (one mapping for every route).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, FastAPI, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Discriminator, Field, Tag, TypeAdapter
from starlette.routing import Match, Route
from starlette.types import Scope

from hybrec.api.deps import (
    READ_KEY_SECURITY,
    RecommenderDep,
    SettingsDep,
    check_read_key,
    recommender_of,
    require_read_key,
    require_write_key,
)
from hybrec.api.params import openapi_path_parameter, openapi_query_parameters, path_value, query_model
from hybrec.api.schemas import (
    MAX_ID_LENGTH,
    InteractionBatch,
    InteractionIn,
    InteractionsResponse,
    RecommendationResponse,
    RecommendedItem,
    SeedRecommendationRequest,
    SeedRecommendationResponse,
    SimilarItemsResponse,
    UserUpdate,
)
from hybrec.config import Settings
from hybrec.recommend.types import InteractionEvent, Recommendations, ScoredItem
from hybrec.vectors.filters import Filter

router = APIRouter(tags=["recommendations"])
# Reads (a key only with HYBREC_API_KEYS_ON_READS); the write below adds the write check. The busiest endpoint is
# routed by `route_first` and checks the read key in its handler (check_read_key); `reads` joins `router` at the end
# of the module.
reads = APIRouter(dependencies=[Depends(require_read_key)])

PathId = Annotated[str, Path(min_length=1, max_length=MAX_ID_LENGTH, description="External id.")]
#: ``PathId`` for a handler that validates its path itself (:func:`hybrec.api.params.path_value`).
PATH_ID = TypeAdapter(Annotated[str, Field(min_length=1, max_length=MAX_ID_LENGTH, description="External id.")])


def check_n(n: int, settings: Settings, field: tuple[str, ...] = ("query", "n")) -> int:
    """``n`` when 1 <= n <= ``settings.max_recommendations``; otherwise a 422 naming the cap."""
    cap = settings.max_recommendations
    if not 1 <= n <= cap:
        raise RequestValidationError(
            [
                {
                    "type": "value_error",
                    "loc": field,
                    "msg": f"{field[-1]} must be between 1 and {cap} "
                    f"(the cap set by HYBREC_MAX_RECOMMENDATIONS), got {n}",
                    "input": n,
                }
            ]
        )
    return n


class ItemFilterQuery(BaseModel):
    """The item filters of a query string (every one optional); :meth:`to_filter` checks them together."""

    category: Annotated[str | None, Field(min_length=1, max_length=MAX_ID_LENGTH)] = None
    brand: Annotated[str | None, Field(min_length=1, max_length=MAX_ID_LENGTH)] = None
    min_price: Annotated[float | None, Field(ge=0, allow_inf_nan=False)] = None
    max_price: Annotated[float | None, Field(ge=0, allow_inf_nan=False)] = None
    min_rating: Annotated[float | None, Field(ge=0, le=10, allow_inf_nan=False)] = None

    def to_filter(self) -> Filter:
        """The search filter; min_price > max_price, or a brand with nothing to match on, is a 422."""
        if self.min_price is not None and self.max_price is not None and self.min_price > self.max_price:
            raise RequestValidationError(
                [
                    {
                        "type": "value_error",
                        "loc": ("query", "min_price"),
                        "msg": f"min_price ({self.min_price}) must not exceed max_price ({self.max_price})",
                        "input": self.min_price,
                    }
                ]
            )
        try:
            return Filter(
                category=self.category,
                brand=self.brand,
                min_price=self.min_price,
                max_price=self.max_price,
                min_rating=self.min_rating,
            )
        except ValueError as exc:  # e.g. a brand with no letters or digits to match on
            raise RequestValidationError(
                [{"type": "value_error", "loc": ("query",), "msg": str(exc), "input": None}]
            ) from exc


class RecommendationQuery(ItemFilterQuery):
    """The query string of ``GET /v1/users/{user_id}/recommendations``."""

    n: Annotated[int, Field(description="How many items (1..HYBREC_MAX_RECOMMENDATIONS).")] = 10
    exclude_seen: Annotated[bool, Field(description="Leave out the items the user interacted with.")] = True


async def item_filters(query: Annotated[ItemFilterQuery, Query()]) -> Filter:
    """The item filters of a query string, as a dependency.

    ``async`` because it never blocks: a plain ``def`` dependency costs a thread-pool hop per request.
    """
    return query.to_filter()


FiltersDep = Annotated[Filter, Depends(item_filters)]


def _items(items: list[ScoredItem]) -> list[RecommendedItem]:
    return [RecommendedItem.model_validate(i, from_attributes=True) for i in items]


@reads.get("/v1/users//recommendations", include_in_schema=False)
def empty_user_id() -> None:
    raise RequestValidationError(
        [{"type": "string_too_short", "loc": ("path", "user_id"), "msg": "user_id must not be empty", "input": ""}]
    )


@dataclass(frozen=True, slots=True)
class _RecommendationBody:
    """:class:`RecommendationResponse`'s fields in its order, holding the serving layer's own values."""

    user_id: str
    model_version: int
    items: list[ScoredItem]
    strategy: str
    degraded: list[str]


_RECOMMENDATION_JSON = TypeAdapter(_RecommendationBody)


def recommendation_json(user_id: str, result: Recommendations) -> bytes:
    """The JSON of a :class:`RecommendationResponse` for ``result``, serialised straight from its dataclasses.

    Validating ten ``RecommendedItem`` models per request, then the response model, only to serialise them took a
    visible share of the busiest endpoint's CPU; the serving layer's types already hold exactly those fields (a test
    keeps the two in step), so pydantic's serializer writes them as they are. ``response_model`` still documents it.
    """
    body = _RecommendationBody(user_id, result.model_version, result.items, result.strategy, result.degraded)
    return _RECOMMENDATION_JSON.dump_json(body)


#: Query strings most requests send: only ``n``, as a plain integer (no sign, no leading zero, at most six digits).
_ONLY_N = re.compile(rb"n=([1-9][0-9]{0,5})")
_DEFAULTS = RecommendationQuery()


def _recommendation_query(request: Request) -> tuple[RecommendationQuery, Filter | None]:
    """The query and its filters; an empty query string, or one of just ``n=<integer>``, needs no validation (none
    of it can be invalid but ``n``'s range, which :func:`check_n` judges) and filters nothing: 12 us less per
    request than pydantic's model validation."""
    raw: bytes = request.scope["query_string"]
    if not raw:
        return _DEFAULTS, None
    if plain := _ONLY_N.fullmatch(raw):
        return RecommendationQuery.model_construct(n=int(plain[1])), None
    query = query_model(RecommendationQuery, request)
    return query, query.to_filter()


async def recommendation_body(request: Request) -> bytes:
    """The JSON of the top-``n`` items for a user, filters applied inside the search, seen items excluded by default.

    The busiest endpoint checks the read key, validates its path and query string itself (hybrec.api.params) and
    takes the recommender and settings straight from the app: FastAPI solves each parameter and dependency on its
    own, per request. The app's fast lane (:mod:`hybrec.api.lane`) calls it directly; :func:`recommend_for_user`
    is the same as a route's endpoint.
    """
    check_read_key(request)
    user_id = request.path_params["user_id"]
    if not 0 < len(user_id) <= MAX_ID_LENGTH:  # PATH_ID's rule, checked here; pydantic words the 422
        user_id = path_value(PATH_ID, request, "user_id")
    query, filters = _recommendation_query(request)
    n = check_n(query.n, request.app.state.settings)
    recommender = recommender_of(request)
    if recommender.answers_in_process:  # embedded: on the event loop, awaiting only the index search
        result = await recommender.recommend_async(user_id, n, filters, exclude_seen=query.exclude_seen)
    else:  # round trips to Redis, Chroma or PostgreSQL block: in a worker thread
        result = await run_in_threadpool(recommender.recommend, user_id, n, filters, exclude_seen=query.exclude_seen)
    return recommendation_json(user_id, result)


async def recommend_for_user(request: Request) -> Response:
    """Top-``n`` items for a user, filters applied inside the search, seen items excluded by default."""
    return Response(await recommendation_body(request), media_type="application/json")


class _NamedRoute(Route):
    """A Starlette route that records itself in the scope, as FastAPI's routes do: the request metrics are labelled
    by ``scope["route"].path`` (the template, not the raw path)."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child_scope = super().matches(scope)
        if match != Match.NONE:
            child_scope["route"] = self
        return match, child_scope


def route_first(app: FastAPI) -> Route:
    """Serve ``GET /v1/users/{user_id}/recommendations`` ahead of every other route of ``app``; returns the route.

    * **First.** A request is matched against the app's routes in order: FastAPI's documentation routes, then each
      included router's. The busiest endpoint tried a dozen patterns and three nested routers first, some
      0.03-0.08 ms of the event loop's CPU per request (in-process ASGI); another request now tries one more pattern.
    * **A plain Starlette route.** The handler validates its own parameters, so FastAPI's per-route machinery
      (solving the parameters, a response object per request) would only cost time: 17-21 us per request (a trivial
      endpoint served both ways, in-process, on a 2-core EPYC). A FastAPI route for the same path, placed after it
      and never reached, documents it in OpenAPI.
    """
    path = "/v1/users/{user_id}/recommendations"
    route = _NamedRoute(path, recommend_for_user, methods=["GET"])
    app.router.routes.insert(0, route)
    app.add_api_route(
        path,
        recommend_for_user,
        methods=["GET"],
        tags=["recommendations"],
        response_model=RecommendationResponse,
        openapi_extra={
            "parameters": [openapi_path_parameter(PATH_ID, "user_id"), *openapi_query_parameters(RecommendationQuery)],
            "security": READ_KEY_SECURITY,
        },
    )
    return route


@reads.get("/v1/items/{item_id}/similar", response_model=SimilarItemsResponse)
def similar_items(
    item_id: PathId,
    recommender: RecommenderDep,
    settings: SettingsDep,
    filters: FiltersDep,
    n: Annotated[int, Query(description="How many items (1..HYBREC_MAX_RECOMMENDATIONS).")] = 10,
) -> SimilarItemsResponse:
    """Items whose ALS factors are closest (inner product) to ``item_id``'s; 404 for an item the model lacks."""
    result = recommender.similar_items(item_id, check_n(n, settings), filters)
    return SimilarItemsResponse(
        item_id=item_id, model_version=result.model_version, items=_items(result.items), degraded=result.degraded
    )


def _body_shape(value: Any) -> str:
    return "batch" if isinstance(value, dict) and "interactions" in value else "event"


InteractionsBody = Annotated[
    Annotated[InteractionBatch, Tag("batch")] | Annotated[InteractionIn, Tag("event")],
    Discriminator(_body_shape),
]


@reads.post(
    "/v1/interactions",
    response_model=InteractionsResponse,
    status_code=201,
    dependencies=[Depends(require_write_key)],
)
def post_interactions(body: Annotated[InteractionsBody, Body()], recommender: RecommenderDep) -> InteractionsResponse:
    """Store events durably (all or nothing), then fold each user's vector in against the live item factors."""
    events = body.interactions if isinstance(body, InteractionBatch) else [body]
    outcome = recommender.record_interactions([InteractionEvent(**e.model_dump()) for e in events])
    return InteractionsResponse(
        stored=outcome.stored,
        duplicates=outcome.duplicates,
        users=[UserUpdate(user_id=u, strategy=s) for u, s in outcome.users.items()],
        model_version=outcome.model_version,
        degraded=outcome.degraded,
    )


@reads.post("/recommendation", response_model=SeedRecommendationResponse)
def seed_recommendation(
    body: SeedRecommendationRequest, recommender: RecommenderDep, settings: SettingsDep
) -> SeedRecommendationResponse:
    """The seed's endpoint, kept for existing clients: ``{"user_id", "n_recs"}`` → ids and scores."""
    n = check_n(body.n_recs, settings, ("body", "n_recs"))
    result = recommender.recommend(str(body.user_id), n, None, exclude_seen=True)
    return SeedRecommendationResponse(
        recommendations=[i.item_id for i in result.items], scores=[i.score for i in result.items]
    )


router.include_router(reads)
