"""Raw HTTP against the gateway: error shapes and statuses, timeouts, faults, health, curl."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from typing import Any

import aiohttp
import pytest

from tests.conftest import UPSTREAM_KEY
from tests.support import CLIENT_KEY

AUTH = {"Authorization": f"Bearer {CLIENT_KEY}"}
CHAT = "/v1/chat/completions"
HELLO = {"model": "test-chat", "messages": [{"role": "user", "content": "hello"}]}


async def post(
    url: str, body: bytes | dict[str, Any], headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any], aiohttp.typedefs.LooseHeaders]:
    """POST and return (status, JSON body, headers)."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with (
        aiohttp.ClientSession(headers=AUTH) as session,
        session.post(
            url, data=data, headers={"Content-Type": "application/json", **(headers or {})}
        ) as response,
    ):
        return response.status, await response.json(content_type=None), response.headers


def assert_openai_error(body: dict[str, Any], error_type: str, param: str | None = None) -> None:
    """``body`` is OpenAI's error object with this type (and param)."""
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["type"] == error_type
    assert body["error"]["message"]
    if param is not None:
        assert body["error"]["param"] == param


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (b"{not json", None),
        (b"[1, 2]", None),
        (b"", None),
        ({"messages": [{"role": "user", "content": "x"}]}, "model"),
        ({"model": "test-chat"}, "messages"),
        ({"model": "test-chat", "messages": "hi"}, "messages"),
        (
            {"model": "test-chat", "messages": [{"role": "robot", "content": "x"}]},
            "messages[0].role",
        ),
        (
            {"model": "test-chat", "messages": [{"role": "user", "content": 5}]},
            "messages[0].content",
        ),
        ({**HELLO, "temperature": "hot"}, "temperature"),
        ({**HELLO, "max_tokens": 0}, "max_tokens"),
        ({**HELLO, "max_completion_tokens": 0}, "max_completion_tokens"),
        ({**HELLO, "n": 0}, "n"),
        ({**HELLO, "tool_choice": "required"}, "tool_choice"),
        ({**HELLO, "stop": [1]}, "stop"),
        ({**HELLO, "tools": [{"type": "function", "function": {}}]}, "tools[0].function.name"),
        ({**HELLO, "tool_choice": "sometimes"}, "tool_choice"),
        ({**HELLO, "response_format": {"type": "yaml"}}, "response_format.type"),
    ],
)
async def test_bad_requests_are_400_in_openai_shape(
    gateway_url: str, body: bytes | dict[str, Any], param: str | None
) -> None:
    status, payload, headers = await post(gateway_url + CHAT, body)
    assert status == 400
    assert_openai_error(payload, "invalid_request_error", param)
    assert headers["x-request-id"]


def _nested(depth: int) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(depth):
        schema = {"type": "object", "properties": {"x": schema}}
    return schema


async def test_json_nested_too_deep_to_send_on_is_400_before_any_call(gateway_url: str) -> None:
    tool = {"type": "function", "function": {"name": "deep", "parameters": _nested(100)}}
    status, _, headers = await post(gateway_url + CHAT, {**HELLO, "tools": [tool]})
    assert status == 200  # deep, but not too deep to be sent on
    tool["function"]["parameters"] = _nested(130)  # two levels each: over the 255 allowed
    status, payload, headers = await post(gateway_url + CHAT, {**HELLO, "tools": [tool]})
    assert status == 400
    assert_openai_error(payload, "invalid_request_error")
    assert "255 levels" in payload["error"]["message"]
    assert "x-tollway-attempts" not in headers  # no deployment was tried, none was harmed


async def test_a_body_that_is_not_its_content_encoding_is_400(gateway_url: str) -> None:
    status, payload, _ = await post(
        gateway_url + CHAT, json.dumps(HELLO).encode(), {"Content-Encoding": "gzip"}
    )
    assert status == 400
    assert_openai_error(payload, "invalid_request_error")
    assert "gzip" in payload["error"]["message"]


