"""What the gateway has learned about each deployment: circuit state, latency, load, errors.

Every deployment has a circuit breaker:

    closed ──(failure_threshold consecutive failures)──► open
    open ──(cooldown elapsed)──► half-open: one request is let through as a probe
    half-open ──probe succeeds──► closed          half-open ──probe fails──► open again

A 429, and an overload (503, Anthropic's 529) that says how long to wait (``retry-after``,
``retry-after-ms``), do not count against the circuit (the deployment works, it is busy):
they set the deployment aside (it rests) for that long (a 429 without one for
``rate_limit_cooldown``), at most ``retry_after_max``. Latency, time to first content
(streams) and time to a whole answer (requests answered in one piece) are exponentially
weighted moving averages, each fed by its own kind of request; the error rate is one too,
over outcomes (1 = failure). Everything here is plain attribute arithmetic on the event
loop: no locks, no awaits, nothing allocated per request.

A record belongs to a deployment by its id, by where it points (provider, address, model)
and by the credentials config names for it (a circuit a refused key opened does not keep out
the key a reload put in its place): a deployment without an ``id`` of its own is named by
its place in its group (``chat#0``), so after a reload that removes or inserts one, another
deployment may carry the name, and must not inherit the circuit, rest and averages of the
one that had it.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import hashlib
import time
from collections.abc import Callable, Iterable
from typing import Literal

from tollway.config.schema import RoutingConfig
from tollway.core.errors import GatewayError, UpstreamError, UpstreamStatusError, UpstreamTimeout
from tollway.core.types import Deployment

CircuitState = Literal["closed", "open", "half_open"]
Waited = Literal["first_token", "answer"] | None
"""What a failed attempt had been waiting for when it failed: a stream's first content, a
whole answer, or nothing (a stream that had begun)."""
Target = tuple[str, str, str, str, str | None, str | None, str]
"""A record's key: the deployment's id, provider, address, model, Azure deployment, region,
and a fingerprint of the credentials config names for it."""
_ERROR_ALPHA = 0.1  # weight of the newest outcome in the error-rate average


class DeploymentHealth:
    """The health of one deployment, kept across config reloads by its id."""

    __slots__ = (
        "consecutive_failures",
        "deployment_id",
        "error_rate",
        "ewma_complete",
        "ewma_latency",
        "ewma_ttft",
        "failures",
        "in_flight",
        "last_error",
        "last_error_at",
        "last_error_detail",
        "on_circuit",
        "open_until",
        "opened_at",
        "probing",
        "requests",
        "rest_status",
        "resting_until",
        "state",
    )

    def __init__(
        self,
        deployment_id: str,
        on_circuit: Callable[[DeploymentHealth, CircuitState], None] | None = None,
    ) -> None:
        self.deployment_id = deployment_id
        self.on_circuit = on_circuit
        """Told when the circuit moves here (to half-open); the book tells the other moves."""
        self.state: CircuitState = "closed"
        self.consecutive_failures = 0
        self.open_until = 0.0
        self.opened_at = 0.0
        self.probing = False
        self.resting_until = 0.0  # a 429 or an overload asked us to wait
        self.rest_status = 429
        """The upstream status that set it resting (429, 503 or 529)."""
        self.in_flight = 0
        self.ewma_latency: float | None = None
        self.ewma_ttft: float | None = None
        """Time to a stream's first content."""
        self.ewma_complete: float | None = None
        """Time to a whole answer, of requests answered in one piece."""
        self.error_rate = 0.0
        self.requests = 0
        self.failures = 0
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        """When the last error was (wall-clock seconds since the epoch)."""
        self.last_error_detail: str | None = None
        """What the operator needs to know of the last error (the upstream's host, the
        exception); never sent to a client."""

    def could_answer(self, now: float) -> bool:
        """Whether ``available`` would let a request through now (it claims nothing)."""
        if now < self.resting_until:
            return False
        if self.state == "closed":
            return True
        if self.state == "open":
            return now >= self.open_until
        return not self.probing

    def available(self, now: float) -> bool:
        """Whether a request may be sent now (claims the probe of a half-open circuit)."""
        if not self.could_answer(now):
            return False
        if self.state == "closed":
            return True
        if self.state == "open":  # its cooldown is over
            self.state = "half_open"
            if self.on_circuit is not None:
                self.on_circuit(self, "half_open")
        self.probing = True
        return True


