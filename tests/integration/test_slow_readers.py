"""Stream clients that read slower than the model writes: backpressure, not a failure.

The simulator streams a long answer as fast as it can; the client is a plain HTTP/1.1 socket
with a small receive buffer that reads the answer's head and then nothing more, so the
gateway's writes soon wait on the client (aiohttp's drain). A client that then leaves is
a 499 like any other; one that stays but never reads does not hold the upstream call (and
its connection from the pool) past the upstream's total time limit.
"""

from __future__ import annotations

import json
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.support import (
    CLIENT_KEY,
    Process,
    logged_row,
    running_gateway,
    running_simulator,
    sim_departure,
)

ADMIN = {"Authorization": f"Bearer {CLIENT_KEY}"}
TOTAL_S = 2.0  # the upstream's total limit on the "-short" models
GAP_S = 1.0  # their first-byte (and gap) limit
LONG_ANSWER = "400000"  # tokens: far more than the socket buffers between the two hold


@pytest.fixture(scope="module")
def sim(log_dir: Path) -> Iterator[str]:
    with running_simulator(log_dir) as url:
        yield url


@pytest.fixture(scope="module")
def gateway(log_dir: Path, sim: str) -> Iterator[tuple[str, Process]]:
    openai_deployment = {"provider": "openai", "model": "sim-chat", "api_base": sim + "/v1"}
    claude_deployment = {"provider": "anthropic", "model": "sim-chat", "api_base": sim}
    short = {"timeouts": {"first_byte": f"{GAP_S}s", "total": f"{TOTAL_S}s"}}
    patient = {"timeouts": {"first_byte": "10s", "total": f"{TOTAL_S}s"}}
    config = {
        "upstream": {
            "timeouts": {"connect": "2s", "first_byte": "10s", "total": "30s"},
            "forward_headers": ["x-sim-*"],
        },
        "models": [
            {"name": "chat", "deployments": [openai_deployment]},
            {"name": "claude", "deployments": [claude_deployment]},
            {"name": "chat-short", "deployments": [{**openai_deployment, **short}]},
            {"name": "claude-short", "deployments": [{**claude_deployment, **short}]},
            # The same total limit, but a gap limit longer than a client's pause.
            {"name": "chat-patient", "deployments": [{**openai_deployment, **patient}]},
        ],
        "telemetry": {"request_log": {"flush_interval": "100ms"}},
    }  # fmt: skip
    with running_gateway(log_dir, config) as running:
        # A first request loads what the gateway loads once (token counting): not timed here.
        body = {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}
        httpx.post(running[0] + "/v1/chat/completions", json=body, headers=ADMIN, timeout=30)
        yield running


ROUTES = {
    "chat": ("/v1/chat/completions", "chat", {}),
    "messages": ("/v1/messages", "claude", {"max_tokens": 100000}),
    "responses": ("/v1/responses", "chat", {}),
}


def _stalled_stream(url: str, route: str, tag: str, short: bool = False) -> socket.socket:
    """A stream request on a socket that reads the answer's head and then stops reading
    (``short``: to a model whose upstream limits are ``GAP_S`` and ``TOTAL_S``)."""
    path, model, extra = ROUTES[route]
    model += "-short" if short else ""
    body: dict[str, Any] = {"model": model, "stream": True, **extra}
    if route == "responses":
        body["input"] = "tell me everything"
    else:
        body["messages"] = [{"role": "user", "content": "tell me everything"}]
    raw = json.dumps(body).encode()
    host, port = url.removeprefix("http://").split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connecting: it holds
    sock.connect((host, int(port)))
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {CLIENT_KEY}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(raw)}\r\n"
        f"x-request-id: t-slow-{tag[:12]}\r\nx-sim-test-tag: {tag}\r\n"
        f"x-sim-output-tokens: {LONG_ANSWER}\r\n\r\n"
    )
    sock.sendall(head.encode() + raw)
    assert sock.recv(12) == b"HTTP/1.1 200"
    return sock


def _failures(url: str, route: str) -> int:
    """The failures the health of the route's "-short" deployment holds."""
    rows = httpx.get(url + "/admin/deployments", headers=ADMIN).json()["data"]
    deployment = f"{ROUTES[route][1]}-short#0"
    return int({row["id"]: row for row in rows}[deployment]["failures"])


@pytest.mark.parametrize("route", list(ROUTES))
def test_a_client_that_leaves_while_the_gateway_waits_for_it_to_read_is_a_499(
    gateway: tuple[str, Process], sim: str, route: str
) -> None:
    url, process = gateway
    tag = uuid.uuid4().hex
    sock = _stalled_stream(url, route, tag)
    time.sleep(0.8)  # the socket buffers fill: the gateway's next write waits on the client
    sock.close()
    left_at = time.time()

    departure = sim_departure(sim, tag, until=left_at + 2.0)
    assert departure is not None, "the upstream call went on after the client left"
    record = logged_row(url, f"t-slow-{tag[:12]}", ADMIN)
    assert (record["status"], record["error_code"]) == (499, "client_disconnected")
    assert record["output_tokens"] > 0  # what was sent before it left is accounted for
    assert "failed unexpectedly" not in process.output()


@pytest.mark.parametrize("route", list(ROUTES))
def test_a_client_that_stops_reading_does_not_hold_the_upstream_call_past_its_limits(
    gateway: tuple[str, Process], sim: str, route: str
) -> None:
    # The client stays connected and reads nothing: the gateway's write waits on it, where
    # no upstream limit ran, and the upstream call (a pooled connection, the provider's
    # generation) was held for as long as the client kept its socket open.
    url, process = gateway
    tag = uuid.uuid4().hex
    started = time.time()
    sock = _stalled_stream(url, route, tag, short=True)
    try:
        departure = sim_departure(sim, tag, until=started + TOTAL_S + GAP_S + 2.0)
        assert departure is not None, "the upstream call went on while the client read nothing"
        record = logged_row(url, f"t-slow-{tag[:12]}", ADMIN)
        assert (record["status"], record["error_code"]) == (504, "upstream_total_timeout")
        assert record["output_tokens"] > 0
        assert _failures(url, route) == 0  # the client's doing, not the deployment's
        # The gateway closed the connection of a client that took nothing more: what it
        # had sent before is all there is.
        sock.settimeout(5)
        while sock.recv(65536):
            pass
    finally:
        sock.close()
    assert "failed unexpectedly" not in process.output()


def test_a_stream_its_client_holds_past_the_total_limit_is_not_the_deployments_failure(
    gateway: tuple[str, Process],
) -> None:
    # The client stops reading for longer than the total limit, then reads on: the limit
    # passed while the gateway waited on the client. Counted as the deployment's failure,
    # five such clients in a row opened its circuit for everyone.
    url, _ = gateway
    client = openai.OpenAI(base_url=url + "/v1", api_key=CLIENT_KEY, max_retries=0)
    stream = client.chat.completions.create(
        model="chat-patient", messages=[{"role": "user", "content": "tell me everything"}],
        stream=True, extra_headers={"x-sim-output-tokens": LONG_ANSWER},
    )  # fmt: skip
    received = 0
    with pytest.raises(openai.APIError) as cut:
        for _chunk in stream:
            received += 1
            if received == 1:
                time.sleep(TOTAL_S + 1.0)
    assert received > 100
    assert "total timeout of 2s while its client was still reading" in cut.value.message
    assert cut.value.code == "upstream_total_timeout"

    rows = httpx.get(url + "/admin/deployments", headers=ADMIN).json()["data"]
    health = {row["id"]: row for row in rows}["chat-patient#0"]
    assert (health["failures"], health["circuit"]) == (0, "closed")
