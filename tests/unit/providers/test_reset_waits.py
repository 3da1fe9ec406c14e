"""OpenAI's ``x-ratelimit-reset-*`` headers (Go durations) read as the wait a 429 asks for."""

from __future__ import annotations

import pytest

from tollway.providers.retry_waits import _duration, reset_wait


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("1s", 1.0), ("6m0s", 360.0), ("20ms", 0.02), ("1h2m3.5s", 3723.5), ("0s", 0.0),
     (" 1.5s ", 1.5), (".5s", 0.5), ("250us", 0.00025), ("2µs", 0.000002), ("7ns", 7e-9)],
)  # fmt: skip
def test_a_go_duration_is_read_in_seconds(value: str, seconds: float) -> None:
    assert _duration(value) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "value", ["garbage", "", "1", "1.5", "s", "1x", "1s garbage", "garbage 1s", "-1s", "1d", "1S"]
)
def test_what_is_no_go_duration_is_none(value: str) -> None:
    assert _duration(value) is None


def test_the_wait_is_the_reset_of_the_spent_limit() -> None:
    headers = {
        "x-ratelimit-remaining-requests": "59",
        "x-ratelimit-reset-requests": "1s",
        "x-ratelimit-remaining-tokens": "0",
        "x-ratelimit-reset-tokens": "6m0s",
    }
    assert reset_wait(headers) == "360"
    headers["x-ratelimit-remaining-tokens"] = "10"
    headers["x-ratelimit-remaining-requests"] = "0"
    assert reset_wait(headers) == "1"


def test_without_a_spent_limit_the_wait_is_the_later_reset() -> None:
    headers = {"x-ratelimit-reset-requests": "20ms", "x-ratelimit-reset-tokens": "1h2m3.5s"}
    assert reset_wait(headers) == "3723.5"


def test_garbage_resets_are_no_wait() -> None:
    assert reset_wait({"x-ratelimit-reset-tokens": "soon"}) is None
    assert reset_wait({}) is None
