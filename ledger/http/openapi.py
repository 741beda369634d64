"""The OpenAPI document, generated from the pydantic models: the commands' union (what the
command routes read from the raw body, so that numbers are parsed exactly, never through a
float), the outcome, the read models' answers and the problem."""

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from ledger.commands import command_adapter
from ledger.http.problems import PROBLEM_MEDIA_TYPE, TITLES, Problem

REF = "#/components/schemas/{model}"
COMMAND_SCHEMA = {"$ref": REF.format(model="Command")}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The error answers of a route, as problem+json."""
    return {
        status: {
            "description": TITLES[status][1],
            "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": REF.format(model="Problem")}}},
        }
        for status in statuses
    }


def install(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _document(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _document(app: FastAPI) -> dict[str, Any]:
    document = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
    )
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    commands = command_adapter.json_schema(ref_template=REF)
    for name, schema in commands.pop("$defs", {}).items():
        schemas.setdefault(name, schema)
    schemas["Command"] = commands | {"title": "Command"}
    schemas["Problem"] = Problem.model_json_schema(ref_template=REF)
    return document
