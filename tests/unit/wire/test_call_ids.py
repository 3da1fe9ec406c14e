"""Tool call ids another family made, as the target's API takes them (crossing.call_id_for)."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from tollway.wire.crossing import call_id_for

ANTHROPIC_ID = re.compile(r"[a-zA-Z0-9_-]+")


def test_an_id_that_fits_is_kept() -> None:
    for target in ("anthropic", "bedrock", "openai", "gemini"):
        assert (
            call_id_for("toolu_01A09q90qw90lq917835lq9", target) == "toolu_01A09q90qw90lq917835lq9"
        )
    assert call_id_for("functions.get_weather:0", "openai") == "functions.get_weather:0"
    assert call_id_for("functions.get_weather:0", "gemini") == "functions.get_weather:0"


@given(st.text(max_size=100))
def test_every_id_fits_and_the_same_id_always_becomes_the_same(call_id: str) -> None:
    for target, longest in (("anthropic", 64), ("bedrock", 64)):
        made = call_id_for(call_id, target)
        assert ANTHROPIC_ID.fullmatch(made) and len(made) <= longest
        assert call_id_for(call_id, target) == made
    assert 0 < len(call_id_for(call_id, "openai")) <= 40


def test_two_ids_that_differ_only_in_what_is_replaced_stay_apart() -> None:
    assert call_id_for("a.b", "anthropic") != call_id_for("a:b", "anthropic")
    long_id = "chatcmpl-tool-" + "0" * 40
    assert call_id_for(long_id + "1", "openai") != call_id_for(long_id + "2", "openai")
