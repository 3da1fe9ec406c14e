"""A client that hangs up while the gateway waits for the upstream: the upstream call stops.

The simulator (a process of this module's own) takes 5 s to its first byte; the client, the
real ``openai`` or ``anthropic`` SDK with a 0.5 s timeout, gives up and closes its connection
first. The gateway must notice at once, not at the next chunk it would write: the simulator
sees its connection closed (``/_sim/departures``), the request log says 499
``client_disconnected``, the key's budget holds no reservation any more, and the deployment
is not blamed.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import orjson
import pytest

from tests.support import CLIENT_KEY, logged_row, running_gateway, running_simulator, sim_departure

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
def gateway(log_dir: Path, sim: str) -> Iterator[str]:
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
        ],
        "telemetry": {"request_log": {"flush_interval": "100ms"}},
    }  # fmt: skip
    with running_gateway(log_dir, config) as (url, _):
        yield url


def _admin(url: str, method: str, path: str, body: Any = None) -> Any:
    response = httpx.request(method, url + path, json=body, headers=ADMIN, timeout=10)
    assert response.status_code < 300, response.text
    return response.json()


def _budgeted_key(url: str) -> tuple[str, str]:
    created = _admin(url, "POST", "/admin/keys", {"name": f"leaver-{uuid.uuid4().hex[:6]}"})
    budget = {"scope": "key", "scope_id": created["id"], "period": "day", "limit_usd": 50.0}
    _admin(url, "PUT", "/admin/budgets", budget)
    return created["id"], created["key"]


def _budget(url: str, key_id: str) -> dict[str, Any]:
    (row,) = _admin(url, "GET", f"/admin/budgets?scope=key&scope_id={key_id}")["data"]
    return dict(row)


def _ask(url: str, family: str, stream: bool, key: str, headers: dict[str, str]) -> None:
    """One request that the client gives up on after ``CLIENT_TIMEOUT_S``."""
    messages = [{"role": "user", "content": "think hard"}]
    if family == "openai":
        client = openai.OpenAI(
            base_url=url + "/v1", api_key=key, timeout=CLIENT_TIMEOUT_S, max_retries=0
        )
        with pytest.raises(openai.APITimeoutError):
            answer = client.chat.completions.create(
                model="slow", messages=messages, max_tokens=20, stream=stream,  # type: ignore[arg-type]
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


@pytest.mark.parametrize("stream", [False, True], ids=["complete", "streamed"])
@pytest.mark.parametrize("family", ["openai", "anthropic"])
def test_a_client_that_leaves_during_a_long_first_token_stops_the_upstream_call(
    gateway: str, sim: str, family: str, stream: bool
) -> None:
    key_id, key = _budgeted_key(gateway)
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

    # The budget's reservation is released at once, and nothing was charged.
    row = _budget(gateway, key_id)
    assert (row["reserved_usd"], row["spent_usd"]) == (0, 0)

    record = logged_row(gateway, request_id, ADMIN)
    assert (record["status"], record["error_code"]) == (499, "client_disconnected")
    assert record["stream"] is stream
    assert record["cost_micros"] == 0

    # Hanging up is the client's doing, not the deployment's.
    rows = _admin(gateway, "GET", "/admin/deployments")["data"]
    health = {row["id"]: row for row in rows}[f"slow-{family.replace('anthropic', 'claude')}"]
    assert health["failures"] == 0
    assert health["circuit"] == "closed"


def test_a_client_that_leaves_during_a_silence_mid_stream_stops_the_upstream_call(
    gateway: str, sim: str
) -> None:
    # A reasoning phase after the first token: the upstream is silent for 5 s. The client
    # reads the first chunk and hangs up; the gateway would only have noticed at the next
    # chunk it wrote, 5 s later.
    key_id, key = _budgeted_key(gateway)
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
    rows = _admin(gateway, "GET", "/admin/deployments")["data"]
    (row,) = [row for row in rows if row["id"] == "slow-openai"]
    assert row["in_flight"] == 0
