"""The OpenAI dialect: ``/v1/chat/completions``, ``/v1/embeddings``, ``/v1/models``.

Parses requests into canonical types, runs them through the pipeline, and writes answers
and errors in OpenAI's shapes. This is the one place OpenAI-route errors are rendered.
``/v1/models`` is Anthropic's route too: an Anthropic client (``is_anthropic_client``) is
answered in Anthropic's shape, errors included (dialects/anthropic.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from tollway.core.context import RequestContext
from tollway.core.errors import GatewayError, NotFound
from tollway.core.types import ChatChunk
from tollway.dialects import anthropic
from tollway.dialects.client_address import client_address
from tollway.dialects.http import (
    exchange,
    expect_later,
    request_id,
    routing_headers,
    stream_events,
)
from tollway.wire.declined_output import as_declined_output
from tollway.wire.openai_embeddings import (
    embedding_request_from_wire,
    embedding_response_to_wire,
)
from tollway.wire.openai_request import request_from_wire
from tollway.wire.openai_response import WIRE_FORMAT, chunk_to_wire, response_to_wire

if TYPE_CHECKING:
    from tollway.core.pipeline import Pipeline
    from tollway.gateway import Gateway


_JSON = "application/json"
_DONE = b"data: [DONE]\n\n"
_NULL_USAGE = b',"usage":null'


def error_body(exc: GatewayError) -> bytes:
    """OpenAI's error object for ``exc`` (with the upstream's ``details`` it passes on)."""
    error = {"message": exc.message, "type": exc.openai_type, "param": exc.param, "code": exc.code}
    if exc.details:
        error = {**exc.details, **error}
    return orjson.dumps({"error": error})


def error_response(exc: GatewayError, headers: dict[str, str]) -> web.Response:
    """An HTTP answer carrying ``exc`` in OpenAI's shape."""
    return web.Response(
        status=exc.status,
        body=error_body(exc),
        content_type=_JSON,
        headers={**headers, **exc.headers},
    )


def failure(exc: GatewayError, rid: str, headers: dict[str, str]) -> web.Response:
    """``exc`` in OpenAI's shape (the ``Failure`` an ``exchange`` renders errors with)."""
    return error_response(exc, headers)


def _json(payload: object, ctx: RequestContext) -> web.Response:
    return web.Response(body=orjson.dumps(payload), headers=routing_headers(ctx, _JSON))


class OpenAIDialect:
    """aiohttp handlers for the OpenAI-compatible routes."""

    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway

    def routes(self) -> list[web.RouteDef]:
        """The routes this dialect serves."""
        return [
            web.post("/v1/chat/completions", self.chat_completions, expect_handler=expect_later),
            web.post("/chat/completions", self.chat_completions, expect_handler=expect_later),
            web.post("/v1/embeddings", self.embeddings, expect_handler=expect_later),
            web.post("/embeddings", self.embeddings, expect_handler=expect_later),
            web.get("/v1/models", self.list_models),
            # A model's name may hold slashes (vendor/model), sent as they are by older SDKs.
            web.get("/v1/models/{model:.+}", self.get_model),
            # Without /v1 as well, like chat and embeddings: a client whose base URL lacks it.
            web.get("/models", self.list_models),
            web.get("/models/{model:.+}", self.get_model),
        ]

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        """``POST /v1/chat/completions``, streaming or not."""
        return await exchange(
            request, self._gateway, request_from_wire, self._chat, failure, logged_as="chat"
        )

    async def _chat(
        self, request: web.Request, pipeline: Pipeline, ctx: RequestContext
    ) -> web.StreamResponse:
        assert ctx.chat is not None
        if ctx.chat.stream:
            chunks = await pipeline.stream(ctx)
            encoder = ChunkEncoder(include_usage=ctx.chat.include_usage, ctx=ctx)
            return await stream_events(request, ctx, chunks, encoder, routing_headers(ctx))
        ctx.chat.answer_as_is = True  # sent on as the upstream's bytes when it can be
        response = await pipeline.chat(ctx)
        if response.raw is not None and response.wire_format == WIRE_FORMAT:
            # From an OpenAI-format upstream, unchanged: sent as it came.
            return web.Response(body=response.raw, headers=routing_headers(ctx, _JSON))
        return _json(response_to_wire(as_declined_output(response, ctx.chat)), ctx)

    async def embeddings(self, request: web.Request) -> web.StreamResponse:
        """``POST /v1/embeddings``."""
        return await exchange(
            request, self._gateway, embedding_request_from_wire, self._embed, failure,
            logged_as="embeddings",
        )  # fmt: skip

    async def _embed(
        self, request: web.Request, pipeline: Pipeline, ctx: RequestContext
    ) -> web.StreamResponse:
        return _json(embedding_response_to_wire(await pipeline.embed(ctx)), ctx)

    async def list_models(self, request: web.Request) -> web.Response:
        """``GET /v1/models``: the model names this caller may use (for an Anthropic client,
        the chat models, which are all its routes serve, paged as Anthropic pages)."""
        rid = request_id(request)
        by_anthropic = anthropic.is_anthropic_client(request.headers)
        created = self._gateway.started_at
        try:
            principal = await self._gateway.authenticator.authenticate(
                request.headers, client_address(request, self._gateway.proxies)
            )
            groups = [g for g in self._gateway.pipeline.routing.groups if principal.may_use(g.name)]
            if by_anthropic:
                names = [group.name for group in groups if group.kind == "chat"]
                page = anthropic.models_page(names, created, request.query)
                return _model_answer(page, rid, by_anthropic)
        except GatewayError as exc:
            return _model_failure(exc, rid, by_anthropic)
        data = [
            {"id": group.name, "object": "model", "created": created, "owned_by": group.owned_by}
            for group in groups
        ]
        return _model_answer({"object": "list", "data": data}, rid)

    async def get_model(self, request: web.Request) -> web.Response:
        """``GET /v1/models/{model}``."""
        name = request.match_info["model"]
        rid = request_id(request)
        by_anthropic = anthropic.is_anthropic_client(request.headers)
        try:
            principal = await self._gateway.authenticator.authenticate(
                request.headers, client_address(request, self._gateway.proxies)
            )
        except GatewayError as exc:
            return _model_failure(exc, rid, by_anthropic)
        created = self._gateway.started_at
        for group in self._gateway.pipeline.routing.groups:
            if group.name != name or not principal.may_use(name):
                continue
            if by_anthropic and group.kind == "chat":
                return _model_answer(anthropic.model_info(name, created), rid, by_anthropic)
            if not by_anthropic:
                model = {"id": name, "object": "model", "created": created}
                return _model_answer({**model, "owned_by": group.owned_by}, rid)
        error = NotFound(
            f"The model '{name}' does not exist or you do not have access to it.",
            code="model_not_found",
            param="model",
        )
        return _model_failure(error, rid, by_anthropic)


