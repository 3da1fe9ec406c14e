"""OpenTelemetry traces of every request and every upstream attempt (GenAI conventions).

Imported only when ``telemetry.tracing.enabled``: the rest of the gateway never imports
OpenTelemetry, and with tracing off no tracing stage is in the pipeline at all.

- ``Tracing`` is built once per gateway process: a private ``TracerProvider`` (never the
  global one), a parent-based ratio sampler, a ``BatchSpanProcessor`` and the OTLP/HTTP
  exporter. Export runs on the processor's worker thread; the request path only appends a
  finished span to its queue (bounded: when full, spans are dropped, never waited for).
  ``close`` flushes what is queued.
- ``TracingStage`` is built with each pipeline. Per request one SERVER span, named
  ``{operation} {requested model}``, from ``on_request`` to ``on_complete`` (which runs for
  every request whose ``on_request`` ran), parented on the caller's ``traceparent``. Its
  state lives in ``ctx.trace`` (a ``RequestTrace``), as stages keep none of their own.
- Per upstream attempt one CLIENT span, written whole in ``on_attempt_end`` from the
  attempt's own start and end times, so it is ended exactly once however the attempt went,
  and a candidate another stage refused in ``on_attempt`` leaves no open span behind. To
  still send the provider the attempt's own span as parent, ``on_attempt`` reserves a span
  id, sends it in ``traceparent``, and the span written later gets that id
  (``_ReservedSpanIds``). An attempt cut short without ``on_attempt_end`` (the request task
  cancelled mid-call, a stream never read) is written by ``on_complete``.
- A request the sampler drops costs one non-recording span and the ``traceparent`` that
  carries the decision upstream; nothing else.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer, set_span_in_context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

from tollway.auth.vault import Vault
from tollway.config.schema import TracingConfig
from tollway.core.context import Attempt, RequestContext
from tollway.core.errors import UpstreamStatusError
from tollway.core.pipeline import Stage
from tollway.core.types import ChatChunk, ChatResponse, Deployment
from tollway.routing.table import RoutingTable
from tollway.telemetry import genai

Attributes = dict[str, AttributeValue]
_W3C = TraceContextTextMapPropagator()
_PROPAGATED = frozenset({"traceparent", "tracestate"})


class _ReservedSpanIds(IdGenerator):
    """Random ids, except that the next span started may be given an id reserved earlier.

    The event loop is one thread and ``Tracer.start_span`` asks for exactly one span id
    synchronously, so setting ``reserved`` just before it cannot hand the id to another span.
    """

    def __init__(self) -> None:
        self._random = RandomIdGenerator()
        self.reserved: int | None = None

    def generate_span_id(self) -> int:
        reserved = self.reserved
        if reserved is not None:
            self.reserved = None
            return reserved
        return self._random.generate_span_id()

    def generate_trace_id(self) -> int:
        return self._random.generate_trace_id()

    def is_trace_id_random(self) -> bool:
        return True

    @staticmethod
    def reserve() -> int:
        """A new span id (64 random bits, never the invalid 0)."""
        return random.getrandbits(64) or 1


class Tracing:
    """The process's tracer provider and exporter, set up once from ``telemetry.tracing``."""

    def __init__(
        self, config: TracingConfig, vault: Vault, exporter: SpanExporter | None = None
    ) -> None:
        """``exporter`` replaces the OTLP exporter (tests, embedding); the ``headers``
        references are resolved here, so a missing one stops the start with its name."""
        self.config = config
        if exporter is None:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            headers = {name: vault.reveal(ref) for name, ref in config.headers.items()}
            exporter = OTLPSpanExporter(endpoint=config.otlp_endpoint, headers=headers)
        self.ids = _ReservedSpanIds()
        self.provider = TracerProvider(
            sampler=ParentBased(TraceIdRatioBased(config.sample_ratio)),
            resource=Resource.create({"service.name": config.service_name}),
            id_generator=self.ids,
        )
        self._processor = BatchSpanProcessor(exporter)
        self.provider.add_span_processor(self._processor)
        self.tracer: Tracer = self.provider.get_tracer("tollway")

    def stage(self, table: RoutingTable) -> TracingStage:
        """The pipeline stage for a pipeline routing by ``table``."""
        return TracingStage(self, table)

    def flush(self) -> bool:
        """Export every finished span now (blocking); whether it all went."""
        return self.provider.force_flush()

    async def close(self) -> None:
        """Export what is queued and stop the exporter (off the event loop: it blocks)."""
        await asyncio.to_thread(self.provider.shutdown)


