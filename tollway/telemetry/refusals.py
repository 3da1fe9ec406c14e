"""Requests refused before the pipeline ran, into the request log, at a bounded rate.

A model request answered with an error before any stage saw it (no, a malformed, an unknown,
a revoked or a blocked credential; a body over the limit, not JSON, or missing a field) has no
``RequestContext`` and so passed no ``on_complete``: ``exchange`` (dialects/http.py) hands it
here instead, and it becomes a request log entry like any other, without cost or tokens.

A client hammering with a bad key must not cost the store a row per request, nor crowd out
the log's bounded queue: each kind of refusal (its status and code) has a token bucket of
``refusals_per_second`` with ten seconds' worth of burst; a refusal beyond it is only counted
(``suppressed``, by kind: ``tollway_request_log_refusals_suppressed_total``), and a warning
says so at most once a minute a kind. Kinds come from the gateway's own error codes, a few
dozen at most; ``_MAX_KINDS`` bounds them anyway.

What is never recorded: the credential a client presented, or any part of it. A known key
that cannot be used is named by its principal (``AuthenticationFailed.principal``: its id,
user and team); an unknown one by nothing.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from tollway.telemetry.request_log_stage import NO_GUARDRAILS, Entry, Put

if TYPE_CHECKING:
    from tollway.auth.principal import Principal
    from tollway.core.errors import GatewayError

log = logging.getLogger("tollway.request_log")

_BURST_SECONDS = 10.0
"""A bucket holds this many seconds' worth of rows: a short burst is recorded whole."""
_WARN_EVERY = 60.0
"""The least time between two warnings of the same kind being suppressed."""
_MAX_KINDS = 256
"""Kinds with a bucket of their own; beyond them, one bucket for the rest of each status."""

Kind = tuple[int, str]
"""A refusal's status and error code (``""`` without one)."""


class _Bucket:
    """Rows a kind may still write now, refilled at the configured rate."""

    __slots__ = ("suppressed", "tokens", "updated", "warned")

    def __init__(self, tokens: float, now: float) -> None:
        self.tokens = tokens
        self.updated = now
        self.suppressed = 0
        self.warned = -_WARN_EVERY


class RefusalLog:
    """Turns refused requests into request log entries, up to a rate per kind."""

    def __init__(self, put: Put, per_second: float) -> None:
        """``put``: the request log writer's ``put_nowait``; ``per_second``: rows of each
        kind a second (0: none, every refusal only counted)."""
        self._put = put
        self._rate = per_second
        self._burst = max(1.0, per_second * _BURST_SECONDS) if per_second else 0.0
        self._buckets: dict[Kind, _Bucket] = {}

    def record(
        self,
        request_id: str,
        endpoint: str,
        error: GatewayError,
        principal: Principal | None,
        model: str,
        source_ip: str | None,
    ) -> None:
        """Log one refused request, or count it when its kind is over its rate.

        ``model``: what the body asked for, ``""`` when it was not read.
        """
        kind: Kind = (error.status, error.code or "")
        now = time.monotonic()
        bucket = self._buckets.get(kind)
        if bucket is None:
            if len(self._buckets) >= _MAX_KINDS:
                kind = (error.status, "(other)")
                bucket = self._buckets.get(kind)
            if bucket is None:
                bucket = self._buckets[kind] = _Bucket(self._burst, now)
        tokens = min(self._burst, bucket.tokens + (now - bucket.updated) * self._rate)
        bucket.updated = now
        if tokens < 1.0:
            bucket.tokens = tokens
            bucket.suppressed += 1
            if now - bucket.warned >= _WARN_EVERY:
                bucket.warned = now
                log.warning(
                    "request log: refused requests (%d %s) come faster than %g a second: those "
                    "beyond are counted, not recorded (%d so far)",
                    kind[0], kind[1] or "-", self._rate, bucket.suppressed,
                )  # fmt: skip
            return
        bucket.tokens = tokens - 1.0
        self._put(refusal_entry(request_id, endpoint, error, principal, model, source_ip))

    def suppressed(self) -> dict[Kind, int]:
        """Refusals counted but not recorded, by kind, since the start (for the metrics)."""
        return {kind: b.suppressed for kind, b in self._buckets.items() if b.suppressed}


def refusal_entry(
    request_id: str,
    endpoint: str,
    error: GatewayError,
    principal: Principal | None,
    model: str,
    source_ip: str | None,
) -> Entry:
    """The request log entry of a request refused before the pipeline: who (when known),
    what was asked, the status and code; no deployment, attempts, tokens, cost or latency."""
    if principal is None:
        kind = key_id = user = team = service = None
    else:
        kind, user, team = principal.kind, principal.user, principal.team
        key_id = principal.id if kind == "key" else None
        service = principal.tags.get("service") if principal.tags else None
    return (
        time.time_ns() // 1000,
        request_id,
        kind,
        key_id,
        user,
        team,
        service,
        endpoint,
        model,
        None,  # served_model
        None,  # deployment_id
        None,  # provider
        0,  # attempts
        0,  # fallbacks
        error.status,
        error.code,
        False,  # stream: not known, the body was not parsed
        0, 0, 0, 0, 0,  # input, output, cached, cache write, 1-hour cache write tokens
        False,  # usage_estimated
        0,  # cost_micros
        None,  # latency_ms
        None,  # ttft_ms
        None,  # cache
        NO_GUARDRAILS,
        source_ip,
        None,  # the request: no bodies are kept of a refusal
        None,
    )  # fmt: skip
