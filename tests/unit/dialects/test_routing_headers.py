"""``routing_headers``: the deployment that served a request, its attempts and fallbacks, the
stages' own headers, and the content type of an answer when one is given."""

from __future__ import annotations

from tollway.core.context import Attempt, RequestContext
from tollway.core.types import ChatRequest, Deployment, Message, UpstreamTimeouts
from tollway.dialects.http import routing_headers

TIMEOUTS = UpstreamTimeouts(connect=5, first_byte=30, total=600)
FIRST = Deployment("first", "openai", "gpt-a", "http://first/v1", TIMEOUTS, group="chat")
SECOND = Deployment("second", "anthropic", "claude-b", "http://second", TIMEOUTS, group="chat")


def _context(*served: Deployment) -> RequestContext:
    chat = ChatRequest(model="chat", messages=[Message(role="user", content="hi")])
    ctx = RequestContext("req_headers", "chat", "chat", {}, chat=chat)
    for deployment in served:
        ctx.attempts += 1
        ctx.deployment = deployment
        ctx.tries.append(Attempt(deployment, 0.0))
    ctx.response_headers["x-tollway-cost-usd"] = "0.000125"
    return ctx


def test_an_answer_names_its_deployment_and_carries_the_content_type_given() -> None:
    assert "Content-Type" not in routing_headers(_context(FIRST))

    headers = routing_headers(_context(FIRST), "application/json")

    assert headers == {
        "x-request-id": "req_headers",
        "x-tollway-model": "gpt-a",
        "x-tollway-deployment": "first",
        "x-tollway-provider": "openai",
        "x-tollway-attempts": "1",
        "x-tollway-fallbacks": "0",
        "x-tollway-cost-usd": "0.000125",
        "Content-Type": "application/json",
    }


def test_a_failover_counts_the_attempts_and_the_other_deployments_tried() -> None:
    headers = routing_headers(_context(FIRST, FIRST, SECOND), "application/json")

    assert headers["x-tollway-deployment"] == "second"
    assert headers["x-tollway-provider"] == "anthropic"
    assert headers["x-tollway-attempts"] == "3"
    assert headers["x-tollway-fallbacks"] == "1"  # a retry on the same deployment is none
    assert headers["Content-Type"] == "application/json"


def test_an_answer_no_deployment_served_names_only_the_request() -> None:
    headers = routing_headers(_context(), "application/json")

    assert headers == {
        "x-request-id": "req_headers",
        "x-tollway-cost-usd": "0.000125",
        "Content-Type": "application/json",
    }
