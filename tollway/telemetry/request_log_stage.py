"""The pipeline stage that hands every finished request to the request log writer.

It sits next to the telemetry stage at the front of the pipeline, so its ``on_complete``
runs after every later stage's (admission has settled, the cost is known). On the request
path it does one thing: read a few fields of the ``RequestContext`` into a flat tuple
(``Entry``) and ``put_nowait`` it on the writer's bounded queue. Converting, numbering,
hashing and building bodies happen in the writer's background task.

When some team keeps prompt and response bodies, ``BodyCapturingStage`` is used instead: it
also marks the requests of those teams in ``on_request`` and collects what was answered
(``ctx.captured_output``). Without bodies the plain stage overrides ``on_complete`` only, so
the pipeline never calls it per chunk.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection

import orjson

from tollway.auth.principal import Principal
from tollway.core.context import RequestContext
from tollway.core.pipeline import Stage
from tollway.core.types import ChatChunk, ChatRequest, ChatResponse, EmbeddingRequest
from tollway.pricing.metering import tool_spend
from tollway.telemetry.bodies import redact

Entry = tuple[
    int,  # at: microseconds since the epoch when the request finished
    str,  # request_id
    str | None,  # principal_kind
    str | None,  # key_id
    str | None,  # user_id
    str | None,  # team_id
    str | None,  # service
    str,  # endpoint
    str,  # model asked for
    str | None,  # served_model
    str | None,  # deployment_id
    str | None,  # provider
    int,  # attempts
    int,  # fallbacks
    int,  # status
    str | None,  # error_code
    bool,  # stream
    int,  # input_tokens
    int,  # output_tokens
    int,  # cached_tokens
    int,  # cache_write_tokens
    int,  # cache_write_1h_tokens
    bool,  # usage_estimated
    int,  # cost_micros
    float | None,  # latency_ms
    float | None,  # ttft_ms
    str | None,  # cache
    str,  # guardrails, JSON text
    str | None,  # source_ip
    int,  # tool_calls
    int,  # tool_cost_micros
    ChatRequest | EmbeddingRequest | None,  # the request, when bodies are kept
    list[object] | None,  # what was answered, when bodies are kept
]
"""One finished request as the stage hands it over: the store's plain row
(``store.request_log.PLAIN_COLUMNS``) and the bodies, if kept. Values that are not stored as
they are (bodies, and a row of the hash chain) are converted later, by the writer."""

NO_GUARDRAILS = "[]"

Put = Callable[[Entry], None]


PrincipalColumns = tuple[str | None, str | None, str | None, str | None, str | None]
"""An entry's principal_kind, key_id, user_id, team_id and service."""


def principal_columns(principal: Principal | None) -> PrincipalColumns:
    """Who made a request, as the entry's five principal columns (all None when unknown)."""
    if principal is None:
        return None, None, None, None, None
    kind = principal.kind
    return (
        kind,
        principal.id if kind == "key" else None,
        principal.user,
        principal.team,
        principal.tags.get("service") if principal.tags else None,
    )


def entry(ctx: RequestContext, keep_bodies: bool = False) -> Entry:
    """The request log entry of a finished request."""
    kind, key_id, user, team, service = principal_columns(ctx.principal)
    deployment = ctx.deployment
    model = ctx.requested_model or ctx.model
    if deployment is None:
        served = deployment_id = provider = None
        # Not routed: the model asked for may be whatever the client typed, its key pasted
        # there included, and the log's readers (a team's viewers) are not the key's owner.
        model = redact(model)
    else:
        served, deployment_id, provider = deployment.model, deployment.id, deployment.provider
    usage = ctx.usage
    tool_calls = tool_micros = 0
    if usage is None:
        input_tokens = output_tokens = cached = cache_writes = long_writes = 0
    else:
        input_tokens, output_tokens = usage.input_tokens, usage.output_tokens
        cached, cache_writes = usage.cached_input_tokens, usage.cache_write_tokens
        long_writes = usage.cache_write_1h_tokens
        if usage.tool_calls:  # most answers call no server tool: nothing more for them
            tool_calls, tool_usd = tool_spend(ctx, usage.tool_calls)
            tool_micros = round(tool_usd * 1_000_000)
    error = ctx.error
    chat = ctx.chat
    if chat is None:
        endpoint, stream = "embeddings", False
    else:
        endpoint = ctx.endpoint
        if endpoint == "chat" and chat.wire_format == "anthropic":
            endpoint = "messages"
        stream = chat.stream
    tries = ctx.tries
    fallbacks = len({attempt.deployment.id for attempt in tries}) - 1 if len(tries) > 1 else 0
    started, finished, first = ctx.started, ctx.finished_at, ctx.first_token_at
    cost, flags = ctx.cost_usd, ctx.guardrail_flags
    return (
        time.time_ns() // 1000,
        ctx.request_id,
        kind,
        key_id,
        user,
        team,
        service,
        endpoint,
        model,
        served,
        deployment_id,
        provider,
        ctx.attempts,
        fallbacks,
        200 if error is None else error.status,
        None if error is None else error.code,
        stream,
        input_tokens,
        output_tokens,
        cached,
        cache_writes,
        long_writes,
        ctx.usage_estimated,
        # The nearest micro-dollar: rounding up (as budget reservations do) would turn float
        # noise such as 123.00000000000001 into one more.
        round(cost * 1_000_000) if cost else 0,
        # Milliseconds to the microsecond (a whole-number round: round(x, 3) costs 0.3 µs).
        None if finished is None else round((finished - started) * 1_000_000) / 1000,
        None if first is None else round((first - started) * 1_000_000) / 1000,
        ctx.cache_status,
        orjson.dumps(flags).decode() if flags else NO_GUARDRAILS,
        ctx.source_ip,
        tool_calls,
        tool_micros,
        (chat or ctx.embedding) if keep_bodies else None,
        ctx.captured_output if keep_bodies else None,
    )


class RequestLogStage(Stage):
    """Queues one request log entry per finished request; never waits."""

    name = "request_log"

    def __init__(self, put: Put) -> None:
        """``put``: the writer's ``put_nowait``."""
        self._put = put

    def on_complete(self, ctx: RequestContext) -> None:
        self._put(entry(ctx))


class BodyCapturingStage(Stage):
    """``RequestLogStage`` that also keeps the bodies of some teams' requests."""

    name = "request_log"
    writes_requests = False

    def __init__(self, put: Put, teams: Collection[str] | None) -> None:
        """``teams``: the team ids whose bodies are kept; ``None``: every request's."""
        self._put = put
        self._teams = None if teams is None else frozenset(teams)

    def on_request(self, ctx: RequestContext) -> None:
        principal = ctx.principal
        if self._teams is None or (principal is not None and principal.team in self._teams):
            ctx.captured_output = []
        return None

    def on_chunk(self, ctx: RequestContext, chunk: ChatChunk) -> ChatChunk | None:
        captured = ctx.captured_output
        if captured is not None:
            for choice in chunk.choices:
                if choice.content:
                    captured.append(choice.content)
                if choice.tool_calls:
                    captured.extend(choice.tool_calls)
        return chunk

    def on_response(self, ctx: RequestContext, response: ChatResponse) -> None:
        if ctx.captured_output is not None:
            ctx.captured_output.append(response)

    def on_complete(self, ctx: RequestContext) -> None:
        self._put(entry(ctx, ctx.captured_output is not None))
