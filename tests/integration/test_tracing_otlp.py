"""Tracing end to end: a gateway process exporting over OTLP/HTTP to a receiver started here,
and a gateway process on a Python where OpenTelemetry cannot be imported."""

from __future__ import annotations

import asyncio
import os
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import openai
import pytest
import yaml
from aiohttp import web

from tests.conftest import UPSTREAM_KEY
from tests.support import CLIENT_KEY, ROOT, free_port, running_gateway, tollway_command

OTLP_TOKEN = "otlp-token-for-tests-42"
PASTED_KEY = "tw-PastedAsTheModel0123456789abcdefXYZ"


@dataclass
class Receiver:
    """An OTLP/HTTP traces endpoint on a real port: what was posted to it."""

    url: str = ""
    posts: list[tuple[dict[str, str], bytes]] = field(default_factory=list)

    def spans(self) -> list[tuple[dict[str, Any], Any]]:
        """Every span posted, with its resource's attributes."""
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
        )

        out = []
        for _, body in self.posts:
            request = ExportTraceServiceRequest()
            request.ParseFromString(body)
            for resource_spans in request.resource_spans:
                resource = values(resource_spans.resource.attributes)
                for scope_spans in resource_spans.scope_spans:
                    out += [(resource, span) for span in scope_spans.spans]
        return out


def values(attributes: Any) -> dict[str, Any]:
    """OTLP ``KeyValue``s as a plain dict."""

    def value(any_value: Any) -> Any:
        kind = any_value.WhichOneof("value")
        if kind == "array_value":
            return [value(v) for v in any_value.array_value.values]
        return getattr(any_value, kind) if kind else None

    return {kv.key: value(kv.value) for kv in attributes}


