"""Tracing: spans of real requests through a gateway on a real port, in front of the simulator.

The gateway runs in this process (``create_app`` on an aiohttp runner) so its spans can go to
the SDK's ``InMemorySpanExporter`` through the real ``BatchSpanProcessor``; clients are the
real ``openai`` SDK (and aiohttp for a client that walks away), the upstream the simulator
process, whose request log shows the ``traceparent`` each attempt sent.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import openai
import pytest
from aiohttp import web

from tests.conftest import UPSTREAM_KEY
from tests.support import CLIENT_KEY, free_port

pytest.importorskip("opentelemetry.sdk", reason="tracing needs the otel extra (tollway[otel])")

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from opentelemetry.trace import SpanKind, StatusCode

from tollway.app import GATEWAY, create_app
from tollway.config import validate_settings
from tollway.gateway import Gateway

PROMPT = "tell me about the secret garden"
PRICE = {"input": 1.0, "output": 2.0}


def traced_config(simulator_url: str, store: Path, **tracing: Any) -> dict[str, Any]:
    """A gateway on the simulator with tracing on; a chat, an embedding, a failover and a
    retrying model."""
    base = f"{simulator_url}/v1"
    key = "env:TEST_UPSTREAM_KEY"

    def deployment(**extra: Any) -> dict[str, Any]:
        return {"provider": "openai", "model": "sim-chat", "api_base": base, "api_key": key,
                "price": PRICE, **extra}  # fmt: skip

    return {
        "store": {"url": f"sqlite+aiosqlite:///{store}"},
        "server": {"reload_interval": None},
        "upstream": {
            "timeouts": {"connect": "2s", "first_byte": "2s", "total": "10s"},
            "forward_headers": ["x-sim-*", "traceparent"],
        },
        "telemetry": {"tracing": {"enabled": True, **tracing}},
        "models": [
            {"name": "test-chat", "deployments": [deployment(id="chat-main")]},
            {"name": "test-embed", "kind": "embedding", "deployments": [
                deployment(model="sim-embed", id="embed-main")]},
            {"name": "test-fallback", "deployments": [
                deployment(api_base="http://127.0.0.1:9/v1", id="dead-primary"),
                deployment(id="live-secondary")]},
            {"name": "test-retry", "retries": 1, "deployments": [deployment(id="flaky")]},
        ],
    }  # fmt: skip


@dataclass
class Traced:
    """A gateway in this process and where its spans go."""

    url: str
    exporter: InMemorySpanExporter
    gateway: Gateway
    team_key: str
    team_id: str

    def client(self, key: str | None = None) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(
            base_url=self.url + "/v1", api_key=key or self.team_key, max_retries=0
        )

    async def spans(self, request_id: str, count: int) -> list[ReadableSpan]:
        """The spans of the trace whose request span has ``request_id`` (request span first,
        then by start); they are written after the answer, so wait for ``count`` of them."""
        deadline = time.monotonic() + 10
        while True:
            spans = await self.current(request_id)
            if len(spans) >= count:
                return spans
            assert time.monotonic() < deadline, f"{len(spans)} spans of {request_id}: {spans}"
            await asyncio.sleep(0.05)

    async def current(self, request_id: str) -> list[ReadableSpan]:
        """The spans of ``request_id``'s trace exported so far."""
        assert self.gateway.tracing is not None
        await asyncio.to_thread(self.gateway.tracing.flush)
        finished = self.exporter.get_finished_spans()
        server = [
            s for s in finished if (s.attributes or {}).get("tollway.request_id") == request_id
        ]
        if not server:
            return []
        children = [s for s in finished if s.context.trace_id == server[0].context.trace_id]
        children.remove(server[0])
        return [server[0], *sorted(children, key=lambda s: s.start_time or 0)]


async def start_traced(
    tmp_path: Path, simulator_url: str, **tracing: Any
) -> tuple[web.AppRunner, Traced]:
    """A traced gateway on a free port, with a team and a key of that team."""
    exporter = InMemorySpanExporter()
    settings = validate_settings(traced_config(simulator_url, tmp_path / "gw.db", **tracing),
                                 source="test")  # fmt: skip
    environ = {"TEST_UPSTREAM_KEY": UPSTREAM_KEY, "TOLLWAY_ADMIN_KEY": CLIENT_KEY}
    app = create_app(settings, environ, span_exporter=exporter)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    url = f"http://127.0.0.1:{port}"
    auth = {"Authorization": f"Bearer {CLIENT_KEY}"}
    async with httpx.AsyncClient(base_url=url, headers=auth) as admin:
        team = await admin.post("/admin/teams", json={"name": f"t-{uuid.uuid4().hex[:6]}"})
        team_id = team.json()["id"]
        created = await admin.post("/admin/keys", json={"name": "app", "team_id": team_id})
        assert created.status_code == 201, created.text
    traced = Traced(url, exporter, app[GATEWAY], created.json()["key"], team_id)
    return runner, traced


