"""The OpenAI Responses dialect: ``POST /v1/responses``, streaming or not.

Parses Responses requests into canonical types, runs them through the pipeline like any chat
request, and writes ``Response`` objects and typed stream events whichever provider served;
a deployment that speaks the Responses API itself is sent the client's body, and its answer
(or its events) is sent on as it came (``wire/responses_upstream.py``).
Errors come in OpenAI's error shape (``dialects/openai.py`` renders them). The gateway keeps
no responses, and cannot tell which deployment's upstream stored an id (a response id names no
account), so the routes that read or change a stored one answer a 404 that says so.
``POST /v1/responses/input_tokens`` counts a request's input tokens as the Anthropic dialect's
``count_tokens`` does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from tollway.auth.stage import check_model_access
from tollway.core.context import RequestContext
from tollway.core.errors import GatewayError, InvalidRequest, NotFound
from tollway.core.types import JSON, ChatChunk, ChatRequest
from tollway.dialects.http import exchange, request_id, routing_headers, stream_events
from tollway.dialects.openai import error_response, failure
from tollway.wire.responses_relay import EventRelay
from tollway.wire.responses_request import request_from_wire
from tollway.wire.responses_response import response_to_wire
from tollway.wire.responses_stream import StreamWriter
from tollway.wire.responses_upstream import WIRE_FORMAT as RESPONSES_FORMAT
from tollway.wire.responses_upstream import changed_response

if TYPE_CHECKING:
    from tollway.core.pipeline import Pipeline
    from tollway.gateway import Gateway

_JSON = "application/json"
# The Chat Completions names a Responses request's fields take inside the gateway (its
# canonical request is a chat request), and the names the client sent them under.
_CLIENT_NAMES = {
    "reasoning_effort": "reasoning.effort",
    "verbosity": "text.verbosity",
    "max_tokens": "max_output_tokens",
    "max_completion_tokens": "max_output_tokens",
    "messages": "input",
}


def _failure(exc: GatewayError, rid: str, headers: dict[str, str]) -> web.StreamResponse:
    """An error in OpenAI's shape that names the fields as the Responses client sent them."""
    name = _CLIENT_NAMES.get(exc.param or "")
    if name is not None:
        exc.message = exc.message.replace(f"'{exc.param}'", f"'{name}'")
        exc.param = name
    return failure(exc, rid, headers)


class _Encoder(StreamWriter):
    """The Responses event stream, closing with the gateway's own count as usage when the
    upstream's stream gave none (metered by then: the stream's end settled it). A stream
    from a Responses upstream (its first chunk says) is relayed event for event instead."""

    def __init__(self, echo: JSON, ctx: RequestContext) -> None:
        super().__init__(echo)
        self._ctx = ctx
        self._fed = False
        self._relay: EventRelay | None = None

    def feed(self, chunk: ChatChunk) -> bytes:
        """The events ``chunk`` stands for: its own, from a Responses upstream."""
        if not self._fed:
            self._fed = True
            if chunk.wire_format == RESPONSES_FORMAT:
                self._relay = EventRelay()
        if self._relay is not None:
            return self._relay.feed(chunk)
        return super().feed(chunk)

    def finish(self) -> bytes:
        """The closing events, usage included (a Responses upstream has sent its own)."""
        if self._relay is not None:
            return b""
        if not self.usage_seen and self._ctx.usage is not None:
            self.usage_from(self._ctx.usage)
        return super().finish()

    def error(self, exc: GatewayError) -> bytes:
        """The events that end a stream which failed after its first byte."""
        if self._relay is not None:
            return self._relay.error(exc)
        return super().error(exc)


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
                # Before the routes of a response id, which this path would otherwise be.
                web.post(prefix + "/input_tokens", self.count_input_tokens),
                web.get(prefix + "/{response_id}", self.not_stored),
                web.delete(prefix + "/{response_id}", self.not_stored),
                web.post(prefix + "/{response_id}/cancel", self.not_stored),
                web.get(prefix + "/{response_id}/input_items", self.not_stored),
            ]
        return routes

    async def create(self, request: web.Request) -> web.StreamResponse:
        """``POST /v1/responses``, streaming or not."""
        echo: JSON = {}

        def parse(body: dict[str, Any]) -> ChatRequest:
            parsed = request_from_wire(body)
            echo.update(parsed.echo)  # what the Response object repeats back
            # As sent, for a deployment that speaks the Responses API (``responses_api``).
            parsed.chat.responses_body = body
            return parsed.chat

        async def answer(
            request: web.Request, pipeline: Pipeline, ctx: RequestContext
        ) -> web.StreamResponse:
            assert ctx.chat is not None
            ctx.endpoint = "responses"
            if ctx.chat.stream:
                chunks = await pipeline.stream(ctx)
                encoder = _Encoder(echo, ctx)
                return await stream_events(request, ctx, chunks, encoder, routing_headers(ctx))
            ctx.chat.answer_as_is = True  # sent on as the upstream's bytes when it can be
            response = await pipeline.chat(ctx)
            if response.wire_format == RESPONSES_FORMAT:
                # From a Responses upstream: sent as it came, or, changed by a stage, its own
                # Response object with the changes (built-in tool items and all).
                body = response.raw
                if body is None:
                    body = orjson.dumps(changed_response(response, ctx.usage))
                return web.Response(body=body, content_type=_JSON, headers=routing_headers(ctx))
            if response.usage is None:
                # A Response always states usage: the gateway's own count when the upstream
                # gave none (as metered: ``usage_estimated`` in the request log).
                response.usage = ctx.usage
            return web.Response(
                body=orjson.dumps(response_to_wire(response, echo)),
                content_type=_JSON,
                headers=routing_headers(ctx),
            )

        return await exchange(
            request, self._gateway, parse, answer, _failure, logged_as="responses"
        )

    async def count_input_tokens(self, request: web.Request) -> web.StreamResponse:
        """``POST /v1/responses/input_tokens``: the input tokens of a Responses request, counted
        as ``/v1/messages/count_tokens`` counts (the provider's count, or a local one)."""

        def parse(body: dict[str, Any]) -> ChatRequest:
            chat = request_from_wire(body).chat
            only = chat.responses_only
            if only is not None:
                # Stored state and built-in tools are counted by the upstream that holds them:
                # a count without them would be far too low.
                raise InvalidRequest(
                    f"{only.why}; the gateway cannot count its tokens", param=only.param
                )
            return chat

        async def answer(
            request: web.Request, pipeline: Pipeline, ctx: RequestContext
        ) -> web.StreamResponse:
            # No stages run (nothing is limited or metered), but a key counts only on the
            # models it may use: a provider's count spends the deployment's credential.
            check_model_access(ctx)
            tokens, by_provider = await pipeline.count_tokens(ctx)
            if not by_provider:
                ctx.response_headers["x-tollway-token-count"] = "local"
            counted = {"object": "response.input_tokens", "input_tokens": tokens}
            return web.Response(
                body=orjson.dumps(counted), content_type=_JSON, headers=routing_headers(ctx)
            )

        return await exchange(request, self._gateway, parse, answer, _failure)

    async def not_stored(self, request: web.Request) -> web.Response:
        """Reading, cancelling or deleting a stored response: a 404, as none is stored."""
        response_id = request.match_info["response_id"]
        error = NotFound(
            f"The gateway does not store responses, and cannot tell which upstream stored "
            f"'{response_id}', so it cannot be retrieved, cancelled or deleted here; keep the "
            "response your client received (a Responses upstream's can be continued with "
            "'previous_response_id').",
            code="response_not_stored",
        )
        return error_response(error, {"x-request-id": request_id(request)})