class HealthBook:
    """The health of every deployment, with the rules that update it."""

    def __init__(
        self,
        config: RoutingConfig,
        on_circuit: Callable[[str, CircuitState], None] | None = None,
    ) -> None:
        self.config = config
        self._health: dict[Target, DeploymentHealth] = {}
        self._latest: dict[str, DeploymentHealth] = {}
        """The newest record of each deployment id (whose state the circuit gauge shows)."""
        self._on_circuit = on_circuit
        """Told of every circuit change (deployment id, new state), e.g. for a metrics gauge."""

    def _moved(self, health: DeploymentHealth, state: CircuitState) -> None:
        health.state = state
        if self._on_circuit is not None:
            self._told(health, state)

    def _told(self, health: DeploymentHealth, state: CircuitState) -> None:
        """Tell ``on_circuit`` that ``health``'s circuit moved to ``state``, if it is the
        record its id names now: one a reload left behind (the deployment points elsewhere
        now) may still move, as requests in flight on its old address end, but the id's
        gauge shows the circuit requests use."""
        assert self._on_circuit is not None
        if self._latest.get(health.deployment_id) is health:
            self._on_circuit(health.deployment_id, state)

    def of(self, deployment: Deployment | str) -> DeploymentHealth:
        """The health record of ``deployment`` (made on first use); a bare id stands for a
        deployment that points nowhere in particular."""
        key = _target(deployment)
        health = self._health.get(key)
        if health is None:
            deployment_id = key[0]
            told = self._told if self._on_circuit is not None else None
            health = self._health[key] = DeploymentHealth(deployment_id, told)
            previous = self._latest.get(deployment_id)
            self._latest[deployment_id] = health
            if previous is not None and previous.state != "closed":
                # The id now names another deployment: its gauge shows the new one's circuit.
                self._moved(health, "closed")
        return health

    def records(self, deployments: Iterable[Deployment]) -> list[DeploymentHealth]:
        """Records of ``deployments``, in order."""
        return [self.of(deployment) for deployment in deployments]

    def started(self, health: DeploymentHealth) -> None:
        """A request to the deployment begins."""
        health.in_flight += 1
        health.requests += 1

    def succeeded(
        self, health: DeploymentHealth, latency: float, ttft: float | None, streamed: bool = True
    ) -> None:
        """The request ended well after ``latency`` seconds: a stream (``streamed``), whose
        first content came after ``ttft``, or an answer in one piece, whose time to the whole
        answer is ``latency`` (kept apart: the latency strategy ranks each kind by its own)."""
        health.in_flight -= 1
        alpha = self.config.latency_alpha
        # ``_ewma`` inline: this runs for every request.
        current = health.ewma_latency
        health.ewma_latency = latency if current is None else current + alpha * (latency - current)
        if not streamed:
            current = health.ewma_complete
            health.ewma_complete = (
                latency if current is None else current + alpha * (latency - current)
            )
        elif ttft is not None:
            current = health.ewma_ttft
            health.ewma_ttft = ttft if current is None else current + alpha * (ttft - current)
        health.error_rate *= 1.0 - _ERROR_ALPHA
        health.consecutive_failures = 0
        if health.state != "closed":
            self._moved(health, "closed")
            health.probing = False

    def answered(self, health: DeploymentHealth) -> None:
        """A stream's first content arrived: a half-open circuit's probe has its answer, so
        the circuit closes now, not when the stream ends (a long answer would keep the
        deployment out of rotation for its whole length); the stream's end still counts."""
        if health.state == "half_open":
            health.consecutive_failures = 0
            self._moved(health, "closed")
            health.probing = False

    def failed(
        self,
        health: DeploymentHealth,
        error: GatewayError,
        latency: float,
        waited: Waited = "first_token",
        probe: bool = False,
        ttft: float | None = None,
    ) -> None:
        """The request failed with ``error`` after ``latency`` seconds, waiting for what
        ``waited`` says; may open the circuit or rest the deployment. ``probe``: the request
        is the half-open circuit's probe (``available`` claimed it for it). ``ttft``: a
        stream that failed after its first content, which came after that long."""
        health.in_flight -= 1
        health.failures += 1
        if isinstance(error, UpstreamStatusError):  # the provider's own name for it first
            status = f"upstream_status_{error.upstream_status}"
            health.last_error = error.kind or error.code or status
        else:
            health.last_error = error.code or type(error).__name__
        health.last_error_at = time.time()
        detail = error.detail if isinstance(error, UpstreamError) else None
        health.last_error_detail = detail or error.message
        health.error_rate = health.error_rate * (1.0 - _ERROR_ALPHA) + _ERROR_ALPHA
        now = time.monotonic()
        if isinstance(error, UpstreamStatusError) and error.rests:
            config = self.config
            wait = _seconds(error.retry_after, config.rate_limit_cooldown, config.retry_after_max)
            health.resting_until = now + wait
            health.rest_status = error.upstream_status
            if probe and health.state == "half_open":
                health.probing = False
            return
        if not error.retryable:
            # The caller's own mistake says nothing about the deployment.
            health.error_rate *= 1.0 - _ERROR_ALPHA
            health.failures -= 1
            if probe and health.state == "half_open":
                health.probing = False
            return
        # A slow failure still tells how slow the deployment is; a timeout says too that what
        # it waited for (a stream's first content, a whole answer) came no sooner: the latency
        # strategy ranks by those. A stream that had begun tells how soon it began (else a
        # deployment whose streams all break midway stays unmeasured, and ranks first).
        alpha = self.config.latency_alpha
        health.ewma_latency = _ewma(health.ewma_latency, latency, alpha)
        if ttft is not None:
            health.ewma_ttft = _ewma(health.ewma_ttft, ttft, alpha)
        elif isinstance(error, UpstreamTimeout) and waited is not None:
            if waited == "first_token":
                health.ewma_ttft = _ewma(health.ewma_ttft, latency, alpha)
            else:
                health.ewma_complete = _ewma(health.ewma_complete, latency, alpha)
        health.consecutive_failures += 1
        if health.state == "half_open" and health.probing and not probe:
            # A request sent before the circuit opened (or tried because every candidate was
            # set aside) failed while the probe is under way: the probe's outcome decides.
            # Reopening here cleared the probe, and a cooldown later another request probed
            # beside it: only one request probes at a time.
            return
        if health.state == "half_open" or (
            health.consecutive_failures >= self.config.failure_threshold
        ):
            self._moved(health, "open")
            health.opened_at = now
            health.open_until = now + self.config.cooldown
            health.probing = False

    def released(self, health: DeploymentHealth, probe: bool) -> None:
        """The deployment was refused before any call (a stage, such as its own rate limit,
        turned it down): a probe it had claimed (``probe``) goes to the next request."""
        if probe and health.state == "half_open":
            health.probing = False

    def abandoned(self, health: DeploymentHealth, probe: bool = False) -> None:
        """The request ended without an outcome (the client went away); the probe goes to the
        next request if it was this one (``probe``). Another request that ends so (one sent
        before the circuit opened, one tried though its circuit set it aside) leaves the probe
        under way to the request that has it: only one request probes at a time."""
        health.in_flight -= 1
        if probe and health.state == "half_open":
            health.probing = False


