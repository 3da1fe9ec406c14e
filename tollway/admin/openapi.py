"""The admin API's OpenAPI document, generated from its route table and body models."""

from __future__ import annotations

import re
from typing import Any

from tollway import __version__
from tollway.admin.call import Route

_PARAM = re.compile(r"{(\w+)}")


def openapi_document(routes: list[Route]) -> dict[str, Any]:
    """OpenAPI 3.1 for ``routes``: paths, path and query parameters, request bodies,
    bearer auth."""
    paths: dict[str, dict[str, Any]] = {}
    schemas: dict[str, Any] = {}
    for route in routes:
        operation: dict[str, Any] = {
            "summary": route.summary,
            "operationId": route.handler.__name__.strip("_") + "_" + route.method.lower(),
            "responses": {
                str(route.status): {"description": "Success"},
                "401": {"description": "Missing or invalid credential"},
                "403": {"description": "The caller's role does not allow this"},
            },
        }
        parameters = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in _PARAM.findall(route.path)
        ]
        parameters += [
            {"name": q.name, "in": "query", "required": False, "schema": {"type": "string"},
             "description": q.description}
            for q in route.query
        ]  # fmt: skip
        if parameters:
            operation["parameters"] = parameters
        if route.body is not None:
            name = route.body.__name__
            schemas[name] = route.body.model_json_schema(
                ref_template="#/components/schemas/{model}"
            )
            operation["requestBody"] = {
                "required": route.body_required,
                "content": {
                    "application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}
                },
            }
        paths.setdefault(route.path, {})[route.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "Tollway admin API", "version": __version__},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }
