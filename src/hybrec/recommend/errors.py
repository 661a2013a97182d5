"""Errors of the serving logic; the API maps each to its HTTP status (see ``hybrec.api.app``)."""

from __future__ import annotations


class RecommendError(Exception):
    """Base class of the serving errors."""


class ModelNotReady(RecommendError):
    """No published model is active yet (HTTP 503)."""


class DependencyUnavailable(RecommendError):
    """A store is down and no degraded answer exists (HTTP 503); the message names the store and why."""


class UnknownItems(RecommendError):
    """Item ids absent from the catalog (HTTP 422 in an interaction, 404 for similar items)."""

    def __init__(self, item_ids: list[str], context: str = "") -> None:
        self.item_ids = item_ids
        shown = ", ".join(repr(i[:64]) for i in item_ids[:10])
        more = f" and {len(item_ids) - 10} more" if len(item_ids) > 10 else ""
        super().__init__(f"unknown item id(s){context}: {shown}{more}")


class InvalidRequest(RecommendError):
    """A request the serving logic cannot answer as asked (HTTP 422)."""


class UnknownModelVersion(RecommendError):
    """A model version that does not exist (HTTP 404)."""


class ModelVersionUnusable(RecommendError):
    """A model version that exists but cannot be activated: failed, still training, or its data deleted (409)."""


class ItemNotInModel(UnknownItems):
    """An item the active model has no factors for (HTTP 404 on similar items)."""
