"""OpenTelemetry traces of every request and every upstream attempt (GenAI conventions).

Imported only when ``telemetry.tracing.enabled``: the rest of the gateway never imports
OpenTelemetry, and with tracing off no tracing stage is in the pipeline at all.

- ``Tracing`` is built once per gateway process: a private ``TracerProvider`` (never the
  global one) with a parent-based ratio sampler, the ``service.name`` resource and a
  ``BatchSpanProcessor`` in front of the OTLP/HTTP exporter. Export runs on the processor's
  worker thread; the request path only appends finished spans to its queue (bounded: when
  it is full, spans are dropped, never waited for). ``close`` flushes what is queued.
- ``TracingStage`` is built with each pipeline. Per request one SERVER span, named
  ``{operation} {requested model}``, covering the request from receipt to ``on_complete``
  (which runs for every request whose ``on_request`` ran), parented on the caller's
  ``traceparent``; per upstream attempt one CLIENT span, its child, from the attempt's own
  start to its end. The request's state lives in ``ctx.trace`` (a ``RequestTrace``), as
  stages keep none of their own.
- Spans are written whole, once, when what they describe is over: the sampling decision and
  the ids are made in ``on_request`` (so ``traceparent`` can go upstream), every attribute is
  a plain dict entry until then, and the finished ``ReadableSpan`` goes straight to the
  processor. The SDK's live spans (``Tracer.start_span``) would cost about 30 µs each on
  this project's machines, checking and copying every attribute under a lock, and a span
  that is only written when over can never be left open or ended twice.
- Each attempt's span id is drawn in ``on_attempt`` (and again after each attempt, for a
  retry on the same deployment) and sent upstream in ``traceparent``, so the provider's own
  spans hang under the attempt that called them. An attempt cut short without
  ``on_attempt_end`` (the request task cancelled mid-call, a stream never read) is written
  by ``on_complete``.
- A request the sampler drops costs its ids and the ``traceparent`` that carries the
  decision upstream; nothing is recorded.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import Decision, ParentBased, TraceIdRatioBased
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import (
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    get_current_span,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

from tollway import __version__
from tollway.auth.vault import Vault
from tollway.config.schema import TracingConfig
from tollway.core.context import Attempt, RequestContext
from tollway.core.errors import UpstreamStatusError
from tollway.core.pipeline import Stage
from tollway.core.types import ChatChunk, ChatResponse, Deployment
from tollway.routing.table import RoutingTable
from tollway.telemetry import genai
from tollway.telemetry.bodies import BodyPolicy, redact

Attributes = dict[str, AttributeValue]
_W3C = TraceContextTextMapPropagator()
_PROPAGATED = frozenset({"traceparent", "tracestate"})
_UNSET = Status(StatusCode.UNSET)
_FLAGS = {value: TraceFlags(value) for value in range(4)}
"""The trace flags used: sampled (0x01) and random trace id (0x02), made once."""


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
        self.processor = BatchSpanProcessor(exporter)
        self.provider = TracerProvider(
            sampler=ParentBased(TraceIdRatioBased(config.sample_ratio)),
            resource=Resource.create({"service.name": config.service_name}),
        )
        self.provider.add_span_processor(self.processor)
        self.scope = InstrumentationScope("tollway", __version__)

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
    """What tracing keeps of one sampled request (``ctx.trace``) between its hooks."""

    context: SpanContext
    """The request span's own ids: the parent of the attempt spans."""
    parent: SpanContext | None
    """The caller's span, from its ``traceparent``."""
    name: str
    operation: str
    attributes: Attributes
    """The request span's attributes known when it started."""
    clock: float
    """Add to a ``perf_counter`` time to get seconds since the epoch."""
    written: int = 0
    """How many of ``ctx.tries`` have their span written."""
    next_span_id: int | None = None
    """The id drawn (and sent upstream) for the next attempt's span."""
    upstream: dict[str, str] | None = None
    """The headers sent upstream with each attempt (``propagate``), and the parts of
    ``traceparent`` around the parent span id."""
    traceparent: tuple[str, str] = ("", "")
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
    writes_requests = False

    def __init__(self, tracing: Tracing, table: RoutingTable) -> None:
        self._emit = tracing.processor.on_end
        self._sampler = tracing.provider.sampler
        self._ids = tracing.provider.id_generator
        self._resource = tracing.provider.resource
        self._scope = tracing.scope
        self._capture = tracing.config.capture_content
        # Texts in spans as the request log keeps bodies: cut, and redacted unless told not to.
        policy = BodyPolicy(
            max_chars=tracing.config.content_max_chars, redact=tracing.config.redact
        )
        self._text = policy.text
        self._propagate = tracing.config.propagate
        self._models = frozenset(group.name for group in table.groups)
        # Attempt spans' fixed attributes, worked out once per deployment of this pipeline.
        self._deployments = {
            deployment.id: genai.deployment_attributes(deployment)
            for group in table.groups
            for deployment in group.deployments
        }

    # --- the request span ---------------------------------------------------------------

    async def on_request(self, ctx: RequestContext) -> None:
        chat = ctx.chat
        operation = "chat" if chat is not None else "embeddings"
        model = ctx.requested_model
        if model not in self._models:
            # Whatever the client typed (a 404 to come): a key pasted as the model must not
            # reach the trace backend. A configured name needs no look.
            model = redact(model)
        name = f"{operation} {model}"
        headers = ctx.client_headers
        caller = _W3C.extract(headers) if "traceparent" in headers else None
        parent = get_current_span(caller).get_span_context() if caller is not None else None
        if parent is not None and parent.is_valid:
            trace_id = parent.trace_id
            random_id = parent.trace_flags & TraceFlags.RANDOM_TRACE_ID
        else:
            parent, trace_id, random_id = None, self._ids.generate_trace_id(), 0x02
        decision = self._sampler.should_sample(caller, trace_id, name, SpanKind.SERVER)
        sampled = decision.decision is Decision.RECORD_AND_SAMPLE
        context = SpanContext(
            trace_id,
            self._ids.generate_span_id(),
            is_remote=False,
            trace_flags=_FLAGS[random_id | (TraceFlags.SAMPLED if sampled else 0)],
            trace_state=decision.trace_state,
        )
        upstream = None
        traceparent = (f"00-{trace_id:032x}-", f"-{int(context.trace_flags):02x}")
        if self._propagate:
            upstream = _upstream_headers(ctx)
            upstream["traceparent"] = _traceparent(traceparent, context.span_id)
            if context.trace_state:
                upstream["tracestate"] = context.trace_state.to_header()
        if not sampled:
            return None
        attributes = _request_attributes(ctx, operation, model)
        trace = RequestTrace(
            context, parent, name, operation, attributes, ctx.received_at - ctx.started
        )
        trace.upstream, trace.traceparent = upstream, traceparent
        if chat is not None and self._capture:
            attributes[genai.INPUT_MESSAGES] = genai.input_messages(chat.messages, self._text)
            if chat.stream:
                trace.output = genai.StreamedOutput(self._text)
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
                trace.output_messages = genai.output_messages(response.choices, self._text)
        return response

    async def on_complete(self, ctx: RequestContext) -> None:
        trace = ctx.trace
        if trace is None:
            return
        ctx.trace = None  # written once, whatever calls this again
        end = ctx.finished_at if ctx.finished_at is not None else ctx.started
        for attempt in ctx.tries[trace.written :]:
            # Cut short without on_attempt_end: the request was cancelled mid-call, or a
            # stream's first chunk was in hand but the stream was never read.
            self._write_attempt(trace, attempt, end, abandoned=True)
        attributes = trace.attributes
        _outcome_attributes(attributes, ctx, trace)
        first = ctx.first_token_at
        events = () if first is None else (Event("gen_ai.first_token", None, trace.nanos(first)),)
        error = ctx.error
        # The client's error message may quote what it sent (a model name, a key pasted as
        # one): redacted as the model attribute is.
        status = _UNSET if error is None else Status(StatusCode.ERROR, redact(error.message))
        span = ReadableSpan(
            name=trace.name,
            context=trace.context,
            parent=trace.parent,
            resource=self._resource,
            attributes=attributes,
            events=events,
            kind=SpanKind.SERVER,
            status=status,
            start_time=int(ctx.received_at * 1e9),
            end_time=trace.nanos(end),
            instrumentation_scope=self._scope,
        )
        self._emit(span)

    # --- attempt spans ------------------------------------------------------------------

    async def on_attempt(self, ctx: RequestContext, deployment: Deployment) -> None:
        trace = ctx.trace
        if trace is not None and trace.upstream is not None:
            trace.next_span_id = self._ids.generate_span_id()
            trace.upstream["traceparent"] = _traceparent(trace.traceparent, trace.next_span_id)

    async def on_attempt_end(self, ctx: RequestContext, attempt: Attempt) -> None:
        trace = ctx.trace
        if trace is None:
            return
        end = attempt.ended if attempt.ended is not None else attempt.started
        # No failure of its own, yet the request failed: the client left mid-stream.
        abandoned = attempt.error is None and ctx.error is not None
        self._write_attempt(trace, attempt, end, abandoned)

    def _write_attempt(
        self, trace: RequestTrace, attempt: Attempt, end: float, abandoned: bool
    ) -> None:
        deployment = attempt.deployment
        fixed = self._deployments.get(deployment.id) or genai.deployment_attributes(deployment)
        attributes: Attributes = {genai.OPERATION: trace.operation, **fixed}
        if attempt.first_chunk_at is not None:
            attributes[genai.TIME_TO_FIRST_CHUNK] = attempt.first_chunk_at - attempt.started
        status = _UNSET
        error = attempt.error
        if error is not None:
            attributes[genai.ERROR_TYPE] = genai.error_type(error)
            if error.code:
                attributes["tollway.error.code"] = error.code
            if isinstance(error, UpstreamStatusError):
                attributes[genai.HTTP_STATUS] = error.upstream_status
            status = Status(StatusCode.ERROR, error.message)
        if abandoned:
            attributes["tollway.abandoned"] = True
        span_id = trace.next_span_id or self._ids.generate_span_id()
        trace.next_span_id = None
        request = trace.context
        span = ReadableSpan(
            name=f"{trace.operation} {deployment.model}",
            context=SpanContext(
                request.trace_id, span_id, False, request.trace_flags, request.trace_state
            ),
            parent=request,
            resource=self._resource,
            attributes=attributes,
            kind=SpanKind.CLIENT,
            status=status,
            start_time=trace.nanos(attempt.started),
            end_time=trace.nanos(end),
            instrumentation_scope=self._scope,
        )
        trace.written += 1
        self._emit(span)


