"""Budgets through a real gateway: reservations, settlement, policies and the admin API.

Every request goes over HTTP to a ``tollway serve`` process, and from there to the simulated
provider; budgets and limits are set through the admin API as an operator would.
"""

from __future__ import annotations

import asyncio
import base64
import math
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.conftest import UPSTREAM_KEY
from tests.support import CLIENT_KEY, pdf, png, running_gateway, tollway_command

PIXEL = (  # a 1x1 PNG
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)
PRICEY = {"input": 1000.0, "output": 4000.0}  # USD per 1M tokens: cents per request
CHEAP = {"input": 1.0, "output": 2.0}
FRACTIONAL = {"input": 0.15, "output": 0.6}  # costs in fractions of a micro-dollar
MARGIN = 1.25  # 1 + limits.estimate_margin: the simulator's tokens are not OpenAI's
RESPONSES_WINDOW = 1000  # the context window of "pricey-responses"
COMPACTING_MAX_OUTPUT = 6000  # "pricey-compacting": more than limits.default_max_output
COMPACTING_WINDOW = 4200  # and its context window, reserved as a compaction's input


def budget_config(simulator_url: str) -> dict[str, Any]:
    base = f"{simulator_url}/v1"
    key = "env:TEST_UPSTREAM_KEY"
    responses_api = {
        "provider": "openai", "model": "gpt-4o", "api_base": base, "api_key": key,
        "price": PRICEY, "responses_api": True,
    }  # fmt: skip

    def openai_deployment(price: dict[str, float], **extra: Any) -> dict[str, Any]:
        return {
            "provider": "openai",
            "model": "sim-chat",
            "api_base": base,
            "api_key": key,
            "price": price,
            **extra,
        }

    return {
        "upstream": {
            "timeouts": {"connect": "2s", "first_byte": "5s", "total": "30s"},
            "forward_headers": ["x-sim-*"],  # latency and fault knobs of the simulator
        },
        "models": [
            {"name": "pricey", "deployments": [openai_deployment(PRICEY)]},
            {"name": "cheap", "deployments": [openai_deployment(CHEAP)]},
            {"name": "fractional", "deployments": [openai_deployment(FRACTIONAL)]},
            {
                "name": "cheap-falling",
                "deployments": [openai_deployment(CHEAP)],
                "fallbacks": ["pricey"],
            },
            {
                "name": "pricey-capped",
                "deployments": [openai_deployment({**PRICEY, "per_image": 0.01}, max_output=50)],
            },
            {
                "name": "pricey-pair",
                "deployments": [
                    openai_deployment(PRICEY, id="dep-a"),
                    openai_deployment(PRICEY, id="dep-b"),
                ],
                "strategy": "priority",
            },
            {
                "name": "pricey-claude",
                "deployments": [
                    {
                        "provider": "anthropic",
                        "model": "sim-chat",
                        "api_base": simulator_url,
                        "api_key": key,
                        "price": PRICEY,
                    }
                ],
            },
            {
                # OpenAI's Responses API, which keeps conversations: a continuation's earlier
                # turns are billed as input the gateway never sees.
                "name": "pricey-responses",
                "deployments": [{**responses_api, "context_window": RESPONSES_WINDOW}],
            },
            {
                # Compacts (/v1/responses/compact), which takes no output limit: its model's
                # max output, above limits.default_max_output, is all that bounds one.
                "name": "pricey-compacting",
                "deployments": [
                    {
                        **responses_api,
                        "max_output": COMPACTING_MAX_OUTPUT,
                        "context_window": COMPACTING_WINDOW,
                    }
                ],
            },
            {
                # A model of its own name: no context window in the catalog, none in config.
                "name": "windowless-responses",
                "deployments": [
                    {
                        "provider": "openai",
                        "model": "house-model",
                        "api_base": base,
                        "api_key": key,
                        "price": PRICEY,
                        "responses_api": True,
                    }
                ],
            },
            {
                "name": "embed",
                "kind": "embedding",
                "deployments": [
                    {
                        "provider": "openai",
                        "model": "sim-embed",
                        "api_base": base,
                        "api_key": key,
                        "price": {"input": 10000.0, "output": 0.0},
                    }
                ],
            },
        ],
        "limits": {"deployments": {"dep-a": {"rpm": 1}}, "spend_flush_interval": "1s"},
    }


@pytest.fixture(scope="module")
def gateway(log_dir: Path, simulator_url: str) -> Iterator[str]:
    env = {"TEST_UPSTREAM_KEY": UPSTREAM_KEY}
    with running_gateway(log_dir, budget_config(simulator_url), env) as (url, _):
        yield url


def admin(url: str, method: str, path: str, body: Any = None, status: int = 200) -> Any:
    response = httpx.request(
        method, url + path, json=body, headers={"authorization": f"Bearer {CLIENT_KEY}"}
    )
    assert response.status_code == status, response.text
    return response.json() if response.content else None


def new_key(url: str) -> tuple[str, str]:
    """A fresh virtual key: (its id, the key itself)."""
    created = admin(url, "POST", "/admin/keys", {"name": f"job-{uuid.uuid4().hex[:6]}"}, 201)
    return created["id"], created["key"]


def set_budget(url: str, key_id: str, limit_usd: float, **extra: Any) -> dict[str, Any]:
    body = {"scope": "key", "scope_id": key_id, "period": "day", "limit_usd": limit_usd, **extra}
    answer: dict[str, Any] = admin(url, "PUT", "/admin/budgets", body)
    return answer


def spend(url: str, key_id: str) -> dict[str, Any]:
    rows = admin(url, "GET", f"/admin/budgets?scope=key&scope_id={key_id}")["data"]
    assert len(rows) == 1
    row: dict[str, Any] = rows[0]
    return row


def test_looping_client_is_stopped_by_its_budget_with_spend_at_or_under_it(gateway: str) -> None:
    key_id, key = new_key(gateway)
    set_budget(gateway, key_id, 1.00)
    client = openai.OpenAI(base_url=gateway + "/v1", api_key=key, max_retries=0)
    costs: list[float] = []
    with pytest.raises(openai.RateLimitError) as caught:
        for _ in range(200):
            raw = client.chat.completions.with_raw_response.create(
                model="pricey", messages=[{"role": "user", "content": "loop again"}], max_tokens=40
            )
            costs.append(float(raw.headers["x-tollway-cost-usd"]))
            left = float(raw.headers["x-tollway-budget-remaining-usd"])
            assert left == pytest.approx(1.00 - sum(costs), abs=1e-5)
    assert caught.value.code == "budget_exceeded"
    assert "retry-after" not in caught.value.response.headers
    assert len(costs) >= 5 and all(c > 0 for c in costs)
    row = spend(gateway, key_id)
    assert row["spent_usd"] <= 1.00
    assert row["spent_usd"] == pytest.approx(sum(costs), abs=1e-5)
    assert row["reserved_usd"] == 0
    # Stopped only when one more worst case no longer fits: nothing is left unusable.
    worst = (30 * PRICEY["input"] + 40 * PRICEY["output"]) / 1e6
    assert row["remaining_usd"] < worst


