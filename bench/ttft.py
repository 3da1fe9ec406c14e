"""Streaming time-to-first-token client: prints one JSON line of TTFT samples, in ms.

TTFT is the time from sending the request to the first ``data:`` event whose delta has
content. Requests run at a fixed concurrency, a bounded number of them, each with a timeout:

    python bench/ttft.py --url http://127.0.0.1:8001/v1/chat/completions --model sim-chat
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any

import aiohttp
import orjson
import uvloop

PROMPT = "Write a short story about a toll booth."


def _payload(model: str, max_tokens: int) -> bytes:
    """The streaming chat completion request body."""
    return orjson.dumps(
        {
            "model": model,
            "messages": [{"role": "user", "content": PROMPT}],
            "max_tokens": max_tokens,
            "stream": True,
        }
    )


def _has_content(line: bytes) -> bool:
    """Whether an SSE line is a data event carrying generated text."""
    if not line.startswith(b"data:"):
        return False
    data = line[5:].strip()
    if not data or data == b"[DONE]":
        return False
    event: Any = orjson.loads(data)
    choices = event.get("choices") or [{}]
    return bool((choices[0].get("delta") or {}).get("content"))


async def _one(
    session: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str]
) -> tuple[float, float]:
    """Send one streaming request; return (TTFT, total time) in ms."""
    start = time.perf_counter()
    first = 0.0
    async with session.post(url, data=body, headers=headers) as r:
        if r.status != 200:
            raise RuntimeError(f"HTTP {r.status}: {(await r.read())[:200]!r}")
        async for line in r.content:
            if not first and _has_content(line):
                first = time.perf_counter()
    if not first:
        raise RuntimeError("the stream ended without content")
    end = time.perf_counter()
    return (first - start) * 1000, (end - start) * 1000


async def _batch(
    session: aiohttp.ClientSession,
    url: str,
    body: bytes,
    headers: dict[str, str],
    requests: int,
    concurrency: int,
) -> tuple[list[float], list[float]]:
    """Send ``requests`` streaming requests, ``concurrency`` at a time."""
    queue = iter(range(requests))
    ttft: list[float] = []
    total: list[float] = []

    async def worker() -> None:
        # The shared iterator bounds the total count; each request has its own timeout.
        for _ in queue:
            first, whole = await _one(session, url, body, headers)
            ttft.append(first)
            total.append(whole)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return ttft, total


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """Warm up (connections, caches), then measure; one session for both."""
    body = _payload(args.model, args.max_tokens)
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {args.api_key}"}
    timeout = aiohttp.ClientTimeout(total=30)
    connector = aiohttp.TCPConnector(limit=args.concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await _batch(session, args.url, body, headers, args.warmup, args.concurrency)
        ttft, total = await _batch(
            session, args.url, body, headers, args.requests, args.concurrency
        )
    return {"ttft_ms": ttft, "total_ms": total}


def main() -> None:
    """Parse the command line, run, print the JSON result."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--api-key", default="sk-bench-unchecked")
    args = parser.parse_args()
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    result = asyncio.run(run(args))
    sys.stdout.write(orjson.dumps(result).decode() + "\n")


if __name__ == "__main__":
    main()
