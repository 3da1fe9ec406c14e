"""Window arithmetic of the alert sources, on an injected clock (plain numbers, no sleeps)."""

from __future__ import annotations

import pytest

from tollway.alerts.errors import ErrorStorms
from tollway.alerts.spend import SpendRate
from tollway.alerts.window import Clock, Ring
from tollway.auth.principal import Principal
from tollway.config.schema import ErrorStormConfig, SpendRateConfig
from tollway.core.context import Attempt
from tollway.core.errors import InvalidRequest, UpstreamStatusError, UpstreamUnavailable
from tollway.core.types import Deployment, UpstreamTimeouts

KEY = Principal(kind="key", id="key-1", team="red")
OTHER = Principal(kind="key", id="key-2", team="red")
LONER = Principal(kind="key", id="key-3")


def spend_rate(**fields: object) -> SpendRate:
    settings = {"window": 300, "baseline": 3600, "factor": 5, "min_usd": 1.0, **fields}
    return SpendRate(SpendRateConfig.model_validate(settings), wall=lambda: 1_000.0)


def steady(rate: SpendRate, who: Principal, usd_per_min: float, start: float, end: float) -> None:
    """One request every 10 s from ``start`` to ``end`` at ``usd_per_min``."""
    t = start
    while t < end:
        rate.record(who, usd_per_min / 6, t)
        t += 10


# --- the ring and the clock ------------------------------------------------------------


def test_ring_sums_ranges_and_reuses_slots() -> None:
    ring = Ring(size=4, fields=2, number=10)
    ring.add(10, 0, 1.0)
    ring.add(11, 0, 2.0)
    ring.add(11, 1, 5.0)
    ring.add(13, 0, 4.0)
    assert ring.total(0, 10, 13) == 7.0
    assert ring.total(0, 11, 12) == 2.0
    assert ring.total(1, 10, 13) == 5.0
    ring.add(14, 0, 8.0)  # reuses bucket 10's slot: 10 is gone, both fields reset
    assert ring.total(0, 10, 10) == 0.0
    assert ring.total(0, 11, 14) == 14.0
    assert (ring.first, ring.last) == (10, 14)


def test_ring_ignores_buckets_older_than_it_holds_and_clamps_long_ranges() -> None:
    ring = Ring(size=3, fields=1, number=0)
    ring.add(5, 0, 1.0)
    ring.add(2, 0, 9.0)  # slot of 5, but older: ignored rather than wiping bucket 5
    assert ring.total(0, 0, 5) == 1.0
    assert ring.total(0, -100, 6) == 1.0  # only the last 3 buckets are looked at
    assert ring.total(0, -100, 100) == 0.0
    ring.add(4, 0, 2.0)
    assert ring.total(0, 3, 5) == 3.0


def test_clock_buckets_are_a_fifth_of_the_window_and_coverage_counts_the_partial_one() -> None:
    clock = Clock(300.0)
    assert clock.width == 60.0
    assert clock.bucket(59.9) == 0 and clock.bucket(60.0) == 1
    assert clock.window_start(610.0) == 6  # buckets 6..10, the last one 10 s old
    assert clock.covered(610.0) == pytest.approx(250.0)
    assert clock.covered(659.9) == pytest.approx(299.9)
    assert clock.covered(660.0) == pytest.approx(240.0)  # bucket 11 just began


# --- spend rate ------------------------------------------------------------------------


def test_runaway_job_over_a_steady_baseline_alerts_with_its_ratio() -> None:
    rate = spend_rate()
    steady(rate, KEY, 0.30, 0, 3600)  # an hour at $0.30/min
    assert rate.evaluate(3600) == []
    steady(rate, KEY, 6.00, 3600, 3720)  # then $6/min for two minutes
    alerts = {(a.scope, a.scope_id): a for a in rate.evaluate(3720)}
    assert set(alerts) == {("key", "key-1"), ("team", "red")}
    alert = alerts[("key", "key-1")]
    assert alert.kind == "spend_rate" and alert.severity == "warning"
    assert alert.dedup_key == "spend_rate:key:key-1:300s"
    # The window (buckets 58..62, 4 whole minutes and the current one just begun) holds
    # 2 min at $0.30 and 2 min at $6.
    assert alert.values["window_usd"] == pytest.approx(12.6)
    assert alert.values["window_usd_per_min"] == pytest.approx(12.6 / 4)
    assert alert.values["baseline_usd_per_min"] == pytest.approx(0.30)
    assert alert.values["ratio"] == pytest.approx(12.6 / 4 / 0.30, rel=1e-3)
    assert "key key-1 is spending $3.15/min over the last 5m" in alert.message
    assert "10.5x its baseline of $0.30/min over the 1h before" in alert.message


