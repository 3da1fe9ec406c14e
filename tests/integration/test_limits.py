"""Rate limits through a real gateway: a looping client is stopped by its model TPM limit."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import anthropic
import httpx
import openai
import pytest

from tests.conftest import UPSTREAM_KEY, gateway_config
from tests.support import CLIENT_KEY, running_gateway
from tollway.pricing.tokens import TokenCounter

DOCUMENT_TPM = 1_000_000
CHOICES_TPM = 10_000


@pytest.fixture(scope="module")
def limited_url(log_dir: Path, simulator_url: str) -> Iterator[str]:
    config = gateway_config(simulator_url)
    groups = {group["name"]: group for group in config["models"]}
    chat, embed, claude = groups["test-chat"], groups["test-embed"], groups["test-claude"]
    config["models"] += [
        {**chat, "name": "chat-rpm1"},
        {**embed, "name": "embed-rpm1"},
        {**claude, "name": "claude-documents"},
        {**chat, "name": "chat-tpm"},
        {**chat, "name": "chat-choices"},
    ]
    config["limits"] = {
        "models": {
            "test-chat": {"tpm": 600, "rpm": 1000},
            "test-claude": {"tpm": 300},
            "chat-rpm1": {"rpm": 1},
            "embed-rpm1": {"rpm": 1},
            "claude-documents": {"tpm": DOCUMENT_TPM},
            "chat-tpm": {"tpm": DOCUMENT_TPM},
            "chat-choices": {"tpm": CHOICES_TPM},
        }
    }
    with running_gateway(log_dir, config, {"TEST_UPSTREAM_KEY": UPSTREAM_KEY}) as (url, _):
        yield url


def test_looping_client_is_stopped_by_tpm_with_retry_after(limited_url: str) -> None:
    client = openai.OpenAI(base_url=limited_url + "/v1", api_key=CLIENT_KEY, max_retries=0)
    ok = 0
    with pytest.raises(openai.RateLimitError) as caught:
        for _ in range(100):
            raw = client.chat.completions.with_raw_response.create(
                model="test-chat", messages=[{"role": "user", "content": "loop"}], max_tokens=100
            )
            assert raw.headers["x-ratelimit-limit-tokens"] == "600"
            assert int(raw.headers["x-ratelimit-remaining-tokens"]) < 600
            assert raw.headers["x-ratelimit-limit-requests"] == "1000"
            ok += 1
    assert ok >= 1
    error = caught.value
    assert error.code == "rate_limit_exceeded"
    assert int(error.response.headers["retry-after"]) >= 1


def test_unlimited_model_carries_no_limit_headers(limited_url: str) -> None:
    response = httpx.post(
        limited_url + "/v1/embeddings",
        headers={"authorization": f"Bearer {CLIENT_KEY}"},
        json={"model": "test-embed", "input": "x"},
    )
    assert response.status_code == 200, response.text
    assert "x-ratelimit-limit-tokens" not in response.headers


def test_anthropic_route_answers_rate_limit_error(limited_url: str) -> None:
    client = anthropic.Anthropic(base_url=limited_url, api_key=CLIENT_KEY, max_retries=0)
    with pytest.raises(anthropic.RateLimitError) as caught:
        for _ in range(100):
            client.messages.create(
                model="test-claude",
                max_tokens=200,
                messages=[{"role": "user", "content": "loop"}],
            )
    body = caught.value.body
    assert isinstance(body, dict) and body["error"]["type"] == "rate_limit_error"


def test_chat_and_responses_routes_pass_admission(limited_url: str) -> None:
    # chat-rpm1 allows one request a minute across both routes: the second route sees it used.
    auth = {"authorization": f"Bearer {CLIENT_KEY}"}
    chat = httpx.post(
        limited_url + "/v1/chat/completions",
        headers=auth,
        json={"model": "chat-rpm1", "messages": [{"role": "user", "content": "x"}]},
    )
    assert chat.status_code == 200, chat.text
    assert chat.headers["x-ratelimit-remaining-requests"] == "0"
    responses = httpx.post(
        limited_url + "/v1/responses", headers=auth, json={"model": "chat-rpm1", "input": "x"}
    )
    assert responses.status_code == 429, responses.text
    assert responses.json()["error"]["code"] == "rate_limit_exceeded"


def test_embeddings_route_passes_admission(limited_url: str) -> None:
    auth = {"authorization": f"Bearer {CLIENT_KEY}"}
    body = {"model": "embed-rpm1", "input": "x"}
    first = httpx.post(limited_url + "/v1/embeddings", headers=auth, json=body)
    second = httpx.post(limited_url + "/v1/embeddings", headers=auth, json=body)
    assert first.status_code == 200, first.text
    assert second.status_code == 429
    assert second.json()["error"]["code"] == "rate_limit_exceeded"


def test_count_tokens_is_not_admitted(limited_url: str) -> None:
    # Runs after the Anthropic test has emptied test-claude's bucket.
    response = httpx.post(
        limited_url + "/v1/messages/count_tokens",
        headers={"x-api-key": CLIENT_KEY, "anthropic-version": "2023-06-01"},
        json={"model": "test-claude", "messages": [{"role": "user", "content": "x"}]},
    )
    assert response.status_code == 200, response.text


def test_a_documents_text_is_reserved_from_the_token_limit(limited_url: str) -> None:
    text = "Cars pay 3 euros at the north gate and lorries pay 9. " * 60
    document = {
        "type": "document",
        "title": "Toll schedule",
        "source": {"type": "text", "media_type": "text/plain", "data": text},
    }
    client = anthropic.Anthropic(base_url=limited_url, api_key=CLIENT_KEY, max_retries=0)
    raw = client.messages.with_raw_response.create(
        model="claude-documents",
        max_tokens=10,
        messages=[{"role": "user", "content": [document, {"type": "text", "text": "gist?"}]}],
    )
    reserved = DOCUMENT_TPM - int(raw.headers["x-ratelimit-remaining-tokens"])
    # Admission reserves the input it counts plus max_tokens: the document's text included.
    assert reserved >= TokenCounter().text(text, "anthropic", "sim-chat") + 10


def test_each_header_tells_the_scope_with_the_least_of_it_left(limited_url: str) -> None:
    # The headers described one scope, the one with the fewest tokens left: a key's own
    # requests-per-minute limit beside a model's tokens-per-minute one was never told, and the
    # client that read them learnt of it only from the 429.
    auth = {"authorization": f"Bearer {CLIENT_KEY}"}
    created = httpx.post(limited_url + "/admin/keys", headers=auth, json={"name": "two-a-minute"})
    assert created.status_code == 201, created.text
    key = created.json()
    limit = {"scope": "key", "scope_id": key["id"], "rpm": 2}
    assert httpx.put(limited_url + "/admin/limits", headers=auth, json=limit).status_code == 200
    client = openai.OpenAI(base_url=limited_url + "/v1", api_key=key["key"], max_retries=0)
    left = []
    for _ in range(2):
        raw = client.chat.completions.with_raw_response.create(
            model="chat-tpm", messages=[{"role": "user", "content": "x"}], max_tokens=10
        )
        assert raw.headers["x-ratelimit-limit-requests"] == "2"  # the key's
        assert raw.headers["x-ratelimit-limit-tokens"] == str(DOCUMENT_TPM)  # the model's
        assert int(raw.headers["x-ratelimit-remaining-tokens"]) < DOCUMENT_TPM
        left.append(raw.headers["x-ratelimit-remaining-requests"])
    assert left == ["1", "0"]
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(
            model="chat-tpm", messages=[{"role": "user", "content": "x"}], max_tokens=10
        )
    assert caught.value.code == "rate_limit_exceeded"


def test_each_of_n_choices_is_taken_from_the_token_limit(limited_url: str) -> None:
    # Each of n choices may generate max_tokens, as a budget reserves them; the token bucket
    # was taken one choice's worth, so concurrent requests for several choices went past the
    # limit until their settlements caught up.
    client = openai.OpenAI(base_url=limited_url + "/v1", api_key=CLIENT_KEY, max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="chat-choices", messages=[{"role": "user", "content": "x"}], max_tokens=200, n=4
    )
    assert len(raw.parse().choices) == 4
    assert int(raw.headers["x-ratelimit-remaining-tokens"]) <= CHOICES_TPM - 4 * 200
