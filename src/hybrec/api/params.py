"""Parameters validated in the handler, for an endpoint where FastAPI's per-parameter solving shows.

FastAPI validates each declared parameter on its own: per request and per parameter, a lookup, a field validation
and an error list. On the recommendations endpoint, whose work is a fraction of a millisecond, that was a quarter of
the request's CPU for its query string, and a tenth more for its one path parameter. A handler that reads its query
string through :func:`query_model` validates it in one pydantic call, and :func:`path_value` one path parameter;
both answer bad input with FastAPI's 422 (``{"detail": [{"type", "loc": ["query" or "path", name], "msg",
"input"}]}``). :func:`openapi_query_parameters` and :func:`openapi_path_parameter` document them as FastAPI would.
"""

from __future__ import annotations

from typing import Any, TypeVar

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, TypeAdapter, ValidationError

Model = TypeVar("Model", bound=BaseModel)
Value = TypeVar("Value")


def query_model(model: type[Model], request: Request) -> Model:
    """``request``'s query string validated as ``model`` (a repeated parameter counts by its last value, as in
    FastAPI; parameters the model lacks are ignored); a :class:`RequestValidationError` (422) otherwise."""
    try:
        return model.model_validate(dict(request.query_params))
    except ValidationError as exc:
        errors = [{**error, "loc": ("query", *error["loc"])} for error in exc.errors(include_url=False)]
        raise RequestValidationError(errors) from exc


def path_value(adapter: TypeAdapter[Value], request: Request, name: str) -> Value:
    """``request``'s path parameter ``name`` validated by ``adapter``; a :class:`RequestValidationError` (422)
    located at ``("path", name)`` otherwise."""
    try:
        return adapter.validate_python(request.path_params[name])
    except ValidationError as exc:
        errors = [{**error, "loc": ("path", name, *error["loc"])} for error in exc.errors(include_url=False)]
        raise RequestValidationError(errors) from exc


def openapi_path_parameter(adapter: TypeAdapter[Any], name: str) -> dict[str, Any]:
    """The OpenAPI ``parameters`` entry (``in: path``) of a path parameter that :func:`path_value` validates."""
    schema = adapter.json_schema()
    description = schema.pop("description", None)
    parameter: dict[str, Any] = {"name": name, "in": "path", "required": True}
    if description:
        parameter["description"] = description
    return {**parameter, "schema": {**schema, "title": name.replace("_", " ").title()}}


def openapi_query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    """OpenAPI ``parameters`` (``in: query``) for ``model``'s fields, for a route's ``openapi_extra``."""
    schema = model.model_json_schema()
    if "$defs" in schema:
        raise ValueError(f"{model.__name__}: query parameters must be plain values, not nested models")
    required = set(schema.get("required", ()))
    parameters = []
    for name, field_schema in schema["properties"].items():
        field_schema = dict(field_schema)
        parameter: dict[str, Any] = {"name": name, "in": "query", "required": name in required}
        description = field_schema.pop("description", None)
        if description:
            parameter["description"] = description
        parameters.append({**parameter, "schema": field_schema})
    return parameters