def test_a_rotated_key_keeps_its_baseline_window_and_alert_under_its_chains_first_id() -> None:
    # A key's principal carries its rotation chain's first id (``lineage``): the key made by
    # a rotation is the same logical key, so its spend continues the old key's buckets.
    old = Principal(kind="key", id="key-1", lineage="key-1")
    rotated = Principal(kind="key", id="key-9", lineage="key-1")
    rate = spend_rate()
    steady(rate, old, 0.30, 0, 3600)  # an hour at $0.30/min on the old secret
    steady(rate, rotated, 6.00, 3600, 3720)  # then the new secret runs away
    [alert] = rate.evaluate(3720)
    assert (alert.scope, alert.scope_id) == ("key", "key-1")
    assert alert.dedup_key == "spend_rate:key:key-1:300s"
    # The window holds the old secret's 2 min at $0.30 and the new one's 2 min at $6,
    # judged against the old secret's hour.
    assert alert.values["window_usd"] == pytest.approx(12.6)
    assert alert.values["baseline_usd_per_min"] == pytest.approx(0.30)
    assert rate.tracked() == 1


def test_rate_at_the_factor_or_under_the_floor_does_not_alert() -> None:
    rate = spend_rate(min_usd=5.0)
    steady(rate, KEY, 0.30, 0, 3600)
    steady(rate, KEY, 1.20, 3600, 3900)  # 4x: under the factor
    assert rate.evaluate(3900) == []
    steady(rate, LONER, 0.001, 0, 3600)  # a quiet key
    steady(rate, LONER, 0.50, 3600, 3900)  # 500x its habit, but $2.50 in the window
    assert rate.evaluate(3900) == []
    steady(rate, LONER, 2.0, 3900, 4200)  # now past the $5 floor too
    assert [a.scope_id for a in rate.evaluate(4200)] == ["key-3"]


def test_without_a_baseline_only_max_usd_per_window_alerts() -> None:
    plain = spend_rate()
    steady(plain, KEY, 100.0, 0, 120)  # a brand-new key spending fast: nothing to compare
    assert plain.evaluate(120) == []
    capped = spend_rate(max_usd_per_window=50.0, scopes=["key"])
    steady(capped, KEY, 20.0, 0, 120)  # $40 in the window: under the cap
    assert capped.evaluate(120) == []
    steady(capped, KEY, 20.0, 120, 180)
    [alert] = capped.evaluate(180)
    assert alert.values["window_usd"] == pytest.approx(60.0)
    assert alert.values["max_usd_per_window"] == 50.0
    assert "with no spend in the 1h before (more than $50.00 a window)" in alert.message


def test_young_scope_is_compared_with_the_time_it_was_seen_not_an_hour_of_zeros() -> None:
    rate = spend_rate(scopes=["key"])
    steady(rate, KEY, 2.0, 0, 600)  # started ten minutes ago, steady since
    assert rate.evaluate(600) == []
    steady(rate, KEY, 20.0, 600, 720)
    [alert] = rate.evaluate(720)
    assert alert.values["baseline_usd_per_min"] == pytest.approx(2.0)


def test_idle_scopes_are_dropped_and_team_less_principals_skip_the_team_scope() -> None:
    rate = spend_rate()
    rate.record(KEY, 0.5, 0.0)
    rate.record(LONER, 0.5, 0.0)
    rate.record(OTHER, 0.5, 2000.0)
    assert rate.tracked() == 4  # key-1, key-3, key-2 and team red
    rate.evaluate(3600 + 300 + 59)
    assert rate.tracked() == 4
    rate.evaluate(3600 + 300 + 60)  # key-1 and key-3 idle for window + baseline
    assert rate.tracked() == 2


# --- error storms ----------------------------------------------------------------------

TIMEOUTS = UpstreamTimeouts(connect=1.0, first_byte=1.0, total=5.0)
A = Deployment(id="dep-a", provider="openai", model="m", api_base="http://a", timeouts=TIMEOUTS)
B = Deployment(id="dep-b", provider="openai", model="m", api_base="http://b", timeouts=TIMEOUTS)


