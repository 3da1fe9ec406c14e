"""The admission stage on the in-memory backend: plain calls for what never waits.

With limits in memory an admitted request is admitted and settled by plain calls (nothing
for the pipeline to await); only a refusal, which may shrink and ask again, is a coroutine.
The same cases on Redis, where every step is awaited, are in tests/integration.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest

from tollway.auth.principal import Principal
from tollway.config.schema import LimitsConfig, Settings
from tollway.core.context import Attempt, RequestContext
from tollway.core.errors import DeploymentBusy, InvalidRequest, RateLimited, UpstreamUnavailable
from tollway.core.types import Usage
from tollway.limits.backend import MICRO
from tollway.limits.budget import Budget
from tollway.limits.events import BudgetEvent
from tollway.limits.memory import MemoryLimiter
from tollway.limits.service import LimitService
from tollway.limits.stage import Admission
from tollway.pricing.metering import Metering
from tollway.pricing.tokens import TokenCounter
from tollway.routing.table import build_routing_table
from tollway.store.records import SpendTally
from tollway.wire.openai_request import request_from_wire

PRICE = {"input": 2.5, "output": 10.0}  # USD per 1M tokens
KEY = Principal(kind="key", id="key_1")


# OpenAI's own model on OpenAI's API: its local count is exact (nothing is sent there).
GPT_4O = {"provider": "openai", "model": "gpt-4o", "api_base": "https://api.openai.com/v1",
          "price": PRICE, "id": "dep-a"}  # fmt: skip


def _stage(
    limits: dict[str, Any], deployments: list[dict[str, Any]] | None = None
) -> tuple[Admission, LimitService, Metering, Settings]:
    settings = Settings.model_validate(
        {
            "models": [{"name": "chat", "deployments": deployments or [GPT_4O]}],
            "limits": limits,
        }
    )
    table = build_routing_table(settings, None)
    service = LimitService(settings.limits, MemoryLimiter(), None)
    metering = Metering(TokenCounter())
    return Admission(service, table, metering.input_tokens), service, metering, settings


def _context(max_tokens: int | None = 100) -> RequestContext:
    body: dict[str, Any] = {"model": "chat", "messages": [{"role": "user", "content": "Hi"}]}
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    return RequestContext("req_1", "chat", "chat", {}, principal=KEY, chat=request_from_wire(body))


def _answered(ctx: RequestContext, metering: Metering, settings: Settings) -> None:
    """What the pipeline does before the response stages: the deployment and its cost."""
    ctx.deployment = build_routing_table(settings, None).candidates("chat", "chat")[0]
    ctx.usage = Usage(input_tokens=8, output_tokens=20)
    metering.settle(ctx)


def test_an_admitted_request_is_admitted_and_settled_without_awaiting() -> None:
    stage, service, metering, settings = _stage(
        {
            "models": {"chat": {"tpm": 10_000, "rpm": 10}},
            "budgets": [{"scope": "org", "id": "*", "period": "month", "limit_usd": 1.0}],
        }
    )
    ctx = _context()
    assert stage.on_request(ctx) is None  # nothing to await: admitted at once
    ticket = ctx.ticket
    assert ticket is not None and not ticket.settled
    headers = ctx.response_headers
    assert headers["x-ratelimit-remaining-requests"] == "9"
    # 1.0 USD less the worst case reserved: input at 2.5/M and all 100 output tokens at 10/M.
    reserved = ticket.claim.reserve_micros
    assert reserved == -(-(ctx.input_tokens_estimate or 0) * 25 // 10) + 1_000
    assert headers["x-tollway-budget-remaining-usd"] == f"0.{1_000_000 - reserved:06d}"

    _answered(ctx, metering, settings)
    assert stage.on_costed(ctx) is None  # settled at once too
    assert ticket.settled
    cost = 8 * 25 // 10 + 20 * 10  # micro-dollars: 8 input tokens, 20 output tokens
    assert headers["x-tollway-budget-remaining-usd"] == f"0.{1_000_000 - cost:06d}"
    assert stage.on_complete(ctx) is None  # nothing left to settle
    account = service.account(service.book.budgets_for(KEY)[0])
    assert service.limiter.known_spent(account) == cost


def test_a_stream_is_settled_at_completion_without_awaiting() -> None:
    stage, service, metering, settings = _stage(
        {"budgets": [{"scope": "key", "id": "key_1", "period": "day", "limit_usd": 5.0}]}
    )
    ctx = _context()
    assert stage.on_request(ctx) is None
    _answered(ctx, metering, settings)  # streams are not costed whole: on_complete settles
    assert stage.on_complete(ctx) is None
    assert ctx.ticket is not None and ctx.ticket.settled
    account = service.account(service.book.budgets_for(KEY)[0])
    assert service.limiter.known_spent(account) == 8 * 25 // 10 + 20 * 10


def test_a_refusal_is_raised_when_awaited() -> None:
    stage, _, _, _ = _stage(
        {"budgets": [{"scope": "org", "id": "*", "period": "month", "limit_usd": 0.0005}]}
    )
    ctx = _context(max_tokens=1_000)  # 0.01 USD of output: more than the budget
    pending = stage.on_request(ctx)
    assert pending is not None
    with pytest.raises(RateLimited) as refused:
        asyncio.run(_wait(pending))
    assert refused.value.code == "budget_exceeded"
    assert ctx.ticket is None  # a refusal holds nothing


def test_a_shrinking_budget_lowers_max_tokens_and_admits() -> None:
    stage, _, _, _ = _stage(
        {
            "budgets": [
                {"scope": "org", "id": "*", "period": "month", "limit_usd": 0.0005,
                 "policy": "shrink"},
            ]
        }
    )  # fmt: skip
    ctx = _context(max_tokens=1_000)
    pending = stage.on_request(ctx)
    assert pending is not None  # refused first, then asked again: awaited
    asyncio.run(_wait(pending))
    assert ctx.chat is not None and ctx.chat.max_tokens is not None
    assert 0 < ctx.chat.max_tokens < 50  # 500 micro-dollars at 10 per output token, less input
    assert ctx.response_headers["x-tollway-budget-max-tokens"] == str(ctx.chat.max_tokens)
    assert ctx.ticket is not None and ctx.ticket.claim.reserve_micros <= 500


def test_a_deployment_limit_is_taken_given_back_and_settled_without_awaiting() -> None:
    # Each request claims its input (a few tokens) and its 100 output tokens: two fit in 250.
    stage, service, metering, settings = _stage({"deployments": {"dep-a": {"tpm": 250}}})
    deployment = build_routing_table(settings, None).candidates("chat", "chat")[0]
    failed = _context()
    assert stage.on_request(failed) is None  # no limit on the request itself
    assert stage.on_attempt(failed, deployment) is None
    attempt = Attempt(deployment, 0.0, error=UpstreamUnavailable("upstream down"))
    assert stage.on_attempt_end(failed, attempt) is None  # a failed attempt gives it back
    assert failed.deployment_tickets is not None and failed.deployment_tickets[0].settled

    served = [_context(), _context()]  # the given-back tokens leave room for two more
    for ctx in served:
        assert stage.on_attempt(ctx, deployment) is None
    with pytest.raises(DeploymentBusy):
        stage.on_attempt(_context(), deployment)  # a third does not fit: next candidate
    for ctx in served:
        _answered(ctx, metering, settings)
        assert stage.on_complete(ctx) is None
        assert ctx.deployment_tickets is not None and ctx.deployment_tickets[0].settled
    # Settled at what they used (8 + 20 tokens each): the next request fits again.
    assert stage.on_attempt(_context(), deployment) is None
    assert service.book.deployment("dep-a") is not None


BUDGET = {"budgets": [{"scope": "org", "id": "*", "period": "month", "limit_usd": 1.0}]}
# A model with a tokenizer of its own, behind an OpenAI-compatible API (vLLM).
LLAMA = {"provider": "openai", "model": "meta-llama/Llama-3.1-8B-Instruct",
         "api_base": "http://127.0.0.1:8000/v1", "price": PRICE, "id": "dep-llama"}  # fmt: skip
CLAUDE = {"provider": "anthropic", "model": "claude-sonnet-4-5", "price": PRICE, "id": "dep-c"}


def _micros(input_tokens: int, price: dict[str, float], output: int = 100) -> int:
    """The worst case of ``input_tokens`` and ``output`` at ``price``, in micro-dollars
    rounded up (prices are per 1M tokens: a token at 2.5 is 2.5 micro-dollars)."""
    return math.ceil(input_tokens * price["input"] + output * price["output"])


def test_a_model_behind_an_openai_compatible_api_is_reserved_with_the_margin() -> None:
    stage, _, _, _ = _stage(BUDGET, [LLAMA])
    ctx = _context()
    assert stage.on_request(ctx) is None
    assert ctx.ticket is not None and ctx.input_tokens_estimate is not None
    # o200k_base's count is not Llama's: 25% more is reserved (limits.estimate_margin).
    reserved_input = math.ceil(ctx.input_tokens_estimate * 1.25)
    assert reserved_input > ctx.input_tokens_estimate
    assert ctx.ticket.claim.reserve_micros == _micros(reserved_input, PRICE)


def test_a_deployment_declaring_its_tokenizer_is_reserved_without_the_margin() -> None:
    stage, _, _, _ = _stage(BUDGET, [{**LLAMA, "tokenizer": "o200k_base"}])
    ctx = _context()
    assert stage.on_request(ctx) is None
    assert ctx.ticket is not None and ctx.input_tokens_estimate is not None
    assert ctx.ticket.claim.reserve_micros == _micros(ctx.input_tokens_estimate, PRICE)


@pytest.mark.parametrize("gpt_input_price", [2.5, 25.0])
def test_a_mixed_group_reserves_the_worst_case_over_its_candidates(gpt_input_price: float) -> None:
    # An exact OpenAI deployment first, then Claude: counted higher (x1.15) and estimated.
    gpt_price = {**PRICE, "input": gpt_input_price}
    stage, _, _, _ = _stage(BUDGET, [{**GPT_4O, "price": gpt_price}, CLAUDE])
    ctx = _context()
    assert stage.on_request(ctx) is None
    assert ctx.ticket is not None and ctx.chat is not None
    gpt = TokenCounter().chat(ctx.chat, "openai", "gpt-4o")
    claude = TokenCounter().chat(ctx.chat, "anthropic", "claude-sonnet-4-5")
    assert ctx.input_tokens_estimate == gpt  # the first deployment's count
    assert claude > gpt
    # Each candidate's own count (with the margin where it is an estimate) at its own price.
    worst = max(_micros(gpt, gpt_price), _micros(math.ceil(claude * 1.25), PRICE))
    assert ctx.ticket.claim.reserve_micros == worst


def _file_by_id() -> RequestContext:
    """A request with a file by id: counted (for budgets) as the most pages it may hold."""
    content = [{"type": "text", "text": "read it"}, {"type": "file", "file": {"file_id": "f"}}]
    body = {"model": "chat", "max_tokens": 100, "messages": [{"role": "user", "content": content}]}
    return RequestContext("req_1", "chat", "chat", {}, principal=KEY, chat=request_from_wire(body))


PLENTY = {"budgets": [{"scope": "org", "id": "*", "period": "month", "limit_usd": 1000.0}]}
HOUSE = {"provider": "openai", "model": "house-model", "api_base": "http://127.0.0.1:8000/v1",
         "price": PRICE}  # fmt: skip


def test_a_request_holds_no_more_input_than_its_candidates_largest_window() -> None:
    windows = [{**HOUSE, "id": "small", "context_window": 100_000},
               {**HOUSE, "id": "large", "context_window": 200_000}]  # fmt: skip
    stage, _, _, _ = _stage({**PLENTY, "models": {"chat": {"tpm": 100_000_000}}}, windows)
    ctx = _file_by_id()
    assert stage.on_request(ctx) is None
    assert ctx.ticket is not None and ctx.input_tokens_estimate is not None
    assert ctx.input_tokens_estimate > 200_000  # the most a file may hold
    # Over the largest window every provider refuses it, and bills nothing.
    assert ctx.ticket.claim.reserve_micros == _micros(200_000, PRICE)
    assert ctx.ticket.claim.tokens == 200_000 + 100
    # Rate limits alone (no budget) hold no more either.
    stage, _, _, _ = _stage({"models": {"chat": {"tpm": 100_000_000}}}, windows)
    ctx = _file_by_id()
    assert stage.on_request(ctx) is None
    assert ctx.ticket is not None and ctx.ticket.claim.tokens == 200_000 + 100


def test_a_candidate_of_unknown_window_leaves_the_input_held_uncapped() -> None:
    deployments = [{**HOUSE, "id": "windowed", "context_window": 200_000},
                   {**HOUSE, "id": "unknown"}]  # fmt: skip
    stage, _, _, _ = _stage(PLENTY, deployments)
    ctx = _file_by_id()
    assert stage.on_request(ctx) is None
    assert ctx.ticket is not None and ctx.input_tokens_estimate is not None
    held = math.ceil(ctx.input_tokens_estimate * 1.25)  # the margin: an estimate
    assert held > 200_000
    assert ctx.ticket.claim.reserve_micros == _micros(held, PRICE)


async def _wait(pending: Any) -> None:
    await pending


async def test_a_changed_limit_tells_each_threshold_it_passed_once_a_period() -> None:
    # $40 spent of $100, the limit cut to $50: 80% of it, and no settlement crossed 50% or
    # 80%. Told once: not again when the limit is cut again, nor those passed before it.
    service = LimitService(LimitsConfig(), MemoryLimiter(), None)
    events: list[BudgetEvent] = []
    service.listeners = [events.append]
    old = Budget("team", "ml", "month", 100 * MICRO)
    new = Budget("team", "ml", "month", 50 * MICRO)
    await service.limiter.seed({service.account(new): SpendTally(40 * MICRO)})
    await service.limit_changed([(old, new)])
    await asyncio.sleep(0)  # listeners are told after the step that raised the events
    assert [(e.threshold, e.limit_usd, e.previous_limit_usd) for e in events] == [
        (0.5, 50.0, 100.0),
        (0.8, 50.0, 100.0),
    ]
    await service.limit_changed([(old, new)])
    await asyncio.sleep(0)
    assert len(events) == 2
    raised = Budget("team", "ml", "month", 45 * MICRO)
    await service.limit_changed([(Budget("team", "ml", "month", 60 * MICRO), raised)])
    await asyncio.sleep(0)
    assert len(events) == 2  # 50% was passed under $60 already, 80% was told; not 100%


def _compaction() -> RequestContext:
    ctx = _context(max_tokens=None)
    assert ctx.chat is not None
    ctx.chat.responses_route = "/compact"  # as dialects/responses.py marks a compaction
    return ctx


def test_a_compaction_is_reserved_for_the_models_whole_output() -> None:
    # A compaction takes no output limit (its body has no max_output_tokens, and the gateway
    # sends none): only the model's own max output bounds what it generates. It was reserved
    # for limits.default_max_output, which the upstream never heard of, so a long
    # compaction could spend past the budget.
    budgets = [{"scope": "key", "id": "key_1", "period": "day", "limit_usd": 5.0}]
    stated = {**GPT_4O, "max_output": 16_384}
    stage, _, _, _ = _stage({"budgets": budgets, "default_max_output": 100}, [stated])
    ctx = _compaction()
    assert stage.on_request(ctx) is None
    assert ctx.ticket is not None and ctx.chat is not None
    inputs = ctx.input_tokens_estimate or 0
    # The model's max output: 16,384 tokens at 10 USD per 1M; the input at 2.5.
    assert ctx.ticket.claim.reserve_micros == -(-inputs * 25 // 10) + 16_384 * 10
    assert ctx.chat.max_tokens is None  # nothing the upstream is sent


def test_a_compaction_on_a_model_stating_no_max_output_is_refused_under_a_budget() -> None:
    unbounded = {**GPT_4O, "model": "my-own-model", "price": PRICE}
    budgets = [{"scope": "key", "id": "key_1", "period": "day", "limit_usd": 5.0}]
    stage, _, _, _ = _stage({"budgets": budgets}, [unbounded])
    with pytest.raises(InvalidRequest) as refused:
        stage.on_request(_compaction())
    assert refused.value.code == "cost_unbounded"
    assert "max_output" in refused.value.message


def _tokens_left(stage: Admission, deployment: Any) -> float:
    """The tokens a deployment's minute has left once a fresh request has taken its claim."""
    ctx = _context()
    assert stage.on_attempt(ctx, deployment) is None
    assert ctx.deployment_tickets is not None
    (ticket,) = ctx.deployment_tickets
    tokens = ticket.remaining[ticket.claim.limits[0][0]][1]
    assert tokens is not None
    return tokens + ticket.claim.tokens