async def test_embedding_model_on_chat_route_is_400(gateway_url: str) -> None:
    status, payload, _ = await post(gateway_url + CHAT, {**HELLO, "model": "test-embed"})
    assert status == 400
    assert payload["error"]["code"] == "model_not_supported"


async def test_an_unknown_route_is_404_in_openai_shape(gateway_url: str) -> None:
    async with aiohttp.ClientSession(headers=AUTH) as session:
        for method, path in (("POST", "/v1/nothing"), ("GET", "/admin/nothing")):
            async with session.request(method, gateway_url + path) as response:
                assert response.status == 404
                assert "allow" not in response.headers
                payload = await response.json()
                assert_openai_error(payload, "invalid_request_error")
                assert path in payload["error"]["message"]


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("GET", CHAT, "POST"),
        ("GET", "/chat/completions", "POST"),
        ("PUT", "/v1/embeddings", "POST"),
        ("DELETE", "/v1/models", "GET, HEAD"),
        ("GET", "/v1/responses", "POST"),
        ("POST", "/v1/responses/resp_1", "DELETE, GET, HEAD"),
        ("POST", "/admin/whoami", "GET, HEAD"),
        ("PUT", "/admin/keys/no-such-key", "GET, HEAD, PATCH"),
        ("GET", "/admin/reload", "POST"),
        ("POST", "/health/ready", "GET, HEAD"),
    ],
)
async def test_a_known_route_with_the_wrong_method_is_405_with_allow(
    gateway_url: str, method: str, path: str, allow: str
) -> None:
    async with (
        aiohttp.ClientSession(headers=AUTH) as session,
        session.request(method, gateway_url + path, json={}) as response,
    ):
        assert response.status == 405
        assert response.headers["allow"] == allow
        assert response.headers["x-request-id"]
        payload = await response.json()
    assert_openai_error(payload, "invalid_request_error")
    assert payload["error"]["code"] == "method_not_allowed"
    assert method in payload["error"]["message"] and path in payload["error"]["message"]


@pytest.mark.parametrize(
    ("method", "path", "status", "allow"),
    [
        ("GET", "/v1/messages", 405, "POST"),
        ("GET", "/v1/messages/count_tokens", 405, "POST"),
        ("POST", "/v1/messages/batches", 404, None),
    ],
)
async def test_a_route_miss_under_messages_is_in_anthropic_shape(
    gateway_url: str, method: str, path: str, status: int, allow: str | None
) -> None:
    headers = {"x-api-key": CLIENT_KEY, "anthropic-version": "2023-06-01"}
    async with (
        aiohttp.ClientSession(headers=headers) as session,
        session.request(method, gateway_url + path) as response,
    ):
        assert response.status == status
        assert response.headers.get("allow") == allow
        payload = await response.json()
    assert set(payload) == {"type", "error", "request_id"}
    assert payload["type"] == "error"
    expected = "invalid_request_error" if status == 405 else "not_found_error"
    assert payload["error"]["type"] == expected
    assert path in payload["error"]["message"]


async def test_first_byte_that_never_comes_is_504_within_the_bound(gateway_url: str) -> None:
    started = time.monotonic()
    status, payload, _ = await post(gateway_url + CHAT, HELLO, {"x-sim-fault": "hang"})
    elapsed = time.monotonic() - started
    assert status == 504
    assert payload["error"]["code"] == "upstream_first_byte_timeout"
    assert elapsed < 6  # first_byte is 2s in the test config; generous for a loaded machine


async def test_connection_reset_is_502(gateway_url: str) -> None:
    status, payload, _ = await post(gateway_url + CHAT, HELLO, {"x-sim-fault": "reset"})
    assert status == 502
    assert payload["error"]["type"] == "upstream_error"


