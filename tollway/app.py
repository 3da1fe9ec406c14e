"""Wires the gateway's components into the aiohttp application."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

import orjson
from aiohttp import web

from tollway.admin.openapi import openapi_document
from tollway.admin.routes import ROUTES, admin_routes
from tollway.config.schema import Settings
from tollway.core.errors import NotFound
from tollway.dialects.anthropic import AnthropicDialect
from tollway.dialects.http import request_id
from tollway.dialects.openai import OpenAIDialect, error_response
from tollway.dialects.responses import ResponsesDialect
from tollway.gateway import Gateway

GATEWAY = web.AppKey("gateway", Gateway)


def create_app(settings: Settings, environ: Mapping[str, str] | None = None) -> web.Application:
    """The ASGI-free aiohttp application for ``settings``; components start with the app."""
    gateway = Gateway(settings, environ)
    # The dialects enforce the body limit themselves to answer in the client's error shape.
    app = web.Application(client_max_size=gateway.max_body_size + 1, handler_args=None)
    app[GATEWAY] = gateway

    async def lifecycle(_: web.Application) -> AsyncIterator[None]:
        await gateway.start()
        yield
        await gateway.close()

    app.cleanup_ctx.append(lifecycle)
    app.router.add_routes(OpenAIDialect(gateway).routes())
    app.router.add_routes(ResponsesDialect(gateway).routes())
    app.router.add_routes(AnthropicDialect(gateway).routes())
    app.router.add_routes(admin_routes(gateway, ROUTES))
    document = orjson.dumps(openapi_document(ROUTES))

    async def openapi(_: web.Request) -> web.Response:
        return web.Response(body=document, content_type="application/json")

    app.router.add_get("/admin/openapi.json", openapi)
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/health/live", _live)
    app.router.add_get("/health/ready", _ready)
    app.router.add_route("*", "/{tail:.*}", _unknown_route)
    return app


async def _live(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"}, dumps=_dumps)


async def _ready(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY]
    if not gateway.ready:
        return web.json_response({"status": "starting"}, status=503, dumps=_dumps)
    models = len(gateway.pipeline.routing.groups)
    return web.json_response({"status": "ready", "models": models}, dumps=_dumps)


async def _metrics(request: web.Request) -> web.Response:
    metrics = request.app[GATEWAY].metrics
    if metrics is None:
        return await _unknown_route(request)
    return web.Response(body=metrics.exposition(), content_type="text/plain", charset="utf-8")


async def _unknown_route(request: web.Request) -> web.Response:
    error = NotFound(f"Invalid URL ({request.method} {request.path})", code="unknown_url")
    return error_response(error, {"x-request-id": request_id(request)})


def _dumps(value: object) -> str:
    return orjson.dumps(value).decode()
