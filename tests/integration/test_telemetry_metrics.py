"""Prometheus metrics at /metrics, counted from real traffic through a gateway process."""

from __future__ import annotations

import re

import httpx
import openai

from tests.support import CLIENT_KEY


def sample(text: str, name: str, **labels: str) -> float:
    """The value of the one sample of ``name`` whose labels include ``labels`` (0 if none)."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_requests_tokens_and_latency_are_counted(gateway_url: str) -> None:
    before = httpx.get(gateway_url + "/metrics").text
    client = openai.OpenAI(base_url=gateway_url + "/v1", api_key=CLIENT_KEY, max_retries=0)
    reply = client.chat.completions.create(
        model="test-chat", messages=[{"role": "user", "content": "count me"}]
    )
    assert reply.usage is not None
    response = httpx.get(gateway_url + "/metrics")
    assert response.status_code == 200
    after = response.text
    labels = {"model": "test-chat", "status": "200"}
    requests = "tollway_requests_total"
    assert sample(after, requests, **labels) == sample(before, requests, **labels) + 1
    tokens = "tollway_tokens_total"
    for kind, count in (
        ("input", reply.usage.prompt_tokens),
        ("output", reply.usage.completion_tokens),
    ):
        grew = sample(after, tokens, model="test-chat", kind=kind) - sample(
            before, tokens, model="test-chat", kind=kind
        )
        assert grew == count
    latency = "tollway_request_duration_seconds_count"
    assert (
        sample(after, latency, model="test-chat") == sample(before, latency, model="test-chat") + 1
    )
    assert CLIENT_KEY not in after


def test_failed_requests_are_counted_by_status(gateway_url: str) -> None:
    before = httpx.get(gateway_url + "/metrics").text
    client = openai.OpenAI(base_url=gateway_url + "/v1", api_key=CLIENT_KEY, max_retries=0)
    try:
        client.chat.completions.create(
            model="test-chat",
            messages=[{"role": "user", "content": "fail"}],
            extra_headers={"x-sim-fault": "status:500"},
        )
    except openai.APIStatusError as exc:
        status = str(exc.status_code)
    else:
        raise AssertionError("the simulator was asked to fail")
    after = httpx.get(gateway_url + "/metrics").text
    name = "tollway_requests_total"
    grew = sample(after, name, model="test-chat", status=status) - sample(
        before, name, model="test-chat", status=status
    )
    assert grew == 1


def test_model_names_no_group_has_share_one_label_not_one_series_each(gateway_url: str) -> None:
    """The model label of a refused request is the client's text: one series per name would
    let any caller grow /metrics (and Prometheus) without end."""
    headers = {"authorization": f"Bearer {CLIENT_KEY}"}
    names = [f"no-such-model-{n}" for n in range(5)]
    before = httpx.get(gateway_url + "/metrics").text
    for name in names:
        response = httpx.post(
            gateway_url + "/v1/chat/completions",
            headers=headers,
            json={"model": name, "messages": [{"role": "user", "content": "hi"}]},
        )
        assert response.status_code == 404
    after = httpx.get(gateway_url + "/metrics").text
    assert not any(name in after for name in names)
    name = "tollway_requests_total"
    labels = {"model": "(unknown)", "status": "404"}
    assert sample(after, name, **labels) == sample(before, name, **labels) + len(names)
    # A model group's own refusals keep its name.
    refused = httpx.post(
        gateway_url + "/v1/chat/completions",
        headers=headers,
        json={"model": "test-embed", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert refused.status_code == 400
    labels = {"model": "test-embed", "status": "400"}
    assert sample(httpx.get(gateway_url + "/metrics").text, name, **labels) >= 1
