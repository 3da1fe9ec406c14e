"""The circuit breaker and the health averages."""

from __future__ import annotations

import email.utils
import time

from tollway.config.schema import RoutingConfig
from tollway.core.errors import (
    InvalidRequest,
    UpstreamStatusError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from tollway.core.types import Deployment, UpstreamTimeouts
from tollway.routing.health import DeploymentHealth, HealthBook, retry_after_seconds

CONFIG = RoutingConfig(failure_threshold=3, cooldown=0.2, rate_limit_cooldown=0.5)


def _deployment(ident: str, api_base: str) -> Deployment:
    return Deployment(
        id=ident, provider="openai", model="m", api_base=api_base,
        timeouts=UpstreamTimeouts(1.0, 1.0, 1.0),
    )  # fmt: skip


def _fail(book: HealthBook, deployment: str, error: Exception, probe: bool = False) -> None:
    health = book.of(deployment)
    book.started(health)
    book.failed(health, error, 0.01, probe=probe)  # type: ignore[arg-type]


def test_consecutive_failures_open_then_a_probe_closes() -> None:
    book = HealthBook(CONFIG)
    health = book.of("d")
    for _ in range(2):
        _fail(book, "d", UpstreamUnavailable("reset"))
    assert health.state == "closed" and health.available(time.monotonic())
    _fail(book, "d", UpstreamUnavailable("reset"))
    assert health.state == "open"
    assert not health.available(time.monotonic())
    time.sleep(0.25)
    assert health.available(time.monotonic())  # the single probe
    assert health.state == "half_open"
    assert not health.available(time.monotonic())  # nobody else while it is out
    book.started(health)
    book.succeeded(health, 0.1, 0.05)
    assert health.state == "closed" and health.consecutive_failures == 0


def test_every_circuit_move_is_told_half_open_included() -> None:
    moves: list[tuple[str, str]] = []
    book = HealthBook(CONFIG, on_circuit=lambda name, state: moves.append((name, state)))
    health = book.of("d")
    for _ in range(3):
        _fail(book, "d", UpstreamUnavailable("reset"))
    time.sleep(0.25)
    assert health.available(time.monotonic())  # the probe
    book.started(health)
    book.succeeded(health, 0.1, 0.05)
    assert moves == [("d", "open"), ("d", "half_open"), ("d", "closed")]


def test_a_record_a_reload_left_behind_tells_no_circuit_move() -> None:
    # The id names a deployment at another address now: moves of the old record's circuit
    # (requests in flight there ending, one of them claiming its probe) are not the id's.
    moves: list[tuple[str, str]] = []
    book = HealthBook(CONFIG, on_circuit=lambda name, state: moves.append((name, state)))
    old = book.of(_deployment("d", "http://old"))
    for _ in range(3):
        book.started(old)
        book.failed(old, UpstreamUnavailable("reset"), 0.01)
    new = book.of(_deployment("d", "http://new"))
    assert moves == [("d", "open"), ("d", "closed")]
    time.sleep(0.25)
    assert old.available(time.monotonic())  # a request of the old table claims its probe
    book.started(old)
    book.failed(old, UpstreamUnavailable("reset"), 0.01, probe=True)
    assert old.state == "open" and new.state == "closed"
    assert moves == [("d", "open"), ("d", "closed")]


def _probing_beside_an_earlier_request() -> tuple[HealthBook, DeploymentHealth]:
    """A circuit opened while a request was out, then half-open with its probe sent."""
    book = HealthBook(CONFIG)
    health = book.of("d")
    book.started(health)  # a request sent while the circuit was closed
    for _ in range(3):
        _fail(book, "d", UpstreamUnavailable("reset"))
    time.sleep(0.25)
    assert health.available(time.monotonic())  # the probe
    book.started(health)
    return book, health


def test_a_failure_beside_the_probe_leaves_the_circuit_to_the_probe() -> None:
    book, health = _probing_beside_an_earlier_request()
    book.failed(health, UpstreamUnavailable("reset"), 0.01)  # the earlier request fails
    assert health.state == "half_open" and health.probing
    assert not health.available(time.monotonic() + 1.0)  # no second probe, however late
    book.failed(health, UpstreamUnavailable("reset"), 0.01, probe=True)
    assert health.state == "open" and not health.probing and health.in_flight == 0


def test_only_the_probe_hands_the_probe_on() -> None:
    book, health = _probing_beside_an_earlier_request()
    book.abandoned(health)  # the earlier request's client leaves: not the probe
    book.started(health)
    book.failed(health, InvalidRequest("bad"), 0.01)  # nor is a request it refused
    assert health.probing and not health.available(time.monotonic())
    book.abandoned(health, probe=True)  # the probe's own client leaves
    assert health.available(time.monotonic())  # the next request probes
    assert health.in_flight == 0


def test_a_failed_probe_opens_the_circuit_again() -> None:
    book = HealthBook(CONFIG)
    health = book.of("d")
    for _ in range(3):
        _fail(book, "d", UpstreamStatusError(500, "boom"))
    time.sleep(0.25)
    assert health.available(time.monotonic())
    _fail(book, "d", UpstreamStatusError(502, "still down"), probe=True)
    assert health.state == "open" and not health.available(time.monotonic())


def test_the_last_error_names_an_upstream_status_without_a_code() -> None:
    book = HealthBook(CONFIG)
    _fail(book, "d", UpstreamStatusError(500, "internal"))
    assert book.of("d").last_error == "upstream_status_500"
    # An overload is named as OpenAI names it to its clients (a 429 likewise).
    _fail(book, "d", UpstreamStatusError(503, "unavailable"))
    assert book.of("d").last_error == "server_is_overloaded"
    _fail(book, "d", UpstreamStatusError(500, "boom", code="server_error"))
    assert book.of("d").last_error == "server_error"
    # The provider's own name for it, which OpenAI clients are not sent as a code.
    _fail(book, "d", UpstreamStatusError(529, "Overloaded", kind="overloaded_error"))
    assert book.of("d").last_error == "overloaded_error"


def test_a_refused_credential_counts_against_the_deployment() -> None:
    book = HealthBook(CONFIG)
    for _ in range(CONFIG.failure_threshold):
        _fail(book, "d", UpstreamStatusError(401, "invalid x-api-key"))
    assert book.of("d").state == "open" and book.of("d").failures == CONFIG.failure_threshold


def test_a_rate_limit_rests_the_deployment_without_opening_it() -> None:
    book = HealthBook(CONFIG)
    health = book.of("d")
    _fail(book, "d", UpstreamStatusError(429, "slow down", retry_after="0.3"))
    assert health.state == "closed"
    assert not health.available(time.monotonic())
    time.sleep(0.35)
    assert health.available(time.monotonic())


def test_a_rate_limit_rests_the_deployment_until_the_http_date_it_names() -> None:
    book = HealthBook(CONFIG)
    health = book.of("d")
    # RFC 9110's other form of retry-after: 30 s away, far past rate_limit_cooldown (0.5 s).
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    _fail(book, "d", UpstreamStatusError(429, "slow down", retry_after=when))
    assert not health.available(time.monotonic() + 5)
    assert health.available(time.monotonic() + 31)


def test_an_overload_that_says_how_long_to_wait_rests_the_deployment() -> None:
    # Like a 429: set aside for its retry-after, not counted against the circuit.
    book = HealthBook(CONFIG)
    health = book.of("d")
    for status in (503, 529, 503):
        _fail(book, "d", UpstreamStatusError(status, "overloaded", retry_after="0.3"))
        assert health.rest_status == status
    assert health.state == "closed" and health.consecutive_failures == 0
    assert not health.available(time.monotonic())
    assert health.available(time.monotonic() + 0.31)
    # Without one it is a 5xx like any other: no rest, and the circuit counts it.
    other = book.of("e")
    for _ in range(CONFIG.failure_threshold):
        _fail(book, "e", UpstreamStatusError(503, "overloaded"))
    assert other.state == "open" and other.resting_until == 0.0


def test_a_providers_wait_is_cut_to_retry_after_max() -> None:
    book = HealthBook(RoutingConfig(retry_after_max=2.0))
    health = book.of("d")
    _fail(book, "d", UpstreamStatusError(529, "overloaded", retry_after="600"))
    assert health.resting_until - time.monotonic() <= 2.0


def test_retry_after_reads_both_forms_and_dates_without_a_zone_as_utc() -> None:
    assert retry_after_seconds("7") == 7.0
    assert retry_after_seconds(None) is None and retry_after_seconds("soon") is None
    in_a_minute = time.time() + 60
    for header in (
        email.utils.formatdate(in_a_minute, usegmt=True),  # "... GMT"
        email.utils.formatdate(in_a_minute).replace("-0000", "").strip(),  # no zone at all
    ):
        seconds = retry_after_seconds(header)
        assert seconds is not None and 55 < seconds <= 60, header


def test_caller_errors_say_nothing_about_the_deployment() -> None:
    book = HealthBook(CONFIG)
    health = book.of("d")
    for _ in range(5):
        _fail(book, "d", UpstreamStatusError(400, "bad field"))
        _fail(book, "d", InvalidRequest("bad"))
    assert health.state == "closed" and health.failures == 0
    assert health.in_flight == 0


def test_latency_averages_move_towards_new_samples() -> None:
    book = HealthBook(CONFIG)
    health = book.of("d")
    for latency in (1.0, 0.1, 0.1, 0.1):
        book.started(health)
        book.succeeded(health, latency, latency / 2)
    assert health.ewma_latency is not None and 0.1 < health.ewma_latency < 0.5
    assert health.ewma_ttft is not None and health.ewma_ttft < health.ewma_latency


def test_an_answer_in_one_piece_is_not_a_time_to_first_token() -> None:
    book = HealthBook(RoutingConfig(latency_alpha=1.0))
    health = book.of("d")
    book.started(health)
    book.succeeded(health, 3.0, None, streamed=False)
    assert health.ewma_ttft is None and health.ewma_complete == 3.0
    # A timeout while waiting for a whole answer slows that measure, not the first token's;
    # one after a stream had begun slows neither.
    book.started(health)
    book.failed(health, UpstreamTimeout("nothing", phase="total"), 5.0, "answer")
    book.started(health)
    book.failed(health, UpstreamTimeout("silent", phase="first_byte"), 9.0, None)
    assert health.ewma_ttft is None and health.ewma_complete == 5.0


def test_a_timeout_slows_the_time_to_first_token_the_latency_strategy_ranks_by() -> None:
    book = HealthBook(RoutingConfig(failure_threshold=100))
    health = book.of("d")
    book.started(health)
    book.succeeded(health, 0.2, 0.01)  # fast so far
    for _ in range(3):  # then its first byte stops coming: each wait ends at the timeout
        book.started(health)
        book.failed(health, UpstreamTimeout("nothing", phase="first_byte"), 5.0)
    assert health.ewma_ttft is not None and health.ewma_ttft > 1.0
    book.started(health)
    book.failed(health, UpstreamUnavailable("reset"), 0.001)  # other failures: no TTFT
    assert health.ewma_ttft > 1.0


def test_provider_auth_and_missing_model_answers_fail_over() -> None:
    for status in (401, 403, 404, 408, 429, 500, 503):
        assert UpstreamStatusError(status, "x").retryable, status
    for status in (400, 413, 422):
        assert not UpstreamStatusError(status, "x").retryable, status
