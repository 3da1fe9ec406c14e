"""The per-request state every pipeline stage reads and writes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from tollway.auth.principal import Principal
from tollway.core.errors import GatewayError
from tollway.core.types import ChatRequest, Deployment, EmbeddingRequest, Usage
from tollway.limits.backend import Ticket
from tollway.limits.budget import Budget

if TYPE_CHECKING:
    from tollway.telemetry.tracing import RequestTrace

Endpoint = Literal["chat", "responses", "embeddings"]
"""The client API a request came through; Anthropic's Messages API counts as ``chat``
(its chat request says the wire format)."""


@dataclass(slots=True)
class Attempt:
    """One call to one deployment on behalf of a request (``perf_counter`` times)."""

    deployment: Deployment
    started: float
    ended: float | None = None
    error: GatewayError | None = None
    first_chunk_at: float | None = None
    """Streams: when the first content arrived (the stream's head before it is no token:
    ``wire/stream_head.py``)."""
    spent: Usage | None = None
    """What a failed call used all the same (``UpstreamError.spent``), which is charged."""
    spent_estimated: bool = False
    """``spent`` is the gateway's count, not the provider's report (a prompt read by a call
    its client or a time limit cut before any usage came)."""
    counting: asyncio.Future[Usage] | None = None
    """``spent`` while it is counted off the event loop (``pipeline.spent_counted`` awaits
    it): a tokenizer's first load takes a good part of a second, which neither the other
    requests nor the failover should wait for."""
    cut_short: bool = False
    """The gateway cut the call: the model group's deadline (its ``error`` a timeout), its
    client leaving while it waited (no ``error`` of its own; the request's is
    ``ClientDisconnected``), or a stream's total limit passing while it waited on its client
    to read (its ``error`` that timeout, ``client_held``). Not the deployment's failure: its
    health and error storms leave it out."""


@dataclass(slots=True)
class RequestContext:
    """Everything known about one request as it passes the pipeline.

    Stages keep no per-request state of their own; what they learn goes here.
    """

    request_id: str
    endpoint: Endpoint
    model: str
    client_headers: Mapping[str, str]
    principal: Principal | None = None
    chat: ChatRequest | None = None
    embedding: EmbeddingRequest | None = None
    received_at: float = field(default_factory=time.time)
    started: float = field(default_factory=time.perf_counter)
    deployment: Deployment | None = None
    attempts: int = 0
    usage: Usage | None = None
    first_token_at: float | None = None
    finished_at: float | None = None
    error: GatewayError | None = None
    response_headers: dict[str, str] = field(default_factory=dict)
    stages_entered: int = 0
    requested_model: str = ""
    """The model name the client asked for; ``model`` may be changed by policy before routing."""
    tries: list[Attempt] = field(default_factory=list)
    """Every upstream call made for this request, in order."""
    input_tokens_estimate: int | None = None
    """The local count of the request's input tokens, once a stage has made it."""
    cost_usd: float | None = None
    """What the request cost, once settled."""
    usage_estimated: bool = False
    """The provider reported no usage: ``usage`` is the gateway's own count."""
    output_chars: int = 0
    """Characters of output (text, tool calls, reasoning) forwarded so far (the fallback
    output count)."""
    usage_so_far: Usage | None = None
    """The latest usage a stream reported before its end (``ChatChunk.usage_so_far``): where
    an estimate starts when the stream is cut before its usage."""
    output_chars_so_far: int = 0
    """``output_chars`` when ``usage_so_far`` was reported: output after it is estimated."""
    reasoning_chars: int = 0
    """Of ``output_chars``, those of reasoning (estimated as reasoning tokens, which a price
    may bill at a rate of their own)."""
    ticket: Ticket | None = None
    """What admission took from limits and budgets, until settlement (limits/stage.py)."""
    budgets: tuple[Budget, ...] = ()
    """The budgets charged for this request."""
    priced_only: bool = False
    """Only priced deployments may serve it (``limits.unpriced: refuse`` under a budget, with
    an unpriced candidate): set by admission, read by the router."""
    deployment_tickets: list[Ticket] | None = None
    """Per-deployment limits taken by ``on_attempt``, until settlement."""
    cache_status: str | None = None
    """``hit``, ``miss`` or ``None`` when no cache was consulted."""
    guardrail_flags: list[str] = field(default_factory=list)
    """Names of the guardrails that triggered on this request."""
    captured_output: list[object] | None = None
    """What was answered (text pieces, tool call deltas, a whole response), collected only
    when the request log keeps this request's bodies (telemetry/request_log.py)."""
    trace: RequestTrace | None = None
    """The request's spans while it runs, when tracing is on and records it (tracing.py)."""
    source_ip: str | None = None
    """The address the request came from (the connection's peer, or the client a trusted
    proxy names: dialects/client_address.py), for the request log."""

    def __post_init__(self) -> None:
        if not self.requested_model:
            self.requested_model = self.model

    @property
    def ttft(self) -> float | None:
        """Seconds from receipt to the first streamed token, if any."""
        return None if self.first_token_at is None else self.first_token_at - self.started