@dataclass(slots=True)
class RequestTrace:
    """What tracing keeps of one request (``ctx.trace``) between its hooks."""

    span: Span
    parent: Context
    """The context whose current span is ``span``: the parent of the attempt spans."""
    operation: str
    clock: float
    """Add to a ``perf_counter`` time to get seconds since the epoch."""
    written: int = 0
    """How many of ``ctx.tries`` have their span written."""
    next_span_id: int | None = None
    """The id reserved (and sent upstream) for the next attempt's span."""
    response_id: str | None = None
    response_model: str | None = None
    finish_reasons: list[str] = field(default_factory=list)
    output: genai.StreamedOutput | None = None
    """The streamed completion, with ``capture_content``."""
    output_messages: str | None = None
    """The complete answer's ``gen_ai.output.messages``, with ``capture_content``."""

    def nanos(self, perf: float) -> int:
        """A ``perf_counter`` time as OpenTelemetry's nanoseconds since the epoch."""
        return int((perf + self.clock) * 1e9)


class TracingStage(Stage):
    """Writes the request's span and one span per upstream attempt."""

    name = "tracing"

    def __init__(self, tracing: Tracing, table: RoutingTable) -> None:
        self._tracer = tracing.tracer
        self._ids = tracing.ids
        self._capture = tracing.config.capture_content
        self._propagate = tracing.config.propagate
        # Attempt spans' fixed attributes, worked out once per deployment of this pipeline.
        self._deployments = {
            deployment.id: _deployment_attributes(deployment)
            for group in table.groups
            for deployment in group.deployments
        }

    # --- the request span ---------------------------------------------------------------

    async def on_request(self, ctx: RequestContext) -> None:
        headers = ctx.client_headers
        parent = _W3C.extract(headers) if "traceparent" in headers else None
        chat = ctx.chat
        operation = "chat" if chat is not None else "embeddings"
        attributes: Attributes = {
            genai.OPERATION: operation,
            genai.REQUEST_MODEL: ctx.requested_model,
            "tollway.request_id": ctx.request_id,
        }
        if chat is not None:
            _request_attributes(attributes, chat.max_tokens, chat.temperature, chat.top_p)
            attributes[genai.REQUEST_STREAM] = chat.stream
            if chat.n is not None and chat.n != 1:
                attributes[genai.REQUEST_CHOICES] = chat.n
            if chat.seed is not None:
                attributes[genai.REQUEST_SEED] = chat.seed
        elif ctx.embedding is not None and ctx.embedding.dimensions is not None:
            attributes[genai.EMBEDDING_DIMENSIONS] = ctx.embedding.dimensions
        span = self._tracer.start_span(
            f"{operation} {ctx.requested_model}",
            context=parent,
            kind=SpanKind.SERVER,
            attributes=attributes,
            start_time=int(ctx.received_at * 1e9),
        )
        if self._propagate:
            _drop_forwarded_trace_headers(ctx)
        if not span.is_recording():
            if self._propagate:  # the provider learns the decision not to record this trace
                self._send_parent(ctx, span, span.get_span_context().span_id)
            return None
        trace = RequestTrace(
            span, set_span_in_context(span), operation, ctx.received_at - ctx.started
        )
        if chat is not None and self._capture:
            span.set_attribute(genai.INPUT_MESSAGES, genai.input_messages(chat.messages))
            if chat.stream:
                trace.output = genai.StreamedOutput()
        ctx.trace = trace
        return None

    def on_chunk(self, ctx: RequestContext, chunk: ChatChunk) -> ChatChunk | None:
        trace = ctx.trace
        if trace is not None:
            if trace.response_id is None:
                trace.response_id, trace.response_model = chunk.id, chunk.model
            for choice in chunk.choices:
                if choice.finish_reason is not None:
                    trace.finish_reasons.append(choice.finish_reason)
            if trace.output is not None:
                trace.output.add(chunk)
        return chunk

    async def on_response(self, ctx: RequestContext, response: ChatResponse) -> ChatResponse:
        trace = ctx.trace
        if trace is not None:
            trace.response_id, trace.response_model = response.id, response.model
            trace.finish_reasons = [c.finish_reason for c in response.choices if c.finish_reason]
            if self._capture:
                trace.output_messages = genai.output_messages(response.choices)
        return response

    async def on_complete(self, ctx: RequestContext) -> None:
        trace = ctx.trace
        if trace is None:
            return
        end = ctx.finished_at if ctx.finished_at is not None else ctx.started
        for attempt in ctx.tries[trace.written :]:
            # Cut short without on_attempt_end: the request was cancelled mid-call, or a
            # stream's first chunk was in hand but the stream was never read.
            self._write_attempt(trace, attempt, end, abandoned=True)
        span = trace.span
        span.set_attributes(_outcome_attributes(ctx, trace))
        first = ctx.first_token_at
        if first is not None:
            span.add_event("gen_ai.first_token", timestamp=trace.nanos(first))
        error = ctx.error
        if error is not None:
            span.set_status(Status(StatusCode.ERROR, error.message))
        span.end(end_time=trace.nanos(end))

    # --- attempt spans ------------------------------------------------------------------

    async def on_attempt(self, ctx: RequestContext, deployment: Deployment) -> None:
        trace = ctx.trace
        if trace is not None and self._propagate:
            trace.next_span_id = self._ids.reserve()
            self._send_parent(ctx, trace.span, trace.next_span_id)

    async def on_attempt_end(self, ctx: RequestContext, attempt: Attempt) -> None:
        trace = ctx.trace
        if trace is None:
            return
        end = attempt.ended if attempt.ended is not None else attempt.started
        # No upstream failure, yet the request failed: the client left mid-stream.
        self._write_attempt(trace, attempt, end, abandoned=ctx.error is not None)
        if self._propagate:  # a retry on the same deployment gets a span id of its own
            trace.next_span_id = self._ids.reserve()
            self._send_parent(ctx, trace.span, trace.next_span_id)

    def _write_attempt(
        self, trace: RequestTrace, attempt: Attempt, end: float, abandoned: bool
    ) -> None:
        deployment = attempt.deployment
        attributes = self._deployments.get(deployment.id) or _deployment_attributes(deployment)
        self._ids.reserved = trace.next_span_id
        trace.next_span_id = None
        span = self._tracer.start_span(
            f"{trace.operation} {deployment.model}",
            context=trace.parent,
            kind=SpanKind.CLIENT,
            attributes={genai.OPERATION: trace.operation, **attributes},
            start_time=trace.nanos(attempt.started),
        )
        self._ids.reserved = None
        trace.written += 1
        outcome: Attributes = {}
        if attempt.first_chunk_at is not None:
            outcome[genai.TIME_TO_FIRST_CHUNK] = attempt.first_chunk_at - attempt.started
        error = attempt.error
        if error is not None:
            outcome[genai.ERROR_TYPE] = genai.error_type(error)
            if error.code:
                outcome["tollway.error.code"] = error.code
            if isinstance(error, UpstreamStatusError):
                outcome[genai.HTTP_STATUS] = error.upstream_status
            span.set_status(Status(StatusCode.ERROR, error.message))
        if abandoned:
            outcome["tollway.abandoned"] = True
        if outcome:
            span.set_attributes(outcome)
        span.end(end_time=trace.nanos(end))

    @staticmethod
    def _send_parent(ctx: RequestContext, span: Span, span_id: int) -> None:
        """Give the upstream call ``traceparent``: this trace, ``span_id`` as its parent."""
        request = ctx.chat if ctx.chat is not None else ctx.embedding
        if request is None:
            return
        context = span.get_span_context()
        headers = request.upstream_headers
        headers["traceparent"] = (
            f"00-{context.trace_id:032x}-{span_id:016x}-{int(context.trace_flags):02x}"
        )
        if context.trace_state:
            headers["tracestate"] = context.trace_state.to_header()


