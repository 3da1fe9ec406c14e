"""The OpenAI Responses dialect: ``POST /v1/responses``, streaming or not.

Parses Responses requests into canonical types, runs them through the pipeline like any chat
request, and writes ``Response`` objects and typed stream events whichever provider served.
Errors come in OpenAI's error shape (``dialects/openai.py`` renders them). The gateway keeps
no responses, so the routes that read or change a stored one answer a 404 that says so.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import orjson
from aiohttp import web

from tollway.core.context import RequestContext
from tollway.core.errors import GatewayError, NotFound
from tollway.dialects.http import read_json_object, request_id, routing_headers, stream_events
from tollway.dialects.openai import error_response, internal_error
from tollway.wire.responses_request import ResponsesRequest, request_from_wire
from tollway.wire.responses_response import response_to_wire
from tollway.wire.responses_stream import StreamWriter

if TYPE_CHECKING:
    from tollway.gateway import Gateway

_JSON = "application/json"


class ResponsesDialect:
    """aiohttp handlers for the Responses API routes."""

    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway

    def routes(self) -> list[web.RouteDef]:
        """The routes this dialect serves."""
        routes = []
        for prefix in ("/v1/responses", "/responses"):
            routes += [
                web.post(prefix, self.create),
                web.get(prefix + "/{response_id}", self.not_stored),
                web.delete(prefix + "/{response_id}", self.not_stored),
                web.post(prefix + "/{response_id}/cancel", self.not_stored),
                web.get(prefix + "/{response_id}/input_items", self.not_stored),
            ]
        return routes

    async def create(self, request: web.Request) -> web.StreamResponse:
        """``POST /v1/responses``, streaming or not."""
        rid = request_id(request)
        pipeline = self._gateway.pipeline
        ctx: RequestContext | None = None
        try:
            principal = await self._gateway.authenticator.authenticate(request.headers)
            body = await read_json_object(request, self._gateway.max_body_size)
            parsed = request_from_wire(body)
            chat = parsed.chat
            chat.upstream_headers = self._gateway.forwarder.select(request.headers)
            ctx = RequestContext(
                rid, "chat", chat.model, request.headers, principal=principal, chat=chat
            )
            if chat.stream:
                return await self._stream(request, ctx, parsed)
            response = await pipeline.chat(ctx)
            return web.Response(
                body=orjson.dumps(response_to_wire(response, parsed.echo)),
                content_type=_JSON,
                headers=routing_headers(ctx),
            )
        except GatewayError as exc:
            if ctx is not None:
                ctx.error = exc
                return error_response(exc, routing_headers(ctx))
            return error_response(exc, {"x-request-id": rid})
        except Exception as exc:
            return internal_error(rid, exc)
        finally:
            if ctx is not None:
                await pipeline.finish(ctx)

    async def _stream(
        self, request: web.Request, ctx: RequestContext, parsed: ResponsesRequest
    ) -> web.StreamResponse:
        chunks = await self._gateway.pipeline.stream(ctx)
        encoder = StreamWriter(parsed.echo)
        return await stream_events(request, ctx, chunks, encoder, routing_headers(ctx))

    async def not_stored(self, request: web.Request) -> web.Response:
        """Reading, cancelling or deleting a stored response: a 404, as none is stored."""
        response_id = request.match_info["response_id"]
        error = NotFound(
            f"The gateway does not store responses, so '{response_id}' cannot be retrieved, "
            "cancelled or deleted; keep the response your client received and send the whole "
            "conversation as 'input'.",
            code="response_not_stored",
        )
        return error_response(error, {"x-request-id": request_id(request)})
