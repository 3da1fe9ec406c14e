"""The upstream HTTP clients alone: CPU a request of each, on the benchmark's request.

The gateway's cost is dominated by its upstream client (docs/performance.md), so candidates
are compared here without any server in front: one process on the target core runs 64
callers that POST the benchmark's small chat request to the simulator (started on the side
core) for a few seconds, and the process's CPU time is divided by the answers. Each client
runs in a process of its own, in rounds whose order rotates; the median of the rounds is
reported. Clients whose package is not installed are skipped (``aiosonic`` and
``pyreqwest`` are not dependencies: ``pip install`` them to compare).

    python bench/clients.py                     # every installed client, 3 rounds
    python bench/clients.py --clients http1 aiohttp --rounds 5
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run  # bench/run.py: processes, the simulator, the request body

CLIENTS = ("http1", "aiohttp", "httpx", "pyreqwest", "aiosonic", "bare")
"""``http1``: the gateway's own; ``bare``: an asyncio protocol with llhttp and nothing else
(no limits, no error handling), the floor a client in Python stands on."""
PACKAGES = {"http1": "httptools", "aiohttp": "aiohttp", "httpx": "httpx", "bare": "httptools"}
CALLERS = 64
HEADERS = {"Content-Type": "application/json", "Authorization": "Bearer sk-bench"}
Call = Callable[[], Awaitable[tuple[int, bytes]]]


async def _caller(kind: str, url: str, body: bytes) -> tuple[Call, Callable[[], Awaitable[None]]]:
    """One request of ``kind``'s client, and how to close it."""
    if kind == "http1":
        from tollway.providers.http1 import HTTP1Client

        client = HTTP1Client(max_connections=256)

        async def http1() -> tuple[int, bytes]:
            response = await client.post(url, body, HEADERS, 5.0)
            try:
                return response.status, await response.read()
            finally:
                response.release()

        return http1, client.close
    if kind == "aiohttp":
        import aiohttp

        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=256),
            timeout=aiohttp.ClientTimeout(total=None),
            cookie_jar=aiohttp.DummyCookieJar(),
        )

        async def with_aiohttp() -> tuple[int, bytes]:
            answer = await session.post(url, data=body, headers=HEADERS, allow_redirects=False)
            try:
                return answer.status, await answer.read()
            finally:
                answer.release()

        return with_aiohttp, session.close
    if kind == "httpx":
        import httpx

        limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
        http = httpx.AsyncClient(limits=limits, timeout=None, trust_env=False)

        async def with_httpx() -> tuple[int, bytes]:
            answer = await http.post(url, content=body, headers=HEADERS)
            return answer.status_code, answer.content

        return with_httpx, http.aclose
    if kind == "pyreqwest":
        from pyreqwest.client import ClientBuilder

        reqwest = await ClientBuilder().build().__aenter__()

        async def with_pyreqwest() -> tuple[int, bytes]:
            request = reqwest.post(url).body_bytes(body).headers(HEADERS).build()
            answer = await request.send()
            return answer.status, bytes(await answer.bytes())

        async def close_reqwest() -> None:
            await reqwest.__aexit__(None, None, None)

        return with_pyreqwest, close_reqwest
    if kind == "aiosonic":
        import aiosonic

        sonic = aiosonic.HTTPClient()

        async def with_aiosonic() -> tuple[int, bytes]:
            answer = await sonic.post(url, data=body, headers=HEADERS)
            return answer.status_code, await answer.content()

        async def close_sonic() -> None:
            await sonic.connector.cleanup()

        return with_aiosonic, close_sonic
    return await _bare(url, body)


