"""When every candidate is busy, the client is told the soonest ``retry-after`` among them."""

from __future__ import annotations

import email.utils
import time

from tollway.core.errors import wait_headers
from tollway.core.pipeline import _sooner


def test_the_soonest_of_delta_seconds_and_http_dates_wins() -> None:
    in_a_minute = email.utils.formatdate(time.time() + 60, usegmt=True)
    soonest = None
    for retry_after in ("30", in_a_minute, None, "not a time", "4", "12"):
        soonest = _sooner(soonest, retry_after)
    assert soonest is not None and soonest[1] == "4"
    after_a_minute = _sooner(_sooner(None, "120"), in_a_minute)
    assert after_a_minute is not None and after_a_minute[1] == in_a_minute


def test_a_header_that_is_no_time_is_passed_over() -> None:
    assert _sooner(None, "soon") is None
    assert _sooner((3.0, "3"), "") == (3.0, "3")


def test_a_wait_known_to_the_millisecond_is_told_in_both_headers() -> None:
    assert wait_headers("1.5") == {"retry-after": "2", "retry-after-ms": "1500"}
    assert wait_headers("30") == {"retry-after": "30", "retry-after-ms": "30000"}
    assert wait_headers("0.0004") == {"retry-after": "1", "retry-after-ms": "1"}
    in_a_minute = email.utils.formatdate(time.time() + 60, usegmt=True)
    assert wait_headers(in_a_minute) == {"retry-after": in_a_minute}  # no millisecond in it
    assert wait_headers("1e306") == {"retry-after": "1e306"}  # too long to say in ms
