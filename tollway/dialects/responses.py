"""The OpenAI Responses dialect: ``POST /v1/responses``, streaming or not.

Parses Responses requests into canonical types, runs them through the pipeline like any chat
request, and writes ``Response`` objects and typed stream events whichever provider served;
a deployment that speaks the Responses API itself is sent the client's body, and its answer
(or its events) is sent on as it came (``wire/responses_upstream.py``).
Errors come in OpenAI's error shape (``dialects/openai.py`` renders them). The gateway keeps
no responses, and cannot tell which deployment's upstream stored an id (a response id names no
account), so the routes that read or change a stored one answer a 404 that says so.
``POST /v1/responses/input_tokens`` counts a request's input tokens as the Anthropic dialect's
``count_tokens`` does. ``POST /v1/responses/compact`` is sent to a deployment that speaks the
Responses API (only OpenAI can make or read its ``compaction`` item), its answer sent on as it
came; a model without one is a 400 saying so.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import hdrs, web

from tollway.auth.stage import check_model_access
from tollway.core.context import RequestContext
from tollway.core.errors import GatewayError, InvalidRequest, MethodNotAllowed, NotFound
from tollway.core.types import JSON, ChatChunk, ChatRequest, ResponsesOnly
from tollway.dialects.http import (
    Failure,
    exchange,
    expect_later,
    request_id,
    routing_headers,
    stream_events,
)
from tollway.dialects.openai import error_response, failure
from tollway.wire.declined_output import as_declined_output
from tollway.wire.responses_input import Origins
from tollway.wire.responses_paths import client_param
from tollway.wire.responses_relay import EventRelay
from tollway.wire.responses_request import request_from_wire
from tollway.wire.responses_response import response_to_wire
from tollway.wire.responses_stream import StreamWriter
from tollway.wire.responses_upstream import (
    COMPACT_FIELDS,
    changed_response,
    upstream_object,
)
from tollway.wire.responses_upstream import WIRE_FORMAT as RESPONSES_FORMAT

if TYPE_CHECKING:
    from tollway.core.pipeline import Pipeline
    from tollway.gateway import Gateway

_JSON = "application/json"
_POST_ONLY = frozenset({"compact", "input_tokens"})
_COMPACTION = (
    "compaction ('/v1/responses/compact') is OpenAI's Responses API's own: its 'compaction' item "
    "is encrypted for OpenAI"
)


def _failure(
    origins: Origins, parsed: list[ChatRequest] | None = None, tool_places: list[int] | None = None
) -> Failure:
    """Errors in OpenAI's shape that name the fields as the Responses client sent them (its
    canonical request is a chat request: later steps name Chat Completions' fields);
    ``origins``: where the parse found each message; ``parsed``: the request parsed, whose
    oldest turns the router may have dropped since (``truncation: "auto"``); ``tool_places``:
    where each canonical tool is in the client's ``tools``."""

    def fail(exc: GatewayError, rid: str, headers: dict[str, str]) -> web.StreamResponse:
        if exc.param:
            kept = parsed[0].kept_messages if parsed else None
            found = origins if kept is None else [origins[i] for i in kept]
            name = client_param(exc.param, found, tool_places or ())
            if name != exc.param:
                exc.message = exc.message.replace(f"'{exc.param}'", f"'{name}'")
                exc.param = name
        return failure(exc, rid, headers)

    return fail


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
                web.post(prefix, self.create, expect_handler=expect_later),
                # Before the routes of a response id, which these paths would otherwise be.
                web.post(
                    prefix + "/input_tokens", self.count_input_tokens, expect_handler=expect_later
                ),
                web.post(prefix + "/compact", self.compact, expect_handler=expect_later),
                web.get(prefix + "/{response_id}", self.not_stored),
                web.delete(prefix + "/{response_id}", self.not_stored),
                web.post(prefix + "/{response_id}/cancel", self.not_stored),
                web.get(prefix + "/{response_id}/input_items", self.not_stored),
            ]
        return routes

    async def create(self, request: web.Request) -> web.StreamResponse:
        """``POST /v1/responses``, streaming or not."""
        echo: JSON = {}
        origins: Origins = []
        chats: list[ChatRequest] = []
        tool_places: list[int] = []

        def parse(body: dict[str, Any]) -> ChatRequest:
            parsed = request_from_wire(body)
            echo.update(parsed.echo)  # what the Response object repeats back
            origins.extend(parsed.origins)
            tool_places.extend(parsed.tool_places)
            chats.append(parsed.chat)
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
                body=orjson.dumps(response_to_wire(as_declined_output(response, ctx.chat), echo)),
                content_type=_JSON,
                headers=routing_headers(ctx),
            )

        return await exchange(
            request,
            self._gateway,
            parse,
            answer,
            _failure(origins, chats, tool_places),
            logged_as="responses",
        )

    async def count_input_tokens(self, request: web.Request) -> web.StreamResponse:
        """``POST /v1/responses/input_tokens``: the input tokens of a Responses request, counted
        as ``/v1/messages/count_tokens`` counts (the provider's count, or a local one)."""

        origins: Origins = []
        tool_places: list[int] = []

        def parse(body: dict[str, Any]) -> ChatRequest:
            parsed = request_from_wire(body)
            origins.extend(parsed.origins)
            tool_places.extend(parsed.tool_places)
            chat = parsed.chat
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

        failure = _failure(origins, tool_places=tool_places)
        return await exchange(request, self._gateway, parse, answer, failure)

    async def compact(self, request: web.Request) -> web.StreamResponse:
        """``POST /v1/responses/compact``: a conversation compacted by a deployment that
        speaks OpenAI's Responses API (its ``compaction`` item is sealed for OpenAI alone, so
        no other can make or read one), its ``response.compaction`` object sent on as it
        came; for a model without such a deployment, a 400 saying so."""
        origins: Origins = []

        def parse(body: dict[str, Any]) -> ChatRequest:
            for key in body:
                if key not in COMPACT_FIELDS:
                    raise InvalidRequest(
                        f"'{key}' is not a parameter of /v1/responses/compact",
                        code="unknown_parameter",
                        param=key,
                    )
            # Only ``previous_response_id`` may be given: the canonical request, which routing
            # and budgets read, then has an empty input.
            parsed = request_from_wire({**body, "input": body.get("input") or ""})
            origins.extend(parsed.origins)
            chat = parsed.chat
            chat.responses_body = body
            chat.responses_route = "/compact"
            chat.responses_only = chat.responses_only or ResponsesOnly("model", _COMPACTION)
            chat.answer_as_is = True
            return chat

        async def answer(
            request: web.Request, pipeline: Pipeline, ctx: RequestContext
        ) -> web.StreamResponse:
            ctx.endpoint = "responses"
            response = await pipeline.chat(ctx)
            # A stage's change to the answer is not written back: a compaction holds the
            # client's own messages and a sealed item, no answer of the model's to change.
            body = response.raw or orjson.dumps(upstream_object(response))
            return web.Response(body=body, content_type=_JSON, headers=routing_headers(ctx))

        return await exchange(
            request, self._gateway, parse, answer, _failure(origins), logged_as="responses"
        )

    async def not_stored(self, request: web.Request) -> web.Response:
        """Reading, cancelling or deleting a stored response: a 404, as none is stored, to a
        caller with a usable credential (else the 401 saying why, as on every route: a
        revoked key was answered as if it were good)."""
        response_id = request.match_info["response_id"]
        rid = request_id(request)
        if response_id in _POST_ONLY:  # a route of its own, not a response id
            method_error = MethodNotAllowed(
                f"{request.method} is not allowed on {request.path} (allowed: POST)",
                code="method_not_allowed",
                headers={hdrs.ALLOW: "POST"},
            )
            return error_response(method_error, {"x-request-id": rid})
        try:
            await self._gateway.authenticator.authenticate(request.headers, request.remote)
        except GatewayError as exc:
            return error_response(exc, {"x-request-id": rid})
        error = NotFound(
            f"The gateway does not store responses, and cannot tell which upstream stored "
            f"'{response_id}', so it cannot be retrieved, cancelled or deleted here; keep the "
            "response your client received (a Responses upstream's can be continued with "
            "'previous_response_id').",
            code="response_not_stored",
        )
        return error_response(error, {"x-request-id": rid})
