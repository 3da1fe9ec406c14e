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

The buckets themselves (``RefusalBuckets``) also bound the admin API's denials on their way
to the audit trail (admin/denials.py), with buckets, a rate and a counter of their own.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from tollway.core.buckets import TokenBucket
from tollway.telemetry.bodies import redact
from tollway.telemetry.request_log_stage import NO_GUARDRAILS, Entry, Put, principal_columns

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


class _Bucket(TokenBucket):
    """Rows a kind may still write now, refilled at the configured rate."""

    __slots__ = ("suppressed", "warned")

    def __init__(self, tokens: float, now: float) -> None:
        super().__init__(tokens, now)
        self.suppressed = 0
        self.warned = -_WARN_EVERY


class RefusalBuckets:
    """Refusals of each kind (status and code) admitted up to a rate, the rest counted."""

    def __init__(self, per_second: float, what: str, counter: str) -> None:
        """``per_second``: refusals of each kind admitted a second, with bursts of ten
        seconds' worth (0: none, every refusal only counted); ``what`` and ``counter``: what
        the warning about those suppressed calls them and the metric that counts them."""
        self._rate = per_second
        self._burst = max(1.0, per_second * _BURST_SECONDS) if per_second else 0.0
        self._buckets: dict[tuple[int, str | None], _Bucket] = {}
        self._what = what
        self._counter = counter

    def admit(self, error: GatewayError) -> bool:
        """Whether a refusal with ``error`` may be recorded now; when not, it is counted.
        The only work a refusal over its rate costs: a flood of them is answered at about
        the price it was before they were recorded."""
        kind = (error.status, error.code)
        bucket = self._buckets.get(kind)
        if bucket is None:
            bucket = self._bucket(kind)
        now = time.monotonic()
        if bucket.take(now, self._rate, self._burst):
            return True
        bucket.suppressed += 1
        if now - bucket.warned >= _WARN_EVERY:
            bucket.warned = now
            log.warning(
                "%s (%d %s) come faster than %g a second: those beyond are counted in %s, "
                "not recorded (%d of them so far)",
                self._what, kind[0], kind[1] or "-", self._rate, self._counter,
                bucket.suppressed,
            )  # fmt: skip
        return False

    def _bucket(self, kind: tuple[int, str | None]) -> _Bucket:
        if len(self._buckets) >= _MAX_KINDS:  # kinds beyond share one bucket a status
            kind = (kind[0], "(other)")
            if kind in self._buckets:
                return self._buckets[kind]
        bucket = self._buckets[kind] = _Bucket(self._burst, time.monotonic())
        return bucket

    def suppressed(self) -> dict[tuple[int, str], int]:
        """Refusals counted but not recorded, by status and code (``""`` without one),
        since the start (for the metrics)."""
        return {
            (status, code or ""): bucket.suppressed
            for (status, code), bucket in self._buckets.items()
            if bucket.suppressed
        }


class RefusalLog(RefusalBuckets):
    """Turns refused requests into request log entries, up to a rate per kind."""

    def __init__(self, put: Put, per_second: float) -> None:
        """``put``: the request log writer's ``put_nowait``; ``per_second``: rows of each
        kind a second (0: none, every refusal only counted). ``admit`` first, then ``put``
        the entry of a refusal admitted."""
        super().__init__(
            per_second,
            "request log: refused requests",
            "tollway_request_log_refusals_suppressed_total",
        )
        self.put = put


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
    kind, key_id, user, team, service = principal_columns(principal)
    return (
        time.time_ns() // 1000,
        request_id,
        kind,
        key_id,
        user,
        team,
        service,
        endpoint,
        redact(model),  # what the client typed, a key pasted there included
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
        0,  # tool_calls
        0,  # tool_cost_micros
        None,  # the request: no bodies are kept of a refusal
        None,
    )  # fmt: skip
