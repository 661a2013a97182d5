"""Request and response models of the collaborative-engine API (explicit pydantic classes, no ORM objects).

Ids are strings exactly as the catalog spells them; the limits here (:data:`MAX_ID_LENGTH`) match the store's
columns, so a request the API accepts is one the store can hold.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from hybrec.data.records import InteractionKind

MAX_ID_LENGTH = 255
MAX_IDEMPOTENCY_KEY_LENGTH = 128
MAX_BATCH_SIZE = 1000

Strategy = Literal["trained", "folded_in", "cold_start_popular"]

ExternalId = Annotated[
    str,
    Field(min_length=1, max_length=MAX_ID_LENGTH, description="An id exactly as the catalog spells it."),
]


def _not_blank(value: str, field: str) -> str:
    if not value.strip():
        raise ValueError(f"{field} must not be blank")
    return value


class RecommendedItem(BaseModel):
    item_id: str
    score: float
    name: str | None = None
    brand: str | None = None
    category: str | None = None
    price: float | None = None
    avg_rating: float | None = None


class RecommendationResponse(BaseModel):
    user_id: str
    model_version: int
    items: list[RecommendedItem]
    strategy: Strategy = Field(
        description="How the user vector was obtained: trained (cached from training), folded_in (solved against the "
        "live item factors from the user's stored interactions) or cold_start_popular (no interactions)."
    )
    degraded: list[str] = Field(
        default_factory=list, description="Dependencies that were down and how the answer was obtained without them."
    )


class SimilarItemsResponse(BaseModel):
    item_id: str
    model_version: int
    items: list[RecommendedItem]
    degraded: list[str] = Field(default_factory=list)


class InteractionIn(BaseModel):
    """One interaction event; unknown users are created, unknown items are rejected."""

    model_config = ConfigDict(extra="forbid")

    user_id: ExternalId
    item_id: ExternalId
    kind: InteractionKind
    rating: float | None = Field(None, ge=0, le=10, allow_inf_nan=False)
    weight: float | None = Field(None, gt=0, le=1000, allow_inf_nan=False)
    ts: datetime | None = None
    idempotency_key: str | None = Field(None, min_length=1, max_length=MAX_IDEMPOTENCY_KEY_LENGTH)

    @field_validator("user_id", "item_id")
    @classmethod
    def _ids_not_blank(cls, value: str, info: Any) -> str:
        return _not_blank(value, info.field_name)

    @model_validator(mode="after")
    def _rating_given_for_rating_events(self) -> InteractionIn:
        if self.kind == "rating" and self.rating is None:
            raise ValueError("an interaction of kind 'rating' needs a rating")
        return self


class InteractionBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    interactions: list[InteractionIn] = Field(min_length=1, max_length=MAX_BATCH_SIZE)


class UserUpdate(BaseModel):
    user_id: str
    strategy: Strategy | None = Field(
        None, description="How the user's vector now stands (folded_in), or null when it could not be refreshed."
    )


class InteractionsResponse(BaseModel):
    stored: int = Field(description="Events written by this request.")
    duplicates: int = Field(description="Events whose idempotency key was already stored (not written again).")
    users: list[UserUpdate]
    model_version: int | None
    degraded: list[str] = Field(default_factory=list)


class SeedRecommendationRequest(BaseModel):
    """The seed's request body: ``{"user_id", "n_recs"}`` (the user id may be a number)."""

    user_id: ExternalId | int
    n_recs: int = 10

    @field_validator("user_id")
    @classmethod
    def _as_text(cls, value: str | int) -> str:
        return _not_blank(str(value), "user_id")


class SeedRecommendationResponse(BaseModel):
    recommendations: list[str]
    scores: list[float]


class ModelVersionOut(BaseModel):
    version: int
    status: str
    is_active: bool
    created_at: datetime
    metrics: dict[str, Any]
    params: dict[str, Any]
    n_users: int
    n_items: int
    n_interactions: int
    error: str | None = None


class ModelListResponse(BaseModel):
    active_version: int | None
    models: list[ModelVersionOut]


class TrainingAccepted(BaseModel):
    started: bool
    detail: str


class HealthResponse(BaseModel):
    status: Literal["ok"] = "ok"


class CheckOut(BaseModel):
    ok: bool
    detail: str | None = None


class LastTraining(BaseModel):
    version: int
    status: str
    at: datetime
    error: str | None = None


class ReadyResponse(BaseModel):
    ready: bool
    model_version: int | None
    checks: dict[str, CheckOut]
    last_training: LastTraining | None