@pytest.fixture(scope="module")
async def traced(
    tmp_path_factory: pytest.TempPathFactory, simulator_url: str
) -> AsyncIterator[Traced]:
    runner, traced = await start_traced(tmp_path_factory.mktemp("traced"), simulator_url)
    yield traced
    await runner.cleanup()


def rid() -> str:
    return f"req-trace-{uuid.uuid4().hex[:12]}"


async def upstream_calls(simulator_url: str, trace_id: int) -> list[dict[str, Any]]:
    """The simulator's recorded requests that carried this trace in ``traceparent``."""
    async with httpx.AsyncClient() as client:
        recorded = (await client.get(simulator_url + "/_sim/requests")).json()
    return [r for r in recorded if f"-{trace_id:032x}-" in r["headers"].get("traceparent", "")]


def parent_id(call: dict[str, Any]) -> int:
    return int(call["headers"]["traceparent"].split("-")[2], 16)


def all_text(spans: Sequence[ReadableSpan]) -> str:
    """Every attribute and event value of ``spans``, as one string."""
    parts = []
    for span in spans:
        parts += [str(v) for v in (span.attributes or {}).values()]
        for event in span.events:
            parts += [event.name, *(str(v) for v in (event.attributes or {}).values())]
        parts.append(str(span.status.description))
    return "\n".join(parts)


# --- the tests --------------------------------------------------------------------------------


async def test_chat_has_a_request_span_and_an_attempt_span(
    traced: Traced, simulator_url: str
) -> None:
    request_id = rid()
    raw = await traced.client().chat.completions.with_raw_response.create(
        model="test-chat",
        messages=[{"role": "user", "content": PROMPT}],
        max_tokens=5,
        temperature=0.5,
        top_p=0.9,
        extra_headers={"x-request-id": request_id},
    )
    reply = raw.parse()
    assert reply.usage is not None
    request, attempt = await traced.spans(request_id, 2)

    assert request.name == "chat test-chat" and request.kind is SpanKind.SERVER
    assert request.parent is None and request.status.status_code is StatusCode.UNSET
    attrs = dict(request.attributes or {})
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.provider.name"] == "openai" and attrs["gen_ai.system"] == "openai"
    assert attrs["gen_ai.request.model"] == "test-chat"
    assert attrs["gen_ai.response.model"] == reply.model
    assert attrs["gen_ai.response.id"] == reply.id
    assert attrs["gen_ai.request.max_tokens"] == 5
    assert attrs["gen_ai.request.temperature"] == 0.5 and attrs["gen_ai.request.top_p"] == 0.9
    assert attrs["gen_ai.usage.input_tokens"] == reply.usage.prompt_tokens
    assert attrs["gen_ai.usage.output_tokens"] == reply.usage.completion_tokens
    assert attrs["gen_ai.response.finish_reasons"] == (reply.choices[0].finish_reason,)
    assert attrs["tollway.request_id"] == request_id
    assert attrs["tollway.deployment"] == "chat-main" and attrs["tollway.attempts"] == 1
    assert attrs["tollway.team"] == traced.team_id
    cost = float(raw.headers["x-tollway-cost-usd"])
    assert cost > 0 and attrs["tollway.cost_usd"] == pytest.approx(cost, rel=1e-6)
    assert "gen_ai.input.messages" not in attrs and "error.type" not in attrs

    assert attempt.name == "chat sim-chat" and attempt.kind is SpanKind.CLIENT
    assert attempt.parent is not None and attempt.parent.span_id == request.context.span_id
    port = int(simulator_url.rsplit(":", 1)[1])
    a = dict(attempt.attributes or {})
    assert a["server.address"] == "127.0.0.1" and a["server.port"] == port
    assert a["gen_ai.provider.name"] == "openai" and a["tollway.deployment"] == "chat-main"
    assert a["gen_ai.request.model"] == "sim-chat"
    assert attempt.status.status_code is StatusCode.UNSET
    assert request.start_time is not None and attempt.start_time is not None
    assert request.end_time is not None and attempt.end_time is not None
    assert request.start_time <= attempt.start_time < attempt.end_time <= request.end_time

    # The provider got the attempt's own span as its parent.
    (call,) = await upstream_calls(simulator_url, request.context.trace_id)
    assert parent_id(call) == attempt.context.span_id
    assert int(call["headers"]["traceparent"][-2:], 16) & 1  # sampled

    # Neither the prompt, the reply nor any key is in a span.
    text = all_text([request, attempt])
    assert PROMPT not in text and reply.choices[0].message.content not in text
    assert traced.team_key not in text and UPSTREAM_KEY not in text


