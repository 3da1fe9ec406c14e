"""Micro-benchmark: what the tracing stage adds to one request, hook by hook.

Runs the hooks a request goes through (``on_request``, ``on_attempt``, ``on_attempt_end``,
``on_response`` or one ``on_chunk`` per chunk, ``on_complete``) on the real stage, with the
real ``TracerProvider`` and ``BatchSpanProcessor``; only the exporter is one that discards
(what a network exporter costs happens on the processor's thread, off the event loop).
The same loop without the stage is subtracted. Needs the ``otel`` extra:

    python bench/tracing_stage.py [--requests 20000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from tollway.auth.principal import Principal
from tollway.auth.vault import Vault
from tollway.config import validate_settings
from tollway.config.schema import TracingConfig
from tollway.core.context import Attempt, RequestContext
from tollway.core.types import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    Choice,
    ChunkChoice,
    Message,
    Usage,
)
from tollway.routing.table import build_routing_table
from tollway.telemetry.tracing import Tracing, TracingStage

CHUNKS = 16


class Discard(SpanExporter):
    """Takes spans and drops them; counts how many arrived."""

    def __init__(self) -> None:
        self.exported = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.exported += len(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


SETTINGS = validate_settings(
    {"models": [{"name": "gpt-4o", "deployments": [{"provider": "openai", "model": "gpt-4o",
     "api_base": "https://api.openai.com/v1", "api_key": "env:KEY"}]}]},
    source="bench",
)  # fmt: skip
TABLE = build_routing_table(SETTINGS, None)
DEPLOYMENT = TABLE.groups[0].deployments[0]
PRINCIPAL = Principal(kind="key", id="key-1", team="team-1")
HEADERS: dict[str, str] = {"content-type": "application/json"}
MESSAGES = [Message("system", "You are brief."), Message("user", "What is a toll booth?")]
RESPONSE = ChatResponse(
    "chatcmpl-1", "gpt-4o-2024-08-06", 0,
    [Choice(0, Message("assistant", "A place where a toll is paid."), "stop")],
    Usage(20, 9),
)  # fmt: skip
STREAM = [
    ChatChunk("chatcmpl-1", "gpt-4o", 0, [ChunkChoice(0, content=f"word{i} ")])
    for i in range(CHUNKS - 1)
] + [ChatChunk("chatcmpl-1", "gpt-4o", 0, [ChunkChoice(0, finish_reason="stop")])]


async def one_request(stage: TracingStage | None, index: int, stream: bool) -> None:
    """What the pipeline does around one request with one attempt."""
    chat = ChatRequest("gpt-4o", MESSAGES, stream=stream, max_tokens=100, temperature=0.2)
    ctx = RequestContext(f"req-{index}", "chat", "gpt-4o", HEADERS, principal=PRINCIPAL, chat=chat)
    if stage is not None:
        await stage.on_request(ctx)
        await stage.on_attempt(ctx, DEPLOYMENT)
    attempt = Attempt(DEPLOYMENT, time.perf_counter())
    ctx.attempts, ctx.deployment = 1, DEPLOYMENT
    ctx.tries.append(attempt)
    if stream:
        attempt.first_chunk_at = ctx.first_token_at = time.perf_counter()
        for chunk in STREAM:
            if stage is not None:
                stage.on_chunk(ctx, chunk)
    attempt.ended = time.perf_counter()
    if stage is not None:
        await stage.on_attempt_end(ctx, attempt)
    ctx.usage, ctx.cost_usd = Usage(20, 9), 0.000123
    if stage is not None and not stream:
        await stage.on_response(ctx, RESPONSE)
    ctx.finished_at = time.perf_counter()
    if stage is not None:
        await stage.on_complete(ctx)


async def per_request(stage: TracingStage | None, requests: int, stream: bool) -> float:
    """Microseconds per request of ``requests`` run back to back."""
    gc.collect()
    started = time.perf_counter()
    for index in range(requests):
        await one_request(stage, index, stream)
    return (time.perf_counter() - started) / requests * 1e6


async def scenario(config: dict[str, Any], requests: int, rounds: int, stream: bool) -> float:
    """Median added microseconds per request of the stage under ``config`` (each round
    times the loop without the stage, then with it)."""
    exporter = Discard()
    tracing = Tracing(TracingConfig(enabled=True, **config), Vault({}), exporter)
    stage = tracing.stage(TABLE)
    added = []
    for _ in range(rounds):
        bare = await per_request(None, requests, stream)
        added.append(await per_request(stage, requests, stream) - bare)
    await tracing.close()
    expected = rounds * requests * 2 if config.get("sample_ratio", 1.0) else 0
    assert exporter.exported == expected, f"{exporter.exported} of {expected} spans exported"
    return statistics.median(added)


async def main(requests: int, rounds: int) -> None:
    logging.basicConfig(level=logging.WARNING)
    scenarios: list[tuple[str, dict[str, Any], bool]] = [
        ("chat, sampled", {}, False),
        (f"stream of {CHUNKS} chunks, sampled", {}, True),
        ("chat, sampled, capture_content", {"capture_content": True}, False),
        ("chat, sampled, propagate: false", {"propagate": False}, False),
        ("chat, not sampled (sample_ratio 0)", {"sample_ratio": 0.0}, False),
    ]
    print(f"| scenario ({requests} requests x {rounds} rounds, median) | µs per request |")
    print("|---|---|")
    for name, config, stream in scenarios:
        cost = await scenario(config, requests, rounds, stream)
        print(f"| {name} | {cost:.1f} |", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5)
    options = parser.parse_args()
    asyncio.run(main(options.requests, options.rounds))
