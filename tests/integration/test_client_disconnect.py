"""A client that hangs up while the gateway waits for the upstream: the upstream call stops.

The simulator (a process of this module's own) takes 5 s to its first byte; the client, the
real ``openai`` or ``anthropic`` SDK with a 0.5 s timeout, gives up and closes its connection
first. The gateway must notice at once, not at the next chunk it would write: the simulator
sees its connection closed (``/_sim/departures``), the request log says 499
``client_disconnected``, the key's budget holds no reservation any more, and the deployment
is not blamed. The provider had read the prompt by then (prefill comes first) and bills it:
the request is charged its prompt's counted tokens (an embeddings request its input's),
marked estimated; an attempt still
connecting when its client left (an upstream whose accept queue is full) reached no
provider and is charged nothing.
"""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import orjson
import pytest

from tests.support import (
    CLIENT_KEY,
    admin_request,
    budgeted_key,
    logged_row,
    running_gateway,
    running_simulator,
    sim_departure,
)
from tollway.core.types import ChatRequest, EmbeddingRequest, Message
from tollway.pricing.tokens import TokenCounter

ADMIN = {"Authorization": f"Bearer {CLIENT_KEY}"}
PRICE = {"input": 1000.0, "output": 4000.0}  # USD per 1M tokens: a reservation worth seeing
FIRST_BYTE_S = 5.0
CLIENT_TIMEOUT_S = 0.5
NOTICED_WITHIN_S = 1.0  # the gateway checks its clients every 50 ms


@pytest.fixture(scope="module")
def sim(log_dir: Path) -> Iterator[str]:
    with running_simulator(log_dir) as url:
        yield url


