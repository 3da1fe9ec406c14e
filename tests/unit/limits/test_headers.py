"""The budget header's dollars: exact decimal text from integer micro-dollars."""

from __future__ import annotations

import pytest

from tollway.limits.headers import usd


@pytest.mark.parametrize(
    ("micros", "text"),
    [
        (0, "0.000000"),
        (1, "0.000001"),
        (999_999, "0.999999"),
        (1_000_000, "1.000000"),
        (12_345_678, "12.345678"),
        (-5, "0.000000"),  # overspent (a stream that ran long): nothing left, never negative
        (2**53 + 1, "9007199254.740993"),  # past a float's exact integers: still to the micro
    ],
)
def test_usd_is_exact(micros: int, text: str) -> None:
    assert usd(micros) == text


def test_usd_matches_six_decimal_dollars_where_floats_are_exact() -> None:
    for micros in (7, 123_456, 4_999_999, 1_000_000_000, 987_654_321_012):
        assert usd(micros) == f"{micros / 1_000_000:.6f}"
