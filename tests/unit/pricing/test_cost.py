"""Cost by each provider's billing rules, and the catalog that prices deployments."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tollway.config.defaults import default_settings
from tollway.core.types import Price, PriceTier, Usage
from tollway.pricing.catalog import PriceCatalog, price_from_row
from tollway.pricing.cost import cost_usd, worst_case_usd
from tollway.routing.table import build_routing_table

GPT_4O = Price(input=2.50, cached_input=1.25, output=10.00)
SONNET = Price(
    input=3.00,
    cached_input=0.30,
    cache_write=3.75,
    cache_write_1h=6.00,
    output=15.00,
    tiers=(
        PriceTier(
            200_000, input=6.00, output=22.50, cached_input=0.60, cache_write=7.50,
            cache_write_1h=12.00,
        ),
    ),
)  # fmt: skip


def test_plain_input_and_output() -> None:
    assert cost_usd(GPT_4O, Usage(1_000_000, 1_000_000)) == pytest.approx(12.50)


def test_cache_reads_are_billed_at_the_cached_rate_not_the_input_rate() -> None:
    usage = Usage(input_tokens=10_000, output_tokens=0, cached_input_tokens=8_000)
    # 2,000 fresh at 2.50 and 8,000 cached at 1.25 per 1M.
    assert cost_usd(GPT_4O, usage) == pytest.approx((2_000 * 2.50 + 8_000 * 1.25) / 1e6)


def test_cache_writes_are_billed_at_the_write_rate() -> None:
    usage = Usage(input_tokens=5_000, output_tokens=100, cache_write_tokens=4_000)
    expected = (1_000 * 3.00 + 4_000 * 3.75 + 100 * 15.00) / 1e6
    assert cost_usd(SONNET, usage) == pytest.approx(expected)


def test_one_hour_cache_writes_are_billed_at_their_own_rate() -> None:
    usage = Usage(
        input_tokens=5_000, output_tokens=100, cache_write_tokens=4_000, cache_write_1h_tokens=3_000
    )
    expected = (1_000 * 3.00 + 1_000 * 3.75 + 3_000 * 6.00 + 100 * 15.00) / 1e6
    assert cost_usd(SONNET, usage) == pytest.approx(expected)
    # Above the long-context threshold, at the tier's one-hour rate.
    usage = Usage(input_tokens=300_000, cache_write_tokens=300_000, cache_write_1h_tokens=300_000)
    assert cost_usd(SONNET, usage) == pytest.approx(300_000 * 12.00 / 1e6)
    # A price without a one-hour rate bills them as other writes.
    plain = Price(input=3.00, cache_write=3.75, output=15.00)
    assert cost_usd(plain, usage) == pytest.approx(300_000 * 3.75 / 1e6)


def test_reasoning_tokens_are_part_of_output_and_billed_once() -> None:
    o3 = Price(input=2.00, output=8.00)
    usage = Usage(input_tokens=100, output_tokens=1_000, reasoning_tokens=800)
    assert cost_usd(o3, usage) == pytest.approx((100 * 2.00 + 1_000 * 8.00) / 1e6)


def test_a_separate_reasoning_rate_applies_to_reasoning_tokens_only() -> None:
    price = Price(input=1.00, output=4.00, reasoning=3.00)
    usage = Usage(input_tokens=0, output_tokens=1_000, reasoning_tokens=600)
    assert cost_usd(price, usage) == pytest.approx((400 * 4.00 + 600 * 3.00) / 1e6)


def test_long_context_tier_prices_the_whole_request() -> None:
    below = Usage(input_tokens=200_000, output_tokens=1_000)
    above = Usage(input_tokens=200_001, output_tokens=1_000, cached_input_tokens=100_000)
    assert cost_usd(SONNET, below) == pytest.approx((200_000 * 3.00 + 1_000 * 15.00) / 1e6)
    expected = (100_001 * 6.00 + 100_000 * 0.60 + 1_000 * 22.50) / 1e6
    assert cost_usd(SONNET, above) == pytest.approx(expected)


def test_gemini_pro_tier_from_the_catalog() -> None:
    price = PriceCatalog.load().lookup("vertex_ai", "gemini-2.5-pro")
    assert price is not None
    long_prompt = Usage(input_tokens=300_000, output_tokens=10_000)
    assert cost_usd(price, long_prompt) == pytest.approx((300_000 * 2.50 + 10_000 * 15.00) / 1e6)


def test_per_image_and_per_request_fees() -> None:
    price = Price(input=1.0, output=1.0, per_image=0.002, per_request=0.01)
    assert cost_usd(price, Usage(0, 0), images=3) == pytest.approx(0.016)


@given(
    st.integers(0, 2_000_000),
    st.integers(0, 100_000),
    st.integers(0, 100),
    st.integers(0, 100),
    st.integers(0, 100),
)
def test_the_worst_case_is_never_below_what_the_answer_costs(
    input_tokens: int, max_output: int, cached_pct: int, written_pct: int, reasoning_pct: int
) -> None:
    cached = input_tokens * cached_pct // 100
    written = (input_tokens - cached) * written_pct // 100
    for long_writes in (0, written // 2, written):
        _check_worst_case(input_tokens, max_output, cached, written, long_writes, reasoning_pct)


def _check_worst_case(
    input_tokens: int, max_output: int, cached: int, written: int, long_writes: int,
    reasoning_pct: int,
) -> None:  # fmt: skip
    for price in (GPT_4O, SONNET, Price(input=1.0, output=2.0, reasoning=5.0)):
        usage = Usage(
            input_tokens=input_tokens,
            output_tokens=max_output,
            cached_input_tokens=cached,
            cache_write_tokens=written,
            reasoning_tokens=max_output * reasoning_pct // 100,
            cache_write_1h_tokens=long_writes,
        )
        assert cost_usd(price, usage) <= worst_case_usd(price, input_tokens, max_output) + 1e-12


def test_catalog_lookups_exact_glob_alias_and_any() -> None:
    catalog = PriceCatalog.load()
    assert catalog.lookup("openai", "gpt-4o") == catalog.lookup("azure_openai", "gpt-4o")
    dated = catalog.lookup("openai", "gpt-4o-2024-11-20")
    assert dated is not None and dated.input == 2.50
    mini = catalog.lookup("openai", "gpt-4o-mini-2024-07-18")
    assert mini is not None and mini.input == 0.15  # the more specific glob comes first
    profile = catalog.lookup("bedrock", "us.anthropic.claude-sonnet-4-5-20250929-v1:0")
    assert profile is not None and profile.cache_write == 3.75
    sim = catalog.lookup("anthropic", "sim-claude")
    assert sim is not None and sim.output == 15.0
    assert catalog.lookup("openai", "no-such-model") is None
    assert catalog.version


# The embedded default's Claude 5.5 names: no published price could be verified for them.
UNPRICED_DEFAULTS = {"claude-opus-5-5", "claude-sonnet-5-5", "claude-haiku-5-5"}


def test_the_default_models_of_real_providers_are_priced_by_the_catalog() -> None:
    settings = default_settings({"OPENAI_API_KEY": "k", "ANTHROPIC_API_KEY": "k"})
    table = build_routing_table(settings, "http://127.0.0.1:1", PriceCatalog.load())
    unpriced = {d.model for g in table.groups for d in g.deployments if d.price is None}
    assert unpriced == UNPRICED_DEFAULTS


@pytest.mark.parametrize(
    ("provider", "model", "rates"),
    [
        # Newer models a glob of an older one priced wrongly, or no row priced at all.
        ("anthropic", "claude-opus-4-8", (5.0, 25.0)),
        ("anthropic", "claude-opus-4-6", (5.0, 25.0)),
        ("anthropic", "claude-sonnet-4-6", (3.0, 15.0)),
        ("openai", "gpt-5-pro", (15.0, 120.0)),
        ("openai", "gpt-5.1", (1.25, 10.0)),
        ("openai", "gpt-5.2", (1.75, 14.0)),
        ("openai", "gpt-5-mini-2025-08-07", (0.25, 2.0)),
    ],
)
def test_newer_models_have_their_own_published_rates(
    provider: str, model: str, rates: tuple[float, float]
) -> None:
    price = PriceCatalog.load().lookup(provider, model)
    assert price is not None and (price.input, price.output) == rates
    assert not price.tiers  # Sonnet 4.6 has no long-context surcharge, unlike 4.5


def test_every_catalog_row_is_sane() -> None:
    for entry in PriceCatalog.load().entries():
        price = entry.price
        assert price.input >= 0 and price.output >= 0, entry
        if price.cached_input is not None:
            assert price.cached_input <= price.input, entry
        if price.cache_write_1h is not None:
            assert price.cache_write_1h >= (price.cache_write or price.input), entry
        for tier in price.tiers:
            assert tier.input >= price.input, entry


def test_a_negative_price_is_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        price_from_row({"input": 1, "output": 1, "cached_input": -1}, "test")