async def test_stream_error_before_first_byte_is_a_json_error(gateway_url: str) -> None:
    status, payload, _ = await post(
        gateway_url + CHAT, {**HELLO, "stream": True}, {"x-sim-fault": "status:500"}
    )
    assert status == 502
    assert_openai_error(payload, "upstream_error")


async def stream_data(url: str, headers: dict[str, str]) -> list[bytes]:
    """The ``data:`` payloads of a streamed chat completion that starts with a 200."""
    events = []
    async with (
        aiohttp.ClientSession(headers=AUTH) as session,
        session.post(url + CHAT, json={**HELLO, "stream": True}, headers=headers) as response,
    ):
        assert response.status == 200
        async for line in response.content:
            if line.startswith(b"data: "):
                events.append(line[6:].strip())
    return events


async def test_stream_cut_after_first_chunk_ends_with_an_error_event(gateway_url: str) -> None:
    events = await stream_data(gateway_url, {"x-sim-fault": "stop-after:2"})
    assert events[-1] != b"[DONE]"
    assert b"[DONE]" not in events
    last = json.loads(events[-1])
    assert last["error"]["type"] == "upstream_error"
    assert "upstream" in last["error"]["message"]
    assert any(json.loads(e).get("choices") for e in events[:-1])


async def test_a_stream_that_goes_silent_mid_answer_says_so(gateway_url: str) -> None:
    # A token every 2.5 s: longer than the 2 s first-byte limit, which bounds the gaps too.
    events = await stream_data(gateway_url, {"x-sim-tpot-ms": "2500"})
    last = json.loads(events[-1])
    assert last["error"]["code"] == "upstream_first_byte_timeout"
    assert "went silent mid-answer" in last["error"]["message"]


async def test_stream_chunks_arrive_as_they_are_produced(gateway_url: str) -> None:
    arrivals = []
    started = time.monotonic()
    async with (
        aiohttp.ClientSession(headers=AUTH) as session,
        session.post(
            gateway_url + CHAT,
            json={**HELLO, "stream": True},
            headers={"x-sim-tpot-ms": "100", "x-sim-output-tokens": "6"},
        ) as response,
    ):
        async for line in response.content:
            if line.startswith(b"data: {"):
                arrivals.append(time.monotonic() - started)
    # Six tokens 100 ms apart: a buffering proxy would deliver them all at once at the end.
    assert arrivals[-1] - arrivals[0] > 0.3


async def stream_events(
    url: str, body: dict[str, Any], headers: dict[str, str] = AUTH
) -> list[bytes]:
    """The ``data:`` payloads of a streamed answer from ``url`` (a chat route), as bytes."""
    async with (
        aiohttp.ClientSession(headers=headers) as session,
        session.post(url, json=body) as response,
    ):
        assert response.status == 200
        events = (await response.read()).split(b"\n\n")
        return [event[6:] for event in events if event.startswith(b"data: ")]


async def test_streamed_events_carry_usage_only_when_asked(gateway_url: str) -> None:
    # Chunks from an OpenAI-format upstream go out as they came; the gateway always asks
    # upstream for usage, so a client that did not must see no usage field at all.
    plain = await stream_events(gateway_url + CHAT, {**HELLO, "stream": True})
    assert plain[-1] == b"[DONE]" and len(plain) > 3
    chunks = [json.loads(event) for event in plain[:-1]]
    assert all(chunk["choices"] and "usage" not in chunk for chunk in chunks)
    assert all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)
    asked = await stream_events(
        gateway_url + CHAT, {**HELLO, "stream": True, "stream_options": {"include_usage": True}}
    )
    chunks = [json.loads(event) for event in asked[:-1]]
    assert all(chunk["usage"] is None for chunk in chunks[:-1])
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] > 0
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert "hello" in text


