"""The Anthropic dialect: ``/v1/messages`` (plain and streaming) and its ``count_tokens``.

Parses Messages requests into canonical types, runs them through the pipeline, and writes
answers, stream events and errors in Anthropic's shapes whichever provider served. This is the
one place Anthropic-route errors are rendered. The client's ``x-api-key`` (or
``Authorization``) and ``anthropic-version`` headers are accepted and never sent upstream: the
provider sends the deployment's own key and version.

``GET /v1/models`` is the OpenAI dialect's route, shared with Anthropic's SDKs: a request that
sends ``anthropic-version`` (as they all do) is answered here, in Anthropic's shape and paging
(``models_page``, ``model_info``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from tollway.auth.stage import check_model_access
from tollway.core.context import RequestContext
from tollway.core.errors import GatewayError, InvalidRequest
from tollway.core.types import ChatRequest, Usage
from tollway.dialects.http import (
    Failure,
    exchange,
    expect_later,
    request_id,
    routing_headers,
    stream_events,
)
from tollway.dialects.route_miss import route_miss
from tollway.wire.anthropic_paths import client_param
from tollway.wire.anthropic_request import asks_for_thinking, omits_thinking, request_from_wire
from tollway.wire.anthropic_response import WIRE_FORMAT, response_to_wire
from tollway.wire.anthropic_stream import StreamWriter, event

if TYPE_CHECKING:
    from tollway.core.pipeline import Pipeline
    from tollway.gateway import Gateway
    from tollway.pricing.metering import Metering


_JSON = "application/json"
_DEFAULT_PAGE = 20
_LARGEST_PAGE = 1_000


def error_payload(exc: GatewayError, rid: str) -> dict[str, Any]:
    """Anthropic's error object for ``exc``."""
    error: dict[str, Any] = {"type": exc.anthropic_type, "message": exc.message}
    if exc.anthropic_details:
        error["details"] = dict(exc.anthropic_details)
    return {"type": "error", "error": error, "request_id": rid}


def error_response(exc: GatewayError, rid: str, headers: dict[str, str]) -> web.Response:
    """An HTTP answer carrying ``exc`` in Anthropic's shape (with Anthropic's own status for
    it, e.g. 529 for an overload)."""
    return web.Response(
        status=exc.anthropic_status or exc.status,
        body=orjson.dumps(error_payload(exc, rid)),
        content_type=_JSON,
        headers={**headers, "request-id": rid, **exc.headers},
    )


def is_anthropic_client(headers: Mapping[str, str]) -> bool:
    """Whether a request on a route both families share comes from an Anthropic client
    (their SDKs send ``anthropic-version`` with every request; OpenAI's never do)."""
    return "anthropic-version" in headers


def model_info(name: str, created: int) -> dict[str, Any]:
    """A model group as Anthropic's ``ModelInfo``: the gateway knows no release date, so
    ``created_at`` is when it started (the OpenAI list's ``created``)."""
    return {
        "type": "model",
        "id": name,
        "display_name": name,
        "created_at": datetime.fromtimestamp(created, UTC).isoformat().replace("+00:00", "Z"),
        "lifecycle": "active",
    }


def models_page(names: Sequence[str], created: int, query: Mapping[str, str]) -> dict[str, Any]:
    """``GET /v1/models`` in Anthropic's shape: at most ``limit`` names (1 to 1,000, 20 when
    not given) after ``after_id`` or before ``before_id``, and whether more follow, which the
    SDKs page on."""
    limit = _page_limit(query.get("limit"))
    after, before = query.get("after_id"), query.get("before_id")
    if after is not None and before is not None:
        raise InvalidRequest("Send 'after_id' or 'before_id', not both.", param="before_id")
    if before is not None:
        end = _position(names, before, "before_id")
        start = max(end - limit, 0)
        more = start > 0
    else:
        start = 0 if after is None else _position(names, after, "after_id") + 1
        end = start + limit
        more = end < len(names)
    page = names[start:end]
    return {
        "data": [model_info(name, created) for name in page],
        "has_more": more,
        "first_id": page[0] if page else None,
        "last_id": page[-1] if page else None,
    }


def _page_limit(raw: str | None) -> int:
    if raw is None:
        return _DEFAULT_PAGE
    try:
        limit = int(raw)
    except ValueError:
        limit = 0
    if not 1 <= limit <= _LARGEST_PAGE:
        raise InvalidRequest(
            f"'limit' must be an integer from 1 to {_LARGEST_PAGE}, not {raw!r}", param="limit"
        )
    return limit


def _position(names: Sequence[str], name: str, param: str) -> int:
    try:
        return names.index(name)
    except ValueError:
        raise InvalidRequest(
            f"'{param}' names {name!r}, which is not among the models listed", param=param
        ) from None