def _drop_forwarded_trace_headers(ctx: RequestContext) -> None:
    """The caller's own trace headers, if ``forward_headers`` let them through, give way to
    the gateway's (their names may come in any case)."""
    request = ctx.chat if ctx.chat is not None else ctx.embedding
    if request is not None and request.upstream_headers:
        headers = request.upstream_headers
        for name in [name for name in headers if name.lower() in _PROPAGATED]:
            del headers[name]


def _request_attributes(
    attributes: Attributes, max_tokens: int | None, temperature: float | None, top_p: float | None
) -> None:
    if max_tokens is not None:
        attributes[genai.REQUEST_MAX_TOKENS] = max_tokens
    if temperature is not None:
        attributes[genai.REQUEST_TEMPERATURE] = temperature
    if top_p is not None:
        attributes[genai.REQUEST_TOP_P] = top_p


def _deployment_attributes(deployment: Deployment) -> Attributes:
    """What an attempt span says of its deployment: provider, upstream model, server."""
    attributes: Attributes = {
        genai.PROVIDER: genai.provider_name(deployment.provider),
        genai.SYSTEM: genai.system_name(deployment.provider),
        genai.REQUEST_MODEL: deployment.model,
        "tollway.deployment": deployment.id,
    }
    url = urlsplit(deployment.api_base)
    if url.hostname:
        attributes[genai.SERVER_ADDRESS] = url.hostname
        try:
            port = url.port
        except ValueError:
            port = None
        attributes[genai.SERVER_PORT] = port or (443 if url.scheme == "https" else 80)
    return attributes


