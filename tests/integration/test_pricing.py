"""What requests cost, through a running gateway: every answer says, streams included."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import anthropic
import httpx
import openai
import pytest

from tests.conftest import UPSTREAM_KEY
from tests.support import CLIENT_KEY, running_gateway

ADMIN = {"Authorization": f"Bearer {CLIENT_KEY}"}
HI = [{"role": "user", "content": "What does a toll booth cost to run?"}]
# The catalog's made-up prices for the simulator's models (USD per 1M tokens).
SIM_CHAT = (1.00, 4.00)
SIM_CLAUDE = (3.00, 15.00)
SIM_EMBED = 0.02
# The catalog's claude-sonnet-4-5: input, 5-minute and 1-hour cache writes, output.
SONNET = {"input": 3.00, "5m": 3.75, "1h": 6.00, "output": 15.00}
# Claude Sonnet 4.5 on Bedrock (an inference profile id), at the same rates.
BEDROCK_SONNET = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"


@pytest.fixture(scope="module")
def priced(log_dir: Path, simulator_url: str) -> Iterator[str]:
    def deployment(model: str, provider: str = "openai", **extra: object) -> dict[str, object]:
        base = simulator_url + ("/v1" if provider == "openai" else "")
        return {"provider": provider, "model": model, "api_base": base,
                "api_key": "env:TEST_UPSTREAM_KEY", **extra}  # fmt: skip

    config = {
        "models": [
            {"name": "catalog-priced", "deployments": [deployment("sim-chat")]},
            {"name": "self-hosted", "deployments": [
                deployment("sim-chat", price={"input": 0, "output": 0})]},
            {"name": "negotiated", "deployments": [
                deployment("sim-chat", price={"input": 0.5, "output": 2.0})]},
            {"name": "claude", "deployments": [deployment("sim-claude", "anthropic")]},
            {"name": "sonnet", "deployments": [deployment("claude-sonnet-4-5", "anthropic")]},
            {"name": "bedrock-sonnet", "deployments": [
                {**deployment(BEDROCK_SONNET, "bedrock"), "region": "us-east-1"}]},
            {"name": "unpriced", "deployments": [deployment("llama-local-7b")]},
            {"name": "embed", "kind": "embedding", "deployments": [deployment("sim-embed")]},
        ]
    }  # fmt: skip
    with running_gateway(log_dir, config, {"TEST_UPSTREAM_KEY": UPSTREAM_KEY}) as (url, proc):
        yield url
        # A warning, not a note: budgets cannot bound what costs nothing.
        warned = [
            line for line in proc.output().splitlines() if "llama-local-7b) has no price" in line
        ]
        assert warned and all(" WARNING tollway: " in line for line in warned)


def _client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key=CLIENT_KEY, max_retries=0)


@pytest.mark.parametrize(
    ("model", "rates"),
    [("catalog-priced", SIM_CHAT), ("negotiated", (0.5, 2.0)), ("self-hosted", (0.0, 0.0))],
)
def test_the_cost_header_prices_the_providers_usage(
    priced: str, model: str, rates: tuple[float, float]
) -> None:
    raw = _client(priced).chat.completions.with_raw_response.create(
        model=model, messages=HI, max_tokens=12
    )
    usage = raw.parse().usage
    assert usage is not None
    expected = (usage.prompt_tokens * rates[0] + usage.completion_tokens * rates[1]) / 1e6
    assert float(raw.headers["x-tollway-cost-usd"]) == pytest.approx(expected, abs=1e-10)


def test_a_stream_costs_what_the_same_answer_costs_whole(priced: str) -> None:
    body = {"model": "catalog-priced", "messages": HI, "max_tokens": 12}
    whole = httpx.post(priced + "/v1/chat/completions", json=body, headers=ADMIN)
    streamed = httpx.post(
        priced + "/v1/chat/completions", json={**body, "stream": True}, headers=ADMIN
    )
    comments = [line for line in streamed.text.splitlines() if line.startswith(": x-tollway")]
    assert len(comments) == 1
    assert streamed.text.index("data: [DONE]") < streamed.text.index(comments[0])
    assert comments[0].split("=", 1)[1] == whole.headers["x-tollway-cost-usd"]
    assert float(whole.headers["x-tollway-cost-usd"]) > 0


def test_sdks_ignore_the_cost_comment_at_the_end_of_a_stream(priced: str) -> None:
    stream = _client(priced).chat.completions.create(
        model="catalog-priced", messages=HI, max_tokens=6, stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    claude = anthropic.Anthropic(base_url=priced, api_key=CLIENT_KEY, max_retries=0)
    with claude.messages.stream(model="claude", messages=HI, max_tokens=6) as events:
        final = events.get_final_message()
    assert final.content and final.usage.output_tokens > 0


def test_anthropic_route_and_embeddings_carry_the_cost(priced: str) -> None:
    answer = httpx.post(
        priced + "/v1/messages",
        json={"model": "claude", "messages": HI, "max_tokens": 10},
        headers={"x-api-key": CLIENT_KEY, "anthropic-version": "2023-06-01"},
    )
    usage = answer.json()["usage"]
    expected = usage["input_tokens"] * SIM_CLAUDE[0] + usage["output_tokens"] * SIM_CLAUDE[1]
    assert float(answer.headers["x-tollway-cost-usd"]) == pytest.approx(expected / 1e6)
    raw = _client(priced).embeddings.with_raw_response.create(model="embed", input=["a", "b c"])
    tokens = raw.parse().usage.prompt_tokens
    assert float(raw.headers["x-tollway-cost-usd"]) == pytest.approx(tokens * SIM_EMBED / 1e6)


@pytest.mark.parametrize("model", ["sonnet", "bedrock-sonnet"])
@pytest.mark.parametrize("ttl", ["5m", "1h"])
def test_cache_writes_are_billed_at_the_rate_of_their_time_to_live(
    priced: str, ttl: str, model: str
) -> None:
    # Anthropic bills a prompt written to the cache for an hour at twice the input rate, not
    # the 1.25x of a five-minute write; the gateway billed every write at 1.25x, and reserved
    # no more, so a budget could be overspent by the difference. Claude on Bedrock bills
    # the same, and says the split in usage.cacheDetails, which the gateway did not read.
    claude = anthropic.Anthropic(base_url=priced, api_key=CLIENT_KEY, max_retries=0)
    messages = [{"role": "user", "content": "a long shared context " * 300}]
    control = {"type": "ephemeral", "ttl": ttl}
    raw = claude.messages.with_raw_response.create(
        model=model, messages=messages, max_tokens=10, extra_body={"cache_control": control}
    )
    usage = raw.parse().usage
    written = usage.cache_creation_input_tokens or 0
    assert written > 1000 and usage.input_tokens == 0
    if ttl == "1h":  # said as Anthropic splits its writes
        assert usage.cache_creation is not None
        assert usage.cache_creation.ephemeral_1h_input_tokens == written
    expected = (written * SONNET[ttl] + usage.output_tokens * SONNET["output"]) / 1e6
    cost = float(raw.headers["x-tollway-cost-usd"])
    assert cost == pytest.approx(expected, abs=1e-9)
    body = {"model": model, "messages": messages, "max_tokens": 10, "cache_control": control}
    streamed = httpx.post(
        priced + "/v1/messages",
        json={**body, "stream": True},
        headers={"x-api-key": CLIENT_KEY, "anthropic-version": "2023-06-01"},
    )
    comments = [line for line in streamed.text.splitlines() if line.startswith(": x-tollway")]
    assert comments and float(comments[0].split("=", 1)[1]) == pytest.approx(cost, abs=1e-9)
    # What admission reserves for the request covers it.
    del body["cache_control"]
    estimate = httpx.post(priced + "/v1/estimate", json=body, headers=ADMIN).json()
    assert estimate["cost_usd"]["max"] >= cost


def test_an_unpriced_deployment_costs_nothing_and_says_so(priced: str) -> None:
    raw = _client(priced).chat.completions.with_raw_response.create(
        model="unpriced", messages=HI, max_tokens=4
    )
    assert raw.headers["x-tollway-cost-usd"] == "0"


def test_prices_command_lists_the_catalog() -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "tollway", "prices", "--provider", "openai", "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert '"model": "gpt-4o"' in done.stdout and '"version"' in done.stdout
    missing = subprocess.run(
        [sys.executable, "-m", "tollway", "prices", "--model", "nothing-like-this"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert missing.returncode == 1