class AnthropicDialect:
    """aiohttp handlers for the Anthropic-compatible routes."""

    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway

    def routes(self) -> list[web.RouteDef]:
        """The routes this dialect serves."""
        return [
            web.post("/v1/messages", self.messages, expect_handler=expect_later),
            web.post("/v1/messages/count_tokens", self.count_tokens, expect_handler=expect_later),
            web.route("*", "/v1/messages/{tail:.*}", self.unknown_route),
        ]

    async def messages(self, request: web.Request) -> web.StreamResponse:
        """``POST /v1/messages``, streaming or not."""
        sent = _Sent()

        def parse(body: dict[str, Any]) -> ChatRequest:
            sent.body = body
            parsed = request_from_wire(body)
            sent.parsed = True
            return parsed

        fail = _failure(sent)
        return await exchange(
            request, self._gateway, parse, self._answer, fail, logged_as="messages"
        )

    async def _answer(
        self, request: web.Request, pipeline: Pipeline, ctx: RequestContext
    ) -> web.StreamResponse:
        assert ctx.chat is not None
        if ctx.chat.stream:
            chunks = await pipeline.stream(ctx)
            encoder = _Encoder(ctx, pipeline.metering)
            return await stream_events(request, ctx, chunks, encoder, _headers(ctx))
        ctx.chat.answer_as_is = True  # sent on as the upstream's bytes when it can be
        response = await pipeline.chat(ctx)
        if response.raw is not None and response.wire_format == WIRE_FORMAT:
            # From an Anthropic upstream, unchanged: sent as it came.
            return web.Response(body=response.raw, content_type=_JSON, headers=_headers(ctx))
        if response.usage is None:
            # Anthropic's answers always state usage: the gateway's own count when the
            # upstream gave none (as metered: ``usage_estimated`` in the request log).
            response.usage = ctx.usage
        thinking, omitted = asks_for_thinking(ctx.chat), omits_thinking(ctx.chat)
        return _json(response_to_wire(response, thinking, omitted=omitted), ctx)

    async def count_tokens(self, request: web.Request) -> web.StreamResponse:
        """``POST /v1/messages/count_tokens``: the provider's count, or a local estimate."""

        sent = _Sent()

        def parse(body: dict[str, Any]) -> ChatRequest:
            sent.body = body
            parsed = request_from_wire(body, counting=True)
            sent.parsed = True
            return parsed

        return await exchange(request, self._gateway, parse, self._count, _failure(sent))

    async def _count(
        self, request: web.Request, pipeline: Pipeline, ctx: RequestContext
    ) -> web.StreamResponse:
        assert ctx.chat is not None
        # Counting runs no stages (it is neither limited nor metered), but a key counts only
        # on the models it may use: an Anthropic deployment's count spends its credential.
        check_model_access(ctx)
        tokens, by_provider = await pipeline.count_tokens(ctx)
        if not by_provider:
            ctx.response_headers["x-tollway-token-count"] = "local"
        return _json({"input_tokens": tokens}, ctx)

    async def unknown_route(self, request: web.Request) -> web.Response:
        """Anything else under ``/v1/messages/``: a 404 (405 on a known path) in Anthropic's
        shape."""
        rid = request_id(request)
        return error_response(await route_miss(request), rid, {"x-request-id": rid})


def _headers(ctx: RequestContext) -> dict[str, str]:
    # Anthropic's SDKs read the request id from ``request-id``.
    return {**routing_headers(ctx), "request-id": ctx.request_id}


@dataclass(slots=True)
class _Sent:
    """The request's body once read, and whether it was parsed: the parse's own errors name
    the client's fields already (``messages[2].content[1]`` is the block it sent), a later
    step's the canonical request's."""

    body: dict[str, Any] | None = None
    parsed: bool = False


def _failure(sent: _Sent) -> Failure:
    """Errors in Anthropic's shape that name the fields as the client sent them (``sent``: the
    body, once read): a later step names the canonical request's, Chat Completions' fields."""

    def fail(exc: GatewayError, rid: str, headers: dict[str, str]) -> web.Response:
        if exc.param and sent.body is not None:
            name = client_param(exc.param, sent.body, canonical=sent.parsed)
            if name != exc.param:
                exc.message = exc.message.replace(f"'{exc.param}'", f"'{name}'")
                exc.param = name
        return error_response(exc, rid, headers)

    return fail


def _json(payload: object, ctx: RequestContext) -> web.Response:
    return web.Response(body=orjson.dumps(payload), content_type=_JSON, headers=_headers(ctx))


class _Encoder(StreamWriter):
    """Anthropic's event sequence, with its error event naming the request."""

    def __init__(self, ctx: RequestContext, metering: Metering) -> None:
        assert ctx.chat is not None

        def input_estimate() -> int:
            # Counted only for another family's stream, as the deployment that serves counts
            # it (the counts of admission and routing are kept: a lookup when they counted).
            return metering.input_tokens(ctx, ctx.deployment)

        super().__init__(
            thinking=asks_for_thinking(ctx.chat),
            input_estimate=input_estimate,
            omitted=omits_thinking(ctx.chat),
        )
        self._ctx = ctx

    def finish(self, counted: Usage | None = None) -> bytes:
        """The closing events; with the gateway's own count as usage when the upstream's
        stream gave none (metered by then: the stream's end settled it)."""
        return super().finish(counted or self._ctx.usage)

    def error(self, exc: GatewayError) -> bytes:
        """An ``error`` event; ``message_stop`` never follows it."""
        return event("error", error_payload(exc, self._ctx.request_id))