@contextmanager
def otlp_receiver() -> Iterator[Receiver]:
    """The receiver, served by aiohttp on a thread of its own (the test blocks on processes)."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceResponse,
    )

    receiver = Receiver()
    answer = ExportTraceServiceResponse().SerializeToString()

    async def traces(request: web.Request) -> web.Response:
        receiver.posts.append((dict(request.headers), await request.read()))
        return web.Response(body=answer, content_type="application/x-protobuf")

    async def start() -> web.AppRunner:
        app = web.Application()
        app.router.add_post("/v1/traces", traces)
        runner = web.AppRunner(app)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        receiver.url = f"http://127.0.0.1:{port}/v1/traces"
        return runner

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="otlp-receiver", daemon=True)
    thread.start()
    runner = asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    try:
        yield receiver
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def chat_config(simulator_url: str, **telemetry: Any) -> dict[str, Any]:
    deployment = {"provider": "openai", "model": "sim-chat", "api_base": f"{simulator_url}/v1",
                  "api_key": "env:TEST_UPSTREAM_KEY"}  # fmt: skip
    return {
        "telemetry": telemetry,
        "models": [
            {"name": "test-chat", "deployments": [deployment]},
            {"name": "test-embed", "kind": "embedding",
             "deployments": [{**deployment, "model": "sim-embed"}]},
        ],
    }  # fmt: skip


def test_spans_reach_an_otlp_collector_with_the_genai_attributes(
    log_dir: Path, simulator_url: str
) -> None:
    pytest.importorskip("opentelemetry.sdk", reason="tracing needs the otel extra (tollway[otel])")
    with otlp_receiver() as receiver:
        tracing = {"enabled": True, "otlp_endpoint": receiver.url, "service_name": "tollway-test",
                   "headers": {"authorization": "env:OTLP_TOKEN"}}  # fmt: skip
        # Spans are queued for a minute: only the flush when the gateway stops sends them.
        env = {"TEST_UPSTREAM_KEY": UPSTREAM_KEY, "OTLP_TOKEN": f"Bearer {OTLP_TOKEN}",
               "OTEL_BSP_SCHEDULE_DELAY": "60000"}  # fmt: skip
        config = chat_config(simulator_url, tracing=tracing)
        with running_gateway(log_dir, config, env) as (url, process):
            client = openai.OpenAI(base_url=url + "/v1", api_key=CLIENT_KEY, max_retries=0)
            reply = client.chat.completions.create(
                model="test-chat", messages=[{"role": "user", "content": "hello there"}]
            )
            client.embeddings.create(model="test-embed", input="embed me")
            # A key pasted as the model: a 404, whose span must not carry it.
            with pytest.raises(openai.NotFoundError):
                client.chat.completions.create(
                    model=PASTED_KEY, messages=[{"role": "user", "content": "hi"}]
                )
            assert receiver.posts == []
        output = process.output()
        assert "Traceback" not in output and OTLP_TOKEN not in output

    assert receiver.posts, "the gateway sent no spans when it stopped"
    for headers, _ in receiver.posts:
        assert headers["Content-Type"] == "application/x-protobuf"
        assert headers["Authorization"] == f"Bearer {OTLP_TOKEN}"
    spans = receiver.spans()
    assert {resource["service.name"] for resource, _ in spans} == {"tollway-test"}
    by_name = {span.name: span for _, span in spans}
    assert set(by_name) == {"chat test-chat", "chat sim-chat", "embeddings test-embed",
                            "embeddings sim-embed", "chat [SECRET]"}  # fmt: skip
    request, attempt = by_name["chat test-chat"], by_name["chat sim-chat"]
    assert request.kind == request.SPAN_KIND_SERVER and attempt.kind == attempt.SPAN_KIND_CLIENT
    assert attempt.parent_span_id == request.span_id and attempt.trace_id == request.trace_id
    attrs = values(request.attributes)
    assert reply.usage is not None
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.provider.name"] == "openai"
    assert attrs["gen_ai.request.model"] == "test-chat"
    assert attrs["gen_ai.response.model"] == reply.model
    assert attrs["gen_ai.response.id"] == reply.id
    assert attrs["gen_ai.usage.input_tokens"] == reply.usage.prompt_tokens
    assert attrs["gen_ai.usage.output_tokens"] == reply.usage.completion_tokens
    assert attrs["gen_ai.response.finish_reasons"] == [reply.choices[0].finish_reason]
    assert values(by_name["embeddings test-embed"].attributes)["gen_ai.operation.name"] == (
        "embeddings"
    )
    text = str([values(span.attributes) for _, span in spans])
    assert "hello there" not in text and CLIENT_KEY not in text and UPSTREAM_KEY not in text
    assert values(by_name["chat [SECRET]"].attributes)["gen_ai.request.model"] == "[SECRET]"
    assert PASTED_KEY[3:20] not in b"".join(body for _, body in receiver.posts).decode("latin-1")


# --- without OpenTelemetry ----------------------------------------------------------------------

BLOCKER = '''
import sys


class NoOpenTelemetry:
    """As if no OpenTelemetry package were installed."""

    def find_spec(self, name, path=None, target=None):
        if name == "opentelemetry" or name.startswith("opentelemetry."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, NoOpenTelemetry())
'''


@pytest.fixture
def without_opentelemetry(tmp_path: Path) -> dict[str, str]:
    """Environment for a child Python on which ``import opentelemetry`` fails."""
    (tmp_path / "sitecustomize.py").write_text(BLOCKER)
    return {"PYTHONPATH": str(tmp_path)}


def test_gateway_without_opentelemetry_serves_with_tracing_off(
    log_dir: Path, simulator_url: str, without_opentelemetry: dict[str, str]
) -> None:
    env = {"TEST_UPSTREAM_KEY": UPSTREAM_KEY, **without_opentelemetry}
    with running_gateway(log_dir, chat_config(simulator_url), env) as (url, process):
        client = openai.OpenAI(base_url=url + "/v1", api_key=CLIENT_KEY, max_retries=0)
        reply = client.chat.completions.create(
            model="test-chat", messages=[{"role": "user", "content": "hello"}]
        )
        assert reply.choices[0].message.content
    assert "Traceback" not in process.output()


def test_tracing_without_opentelemetry_is_a_config_error(
    tmp_path: Path, without_opentelemetry: dict[str, str]
) -> None:
    config = tmp_path / "tollway.yaml"
    config.write_text(yaml.safe_dump({"telemetry": {"tracing": {"enabled": True}}}))
    env = {**os.environ, **without_opentelemetry}
    checked = subprocess.run(
        tollway_command("config", "check", str(config)), env=env, capture_output=True, text=True,
        timeout=60, cwd=ROOT,
    )  # fmt: skip
    assert checked.returncode == 2, checked.stdout + checked.stderr
    assert "telemetry.tracing" in checked.stderr
    assert "pip install 'tollway[otel]'" in checked.stderr
    assert "Traceback" not in checked.stderr