def _model_answer(payload: dict[str, Any], rid: str, by_anthropic: bool = False) -> web.Response:
    headers = {"x-request-id": rid}
    if by_anthropic:
        headers["request-id"] = rid  # where Anthropic's SDKs read the request id
    return web.Response(body=orjson.dumps(payload), content_type=_JSON, headers=headers)


def _model_failure(exc: GatewayError, rid: str, by_anthropic: bool) -> web.Response:
    if by_anthropic:
        return anthropic.error_response(exc, rid, {"x-request-id": rid})
    return error_response(exc, {"x-request-id": rid})


class ChunkEncoder:
    """Chat Completions stream events: ``data: {chunk}`` lines, then ``data: [DONE]``.

    A client that asked for usage (``stream_options.include_usage``) gets its usage chunk
    even from an upstream that sent none: the gateway's own count, as metered (``ctx``).
    """

    def __init__(self, *, include_usage: bool, ctx: RequestContext | None = None) -> None:
        self._include_usage = include_usage
        self._ctx = ctx
        self._last: ChatChunk | None = None
        self._usage_sent = False

    def feed(self, chunk: ChatChunk) -> bytes:
        """One ``data:`` event; nothing for the usage-only chunk the client did not ask for."""
        if not self._include_usage:
            if not chunk.choices:
                return b""
        else:
            self._last = chunk
            if chunk.usage is not None:
                self._usage_sent = True
        raw = chunk.raw
        if raw is not None and chunk.wire_format == WIRE_FORMAT:
            # From an OpenAI-format upstream, unchanged: sent as it came (the gateway asks
            # upstream for usage, so without the client's include_usage its null goes).
            if not self._include_usage:
                raw = raw.replace(_NULL_USAGE, b"")
            return b"data: " + raw + b"\n\n"
        wire = chunk_to_wire(chunk, include_usage=self._include_usage)
        return b"data: " + orjson.dumps(wire) + b"\n\n"

    def finish(self) -> bytes:
        """The terminal ``[DONE]``, after the usage chunk the upstream left out (if asked)."""
        if self._usage_sent or self._ctx is None or self._ctx.usage is None:
            return _DONE
        last = self._last
        if last is None:  # not asked for (nothing kept), or nothing came at all
            return _DONE
        counted = ChatChunk(last.id, last.model, last.created, [], usage=self._ctx.usage)
        return self.feed(counted) + _DONE

    def error(self, exc: GatewayError) -> bytes:
        """An error object as the last event; no ``[DONE]`` follows."""
        return b"data: " + error_body(exc) + b"\n\n"