async def test_stream_records_time_to_first_token_and_ends_its_spans_once(
    traced: Traced,
) -> None:
    request_id = rid()
    stream = await traced.client().chat.completions.create(
        model="test-chat",
        messages=[{"role": "user", "content": PROMPT}],
        stream=True,
        stream_options={"include_usage": True},
        extra_headers={"x-request-id": request_id, "x-sim-tpot-ms": "5"},
    )
    chunks = [chunk async for chunk in stream]
    usage = chunks[-1].usage
    assert usage is not None
    request, attempt = await traced.spans(request_id, 2)
    await asyncio.sleep(0.2)
    assert len(await traced.current(request_id)) == 2
    attrs = dict(request.attributes or {})
    assert attrs["gen_ai.request.stream"] is True
    assert attrs["gen_ai.usage.output_tokens"] == usage.completion_tokens
    assert attrs["gen_ai.response.id"] == chunks[0].id
    assert attrs["gen_ai.response.finish_reasons"] == ("stop",)
    ttft = attrs["gen_ai.response.time_to_first_chunk"]
    assert isinstance(ttft, float) and ttft > 0
    assert request.end_time is not None and request.start_time is not None
    assert ttft < (request.end_time - request.start_time) / 1e9
    assert [event.name for event in request.events] == ["gen_ai.first_token"]
    assert request.events[0].timestamp < request.end_time
    a = dict(attempt.attributes or {})
    assert a["gen_ai.response.time_to_first_chunk"] > 0
    assert attempt.end_time is not None and attempt.end_time <= request.end_time


async def test_embeddings_span(traced: Traced) -> None:
    request_id = rid()
    reply = await traced.client().embeddings.create(
        model="test-embed", input=["one", "two"], extra_headers={"x-request-id": request_id}
    )
    request, attempt = await traced.spans(request_id, 2)
    assert request.name == "embeddings test-embed"
    attrs = dict(request.attributes or {})
    assert attrs["gen_ai.operation.name"] == "embeddings"
    assert attrs["gen_ai.usage.input_tokens"] == reply.usage.prompt_tokens
    assert attrs["tollway.deployment"] == "embed-main"
    assert attempt.name == "embeddings sim-embed" and attempt.kind is SpanKind.CLIENT


async def test_failover_has_two_attempt_spans_the_first_failed(
    traced: Traced, simulator_url: str
) -> None:
    request_id = rid()
    await traced.client().chat.completions.create(
        model="test-fallback",
        messages=[{"role": "user", "content": "hello"}],
        extra_headers={"x-request-id": request_id},
    )
    request, dead, live = await traced.spans(request_id, 3)
    assert request.status.status_code is StatusCode.UNSET
    attrs = dict(request.attributes or {})
    assert attrs["tollway.attempts"] == 2 and attrs["tollway.deployment"] == "live-secondary"
    d = dict(dead.attributes or {})
    assert d["tollway.deployment"] == "dead-primary" and d["server.port"] == 9
    assert d["error.type"] == "UpstreamUnavailable"
    assert dead.status.status_code is StatusCode.ERROR
    assert live.attributes is not None and live.attributes["tollway.deployment"] == "live-secondary"
    assert live.status.status_code is StatusCode.UNSET and "error.type" not in live.attributes
    assert dead.end_time is not None and live.start_time is not None
    assert dead.end_time <= live.start_time
    (call,) = await upstream_calls(simulator_url, request.context.trace_id)
    assert parent_id(call) == live.context.span_id