@pytest.fixture(scope="module")
def unaccepting() -> Iterator[str]:
    """An address whose connections never complete: a listener that accepts none, its accept
    queue filled, so the kernel drops further handshakes (a connect that hangs)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    address = listener.getsockname()
    fillers = []
    for _ in range(4):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(address)
        fillers.append(filler)
    time.sleep(0.2)
    try:
        yield f"http://{address[0]}:{address[1]}/v1"
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


@pytest.fixture(scope="module")
def gateway(log_dir: Path, sim: str, unaccepting: str) -> Iterator[str]:
    openai_deployment = {"provider": "openai", "api_base": sim + "/v1", "id": "slow-openai"}
    claude_deployment = {"provider": "anthropic", "api_base": sim, "id": "slow-claude"}
    config = {
        "upstream": {
            "timeouts": {"connect": "2s", "first_byte": "30s", "total": "60s"},
            "forward_headers": ["x-sim-*"],
        },
        "models": [
            {"name": "slow", "deployments": [
                {**openai_deployment, "model": "sim-chat", "price": PRICE}]},
            {"name": "slow-claude", "deployments": [
                {**claude_deployment, "model": "sim-chat", "price": PRICE}]},
            {"name": "slow-embed", "kind": "embedding", "deployments": [
                {**openai_deployment, "id": "slow-embed", "model": "sim-embed", "price": PRICE}]},
            {"name": "unreached", "deployments": [
                {"provider": "openai", "api_base": unaccepting, "id": "unreached",
                 "model": "sim-chat", "price": PRICE, "timeouts": {"connect": "10s"}}]},
        ],
        "telemetry": {"request_log": {"flush_interval": "100ms"}},
    }  # fmt: skip
    with running_gateway(log_dir, config) as (url, _):
        yield url


def _budget(url: str, key_id: str) -> dict[str, Any]:
    (row,) = admin_request(url, "GET", f"/admin/budgets?scope=key&scope_id={key_id}")["data"]
    return dict(row)


def _plain_key(url: str) -> tuple[str, str]:
    """A key without a budget or limit: admission counts nothing before routing."""
    created = admin_request(url, "POST", "/admin/keys", {"name": f"leaver-{uuid.uuid4().hex[:6]}"})
    return created["id"], created["key"]


def _prompt_micros(family: str) -> int:
    """What the prompt of ``_ask`` costs as the gateway counts it, at ``PRICE``."""
    request = ChatRequest(model="slow", messages=[Message("user", "think hard")])
    return TokenCounter().chat(request, family, "sim-chat") * round(PRICE["input"])


def _ask(
    url: str, family: str, stream: bool, key: str, headers: dict[str, str], model: str = "slow"
) -> None:
    """One request that the client gives up on after ``CLIENT_TIMEOUT_S``."""
    messages = [{"role": "user", "content": "think hard"}]
    if family == "openai":
        client = openai.OpenAI(
            base_url=url + "/v1", api_key=key, timeout=CLIENT_TIMEOUT_S, max_retries=0
        )
        with pytest.raises(openai.APITimeoutError):
            answer = client.chat.completions.create(
                model=model, messages=messages, max_tokens=20, stream=stream,  # type: ignore[arg-type]
                extra_headers=headers,
            )  # fmt: skip
            if stream:
                list(answer)  # type: ignore[arg-type]
    else:
        claude = anthropic.Anthropic(
            base_url=url, api_key=key, timeout=CLIENT_TIMEOUT_S, max_retries=0
        )
        with pytest.raises(anthropic.APITimeoutError):
            reply = claude.messages.create(
                model="slow-claude", messages=messages, max_tokens=20, stream=stream,  # type: ignore[arg-type]
                extra_headers=headers,
            )  # fmt: skip
            if stream:
                list(reply)  # type: ignore[arg-type]


@pytest.mark.parametrize("budgeted", [True, False], ids=["budget", "no-limit"])
@pytest.mark.parametrize("stream", [False, True], ids=["complete", "streamed"])
@pytest.mark.parametrize("family", ["openai", "anthropic"])
def test_a_client_that_leaves_during_a_long_first_token_stops_the_upstream_call(
    gateway: str, sim: str, family: str, stream: bool, budgeted: bool
) -> None:
    key_id, key = budgeted_key(gateway, "leaver") if budgeted else _plain_key(gateway)
    tag = uuid.uuid4().hex
    request_id = f"t-leaver-{tag[:12]}"
    headers = {
        "x-request-id": request_id,
        "x-sim-ttft-ms": str(int(FIRST_BYTE_S * 1000)),
        "x-sim-test-tag": tag,
    }
    _ask(gateway, family, stream, key, headers)
    left_at = time.time()

    # The upstream connection closes soon after the client's, not when the answer is ready.
    departure = sim_departure(sim, tag, until=left_at + NOTICED_WITHIN_S)
    assert departure is not None, "the upstream call went on after the client left"
    assert departure["at"] - left_at < NOTICED_WITHIN_S

    # The provider read the prompt before it was cut off, and bills it: so is the client,
    # for the prompt as the gateway counted it (no usage came), in the log and the budget.
    prompt = _prompt_micros(family)
    record = logged_row(gateway, request_id, ADMIN)
    assert (record["status"], record["error_code"]) == (499, "client_disconnected")
    assert record["stream"] is stream
    assert (record["cost_micros"], record["output_tokens"]) == (prompt, 0)
    assert record["input_tokens"] == prompt // round(PRICE["input"])
    assert record["usage_estimated"] is True
    if budgeted:
        # The reservation is released at once, and only the prompt was charged.
        row = _budget(gateway, key_id)
        assert (row["reserved_usd"], round(row["spent_usd"] * 1e6)) == (0, prompt)

    # Hanging up is the client's doing, not the deployment's.
    rows = admin_request(gateway, "GET", "/admin/deployments")["data"]
    health = {row["id"]: row for row in rows}[f"slow-{family.replace('anthropic', 'claude')}"]
    assert health["failures"] == 0
    assert health["circuit"] == "closed"


@pytest.mark.parametrize("budgeted", [True, False], ids=["budget", "no-limit"])
def test_an_embeddings_client_that_leaves_after_sending_pays_for_its_input(
    gateway: str, sim: str, budgeted: bool
) -> None:
    # Embeddings bill their input only, read as the request arrives: charged nothing, a
    # client that hung up while the upstream worked had its input embedded for free.
    key_id, key = budgeted_key(gateway, "leaver") if budgeted else _plain_key(gateway)
    tag = uuid.uuid4().hex
    request_id = f"t-embed-leaver-{tag[:12]}"
    headers = {
        "x-request-id": request_id,
        "x-sim-ttft-ms": str(int(FIRST_BYTE_S * 1000)),
        "x-sim-test-tag": tag,
    }
    texts = ["a document to embed", "and another one, somewhat longer than the first"]
    client = openai.OpenAI(
        base_url=gateway + "/v1", api_key=key, timeout=CLIENT_TIMEOUT_S, max_retries=0
    )
    with pytest.raises(openai.APITimeoutError):
        client.embeddings.create(model="slow-embed", input=texts, extra_headers=headers)
    left_at = time.time()
    departure = sim_departure(sim, tag, until=left_at + NOTICED_WITHIN_S)
    assert departure is not None, "the upstream call went on after the client left"

    counted = TokenCounter().embedding(
        EmbeddingRequest(model="slow-embed", input=list(texts)), "openai", "sim-embed"
    )
    record = logged_row(gateway, request_id, ADMIN)
    assert (record["status"], record["error_code"]) == (499, "client_disconnected")
    assert (record["input_tokens"], record["output_tokens"]) == (counted, 0)
    assert record["cost_micros"] == counted * round(PRICE["input"])
    assert record["usage_estimated"] is True
    if budgeted:
        row = _budget(gateway, key_id)
        assert (row["reserved_usd"], round(row["spent_usd"] * 1e6)) == (0, record["cost_micros"])


@pytest.mark.parametrize("stream", [False, True], ids=["complete", "streamed"])
def test_a_client_that_leaves_while_its_upstream_is_still_connecting_pays_nothing(
    gateway: str, stream: bool
) -> None:
    # The connection to the upstream never completed: no provider read the prompt.
    key_id, key = budgeted_key(gateway, "leaver")
    request_id = f"t-unreached-{uuid.uuid4().hex[:12]}"
    _ask(gateway, "openai", stream, key, {"x-request-id": request_id}, model="unreached")
    record = logged_row(gateway, request_id, ADMIN)
    assert (record["status"], record["error_code"]) == (499, "client_disconnected")
    assert (record["cost_micros"], record["input_tokens"]) == (0, 0)
    assert record["usage_estimated"] is False
    row = _budget(gateway, key_id)
    assert (row["reserved_usd"], row["spent_usd"]) == (0, 0)


def test_a_client_that_leaves_during_a_silence_mid_stream_stops_the_upstream_call(
    gateway: str, sim: str
) -> None:
    # A reasoning phase after the first token: the upstream is silent for 5 s. The client
    # reads the first chunk and hangs up; the gateway would only have noticed at the next
    # chunk it wrote, 5 s later.
    key_id, key = budgeted_key(gateway, "leaver")
    tag = uuid.uuid4().hex
    request_id = f"t-leaver-{tag[:12]}"
    headers = {
        "x-request-id": request_id,
        "x-sim-tpot-ms": str(int(FIRST_BYTE_S * 1000)),
        "x-sim-test-tag": tag,
    }
    client = openai.OpenAI(base_url=gateway + "/v1", api_key=key, max_retries=0)
    stream = client.chat.completions.create(
        model="slow", messages=[{"role": "user", "content": "think hard"}], max_tokens=20,
        stream=True, extra_headers=headers,
    )  # fmt: skip
    chunks = iter(stream)
    head, first = next(chunks), next(chunks)  # the role chunk, sent with the first token
    assert head.choices[0].delta.role == "assistant"
    assert first.choices[0].delta.content
    stream.close()
    left_at = time.time()

    departure = sim_departure(sim, tag, until=left_at + NOTICED_WITHIN_S)
    assert departure is not None, "the upstream call went on after the client left"
    record = logged_row(gateway, request_id, ADMIN)
    assert (record["status"], record["error_code"]) == (499, "client_disconnected")
    assert record["output_tokens"] > 0  # what was generated before the client left is paid
    assert _budget(gateway, key_id)["reserved_usd"] == 0


def test_a_client_that_leaves_as_its_stream_begins_leaves_nothing_behind(gateway: str) -> None:
    # A client that closed its connection just before its stream's first content came (too
    # late for the 50 ms watchdog to notice first) made writing the response head fail. The
    # stream handed over by the pipeline was then never iterated, and a generator never
    # started runs no ``finally``: the deployment's in-flight count stayed up for good (the
    # least-busy strategy then avoided it), the upstream stream was left open, and the
    # request was logged as the gateway's own 500 with a traceback.
    first_byte_ms = 300
    body = orjson.dumps(
        {"model": "slow", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2,
         "stream": True}
    )  # fmt: skip
    host, port = gateway.removeprefix("http://").split(":")

    async def leave(early_ms: int) -> None:
        _, writer = await asyncio.open_connection(host, int(port))
        writer.write(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: gateway\r\n"
            + f"Authorization: Bearer {CLIENT_KEY}\r\nx-sim-ttft-ms: {first_byte_ms}\r\n".encode()
            + f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        await writer.drain()
        await asyncio.sleep((first_byte_ms - early_ms) / 1000)
        writer.close()
        await writer.wait_closed()

    # Closed from 50 ms before the first content is due to just after it: some of these
    # land between the watchdog's last look and the stream's first content.
    for early_ms in range(50, -15, -5):
        asyncio.run(leave(early_ms))
    time.sleep(first_byte_ms / 1000 + 0.2)
    rows = admin_request(gateway, "GET", "/admin/deployments")["data"]
    (row,) = [row for row in rows if row["id"] == "slow-openai"]
    assert row["in_flight"] == 0
