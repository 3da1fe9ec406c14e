"""What the gateway's own log keeps of requests that carry a credential: never the credential.

A gateway process of its own (at DEBUG, where the most is written, with the access log on) is
sent requests over raw sockets that its HTTP parser refuses before any handler runs, each with
a key in the line it refuses, and requests with a virtual key in their URL; then its output is
searched for the keys.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import CLIENT_KEY, Process, running_gateway

SECRET = "tw-LeakCheckKey0123456789abcdefghijklmnopqr"


@pytest.fixture(scope="module")
def gateway(log_dir: Path) -> Iterator[tuple[str, Process]]:
    config = {"models": [], "server": {"access_log": True}}
    with running_gateway(log_dir, config, None, "--log-level", "debug") as running:
        yield running


def raw_request(url: str, head: bytes) -> bytes:
    """Send ``head`` (request line and headers, no body) and read the whole answer."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head + b"\r\nHost: gateway\r\nConnection: close\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


@pytest.mark.parametrize(
    "head",
    [
        # A header value with a control character in it (a key pasted with one).
        b"POST /v1/chat/completions HTTP/1.1\r\nAuthorization: Bearer " + SECRET.encode() + b"\x01",
        b"POST /v1/messages HTTP/1.1\r\nx-api-key: " + SECRET.encode() + b"\x7f",
        # A header longer than the server reads: the parser quotes its first hundred bytes.
        b"POST /v1/chat/completions HTTP/1.1\r\nAuthorization: Bearer "
        + SECRET.encode()
        + b"x" * 40_000,
        # A request line the parser refuses, with a key in its query string.
        b"GET /v1/models?key=" + SECRET.encode() + b" HTTP/1.1 extra",
    ],
    ids=["control-character", "delete-character", "too-long", "bad-request-line"],
)
def test_a_request_the_parser_refuses_is_logged_without_its_bytes(
    gateway: tuple[str, Process], head: bytes
) -> None:
    url, process = gateway
    before = len(process.output())
    answer = raw_request(url, head)
    assert answer.startswith(b"HTTP/1.") and b" 400 " in answer.split(b"\r\n", 1)[0]
    deadline = time.monotonic() + 5
    while "malformed request from" not in process.output()[before:]:
        assert time.monotonic() < deadline, process.output()[before:]
        time.sleep(0.05)
    logged = process.output()[before:]
    assert SECRET[:20] not in logged, logged
    assert "the request's bytes are not logged" in logged
    assert "127.0.0.1" in logged  # who sent it is still said


def _virtual_key(url: str) -> str:
    admin = {"Authorization": f"Bearer {CLIENT_KEY}"}
    made = httpx.post(f"{url}/admin/keys", json={"name": "in-url"}, headers=admin, timeout=10)
    assert made.status_code == 201, made.text
    return str(made.json()["key"])


def _logged_after(process: Process, before: int, marker: str) -> str:
    deadline = time.monotonic() + 5
    while marker not in process.output()[before:]:
        assert time.monotonic() < deadline, process.output()[before:]
        time.sleep(0.05)
    return process.output()[before:]


@pytest.mark.parametrize(
    "target",
    [
        # Where a key id goes: the admin API looks it up in the store, whose SQLite driver
        # logged the statement's parameters at DEBUG.
        "/admin/keys/{key}",
        "/v1/models/{key}",
        "/v1/models?q={key}",  # a parameter whose name does not say it is a credential
    ],
    ids=["admin-path", "model-path", "other-parameter"],
)
def test_a_key_in_a_requests_url_is_in_no_log_line(
    gateway: tuple[str, Process], target: str
) -> None:
    url, process = gateway
    key = _virtual_key(url)
    before = len(process.output())
    for credential in (key, CLIENT_KEY):
        httpx.get(url + target.format(key=key), headers={"Authorization": f"Bearer {credential}"})
    logged = _logged_after(process, before, target.format(key="[SECRET]").split("?")[0])
    assert key[:12] not in logged and key[-12:] not in logged, logged
