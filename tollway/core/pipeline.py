"""The request pipeline: stages around routing and the provider call.

A stage is any object with some of the hooks of ``Stage``. ``on_request`` hooks run in
order and may answer early by returning a reply (a short-circuit value, not an exception);
``on_complete`` hooks run in reverse for every stage whose ``on_request`` ran, whatever
happened. The pipeline is built once from config and never changes afterwards.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping, Sequence

from tollway.core.context import Attempt, RequestContext
from tollway.core.errors import GatewayError, UpstreamProtocolError
from tollway.core.types import (
    ChatChunk,
    ChatResponse,
    ChunkChoice,
    Deployment,
    EmbeddingResponse,
    ToolCallDelta,
)
from tollway.providers.base import ChatProvider, EmbeddingProvider, TokenCounter
from tollway.routing.table import RoutingTable

Reply = ChatResponse | EmbeddingResponse


class Stage:
    """A pipeline stage; subclasses override the hooks they need (the rest cost nothing)."""

    name = "stage"

    async def on_request(self, ctx: RequestContext) -> Reply | None:
        """Before routing; return a reply to answer without calling a provider."""
        return None

    def on_chunk(self, ctx: RequestContext, chunk: ChatChunk) -> ChatChunk | None:
        """Each streamed chunk on its way out; ``None`` drops it."""
        return chunk

    async def on_response(self, ctx: RequestContext, response: ChatResponse) -> ChatResponse:
        """A complete (non-streamed) answer on its way out."""
        return response

    async def on_complete(self, ctx: RequestContext) -> None:
        """After the last byte, or after a failure; ``ctx.error`` says which."""


def _overrides(stage: Stage, hook: str) -> bool:
    return getattr(type(stage), hook) is not getattr(Stage, hook)


class Pipeline:
    """Runs requests through the stages, the routing table and the providers."""

    def __init__(
        self,
        routing: RoutingTable,
        chat_providers: Mapping[str, ChatProvider],
        embedding_providers: Mapping[str, EmbeddingProvider],
        stages: Sequence[Stage] = (),
    ) -> None:
        self.routing = routing
        self._chat_providers = chat_providers
        self._embedding_providers = embedding_providers
        self._stages = tuple(stages)
        # Only stages that override a hook are called for it: empty hooks cost nothing.
        self._chunk_stages = tuple(s for s in self._stages if _overrides(s, "on_chunk"))
        self._response_stages = tuple(s for s in self._stages if _overrides(s, "on_response"))

    async def _enter_stages(self, ctx: RequestContext) -> Reply | None:
        for stage in self._stages:
            ctx.stages_entered += 1
            reply = await stage.on_request(ctx)
            if reply is not None:
                return reply
        return None

    async def finish(self, ctx: RequestContext) -> None:
        """Run ``on_complete`` of every entered stage in reverse; call once per request."""
        ctx.finished_at = time.perf_counter()
        for stage in reversed(self._stages[: ctx.stages_entered]):
            await stage.on_complete(ctx)

    async def chat(self, ctx: RequestContext) -> ChatResponse:
        """A complete answer, from a stage or the first candidate deployment that gives one."""
        assert ctx.chat is not None
        early = await self._enter_stages(ctx)
        if isinstance(early, ChatResponse):
            response = early
        else:
            response = await self._call_chat(ctx)
        for stage in self._response_stages:
            response = await stage.on_response(ctx, response)
        ctx.usage = response.usage
        return response

    async def _call_chat(self, ctx: RequestContext) -> ChatResponse:
        assert ctx.chat is not None
        last_error: GatewayError | None = None
        for deployment in self.routing.candidates(ctx.model, "chat"):
            provider = self._chat_providers[deployment.provider]
            attempt = _begin(ctx, deployment)
            try:
                response = await provider.chat(ctx.chat, deployment)
            except GatewayError as exc:
                _end(attempt, exc)
                if not exc.retryable:
                    raise
                last_error = exc
                continue
            _end(attempt, None)
            return response
        assert last_error is not None
        raise last_error

    async def stream(self, ctx: RequestContext) -> AsyncIterator[ChatChunk]:
        """The answer as chunks; failover is possible until the first chunk is in hand."""
        assert ctx.chat is not None
        early = await self._enter_stages(ctx)
        if isinstance(early, ChatResponse):
            ctx.deployment = None
            replay = response_as_chunks(early)
            first, rest = await anext(replay), replay
        else:
            first, rest = await self._open_stream(ctx)
        return self._forward(ctx, first, rest)

    async def _open_stream(self, ctx: RequestContext) -> tuple[ChatChunk, AsyncIterator[ChatChunk]]:
        assert ctx.chat is not None
        last_error: GatewayError | None = None
        for deployment in self.routing.candidates(ctx.model, "chat"):
            provider = self._chat_providers[deployment.provider]
            attempt = _begin(ctx, deployment)
            chunks = provider.stream(ctx.chat, deployment)
            try:
                return await anext(chunks), chunks
            except StopAsyncIteration:
                last_error = UpstreamProtocolError("upstream stream was empty")
                _end(attempt, last_error)
            except GatewayError as exc:
                _end(attempt, exc)
                if not exc.retryable:
                    raise
                last_error = exc
        assert last_error is not None
        raise last_error

    async def _forward(
        self, ctx: RequestContext, first: ChatChunk, rest: AsyncIterator[ChatChunk]
    ) -> AsyncIterator[ChatChunk]:
        ctx.first_token_at = time.perf_counter()
        chunk: ChatChunk | None = first
        try:
            while True:
                if chunk is not None:
                    if chunk.usage is not None:
                        ctx.usage = chunk.usage
                    for stage in self._chunk_stages:
                        chunk = stage.on_chunk(ctx, chunk)
                        if chunk is None:
                            break
                    if chunk is not None:
                        yield chunk
                chunk = await anext(rest)
        except StopAsyncIteration:
            return
        finally:
            await rest.aclose()  # type: ignore[attr-defined]

    async def count_tokens(self, ctx: RequestContext) -> int | None:
        """Input tokens of ``ctx.chat`` as the model's first deployment counts them, if it can.

        No stages run: counting is free and sends nothing to a model.
        """
        assert ctx.chat is not None
        deployment = self.routing.candidates(ctx.model, "chat")[0]
        provider = self._chat_providers[deployment.provider]
        if not isinstance(provider, TokenCounter):
            return None
        ctx.attempts += 1
        ctx.deployment = deployment
        return await provider.count_tokens(ctx.chat, deployment)

    async def embed(self, ctx: RequestContext) -> EmbeddingResponse:
        """Embeddings from a stage or the first candidate deployment that gives them."""
        assert ctx.embedding is not None
        early = await self._enter_stages(ctx)
        if isinstance(early, EmbeddingResponse):
            return early
        last_error: GatewayError | None = None
        for deployment in self.routing.candidates(ctx.model, "embedding"):
            provider = self._embedding_providers[deployment.provider]
            attempt = _begin(ctx, deployment)
            try:
                response = await provider.embed(ctx.embedding, deployment)
            except GatewayError as exc:
                _end(attempt, exc)
                if not exc.retryable:
                    raise
                last_error = exc
                continue
            _end(attempt, None)
            ctx.usage = response.usage
            return response
        assert last_error is not None
        raise last_error


def _begin(ctx: RequestContext, deployment: Deployment) -> Attempt:
    ctx.attempts += 1
    ctx.deployment = deployment
    attempt = Attempt(deployment, time.perf_counter())
    ctx.tries.append(attempt)
    return attempt


def _end(attempt: Attempt, error: GatewayError | None) -> None:
    attempt.ended = time.perf_counter()
    attempt.error = error


async def response_as_chunks(response: ChatResponse) -> AsyncIterator[ChatChunk]:
    """Replay a complete answer as a stream: content, then finish reasons, then usage."""

    def chunk(choices: list[ChunkChoice]) -> ChatChunk:
        return ChatChunk(
            id=response.id, model=response.model, created=response.created, choices=choices
        )

    yield chunk(
        [
            ChunkChoice(
                index=choice.index,
                role="assistant",
                content=choice.message.text() or None,
                tool_calls=None
                if not choice.message.tool_calls
                else [
                    ToolCallDelta(index=i, id=call.id, name=call.name, arguments=call.arguments)
                    for i, call in enumerate(choice.message.tool_calls)
                ],
            )
            for choice in response.choices
        ]
    )
    yield chunk(
        [
            ChunkChoice(index=choice.index, finish_reason=choice.finish_reason)
            for choice in response.choices
        ]
    )
    if response.usage is not None:
        last = chunk([])
        last.usage = response.usage
        yield last