def storms(**fields: object) -> ErrorStorms:
    settings = {"window": 60, "min_attempts": 10, "error_ratio": 0.5, **fields}
    return ErrorStorms(ErrorStormConfig.model_validate(settings), wall=lambda: 1_000.0)


def failed(deployment: Deployment, error: Exception | None = None) -> Attempt:
    attempt = Attempt(deployment, 0.0)
    attempt.error = error or UpstreamUnavailable("connection refused")  # type: ignore[assignment]
    return attempt


def test_storm_needs_min_attempts_and_the_error_ratio() -> None:
    book = storms()
    for i in range(9):
        book.record([failed(A)], 100.0 + i)
    assert book.evaluate(110.0) == []  # 9 attempts: not enough to judge
    book.record([Attempt(A, 0.0)], 110.0)
    [alert] = book.evaluate(111.0)  # 9 of 10 failed
    assert (alert.kind, alert.scope, alert.scope_id, alert.status) == (
        "error_storm",
        "deployment",
        "dep-a",
        "firing",
    )
    assert alert.values["attempts"] == 10 and alert.values["errors"] == 9
    assert alert.values["last_error"] == "UpstreamUnavailable (502)"
    assert "deployment dep-a is failing: 9 of 10 attempts failed (90%) in the last 1m" in (
        alert.message
    )
    healthy = storms()
    for i in range(20):
        healthy.record([failed(A) if i < 9 else Attempt(A, 0.0)], 100.0 + i)
    assert healthy.evaluate(120.0) == []  # 45%


def test_caller_faults_are_not_the_deployments_and_fallbacks_count_for_the_one_left() -> None:
    book = storms(min_fallbacks=3)
    for i in range(12):
        book.record([failed(A, InvalidRequest("bad field"))], 100.0 + i)
    assert book.evaluate(115.0) == []
    for i in range(3):
        book.record([failed(A, UpstreamStatusError(503, "busy")), Attempt(B, 0.0)], 116.0 + i)
    [alert] = book.evaluate(120.0)
    assert alert.scope_id == "dep-a"
    assert alert.values["fallbacks"] == 3 and alert.values["errors"] == 3
    assert "3 requests fell back to another deployment" in alert.message
    assert "last error UpstreamStatusError (503)" in alert.message


def test_storm_repeats_while_it_lasts_then_resolves_once_attempts_succeed() -> None:
    book = storms(min_attempts=5)
    for i in range(6):
        book.record([failed(A)], 100.0 + i)
    assert [a.status for a in book.evaluate(106.0)] == ["firing"]
    assert [a.status for a in book.evaluate(130.0)] == ["firing"]
    assert book.evaluate(200.0) == []  # nothing tried since: no news either way
    assert book.in_storm() == {"dep-a"}
    book.record([failed(A)], 201.0)
    assert book.evaluate(202.0) == []  # one failure: under min_attempts, not recovered
    book.record([Attempt(A, 0.0)], 203.0)
    book.record([Attempt(A, 0.0)], 204.0)
    [resolved] = book.evaluate(205.0)  # 1 of 3 failed: under the ratio
    assert resolved.status == "resolved" and resolved.severity == "info"
    assert resolved.dedup_key == "error_storm:deployment:dep-a:60s"
    assert book.in_storm() == frozenset()
    assert book.evaluate(206.0) == []


def test_idle_deployments_out_of_a_storm_are_dropped() -> None:
    book = storms()
    book.record([Attempt(A, 0.0), Attempt(B, 0.0)], 100.0)
    assert book.evaluate(155.9) == []  # 12-s buckets: the attempts' bucket 8 starts the window
    assert book._rings.keys() == {"dep-a", "dep-b"}
    book.evaluate(156.0)  # bucket 9 starts it
    assert book._rings == {}


def test_a_reload_drops_the_storm_and_buckets_of_deployments_it_removed() -> None:
    # A removed deployment gets no attempts: its storm stayed, and its buckets, for good.
    book = storms(min_attempts=5)
    for i in range(6):
        book.record([failed(A), Attempt(B, 0.0)], 100.0 + i)
    assert [a.scope_id for a in book.evaluate(106.0)] == ["dep-a"]
    book.keep({"dep-b"})
    assert book.in_storm() == frozenset()
    assert book._rings.keys() == {"dep-b"} and book._last_error == {}
    assert book.evaluate(107.0) == []