def _upstream_headers(ctx: RequestContext) -> dict[str, str]:
    """The headers going upstream, without the caller's own trace headers should
    ``forward_headers`` have let them through (their names may come in any case)."""
    request = ctx.chat if ctx.chat is not None else ctx.embedding
    if request is None:
        return {}
    headers = request.upstream_headers
    if headers:
        for name in [name for name in headers if name.lower() in _PROPAGATED]:
            del headers[name]
    return headers


def _traceparent(parts: tuple[str, str], span_id: int) -> str:
    """W3C ``traceparent`` naming ``span_id`` as the parent."""
    return f"{parts[0]}{span_id:016x}{parts[1]}"


def _request_attributes(ctx: RequestContext, operation: str, model: str) -> Attributes:
    """The request span's attributes known when it starts: what the client asked for
    (``model``: the model it named, redacted unless configured)."""
    attributes: Attributes = {
        genai.OPERATION: operation,
        genai.REQUEST_MODEL: model,
        "tollway.request_id": ctx.request_id,
    }
    chat = ctx.chat
    if chat is not None:
        attributes[genai.REQUEST_STREAM] = chat.stream
        if chat.max_tokens is not None:
            attributes[genai.REQUEST_MAX_TOKENS] = chat.max_tokens
        if chat.temperature is not None:
            attributes[genai.REQUEST_TEMPERATURE] = chat.temperature
        if chat.top_p is not None:
            attributes[genai.REQUEST_TOP_P] = chat.top_p
        if chat.seed is not None:
            attributes[genai.REQUEST_SEED] = chat.seed
        if chat.n is not None and chat.n != 1:
            attributes[genai.REQUEST_CHOICES] = chat.n
    elif ctx.embedding is not None and ctx.embedding.dimensions is not None:
        attributes[genai.EMBEDDING_DIMENSIONS] = ctx.embedding.dimensions
    return attributes


def _outcome_attributes(attributes: Attributes, ctx: RequestContext, trace: RequestTrace) -> None:
    """Add the request span's attributes known once the request is over."""
    attributes["tollway.attempts"] = ctx.attempts
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
        attributes[genai.FINISH_REASONS] = tuple(trace.finish_reasons)
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
