"""What the request log costs a request on the hot path: one entry built and queued.

Times ``RequestLogStage.on_complete``'s work (``entry(ctx)`` + ``put_nowait``) on a finished
request context shaped like a real one (a key principal with tags, a deployment, usage, two
attempts), and, for scale, the writer's background conversion of an entry into a row (with
and without the hash chain). Prints microseconds per call:

    python bench/request_log_entry.py [--n 200000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from tollway.auth.principal import Principal
from tollway.config.schema import RequestLogConfig
from tollway.core.context import Attempt, RequestContext
from tollway.core.types import ChatRequest, Deployment, Message, UpstreamTimeouts, Usage
from tollway.store import Store
from tollway.telemetry.request_log import RequestLogWriter
from tollway.telemetry.request_log_stage import entry


def finished_request() -> RequestContext:
    """A finished, costed chat request that took two attempts."""
    deployment = Deployment(
        id="gpt-4o#0", provider="openai", model="gpt-4o", api_base="http://x",
        timeouts=UpstreamTimeouts(5.0, 60.0, 600.0),
    )  # fmt: skip
    ctx = RequestContext(
        request_id="req_0123456789ab000000000001", endpoint="chat", model="gpt-4o",
        client_headers={}, chat=ChatRequest(model="gpt-4o", messages=[Message("user", "hi")]),
        principal=Principal(
            kind="key", id="6f1c2a9e-0000-4000-8000-000000000001", user="u-1", team="t-1",
            tags={"service": "classifier"},
        ),
    )  # fmt: skip
    ctx.deployment = deployment
    ctx.attempts = 2
    ctx.tries = [Attempt(deployment, 0.0, 0.1), Attempt(deployment, 0.2, 0.5)]
    ctx.usage = Usage(input_tokens=120, output_tokens=48, cached_input_tokens=64)
    ctx.cost_usd = 0.00123
    ctx.first_token_at = ctx.started + 0.12
    ctx.finished_at = ctx.started + 0.5
    return ctx


def per_call(seconds: float, n: int) -> str:
    return f"{seconds / n * 1e6:.2f} µs"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=200_000)
    n = parser.parse_args().n
    ctx = finished_request()
    spool = Path(tempfile.mkdtemp())
    writer = RequestLogWriter(Store(), RequestLogConfig(queue_size=n + 1), spool)
    put = writer.put_nowait

    start = time.perf_counter()
    for _ in range(n):
        entry(ctx)
    built = time.perf_counter() - start

    start = time.perf_counter()
    for _ in range(n):
        put(entry(ctx))
    queued = time.perf_counter() - start

    made = entry(ctx)
    rows = min(n, 20_000)
    start = time.perf_counter()
    for _ in range(rows):
        writer._row(made, 1)
    converted = time.perf_counter() - start
    chained = RequestLogWriter(Store(), RequestLogConfig(chain=True), spool)
    start = time.perf_counter()
    for _ in range(rows):
        chained._row(made, 1)
    hashed = time.perf_counter() - start

    print(f"entry(ctx)                         {per_call(built, n)}")
    print(f"entry(ctx) + put_nowait (hot path) {per_call(queued, n)}")
    print(f"writer: entry -> row (background)  {per_call(converted, rows)}")
    print(f"writer: entry -> row, chained      {per_call(hashed, rows)}")


if __name__ == "__main__":
    main()