def _outcome_attributes(ctx: RequestContext, trace: RequestTrace) -> Attributes:
    """The request span's attributes known once the request is over."""
    attributes: Attributes = {"tollway.attempts": ctx.attempts}
    deployment = ctx.deployment
    if deployment is not None:
        attributes[genai.PROVIDER] = genai.provider_name(deployment.provider)
        attributes[genai.SYSTEM] = genai.system_name(deployment.provider)
        attributes["tollway.deployment"] = deployment.id
    if ctx.model != ctx.requested_model:
        attributes["tollway.model"] = ctx.model  # policy served another model group
    if trace.response_model is not None:
        attributes[genai.RESPONSE_MODEL] = trace.response_model
    if trace.response_id:
        attributes[genai.RESPONSE_ID] = trace.response_id
    if trace.finish_reasons:
        attributes[genai.FINISH_REASONS] = trace.finish_reasons
    usage = ctx.usage
    if usage is not None:
        attributes[genai.INPUT_TOKENS] = usage.input_tokens
        attributes[genai.OUTPUT_TOKENS] = usage.output_tokens
        if usage.cached_input_tokens:
            attributes[genai.CACHE_READ_TOKENS] = usage.cached_input_tokens
        if usage.cache_write_tokens:
            attributes[genai.CACHE_WRITE_TOKENS] = usage.cache_write_tokens
        if usage.reasoning_tokens:
            attributes[genai.REASONING_TOKENS] = usage.reasoning_tokens
        if ctx.usage_estimated:
            attributes["tollway.usage_estimated"] = True
    if ctx.cost_usd is not None:
        attributes["tollway.cost_usd"] = ctx.cost_usd
    principal = ctx.principal
    if principal is not None:
        attributes["tollway.principal"] = principal.id  # a key's id, never the key
        if principal.team:
            attributes["tollway.team"] = principal.team
    if ctx.first_token_at is not None:
        attributes[genai.TIME_TO_FIRST_CHUNK] = ctx.first_token_at - ctx.started
    if trace.output is not None:
        attributes[genai.OUTPUT_MESSAGES] = trace.output.messages()
    elif trace.output_messages is not None:
        attributes[genai.OUTPUT_MESSAGES] = trace.output_messages
    error = ctx.error
    if error is not None:
        attributes[genai.ERROR_TYPE] = genai.error_type(error)
        if error.code:
            attributes["tollway.error.code"] = error.code
    return attributes