def _target(deployment: Deployment | str) -> Target:
    if isinstance(deployment, str):
        return (deployment, "", "", "", None, None, "")
    return (
        deployment.id,
        deployment.provider,
        deployment.api_base,
        deployment.model,
        deployment.azure_deployment,
        deployment.region,
        _credentials(deployment),
    )


def _credentials(deployment: Deployment) -> str:
    """A fingerprint of the credential references config gives ``deployment`` (a literal key
    is hashed, never kept here): another key may be another account, with its own quota and
    permissions, so a circuit a refused key opened does not keep out the key that replaced it."""
    refs = [deployment.api_key, deployment.google_service_account]
    aws = deployment.aws_credentials
    if aws is not None:
        refs += [aws.access_key_id, aws.secret_access_key, aws.session_token]
    said = "\0".join("" if ref is None else f"{ref.kind}:{ref.target}" for ref in refs)
    return hashlib.sha256(f"{deployment.bearer_key}\0{said}".encode()).hexdigest()[:16]


def _ewma(current: float | None, sample: float, alpha: float) -> float:
    return sample if current is None else current + alpha * (sample - current)


def _seconds(retry_after: str | None, default: float, most: float) -> float:
    """``retry-after`` in seconds, at most ``most``; ``default`` when there is none."""
    seconds = retry_after_seconds(retry_after)
    return min(default, most) if seconds is None else max(0.0, min(seconds, most))


def retry_after_seconds(retry_after: str | None) -> float | None:
    """Seconds a ``retry-after`` header asks for, in either form (delta-seconds or an HTTP
    date, read as UTC when it names no zone); None when absent or neither."""
    if not retry_after:
        return None
    try:
        return float(retry_after)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(retry_after)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.timestamp() - time.time()