async def _bare(url: str, body: bytes) -> tuple[Call, Callable[[], Awaitable[None]]]:
    """A keep-alive connection per caller, llhttp's parser, one future an answer."""
    import httptools
    from yarl import URL

    parsed = URL(url)
    host, port = parsed.raw_host or "127.0.0.1", parsed.port or 80
    head = (
        f"POST {parsed.raw_path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        + "".join(f"{name}: {value}\r\n" for name, value in HEADERS.items())
        + f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    loop = asyncio.get_running_loop()

    class Bare(asyncio.Protocol):
        def __init__(self) -> None:
            self.parser = httptools.HttpResponseParser(self)
            self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
            self.body: list[bytes] = []
            self.transport: Any = None

        def connection_made(self, transport: Any) -> None:
            self.transport = transport

        def data_received(self, data: bytes) -> None:
            self.parser.feed_data(data)

        def on_body(self, piece: bytes) -> None:
            self.body.append(piece)

        def on_message_complete(self) -> None:
            waiter, self.waiter = self.waiter, None
            answer, self.body = b"".join(self.body), []
            if waiter is not None:
                waiter.set_result((self.parser.get_status_code(), answer))

    idle: list[Bare] = []

    async def bare() -> tuple[int, bytes]:
        if idle:
            conn = idle.pop()
        else:
            _, conn = await loop.create_connection(Bare, host, port)
        conn.waiter = loop.create_future()
        conn.transport.write(head + body)
        answer = await conn.waiter
        idle.append(conn)
        return answer

    async def close() -> None:
        for conn in idle:
            conn.transport.close()

    return bare, close


async def measure(kind: str, url: str, body: bytes, seconds: float) -> dict[str, float]:
    """Requests a second and CPU µs a request of ``kind`` over ``seconds`` (after a warm-up)."""
    call, close = await _caller(kind, url, body)
    answered = 0
    stop = False

    async def caller() -> None:
        nonlocal answered
        while not stop:
            status, _ = await call()
            if status != 200:
                raise run.BenchError(f"{kind}: the simulator answered {status}")
            answered += 1

    callers = [asyncio.ensure_future(caller()) for _ in range(CALLERS)]
    await asyncio.sleep(min(2.0, seconds / 2))  # warm-up: connections made, caches warm
    before, usage, started = answered, resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
    await asyncio.sleep(seconds)
    after, used, ended = answered, resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
    stop = True
    await asyncio.gather(*callers)
    await close()
    cpu = (used.ru_utime - usage.ru_utime) + (used.ru_stime - usage.ru_stime)
    count = after - before
    return {"rps": count / (ended - started), "cpu_us": cpu / count * 1e6, "busy": cpu / seconds}


def installed(kind: str) -> bool:
    """Whether ``kind``'s package can be imported here."""
    return importlib.util.find_spec(PACKAGES.get(kind, kind)) is not None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", nargs="+", choices=CLIENTS, default=list(CLIENTS))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--one", choices=CLIENTS, help=argparse.SUPPRESS)  # a child process
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    body = run.chat_body("sim-chat")
    if args.one:
        import uvloop

        print(json.dumps(uvloop.run(measure(args.one, args.url, body, args.seconds))))
        return 0
    kinds = [kind for kind in args.clients if installed(kind)]
    skipped = sorted(set(args.clients) - set(kinds))
    if skipped:
        print(f"skipped (not installed): {', '.join(skipped)}")
    procs = run.Processes(Path(tempfile.mkdtemp(prefix="tollway-clients-")))
    try:
        sim = run.start_simulator(procs, "simulator", {})
        url = sim.url + run.CHAT_PATH
        results: dict[str, list[dict[str, float]]] = {kind: [] for kind in kinds}
        for round_ in range(args.rounds):
            order = kinds[round_ % len(kinds) :] + kinds[: round_ % len(kinds)]
            for kind in order:
                cmd = [run.PYTHON, str(Path(__file__).resolve()), "--one", kind, "--url", url]
                cmd += ["--seconds", str(args.seconds)]
                out = procs.run(cmd, run.TARGET_CORE, args.seconds + 60, {})
                results[kind].append(json.loads(out.strip().splitlines()[-1]))
    finally:
        procs.stop_all()
    print("| client | CPU µs a request (median) | rounds | requests/s (median) |")
    print("|---|---:|---|---:|")
    for kind in kinds:
        cpu = [r["cpu_us"] for r in results[kind]]
        rps = statistics.median(r["rps"] for r in results[kind])
        rounds = ", ".join(f"{value:.1f}" for value in cpu)
        print(f"| `{kind}` | {statistics.median(cpu):.1f} | {rounds} | {rps:,.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
