"""The waits the gateway's own 429s tell: a bucket's to the millisecond, a budget's none."""

from __future__ import annotations

from tollway.core.errors import wait_value
from tollway.limits.backend import Refusal
from tollway.limits.refusals import refused


def test_a_rate_limit_refusal_says_its_wait_to_the_millisecond() -> None:
    error = refused(Refusal("rate_limit_exceeded", "key:k1", 0.12))
    assert error.headers == {"retry-after": "1", "retry-after-ms": "120"}
    error = refused(Refusal("rate_limit_exceeded", "model:m", 2.0001))
    assert error.headers == {"retry-after": "3", "retry-after-ms": "2001"}
    # A bucket already refilled by the time it is told: come back at once, not at 0.
    error = refused(Refusal("rate_limit_exceeded", "model:m", 0.0))
    assert error.headers == {"retry-after": "1", "retry-after-ms": "1"}


def test_a_budget_or_concurrency_refusal_promises_no_wait() -> None:
    # In-flight requests may free either at any moment; a budget's period end is no promise.
    assert refused(Refusal("budget_exceeded", "key:k1", None, 0)).headers == {}
    assert refused(Refusal("rate_limit_exceeded", "key:k1", None)).headers == {}


def test_a_measured_wait_is_rounded_up_to_the_millisecond() -> None:
    assert wait_value(0.2) == "0.2"  # not 0.201 from 0.2 * 1000 in binary
    assert wait_value(0.2000001) == "0.201"
    assert wait_value(1.5) == "1.5"
    assert wait_value(-3.0) == "0.001"
