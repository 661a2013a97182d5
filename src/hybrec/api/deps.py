"""FastAPI dependencies: the settings, the recommender and the metrics of the running app, and the API-key checks.

They are ``async def`` on purpose: FastAPI runs a plain ``def`` dependency in the thread pool, one thread hop per
dependency per request (several on the recommendation endpoint), while these only read attributes and never block.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import APIKeyHeader

from hybrec.api.metrics import Metrics
from hybrec.config import Settings
from hybrec.recommend.service import Recommender

#: Longest ``X-API-Key`` accepted; a longer header is refused before any comparison.
MAX_API_KEY_LENGTH = 256

#: The OpenAPI security scheme of the ``X-API-Key`` header: clients (and Swagger UI's Authorize button) see it.
API_KEY_SCHEME = "APIKey"
#: The same header on read endpoints, a scheme of its own only so that the OpenAPI document can tell reads from
#: writes; :func:`hybrec.api.security.document_api_keys` folds it into :data:`API_KEY_SCHEME`.
READ_KEY_SCHEME = "APIKeyOnReads"
#: The same header on admin endpoints, which HYBREC_ADMIN_API_KEYS may reserve to other keys (folded the same way).
ADMIN_KEY_SCHEME = "APIKeyAdmin"
_KEY_DESCRIPTION = (
    "One of the server's HYBREC_API_KEYS. Required on writes and admin endpoints whenever keys are configured (admin "
    "endpoints take HYBREC_ADMIN_API_KEYS instead when those are set); on read endpoints only when "
    "HYBREC_API_KEYS_ON_READS is true. Health probes, metrics, the docs and the web page never need one."
)
_api_key_header = APIKeyHeader(
    name="X-API-Key", scheme_name=API_KEY_SCHEME, auto_error=False, description=_KEY_DESCRIPTION
)
_read_key_header = APIKeyHeader(
    name="X-API-Key", scheme_name=READ_KEY_SCHEME, auto_error=False, description=_KEY_DESCRIPTION
)
_admin_key_header = APIKeyHeader(
    name="X-API-Key", scheme_name=ADMIN_KEY_SCHEME, auto_error=False, description=_KEY_DESCRIPTION
)


async def get_app_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def recommender_of(request: Request) -> Recommender:
    """The app's recommender; a 503 when this process runs none."""
    recommender: Recommender | None = getattr(request.app.state, "recommender", None)
    if recommender is None:
        raise HTTPException(status_code=503, detail="the recommender is not running in this process")
    return recommender


async def get_recommender(request: Request) -> Recommender:
    return recommender_of(request)


async def get_metrics(request: Request) -> Metrics:
    metrics: Metrics = request.app.state.metrics
    return metrics


def valid_api_key(presented: str | None, keys: list[str]) -> bool:
    """Whether ``presented`` is one of ``keys``, compared in constant time.

    Every key is compared (no early exit) with :func:`hmac.compare_digest`, so the answer time does not tell an
    attacker how much of a key they guessed, nor which key matched.
    """
    if presented is None or not keys or len(presented) > MAX_API_KEY_LENGTH:
        return False
    candidate = presented.encode("utf-8", "surrogateescape")
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(candidate, key.encode("utf-8", "surrogateescape"))
    return matched


def admin_keys(settings: Settings) -> list[str]:
    """The keys the admin endpoints accept: ``admin_api_keys`` when set, else the ordinary ``api_keys``."""
    return settings.admin_api_keys or settings.api_keys


def _check_api_key(request: Request, api_key: str | None, required: list[str], accepted: list[str]) -> None:
    """401 unless ``api_key`` is one of ``accepted``, whenever ``required`` (the keys that make it needed) is set."""
    if not required:  # no keys configured: an open deployment
        return
    keys = accepted
    if api_key is None:
        raise HTTPException(
            status_code=401,
            detail="missing X-API-Key header: this endpoint requires an API key",
            headers={"WWW-Authenticate": "APIKey"},
        )
    if not valid_api_key(api_key, keys):
        raise HTTPException(status_code=401, detail="invalid X-API-Key", headers={"WWW-Authenticate": "APIKey"})


async def require_write_key(request: Request, api_key: Annotated[str | None, Security(_api_key_header)] = None) -> None:
    """Writes: a valid ``X-API-Key`` (an ordinary or an admin key) whenever ``settings.api_keys`` is set, else 401."""
    settings: Settings = request.app.state.settings
    _check_api_key(request, api_key, settings.api_keys, settings.api_keys + settings.admin_api_keys)


async def require_admin_key(
    request: Request, api_key: Annotated[str | None, Security(_admin_key_header)] = None
) -> None:
    """Admin (model versions, activation, training): one of :func:`admin_keys` whenever there are any, else 401."""
    keys = admin_keys(request.app.state.settings)
    _check_api_key(request, api_key, keys, keys)


async def require_read_key(request: Request, api_key: Annotated[str | None, Security(_read_key_header)] = None) -> None:
    """Reads: a valid ``X-API-Key`` only when ``settings.api_keys_on_reads`` is also set, else 401."""
    _check_read_key(request, api_key)


def check_read_key(request: Request) -> None:
    """:func:`require_read_key` called by a handler itself, for a route that declares no dependency: FastAPI's
    solving of this one cost a tenth of the recommendations endpoint's CPU. The route documents the requirement
    with ``openapi_extra={"security": READ_KEY_SECURITY}``."""
    if request.app.state.settings.api_keys_on_reads:  # else the headers need not even be parsed
        _check_read_key(request, request.headers.get(_read_key_header.model.name) or None)  # as APIKeyHeader reads it


def _check_read_key(request: Request, api_key: str | None) -> None:
    settings: Settings = request.app.state.settings
    if settings.api_keys_on_reads:
        _check_api_key(request, api_key, settings.api_keys, settings.api_keys + settings.admin_api_keys)


#: The OpenAPI security requirement of a read that calls :func:`check_read_key` itself.
READ_KEY_SECURITY: list[dict[str, list[str]]] = [{READ_KEY_SCHEME: []}]


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
RecommenderDep = Annotated[Recommender, Depends(get_recommender)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