def test_looping_client_is_stopped_by_tpm_before_its_budget(gateway: str) -> None:
    key_id, key = new_key(gateway)
    set_budget(gateway, key_id, 5.00)
    admin(gateway, "PUT", "/admin/limits", {"scope": "key", "scope_id": key_id, "tpm": 200})
    client = openai.OpenAI(base_url=gateway + "/v1", api_key=key, max_retries=0)
    ok = 0
    with pytest.raises(openai.RateLimitError) as caught:
        for _ in range(50):
            raw = client.chat.completions.with_raw_response.create(
                model="pricey", messages=[{"role": "user", "content": "loop"}], max_tokens=40
            )
            assert raw.headers["x-ratelimit-limit-tokens"] == "200"
            ok += 1
    assert caught.value.code == "rate_limit_exceeded"
    assert int(caught.value.response.headers["retry-after"]) >= 1
    assert ok >= 1
    assert 0 < spend(gateway, key_id)["spent_usd"] < 5.00
    admin(gateway, "DELETE", f"/admin/limits/key/{key_id}", status=204)


async def test_hundreds_of_concurrent_requests_never_overspend(gateway: str) -> None:
    key_id, key = new_key(gateway)
    set_budget(gateway, key_id, 0.75)
    client = openai.AsyncOpenAI(base_url=gateway + "/v1", api_key=key, max_retries=0)

    async def one(i: int) -> float | str:
        try:
            raw = await client.chat.completions.with_raw_response.create(
                model="pricey",
                messages=[{"role": "user", "content": f"request {i}"}],
                max_tokens=10 + i % 30,
                stream=i % 3 == 0,
            )
        except openai.RateLimitError as exc:
            return str(exc.code)
        if i % 3 == 0:
            async for _ in raw.parse():  # type: ignore[union-attr]
                pass
            return 0.0
        return float(raw.headers["x-tollway-cost-usd"])

    results = await asyncio.gather(*(one(i) for i in range(300)))
    await client.close()
    refused = [r for r in results if isinstance(r, str)]
    assert refused and set(refused) == {"budget_exceeded"}
    assert len(refused) < len(results)
    row = spend(gateway, key_id)
    assert 0.5 < row["spent_usd"] <= 0.75
    assert row["reserved_usd"] == 0


def test_stream_reserves_then_settles_its_actual_cost(gateway: str) -> None:
    key_id, key = new_key(gateway)
    set_budget(gateway, key_id, 5.0)
    client = openai.OpenAI(base_url=gateway + "/v1", api_key=key, max_retries=0)
    with client.chat.completions.with_streaming_response.create(
        model="pricey",
        messages=[{"role": "user", "content": "stream it"}],
        max_tokens=30,
        stream=True,
        stream_options={"include_usage": True},
    ) as response:
        # At the start only the reservation is known: the worst case is held.
        held = 5.0 - float(response.headers["x-tollway-budget-remaining-usd"])
        usage = None
        for chunk in response.parse():
            usage = chunk.usage or usage
    assert usage is not None
    cost = (
        usage.prompt_tokens * PRICEY["input"] + usage.completion_tokens * PRICEY["output"]
    ) / 1e6
    assert held >= cost
    row = spend(gateway, key_id)
    assert row["spent_usd"] == pytest.approx(cost, abs=1e-6)
    assert row["reserved_usd"] == 0


def test_a_request_without_max_tokens_is_capped_to_what_was_reserved(gateway: str) -> None:
    key_id, key = new_key(gateway)
    set_budget(gateway, key_id, 1000.0)
    raw = httpx.post(
        gateway + "/v1/chat/completions",
        headers={"authorization": f"Bearer {key}", "x-sim-output-tokens": "50000"},
        json={"model": "pricey", "messages": [{"role": "user", "content": "write a lot"}]},
        timeout=60,
    )
    assert raw.status_code == 200, raw.text
    assert raw.json()["usage"]["completion_tokens"] <= 4096


def test_shrink_policy_lowers_max_tokens_to_what_the_budget_pays_for(gateway: str) -> None:
    key_id, key = new_key(gateway)
    set_budget(gateway, key_id, 0.25, policy="shrink")
    client = openai.OpenAI(base_url=gateway + "/v1", api_key=key, max_retries=0)
    # 1000 output tokens would cost $4 at worst: far over the budget, so it is shrunk.
    raw = client.chat.completions.with_raw_response.create(
        model="pricey", messages=[{"role": "user", "content": "long answer"}], max_tokens=1000
    )
    shrunk = int(raw.headers["x-tollway-budget-max-tokens"])
    assert 0 < shrunk < 1000
    completion = raw.parse()
    assert completion.usage is not None and completion.usage.completion_tokens <= shrunk
    assert spend(gateway, key_id)["spent_usd"] <= 0.25
    # Once nothing is left even for one output token, it is refused.
    with pytest.raises(openai.RateLimitError) as caught:
        for _ in range(20):
            client.chat.completions.create(
                model="pricey", messages=[{"role": "user", "content": "more"}], max_tokens=1000
            )
    assert caught.value.code == "budget_exceeded"
    assert spend(gateway, key_id)["spent_usd"] <= 0.25


def test_shrink_below_what_openais_responses_api_takes_is_a_budget_refusal(
    gateway: str, simulator_url: str
) -> None:
    # OpenAI's Responses API refuses max_output_tokens < 16 (a 400): a budget that pays for
    # fewer output tokens refuses the request, as one that pays for none, rather than send
    # OpenAI what it refuses.
    limit = 0.06  # the prompt's worst case and about a dozen output tokens at PRICEY
    chat_id, chat_key = new_key(gateway)
    set_budget(gateway, chat_id, limit, policy="shrink")
    chat = openai.OpenAI(base_url=gateway + "/v1", api_key=chat_key, max_retries=0)
    raw = chat.chat.completions.with_raw_response.create(
        model="pricey", messages=[{"role": "user", "content": "hi"}], max_tokens=1000
    )
    assert 1 <= int(raw.headers["x-tollway-budget-max-tokens"]) < 16  # Chat Completions takes it

    key_id, key = new_key(gateway)
    set_budget(gateway, key_id, limit, policy="shrink")
    client = openai.OpenAI(base_url=gateway + "/v1", api_key=key, max_retries=0)
    asked = f"too little left {uuid.uuid4().hex}"
    with pytest.raises(openai.RateLimitError) as caught:
        client.responses.create(model="pricey-responses", input=asked, max_output_tokens=1000)
    assert caught.value.code == "budget_exceeded"
    seen = httpx.get(simulator_url + "/_sim/requests").json()
    assert not [r for r in seen if asked in str(r["json"])]
    assert spend(gateway, key_id)["spent_usd"] == 0


def test_shrink_policy_lowers_claudes_thinking_budget_with_max_tokens(gateway: str) -> None:
    # Claude thinks within budget_tokens, below max_tokens: shrinking max_tokens to 1497 under
    # a thinking budget of 2000 sent a request Claude refuses (400 "max_tokens must be
    # greater than thinking.budget_tokens"), though the budget paid for an answer.
    key_id, key = new_key(gateway)
    set_budget(gateway, key_id, 6.0, policy="shrink")  # about 1,500 output tokens
    client = anthropic.Anthropic(base_url=gateway, api_key=key, max_retries=0)
    thinking: Any = {"type": "enabled", "budget_tokens": 2000}
    raw = client.messages.with_raw_response.create(
        model="pricey-claude",
        max_tokens=4000,
        thinking=thinking,
        messages=[{"role": "user", "content": "think it over"}],
    )
    shrunk = int(raw.headers["x-tollway-budget-max-tokens"])
    assert 1024 < shrunk < 2000
    message = raw.parse()
    assert message.content[0].type == "thinking"  # it still thought, within the new limit
    assert message.usage.output_tokens <= shrunk
    assert 0 < spend(gateway, key_id)["spent_usd"] <= 6.0
    # Where what is left leaves no room for Claude's least budget (1,024 tokens) below
    # max_tokens, the budget cannot pay for the request: refused as over the budget.
    poor_id, poor = new_key(gateway)
    set_budget(gateway, poor_id, 4.0, policy="shrink")  # about 1,000 output tokens
    broke = anthropic.Anthropic(base_url=gateway, api_key=poor, max_retries=0)
    with pytest.raises(anthropic.RateLimitError) as caught:
        broke.messages.create(
            model="pricey-claude",
            max_tokens=4000,
            thinking=thinking,
            messages=[{"role": "user", "content": "think it over"}],
        )
    body = caught.value.body
    assert isinstance(body, dict) and "Budget exceeded" in body["error"]["message"]
    assert spend(gateway, poor_id)["spent_usd"] == 0


def test_soft_limit_downgrades_to_the_cheaper_model(gateway: str) -> None:
    key_id, key = new_key(gateway)
    set_budget(gateway, key_id, 0.40, soft_limit=0.5, downgrade={"pricey": "cheap"})
    client = openai.OpenAI(base_url=gateway + "/v1", api_key=key, max_retries=0)
    served: list[str | None] = []
    for _ in range(12):
        raw = client.chat.completions.with_raw_response.create(
            model="pricey", messages=[{"role": "user", "content": "hi"}], max_tokens=30
        )
        served.append(raw.headers.get("x-tollway-downgraded-from"))
    assert served[0] is None
    assert served[-1] == "pricey"
    row = spend(gateway, key_id)
    assert 0.2 <= row["spent_usd"] < 0.40


def test_soft_limit_never_downgrades_to_a_model_the_key_may_not_use(gateway: str) -> None:
    created = admin(
        gateway, "POST", "/admin/keys", {"name": "pricey-only", "allowed_models": ["pricey"]}, 201
    )
    set_budget(gateway, created["id"], 0.40, soft_limit=0.5, downgrade={"pricey": "cheap"})
    client = openai.OpenAI(base_url=gateway + "/v1", api_key=created["key"], max_retries=0)
    served: list[str | None] = []
    with pytest.raises(openai.RateLimitError) as stopped:
        for _ in range(30):
            raw = client.chat.completions.with_raw_response.create(
                model="pricey", messages=[{"role": "user", "content": "hi"}], max_tokens=30
            )
            served.append(raw.headers.get("x-tollway-downgraded-from"))
    assert stopped.value.code == "budget_exceeded"  # the hard limit, on the model it may use
    assert len(served) > 2 and served == [None] * len(served)


def test_anthropic_sdk_gets_budget_refusal_in_its_own_dialect(gateway: str) -> None:
    key_id, key = new_key(gateway)
    set_budget(gateway, key_id, 0.01)
    client = anthropic.Anthropic(base_url=gateway, api_key=key, max_retries=0)
    with pytest.raises(anthropic.RateLimitError) as caught:
        client.messages.create(
            model="pricey-claude", max_tokens=100, messages=[{"role": "user", "content": "hi"}]
        )
    body = caught.value.body
    assert isinstance(body, dict) and body["type"] == "error"
    assert body["error"]["type"] == "rate_limit_error"
    assert "Budget exceeded" in body["error"]["message"]
    assert spend(gateway, key_id)["spent_usd"] == 0


def test_a_many_page_pdf_is_refused_by_a_budget_its_pages_would_overshoot(gateway: str) -> None:
    # 60 pages in 3 KB: the guess from the size said one page (some $3 reserved at these
    # prices), and the request reached the provider; 60 pages cost over $300.
    document = pdf(60, fan_out=10, object_streams=True)
    block = {
        "type": "document",
        "source": {
            "type": "base64",
            "media_type": "application/pdf",
            "data": base64.b64encode(document).decode(),
        },
    }
    messages: Any = [{"role": "user", "content": [block, {"type": "text", "text": "Sum up"}]}]
    key_id, key = new_key(gateway)
    set_budget(gateway, key_id, 100.0)
    client = anthropic.Anthropic(base_url=gateway, api_key=key, max_retries=0)
    with pytest.raises(anthropic.RateLimitError) as caught:
        client.messages.create(model="pricey-claude", max_tokens=100, messages=messages)
    body = caught.value.body
    assert isinstance(body, dict) and "Budget exceeded" in body["error"]["message"]
    assert spend(gateway, key_id)["spent_usd"] == 0
    # A one-page PDF, reserved as one page, is served within the same budget.
    block["source"]["data"] = base64.b64encode(pdf(1)).decode()
    answer = client.messages.create(model="pricey-claude", max_tokens=100, messages=messages)
    assert answer.content


def test_a_continuation_with_no_context_window_to_bound_it_is_refused_under_a_budget(
    gateway: str,
) -> None:
    free = openai.OpenAI(base_url=gateway + "/v1", api_key=CLIENT_KEY, max_retries=0)
    first = free.responses.create(
        model="windowless-responses", input="start a conversation", max_output_tokens=20
    )
    # Without a budget nothing needs bounding: the continuation is served.
    free.responses.create(
        model="windowless-responses",
        input="go on",
        max_output_tokens=20,
        previous_response_id=first.id,
    )
    key_id, key = new_key(gateway)
    set_budget(gateway, key_id, 100.0)
    client = openai.OpenAI(base_url=gateway + "/v1", api_key=key, max_retries=0)
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(
            model="windowless-responses",
            input="go on",
            max_output_tokens=20,
            previous_response_id=first.id,
        )
    assert caught.value.code == "cost_unbounded"
    body = caught.value.body
    assert isinstance(body, dict) and body["param"] == "previous_response_id"
    assert "context_window" in body["message"]
    # The request's own words are all it brings: served and charged.
    client.responses.create(model="windowless-responses", input="hello", max_output_tokens=20)
    assert 0 < spend(gateway, key_id)["spent_usd"] < 100.0


def test_embeddings_say_what_is_left_after_their_own_cost(gateway: str) -> None:
    key_id, key = new_key(gateway)
    set_budget(gateway, key_id, 10.0)
    client = openai.OpenAI(base_url=gateway + "/v1", api_key=key, max_retries=0)
    costs: list[float] = []
    for text in ("some text to embed", "and some more text to embed here"):
        raw = client.embeddings.with_raw_response.create(model="embed", input=text)
        costs.append(float(raw.headers["x-tollway-cost-usd"]))
        left = float(raw.headers["x-tollway-budget-remaining-usd"])
        assert left == pytest.approx(10.0 - sum(costs), abs=1e-6)


def test_embeddings_and_responses_are_charged_to_the_budget(gateway: str) -> None:
    key_id, key = new_key(gateway)
    set_budget(gateway, key_id, 10.0)
    client = openai.OpenAI(base_url=gateway + "/v1", api_key=key, max_retries=0)
    raw = client.embeddings.with_raw_response.create(model="embed", input="some text to embed")
    cost = float(raw.headers["x-tollway-cost-usd"])
    assert cost > 0
    assert float(raw.headers["x-tollway-budget-remaining-usd"]) <= 10.0
    client.responses.create(model="pricey", input="hello", max_output_tokens=20)
    assert spend(gateway, key_id)["spent_usd"] > cost


def test_a_continued_response_is_reserved_for_its_whole_context_and_never_overspends(
    gateway: str,
) -> None:
    key_id, key = new_key(gateway)
    client = openai.OpenAI(base_url=gateway + "/v1", api_key=key, max_retries=0)
    first = client.responses.with_raw_response.create(
        model="pricey-responses", input="start a long conversation", max_output_tokens=20
    )
    first_cost = float(first.headers["x-tollway-cost-usd"])
    # The upstream bills a continuation for every earlier turn as input: more than its own
    # `input`, which is all the gateway can count. A budget a little over what the next
    # turn's new words cost at worst must not let it through to spend past the limit.
    limit = 3.0 * first_cost
    set_budget(gateway, key_id, limit)
    costs: list[float] = []
    previous = first.parse().id
    with pytest.raises(openai.RateLimitError) as caught:
        for _ in range(30):
            raw = client.responses.with_raw_response.create(
                model="pricey-responses",
                input="and then, tell me more",
                max_output_tokens=20,
                previous_response_id=previous,
            )
            costs.append(float(raw.headers["x-tollway-cost-usd"]))
            previous = raw.parse().id
    assert caught.value.code == "budget_exceeded"
    row = wait_settled(gateway, key_id)
    assert row["spent_usd"] <= limit
    assert row["spent_usd"] == pytest.approx(sum(costs), abs=1e-6)
    # What is held while a continuation runs is its worst case: the deployment's whole
    # context window as input (all a call can hold), plus its output.
    roomy_id, roomy = new_key(gateway)
    set_budget(gateway, roomy_id, 100.0)
    streamer = openai.OpenAI(base_url=gateway + "/v1", api_key=roomy, max_retries=0)
    with streamer.responses.with_streaming_response.create(
        model="pricey-responses",
        input="and then?",
        max_output_tokens=20,
        previous_response_id=previous,
        stream=True,
    ) as response:
        held = 100.0 - float(response.headers["x-tollway-budget-remaining-usd"])
        for _ in response.iter_lines():
            pass
    worst = (RESPONSES_WINDOW * PRICEY["input"] + 20 * PRICEY["output"]) / 1e6
    assert held == pytest.approx(worst, abs=1e-6)


def test_a_compaction_never_spends_past_its_budget(gateway: str) -> None:
    # A compaction takes no output limit and none is sent: it was reserved for
    # limits.default_max_output (4096 tokens, ~$16.4 here, beside ~$4.2 for the context
    # window as input, as any request only the Responses API serves), which the upstream
    # never heard of, so one that generated 5500 tokens (~$22) was let in under a $21 budget
    # and spent past it. Reserved for its model's max output (6000 tokens, ~$24), it is
    # refused.
    key_id, key = new_key(gateway)
    set_budget(gateway, key_id, 21.0)
    client = openai.OpenAI(base_url=gateway + "/v1", api_key=key, max_retries=0)
    long_one = {"x-sim-compaction-tokens": "5500"}
    history: Any = [{"role": "user", "content": "a long conversation to compact"}]
    with pytest.raises(openai.RateLimitError) as caught:
        client.responses.compact(model="pricey-compacting", input=history, extra_headers=long_one)
    assert caught.value.code == "budget_exceeded"
    row = wait_settled(gateway, key_id)
    assert (row["spent_usd"], row["reserved_usd"]) == (0, 0)
    # A budget that pays for the most the model can generate lets it in, and it is charged
    # what the upstream billed: its usage, at the deployment's price.
    set_budget(gateway, key_id, 30.0)
    raw = client.responses.with_raw_response.compact(
        model="pricey-compacting", input=history, extra_headers=long_one
    )
    usage = raw.parse().usage
    assert usage.output_tokens == 5500
    held = 30.0 - float(raw.headers["x-tollway-budget-remaining-usd"])
    cost = (usage.input_tokens * PRICEY["input"] + usage.output_tokens * PRICEY["output"]) / 1e6
    assert float(raw.headers["x-tollway-cost-usd"]) == pytest.approx(cost, abs=1e-6)
    assert held == pytest.approx(cost, abs=1e-6)  # a complete answer: what is left after it
    row = wait_settled(gateway, key_id)
    assert row["spent_usd"] == pytest.approx(cost, abs=1e-6)
    assert row["spent_usd"] <= 30.0


def test_a_compaction_on_a_model_of_unknown_max_output_is_refused_under_a_budget(
    gateway: str,
) -> None:
    history: Any = [{"role": "user", "content": "compact me"}]
    free = openai.OpenAI(base_url=gateway + "/v1", api_key=CLIENT_KEY, max_retries=0)
    # Without a budget nothing needs bounding: served.
    assert free.responses.compact(model="windowless-responses", input=history).output
    key_id, key = new_key(gateway)
    set_budget(gateway, key_id, 100.0)
    client = openai.OpenAI(base_url=gateway + "/v1", api_key=key, max_retries=0)
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.compact(model="windowless-responses", input=history)
    assert caught.value.code == "cost_unbounded"
    body = caught.value.body
    assert isinstance(body, dict) and body["param"] == "model"
    assert "max_output" in body["message"]
    assert spend(gateway, key_id)["spent_usd"] == 0


def test_per_deployment_limit_moves_requests_to_the_next_candidate(gateway: str) -> None:
    client = openai.OpenAI(base_url=gateway + "/v1", api_key=CLIENT_KEY, max_retries=0)
    served = []
    for _ in range(3):
        raw = client.chat.completions.with_raw_response.create(
            model="pricey-pair", messages=[{"role": "user", "content": "hi"}], max_tokens=5
        )
        served.append(raw.headers["x-tollway-deployment"])
    assert served[0] == "dep-a"
    assert served[1:] == ["dep-b", "dep-b"]  # dep-a allows one request a minute


def test_estimate_gives_counts_and_cost_range_without_spending(gateway: str) -> None:
    key_id, key = new_key(gateway)
    set_budget(gateway, key_id, 2.0)
    answer = httpx.post(
        gateway + "/v1/estimate",
        headers={"authorization": f"Bearer {key}"},
        json={
            "model": "pricey",
            "messages": [{"role": "user", "content": "hello"}],
            "max_tokens": 100,
        },
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    tokens = body["input_tokens"]
    # The simulator's model behind an OpenAI-compatible API: its count is an estimate.
    assert tokens > 0 and body["deployments"][0]["exact"] is False
    assert body["max_output_tokens"] == 100
    assert body["cost_usd"]["min"] == pytest.approx(tokens * PRICEY["input"] / 1e6)
    assert body["cost_usd"]["max"] == pytest.approx(
        (math.ceil(tokens * MARGIN) * PRICEY["input"] + 100 * PRICEY["output"]) / 1e6
    )
    assert body["budget_remaining_usd"] == 2.0 and body["within_budget"] is True
    assert spend(gateway, key_id)["spent_usd"] == 0
    unknown = httpx.post(
        gateway + "/v1/estimate",
        headers={"authorization": f"Bearer {key}"},
        json={"model": "nope", "messages": [{"role": "user", "content": "x"}]},
    )
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "model_not_found"


def estimate(url: str, key: str, body: dict[str, Any]) -> dict[str, Any]:
    answer = httpx.post(url + "/v1/estimate", headers={"authorization": f"Bearer {key}"}, json=body)
    assert answer.status_code == 200, answer.text
    estimated: dict[str, Any] = answer.json()
    return estimated


def test_a_fallback_the_key_may_not_use_is_not_reserved_for(gateway: str) -> None:
    body: dict[str, Any] = {"model": "cheap-falling", "max_tokens": 100}
    body["messages"] = [{"role": "user", "content": "hi"}]
    # The router never falls back to a model the key may not use, so its price bounds
    # nothing: the request costs at most what the cheap model can.
    created = admin(
        gateway, "POST", "/admin/keys", {"name": "cheap", "allowed_models": ["cheap-falling"]}, 201
    )
    set_budget(gateway, created["id"], 0.01)
    told = estimate(gateway, created["key"], body)
    assert told["within_budget"] is True
    assert told["cost_usd"]["max"] < 0.001
    client = openai.OpenAI(base_url=gateway + "/v1", api_key=created["key"], max_retries=0)
    with client.chat.completions.with_streaming_response.create(**body, stream=True) as response:
        held = 0.01 - float(response.headers["x-tollway-budget-remaining-usd"])
        for _ in response.parse():
            pass
    assert held == pytest.approx(told["cost_usd"]["max"], abs=1e-6)
    # A key that may use the fallback is reserved for it, and the estimate says so.
    key_id, key = new_key(gateway)
    set_budget(gateway, key_id, 0.01)
    assert estimate(gateway, key, body)["within_budget"] is False
    with pytest.raises(openai.RateLimitError) as caught:
        openai.OpenAI(base_url=gateway + "/v1", api_key=key, max_retries=0).chat.completions.create(
            **body
        )
    assert caught.value.code == "budget_exceeded"


def test_the_estimate_of_a_request_without_max_tokens_is_what_admission_reserves(
    gateway: str,
) -> None:
    key_id, key = new_key(gateway)
    set_budget(gateway, key_id, 5.0)
    picture = {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PIXEL}"}}
    content = [{"type": "text", "text": "what is this?"}, picture]
    body: dict[str, Any] = {"model": "pricey-capped"}
    body["messages"] = [{"role": "user", "content": content}]
    told = estimate(gateway, key, body)
    # The deployment generates at most 50 tokens: admission sends and reserves that, not
    # limits.default_max_output; and it charges for the picture apart.
    assert told["max_output_tokens"] == 50
    assert told["cost_usd"]["max"] > 0.01 + 50 * PRICEY["output"] / 1e6
    client = openai.OpenAI(base_url=gateway + "/v1", api_key=key, max_retries=0)
    with client.chat.completions.with_streaming_response.create(**body, stream=True) as response:
        held = 5.0 - float(response.headers["x-tollway-budget-remaining-usd"])
        for _ in response.parse():
            pass
    assert held == pytest.approx(told["cost_usd"]["max"], abs=1e-6)


PROMPT = (
    "Summarise the quarterly report in three short paragraphs, keeping every figure that "
    "matters to the board and leaving out the footnotes, the appendix and the glossary."
)


def _worst_cases(url: str, key: str, model: str, max_tokens: int) -> tuple[int, bool, float, float]:
    """The local count of ``PROMPT`` on ``model``, whether it is exact, and the worst case
    priced on that count as it is and with the margin."""
    answer = httpx.post(
        url + "/v1/estimate",
        headers={"authorization": f"Bearer {key}"},
        json={"model": model, "messages": [{"role": "user", "content": PROMPT}],
              "max_tokens": max_tokens},
    )  # fmt: skip
    assert answer.status_code == 200, answer.text
    body = answer.json()
    tokens: int = body["input_tokens"]
    output = max_tokens * PRICEY["output"]
    as_counted = (tokens * PRICEY["input"] + output) / 1e6
    with_margin = (math.ceil(tokens * MARGIN) * PRICEY["input"] + output) / 1e6
    return tokens, body["deployments"][0]["exact"], as_counted, with_margin


def _held_by_a_stream(url: str, key: str, model: str, max_tokens: int, budget: float) -> float:
    """What a stream's admission reserved: its remaining-budget header is sent before any
    cost is known."""
    client = openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0)
    with client.chat.completions.with_streaming_response.create(
        model=model,
        messages=[{"role": "user", "content": PROMPT}],
        max_tokens=max_tokens,
        stream=True,
    ) as response:
        held = budget - float(response.headers["x-tollway-budget-remaining-usd"])
        for _ in response.parse():
            pass
    return held


def test_a_model_behind_an_openai_compatible_api_is_reserved_with_the_margin(
    gateway: str,
) -> None:
    # "pricey" serves the simulator's own model through provider openai at the simulator's
    # api_base, as vLLM or Ollama serve theirs: a tokenizer that is not OpenAI's, so the
    # local count is an estimate and admission reserves it with limits.estimate_margin.
    key_id, key = new_key(gateway)
    tokens, exact, as_counted, with_margin = _worst_cases(gateway, key, "pricey", 50)
    assert not exact and math.ceil(tokens * MARGIN) > tokens
    # A budget that covers the count's worst case but not the margin's refuses the request.
    set_budget(gateway, key_id, round((as_counted + with_margin) / 2, 6))
    client = openai.OpenAI(base_url=gateway + "/v1", api_key=key, max_retries=0)
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(
            model="pricey", messages=[{"role": "user", "content": PROMPT}], max_tokens=50
        )
    assert caught.value.code == "budget_exceeded"
    assert spend(gateway, key_id)["spent_usd"] == 0
    # With room for it, the request holds the worst case with the margin until it ends.
    set_budget(gateway, key_id, 5.0)
    held = _held_by_a_stream(gateway, key, "pricey", 50, 5.0)
    assert held == pytest.approx(with_margin, abs=2e-6)
    assert spend(gateway, key_id)["reserved_usd"] == 0


def test_a_deployment_declaring_its_tokenizer_is_reserved_without_the_margin(
    log_dir: Path, simulator_url: str
) -> None:
    config = budget_config(simulator_url)
    for group in config["models"]:
        if group["name"] == "pricey":
            group["deployments"][0]["tokenizer"] = "o200k_base"
    with running_gateway(log_dir, config, {"TEST_UPSTREAM_KEY": UPSTREAM_KEY}) as (url, _):
        key_id, key = new_key(url)
        set_budget(url, key_id, 5.0)
        _, exact, as_counted, _ = _worst_cases(url, key, "pricey", 50)
        assert exact
        assert _held_by_a_stream(url, key, "pricey", 50, 5.0) == pytest.approx(as_counted, abs=2e-6)


def test_admin_api_sets_reads_and_removes_budgets_and_limits(gateway: str) -> None:
    key_id, key = new_key(gateway)
    row = set_budget(gateway, key_id, 12.5, period="month")
    assert row["limit_usd"] == 12.5 and row["source"] == "store"
    assert row["period_key"].startswith("month:")
    # A budget's owner may read it but not change it.
    own = httpx.get(gateway + "/admin/budgets", headers={"authorization": f"Bearer {key}"})
    assert own.status_code == 200
    assert [r["scope_id"] for r in own.json()["data"]] == [key_id]
    denied = httpx.put(
        gateway + "/admin/budgets",
        headers={"authorization": f"Bearer {key}"},
        json={"scope": "key", "scope_id": key_id, "limit_usd": 1000},
    )
    assert denied.status_code == 403
    bad = httpx.put(
        gateway + "/admin/budgets",
        headers={"authorization": f"Bearer {CLIENT_KEY}"},
        json={"scope": "galaxy", "scope_id": "x", "limit_usd": 1},
    )
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "scope"
    team = admin(gateway, "POST", "/admin/teams", {"name": f"t-{uuid.uuid4().hex[:6]}"}, 201)["id"]
    limit = admin(gateway, "PUT", "/admin/limits", {"scope": "team", "scope_id": team, "rpm": 7})
    assert limit == {
        "scope": "team",
        "scope_id": team,
        "tpm": None,
        "rpm": 7,
        "max_concurrent": None,
        "source": "store",
    }
    listed = admin(gateway, "GET", "/admin/limits")["data"]
    assert {"scope": "deployment", "scope_id": "dep-a", "tpm": None, "rpm": 1,
            "max_concurrent": None, "source": "config"} in listed  # fmt: skip
    admin(gateway, "DELETE", f"/admin/limits/team/{team}", status=204)
    admin(gateway, "DELETE", f"/admin/budgets/key/{key_id}/month", status=204)
    assert admin(gateway, "GET", f"/admin/budgets?scope_id={key_id}")["data"] == []
    admin(gateway, "DELETE", f"/admin/budgets/key/{key_id}/month", status=404)


def test_a_budget_or_limit_on_an_id_that_does_not_exist_is_404_naming_it(gateway: str) -> None:
    # They were stored, applied to no one, and listed as if they did.
    missing = f"no-such-{uuid.uuid4().hex[:6]}"
    for scope in ("key", "user", "team"):
        budget = {"scope": scope, "scope_id": missing, "period": "day", "limit_usd": 5}
        refused = admin(gateway, "PUT", "/admin/budgets", budget, status=404)
        assert refused["error"]["message"] == f"no {scope} with id {missing!r}"
        limit = {"scope": scope, "scope_id": missing, "rpm": 5}
        refused = admin(gateway, "PUT", "/admin/limits", limit, status=404)
        assert refused["error"]["message"] == f"no {scope} with id {missing!r}"
    assert admin(gateway, "GET", f"/admin/budgets?scope_id={missing}")["data"] == []
    assert missing not in {
        row["scope_id"] for row in admin(gateway, "GET", "/admin/limits")["data"]
    }
    audit = admin(gateway, "GET", f"/admin/audit?target_id=team:{missing}")["data"]
    assert audit == []
    # What names no record of the store stays free: an organisation (a team's
    # `organization`, or every request), a model group, a deployment id.
    made = [
        ("budgets", {"scope": "org", "scope_id": missing, "period": "day", "limit_usd": 5}),
        ("budgets", {"scope": "org", "scope_id": "*", "period": "total", "limit_usd": 1e6}),
        ("limits", {"scope": "model", "scope_id": missing, "rpm": 5}),
        ("limits", {"scope": "deployment", "scope_id": missing, "rpm": 5}),
    ]
    for kind, body in made:
        admin(gateway, "PUT", f"/admin/{kind}", body)
    admin(gateway, "DELETE", f"/admin/budgets/org/{missing}/day", status=204)
    admin(gateway, "DELETE", "/admin/budgets/org/*/total", status=204)
    admin(gateway, "DELETE", f"/admin/limits/model/{missing}", status=204)
    admin(gateway, "DELETE", f"/admin/limits/deployment/{missing}", status=204)


def test_spend_survives_a_restart(log_dir: Path, simulator_url: str) -> None:
    config = budget_config(simulator_url)
    config["store"] = {"url": f"sqlite+aiosqlite:///{log_dir}/restart-{uuid.uuid4().hex[:6]}.db"}
    env = {"TEST_UPSTREAM_KEY": UPSTREAM_KEY, "TOLLWAY_STORE_URL": config["store"]["url"]}
    with running_gateway(log_dir, config, env) as (url, _):
        key_id, key = new_key(url)
        set_budget(url, key_id, 3.0)
        client = openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0)
        for _ in range(3):
            client.chat.completions.create(
                model="pricey", messages=[{"role": "user", "content": "x"}], max_tokens=20
            )
        before = spend(url, key_id)["spent_usd"]
    assert before > 0
    with running_gateway(log_dir, config, env) as (url, _):
        assert spend(url, key_id)["spent_usd"] == pytest.approx(before, abs=1e-6)


def test_cli_sets_budgets_and_shows_spend(gateway: str) -> None:
    import subprocess

    key_id, key = new_key(gateway)
    env = {"TOLLWAY_URL": gateway, "TOLLWAY_ADMIN_KEY": CLIENT_KEY, "PATH": "/usr/bin:/bin"}
    set_cmd = [*tollway_command("budgets", "set", "key", key_id, "4.5", "--period", "week")]
    done = subprocess.run(set_cmd, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    client = openai.OpenAI(base_url=gateway + "/v1", api_key=key, max_retries=0)
    client.chat.completions.create(
        model="pricey", messages=[{"role": "user", "content": "x"}], max_tokens=10
    )
    shown = subprocess.run(
        [*tollway_command("spend", "--json")], env=env, capture_output=True, text=True, timeout=60
    )
    assert shown.returncode == 0, shown.stderr
    import json

    rows = [r for r in json.loads(shown.stdout)["data"] if r["scope_id"] == key_id]
    assert len(rows) == 1 and rows[0]["limit_usd"] == 4.5 and rows[0]["spent_usd"] > 0


def test_metrics_show_budget_utilisation_and_rejections(gateway: str) -> None:
    key_id, key = new_key(gateway)
    set_budget(gateway, key_id, 0.20)
    client = openai.OpenAI(base_url=gateway + "/v1", api_key=key, max_retries=0)
    with pytest.raises(openai.RateLimitError):
        for _ in range(20):
            client.chat.completions.create(
                model="pricey", messages=[{"role": "user", "content": "m"}], max_tokens=10
            )
    spent = spend(gateway, key_id)["spent_usd"]
    text = httpx.get(gateway + "/metrics").text
    line = next(
        line
        for line in text.splitlines()
        if line.startswith("tollway_budget_utilisation_ratio{") and key_id in line
    )
    assert 'scope="key"' in line and 'period="day"' in line
    assert float(line.rsplit(" ", 1)[1]) == pytest.approx(spent / 0.20, abs=1e-6)
    rejected = [
        line
        for line in text.splitlines()
        if line.startswith("tollway_rejections_total{") and 'code="budget_exceeded"' in line
    ]
    assert rejected and float(rejected[0].rsplit(" ", 1)[1]) >= 1


def test_each_of_n_choices_is_reserved_for(gateway: str) -> None:
    key_id, key = new_key(gateway)
    set_budget(gateway, key_id, 1.00)
    client = openai.OpenAI(base_url=gateway + "/v1", api_key=key, max_retries=0)
    messages: Any = [{"role": "user", "content": "choose"}]
    # One choice of 100 tokens: at most ~$0.41. Three: ~$1.21, more than the budget.
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="pricey", messages=messages, max_tokens=100, n=3)
    assert caught.value.code == "budget_exceeded"
    completion = client.chat.completions.create(
        model="pricey", messages=messages, max_tokens=100, n=1
    )
    assert completion.choices


def wait_settled(url: str, key_id: str) -> dict[str, Any]:
    """The key's budget row once nothing is reserved any more (settlement is asynchronous
    to a client that went away)."""
    deadline = time.monotonic() + 10
    while True:
        row = spend(url, key_id)
        if row["reserved_usd"] == 0 or time.monotonic() > deadline:
            return row
        time.sleep(0.1)


def test_a_client_that_leaves_mid_stream_pays_for_what_was_generated(gateway: str) -> None:
    key_id, key = new_key(gateway)
    set_budget(gateway, key_id, 5.0)
    headers = {"authorization": f"Bearer {key}", "x-sim-tpot-ms": "40"}
    body = {
        "model": "pricey", "stream": True, "max_tokens": 200,
        "messages": [{"role": "user", "content": "tell a long story"}],
    }  # fmt: skip
    with httpx.stream(
        "POST", gateway + "/v1/chat/completions", json=body, headers=headers, timeout=30
    ) as response:
        assert response.status_code == 200
        held = 5.0 - float(response.headers["x-tollway-budget-remaining-usd"])
        lines = response.iter_lines()
        for _ in range(5):
            next(lines)
    # Gone after a few of 200 tokens: the reservation is released, the start is paid for.
    row = wait_settled(gateway, key_id)
    assert row["reserved_usd"] == 0
    assert 0 < row["spent_usd"] < held / 4


def test_an_upstream_that_fails_mid_stream_releases_the_rest(gateway: str) -> None:
    key_id, key = new_key(gateway)
    set_budget(gateway, key_id, 5.0)
    client = openai.OpenAI(base_url=gateway + "/v1", api_key=key, max_retries=0)
    stream = client.chat.completions.create(
        model="pricey",
        messages=[{"role": "user", "content": "cut me off"}],
        max_tokens=200,
        stream=True,
        extra_headers={"x-sim-fault": "stop-after:3"},
    )
    with pytest.raises(openai.APIError):
        for _ in stream:
            pass
    row = wait_settled(gateway, key_id)
    assert row["reserved_usd"] == 0
    assert 0 < row["spent_usd"] < 200 * PRICEY["output"] / 1e6 / 4


def test_an_answer_without_usage_never_costs_more_than_was_reserved(gateway: str) -> None:
    # The upstream reports no usage, so the gateway counts the output from the text it passed
    # on (about four characters a token); the simulator's words run longer than that, which
    # counted 50 generated tokens as about 80 and pushed spend past the budget.
    key_id, key = new_key(gateway)
    set_budget(gateway, key_id, 0.55)
    headers = {
        "authorization": f"Bearer {key}", "x-sim-usage": "omit", "x-sim-output-tokens": "500",
    }  # fmt: skip
    body: dict[str, Any] = {
        "model": "pricey", "max_tokens": 50,
        "messages": [{"role": "user", "content": "answer without usage"}],
    }  # fmt: skip
    estimate = httpx.post(gateway + "/v1/estimate", json=body, headers=headers)
    reserved = estimate.json()["cost_usd"]["max"]
    with httpx.stream(
        "POST", gateway + "/v1/chat/completions", json={**body, "stream": True}, headers=headers
    ) as response:
        assert response.status_code == 200
        comment = [line for line in response.iter_lines() if "x-tollway-cost-usd=" in line]
    costs = [float(comment[0].split("=", 1)[1])]
    for _ in range(10):
        answer = httpx.post(gateway + "/v1/chat/completions", json=body, headers=headers)
        if answer.status_code == 429:
            assert answer.json()["error"]["code"] == "budget_exceeded"
            break
        assert answer.status_code == 200, answer.text
        costs.append(float(answer.headers["x-tollway-cost-usd"]))
    assert len(costs) >= 2
    assert max(costs) <= reserved
    row = wait_settled(gateway, key_id)
    assert row["reserved_usd"] == 0
    assert row["spent_usd"] == pytest.approx(sum(costs), abs=1e-5)
    assert row["spent_usd"] <= 0.55


def test_a_failed_request_costs_nothing_and_holds_nothing(gateway: str) -> None:
    key_id, key = new_key(gateway)
    set_budget(gateway, key_id, 5.0)
    client = openai.OpenAI(base_url=gateway + "/v1", api_key=key, max_retries=0)
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(
            model="pricey",
            messages=[{"role": "user", "content": "fail"}],
            max_tokens=20,
            extra_headers={"x-sim-fault": "status:500"},
        )
    row = spend(gateway, key_id)
    assert (row["spent_usd"], row["reserved_usd"]) == (0, 0)


def test_cli_sets_lists_and_removes_rate_limits(gateway: str) -> None:
    import json
    import subprocess

    env = {"TOLLWAY_URL": gateway, "TOLLWAY_ADMIN_KEY": CLIENT_KEY, "PATH": "/usr/bin:/bin"}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            tollway_command(*args), env=env, capture_output=True, text=True, timeout=60
        )

    user = admin(gateway, "POST", "/admin/users", {"kind": "service", "name": "cli"}, 201)["id"]
    done = cli("limits", "set", "user", user, "--tpm", "900", "--max-concurrent", "3")
    assert done.returncode == 0, done.stderr
    listed = cli("limits", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = [r for r in json.loads(listed.stdout)["data"] if r["scope_id"] == user]
    assert rows == [
        {"scope": "user", "scope_id": user, "tpm": 900, "rpm": None, "max_concurrent": 3,
         "source": "store"},
    ]  # fmt: skip
    assert cli("limits", "delete", "user", user).returncode == 0
    gone = json.loads(cli("limits", "list", "--json").stdout)["data"]
    assert not [r for r in gone if r["scope_id"] == user]
    refused = cli("limits", "set", "galaxy", "x", "--tpm", "1")
    assert refused.returncode == 1 and "scope" in refused.stderr


def test_spend_reports_add_up_to_the_budgets_spend_to_the_micro_dollar(gateway: str) -> None:
    # Budgets rounded each request's cost up to the micro-dollar and the request log rounded
    # it to nearest, so a report ran up to a micro-dollar a request below the budget's
    # spend; and a limit of $4.03 was kept as 4030001 micro-dollars (float noise rounded up).
    key_id, key = new_key(gateway)
    assert set_budget(gateway, key_id, 4.03)["limit_usd"] == 4.03
    client = openai.OpenAI(base_url=gateway + "/v1", api_key=key, max_retries=0)
    sent = 0
    for i in range(12):
        messages: Any = [{"role": "user", "content": "count to " + "ten " * i}]
        if i % 3 == 0:
            stream = client.chat.completions.create(
                model="fractional", messages=messages, max_tokens=5 + i, stream=True
            )
            for _ in stream:
                pass
        else:
            client.chat.completions.create(model="fractional", messages=messages, max_tokens=5 + i)
        sent += 1
    client.embeddings.create(model="embed", input="and one embedding")
    sent += 1
    query = f"group_by=key&key={key_id}"
    deadline = time.monotonic() + 10
    while True:  # the request log is written in batches
        rows = admin(gateway, "GET", f"/admin/reports/usage?{query}")["data"]
        if (rows and rows[0]["requests"] == sent) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    [row] = rows
    assert row["requests"] == sent
    budget = wait_settled(gateway, key_id)
    assert budget["spent_usd"] == row["cost_usd"]
    assert budget["limit_usd"] == 4.03


def test_a_cache_warm_up_with_max_tokens_0_reserves_no_output(gateway: str) -> None:
    # Anthropic's max_tokens: 0 (warm the prompt cache, generate nothing) was read as "not
    # set": admission reserved the default output, and a budget that covers the input alone
    # refused a request that cannot cost more than it.
    key_id, key = new_key(gateway)
    *_, with_margin = _worst_cases(gateway, key, "pricey-claude", 1)
    input_only = with_margin - PRICEY["output"] / 1e6
    set_budget(gateway, key_id, round(input_only * 1.5, 6))  # not a default output's worth
    client = anthropic.Anthropic(base_url=gateway, api_key=key, max_retries=0)
    raw = client.messages.with_raw_response.create(
        model="pricey-claude", max_tokens=0, messages=[{"role": "user", "content": PROMPT}]
    )
    assert raw.parse().usage.output_tokens == 0
    held = round(input_only * 1.5, 6) - float(raw.headers["x-tollway-budget-remaining-usd"])
    assert held <= input_only + 1e-6


def test_a_tall_base64_image_is_reserved_at_its_size_and_refused_past_the_budget(
    gateway: str,
) -> None:
    # On "pricey" (an OpenAI deployment: 85 + 170 per 512-px tile) a 1024x1024 picture is 4
    # tiles, 765 tokens; a 1000x2667 one scales to 768x2048, 8 tiles, 1,445 tokens. The budget
    # pays for the first's reservation, not the second's: counted at a "typical" size, the tall
    # one passed admission and could overshoot the budget once the provider billed it.
    key_id, key = new_key(gateway)
    per_token = PRICEY["input"] / 1e6
    set_budget(gateway, key_id, (20 + 1100) * MARGIN * per_token + PRICEY["output"] / 1e6)
    client = openai.OpenAI(base_url=gateway + "/v1", api_key=key, max_retries=0)

    def ask(width: int, height: int) -> Any:
        url = "data:image/png;base64," + base64.b64encode(png(width, height)).decode()
        content = [
            {"type": "text", "text": "what is this"},
            {"type": "image_url", "image_url": {"url": url}},
        ]
        return client.chat.completions.create(
            model="pricey", messages=[{"role": "user", "content": content}], max_tokens=1
        )

    with pytest.raises(openai.RateLimitError) as caught:
        ask(1000, 2667)
    assert caught.value.code == "budget_exceeded"
    row = spend(gateway, key_id)
    assert row["spent_usd"] == 0 and row["reserved_usd"] == 0  # refused before any call
    assert ask(1024, 1024).choices  # the typical picture fits