def test_a_failed_attempt_keeps_what_it_used_charged_to_its_deployment_alone() -> None:
    # The first deployment's stream reported the prompt (300 tokens) and failed; the second
    # answered (8 + 20 tokens). Each deployment's minute is charged what was used on it: the
    # failed one its prompt, the one that answered its answer, not the other's prompt too.
    limits = {"deployments": {"dep-a": {"tpm": 1000}, "dep-b": {"tpm": 1000}}}
    stage, _, metering, settings = _stage(limits, [GPT_4O, {**GPT_4O, "id": "dep-b"}])
    first, second = build_routing_table(settings, None).candidates("chat", "chat")
    ctx = _context()
    assert stage.on_request(ctx) is None
    assert stage.on_attempt(ctx, first) is None
    failed = Attempt(first, 0.0, error=UpstreamUnavailable("overloaded"))
    failed.spent = Usage(input_tokens=300)
    ctx.tries.append(failed)
    assert stage.on_attempt_end(ctx, failed) is None
    assert stage.on_attempt(ctx, second) is None
    ctx.tries.append(Attempt(second, 0.0))
    ctx.deployment, ctx.usage = second, Usage(input_tokens=8, output_tokens=20)
    metering.settle(ctx)
    metering.add_spent(ctx)  # the request is charged both: 328 tokens
    assert stage.on_complete(ctx) is None

    assert _tokens_left(stage, first) == pytest.approx(1000 - 300, abs=1)
    assert _tokens_left(stage, second) == pytest.approx(1000 - 28, abs=1)