async def test_upstream_error_marks_both_spans_and_each_retry_has_its_own_parent(
    traced: Traced, simulator_url: str
) -> None:
    request_id = rid()
    with pytest.raises(openai.APIStatusError) as raised:
        await traced.client().chat.completions.create(
            model="test-retry",
            messages=[{"role": "user", "content": "fail"}],
            extra_headers={"x-request-id": request_id, "x-sim-fault": "status:500"},
        )
    assert raised.value.status_code == 502
    request, first, second = await traced.spans(request_id, 3)
    assert request.status.status_code is StatusCode.ERROR
    assert request.attributes is not None
    assert request.attributes["error.type"] == "UpstreamStatusError"
    assert request.attributes["tollway.attempts"] == 2
    for attempt in (first, second):
        assert attempt.status.status_code is StatusCode.ERROR
        assert attempt.attributes is not None
        assert attempt.attributes["http.response.status_code"] == 500
    calls = await upstream_calls(simulator_url, request.context.trace_id)
    assert [parent_id(c) for c in calls] == [first.context.span_id, second.context.span_id]


async def test_stream_cut_by_the_upstream_fails_both_spans(traced: Traced) -> None:
    request_id = rid()
    stream = await traced.client().chat.completions.create(
        model="test-chat",
        messages=[{"role": "user", "content": "a long story"}],
        stream=True,
        extra_headers={"x-request-id": request_id, "x-sim-fault": "stop-after:3"},
    )
    with pytest.raises(openai.APIError):
        async for _ in stream:
            pass
    request, attempt = await traced.spans(request_id, 2)
    assert request.status.status_code is StatusCode.ERROR
    assert attempt.status.status_code is StatusCode.ERROR
    assert request.attributes is not None and attempt.attributes is not None
    assert attempt.attributes["error.type"] == request.attributes["error.type"]
    assert "tollway.abandoned" not in attempt.attributes
    assert request.attributes["gen_ai.response.time_to_first_chunk"] > 0


async def test_refused_request_has_an_error_span_and_no_attempt(traced: Traced) -> None:
    request_id = rid()
    with pytest.raises(openai.NotFoundError):
        await traced.client().chat.completions.create(
            model="no-such-model",
            messages=[{"role": "user", "content": "x"}],
            extra_headers={"x-request-id": request_id},
        )
    spans = await traced.spans(request_id, 1)
    assert len(spans) == 1
    (request,) = spans
    assert request.name == "chat no-such-model"
    assert request.status.status_code is StatusCode.ERROR
    assert request.attributes is not None and request.attributes["error.type"] == "NotFound"
    assert request.attributes["tollway.attempts"] == 0


async def test_request_span_continues_the_callers_trace(traced: Traced, simulator_url: str) -> None:
    trace_id, caller_span = uuid.uuid4().int, uuid.uuid4().int >> 64
    traceparent = f"00-{trace_id:032x}-{caller_span:016x}-01"
    request_id = rid()
    await traced.client().chat.completions.create(
        model="test-chat",
        messages=[{"role": "user", "content": "hello"}],
        extra_headers={
            "x-request-id": request_id, "traceparent": traceparent, "tracestate": "vendor=abc",
        },
    )  # fmt: skip
    request, attempt = await traced.spans(request_id, 2)
    assert request.context.trace_id == trace_id
    assert request.parent is not None and request.parent.span_id == caller_span
    assert request.parent.is_remote
    (call,) = await upstream_calls(simulator_url, trace_id)
    # The caller's traceparent (forwarded by forward_headers) gave way to the gateway's.
    assert parent_id(call) == attempt.context.span_id
    assert call["headers"]["tracestate"] == "vendor=abc"


async def test_malformed_traceparent_starts_a_new_trace(traced: Traced) -> None:
    request_id = rid()
    await traced.client().chat.completions.create(
        model="test-chat",
        messages=[{"role": "user", "content": "hello"}],
        extra_headers={"x-request-id": request_id, "traceparent": "00-not-a-trace-01"},
    )
    request, _ = await traced.spans(request_id, 2)
    assert request.parent is None and request.context.is_valid


async def test_unsampled_caller_gets_no_spans_but_passes_the_decision_on(
    traced: Traced, simulator_url: str
) -> None:
    trace_id = uuid.uuid4().int
    request_id = rid()
    await traced.client().chat.completions.create(
        model="test-chat",
        messages=[{"role": "user", "content": "hello"}],
        extra_headers={
            "x-request-id": request_id,
            "traceparent": f"00-{trace_id:032x}-{1:016x}-00",
        },
    )
    (call,) = await upstream_calls(simulator_url, trace_id)
    assert not int(call["headers"]["traceparent"][-2:], 16) & 1  # not sampled
    assert traced.gateway.tracing is not None
    await asyncio.to_thread(traced.gateway.tracing.flush)
    finished = traced.exporter.get_finished_spans()
    assert not [s for s in finished if s.context.trace_id == trace_id]