async def test_streamed_events_are_the_upstreams_own(gateway_url: str, simulator_url: str) -> None:
    # Same format in and out: each event is the upstream's JSON as it came, not a re-encoding
    # (which would, for one, move the upstream's extra fields after "choices").
    body = {**HELLO, "stream": True, "stream_options": {"include_usage": True}}
    direct = await stream_events(
        simulator_url + CHAT,
        {**body, "model": "sim-chat"},
        {"Authorization": f"Bearer {UPSTREAM_KEY}"},
    )
    through = await stream_events(gateway_url + CHAT, body)
    assert len(through) == len(direct) > 3

    def shape(event: bytes) -> object:
        # Everything but what differs per request: the id and the creation time.
        return [
            (key, value) for key, value in json.loads(event).items() if key not in ("id", "created")
        ]

    assert [shape(e) for e in through[:-1]] == [shape(e) for e in direct[:-1]]
    assert list(json.loads(through[0])) == list(json.loads(direct[0]))


async def test_a_complete_answer_is_the_upstreams_own(gateway_url: str, simulator_url: str) -> None:
    # Same format in and out: the body is the upstream's as it came, byte for byte, not a
    # re-encoding (which, for one, puts a choice's "logprobs" after its "finish_reason").
    async with aiohttp.ClientSession() as session:
        upstream = {"Authorization": f"Bearer {UPSTREAM_KEY}"}
        async with session.post(
            simulator_url + CHAT, json={**HELLO, "model": "sim-chat"}, headers=upstream
        ) as response:
            direct = await response.read()
        async with session.post(gateway_url + CHAT, json=HELLO, headers=AUTH) as response:
            assert response.status == 200
            through = await response.read()
    mine, theirs = json.loads(through), json.loads(direct)
    assert list(theirs["choices"][0]) == ["index", "message", "logprobs", "finish_reason"]
    for key in ("id", "created"):  # what differs from one request to the next
        through = through.replace(json.dumps(mine[key]).encode(), json.dumps(theirs[key]).encode())
    assert through == direct


async def test_a_complete_anthropic_answer_is_the_upstreams_own(
    gateway_url: str, simulator_url: str
) -> None:
    # The same for an Anthropic client served by an Anthropic deployment (a re-encoding, for
    # one, puts the usage's "service_tier" before the token counts).
    body = {"model": "test-claude", "max_tokens": 32, "messages": HELLO["messages"]}
    version = {"anthropic-version": "2023-06-01"}
    async with aiohttp.ClientSession() as session:
        async with session.post(
            simulator_url + "/v1/messages",
            json={**body, "model": "sim-chat"},
            headers={"x-api-key": UPSTREAM_KEY, **version},
        ) as response:
            assert response.status == 200
            direct = await response.read()
        async with session.post(
            gateway_url + "/v1/messages", json=body, headers={"x-api-key": CLIENT_KEY, **version}
        ) as response:
            assert response.status == 200
            through = await response.read()
    mine, theirs = json.loads(through), json.loads(direct)
    assert list(theirs["usage"])[-1] == "service_tier"
    through = through.replace(json.dumps(mine["id"]).encode(), json.dumps(theirs["id"]).encode())
    assert through == direct


async def test_health(gateway_url: str) -> None:
    async with aiohttp.ClientSession(headers=AUTH) as session:
        async with session.get(gateway_url + "/health/live") as response:
            assert response.status == 200 and (await response.json())["status"] == "ok"
        async with session.get(gateway_url + "/health/ready") as response:
            assert response.status == 200 and (await response.json())["status"] == "ready"


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_chat_completion(gateway_url: str) -> None:
    result = subprocess.run(
        [
            "curl",
            "-sS",
            "-D",
            "-",
            gateway_url + CHAT,
            "-H",
            "Content-Type: application/json",
            "-H",
            f"Authorization: Bearer {CLIENT_KEY}",
            "-d",
            json.dumps(HELLO),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    head, _, body = result.stdout.partition("\n\n")  # text mode turned CRLF into LF
    assert head.startswith("HTTP/1.1 200")
    assert "x-tollway-provider: openai" in head.lower()
    assert json.loads(body)["choices"][0]["message"]["content"]