async def test_client_leaving_mid_stream_ends_each_span_once(
    traced: Traced,
) -> None:
    request_id = rid()
    body = {"model": "test-chat", "stream": True, "max_tokens": 200,
            "messages": [{"role": "user", "content": "a long story"}]}  # fmt: skip
    headers = {"Authorization": f"Bearer {traced.team_key}", "x-request-id": request_id,
               "x-sim-tpot-ms": "20"}  # fmt: skip
    async with aiohttp.ClientSession() as session:
        response = await session.post(
            traced.url + "/v1/chat/completions", json=body, headers=headers
        )
        assert response.status == 200
        await response.content.readline()
        response.close()  # the client walks away after the first event
    request, attempt = await traced.spans(request_id, 2)
    await asyncio.sleep(0.3)
    assert len(await traced.current(request_id)) == 2
    assert request.end_time is not None and attempt.end_time is not None
    assert request.attributes is not None and request.attributes["tollway.attempts"] == 1
    assert request.attributes["tollway.error.code"] == "client_disconnected"
    assert request.status.status_code is StatusCode.ERROR
    assert attempt.attributes is not None and attempt.attributes["tollway.abandoned"] is True
    # It ended well before the 200 tokens at 20 ms each would have.
    assert request.start_time is not None
    assert (request.end_time - request.start_time) / 1e9 < 3


async def test_capture_content_records_prompts_and_completions(
    tmp_path: Path, simulator_url: str
) -> None:
    runner, traced = await start_traced(tmp_path, simulator_url, capture_content=True)
    try:
        request_id = rid()
        reply = await traced.client().chat.completions.create(
            model="test-chat",
            messages=[{"role": "system", "content": "be brief"},
                      {"role": "user", "content": PROMPT}],
            extra_headers={"x-request-id": request_id},
        )  # fmt: skip
        request, _ = await traced.spans(request_id, 2)
        attrs = dict(request.attributes or {})
        assert orjson_loads(attrs["gen_ai.input.messages"]) == [
            {"role": "system", "parts": [{"type": "text", "content": "be brief"}]},
            {"role": "user", "parts": [{"type": "text", "content": PROMPT}]},
        ]
        (output,) = orjson_loads(attrs["gen_ai.output.messages"])
        assert output["parts"] == [{"type": "text", "content": reply.choices[0].message.content}]
        assert output["finish_reason"] == reply.choices[0].finish_reason

        request_id = rid()
        stream = await traced.client().chat.completions.create(
            model="test-chat", messages=[{"role": "user", "content": PROMPT}], stream=True,
            extra_headers={"x-request-id": request_id},
        )  # fmt: skip
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        request, _ = await traced.spans(request_id, 2)
        (output,) = orjson_loads((request.attributes or {})["gen_ai.output.messages"])
        assert output == {"role": "assistant", "finish_reason": "stop",
                          "parts": [{"type": "text", "content": text}]}  # fmt: skip
    finally:
        await runner.cleanup()


async def test_captured_content_is_redacted_and_cut_as_the_request_logs_is(
    tmp_path: Path, simulator_url: str
) -> None:
    # Prompts went into spans as they came while the request log's copy was redacted: a key
    # or an e-mail address pasted into a prompt reached the trace backend.
    runner, traced = await start_traced(
        tmp_path, simulator_url, capture_content=True, content_max_chars=100
    )
    leaked = "sk-proj-" + "Q" * 40
    try:
        request_id = rid()
        await traced.client().chat.completions.create(
            model="test-chat",
            messages=[{"role": "user", "content": f"my key is {leaked}, mail ann@example.com"},
                      {"role": "user", "content": "x" * 500}],
            extra_headers={"x-request-id": request_id},
        )  # fmt: skip
        request, _ = await traced.spans(request_id, 2)
        said = orjson_loads((request.attributes or {})["gen_ai.input.messages"])
        first, second = (message["parts"][0]["content"] for message in said)
        assert first == "my key is [SECRET], mail [EMAIL]"
        assert second == "x" * 100 + "…[400 more chars]"
        assert leaked not in str(request.attributes)
    finally:
        await runner.cleanup()


def orjson_loads(value: object) -> Any:
    import orjson

    assert isinstance(value, str)
    return orjson.loads(value)
