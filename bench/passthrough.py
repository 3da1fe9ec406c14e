"""A bare pass-through proxy, the floor a gateway is measured against: no processing at all.

It receives ``POST /v1/...`` and forwards body, status and content type to the upstream,
streaming the body through chunk by chunk when the upstream answers with SSE. The server
and the upstream client are chosen with ``--stack`` so they can be compared by measurement:

    python bench/passthrough.py --stack aiohttp-aiohttp --port 8001 --upstream http://127.0.0.1:9000
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
from collections.abc import AsyncIterator, Mapping
from typing import Any

STACKS = (
    "aiohttp-aiohttp",
    "starlette-aiohttp",
    "starlette-httpx",
    "aiohttp-httpx",
    "aiohttp-http1",
)
FORWARDED = ("content-type", "authorization")
DEFAULT_TYPE = "application/json"
SSE_TYPE = "text/event-stream"
# One pool for all targets, large enough that 64 client connections never queue on it.
POOL_SIZE = 256


def _headers(incoming: Mapping[str, str]) -> dict[str, str]:
    """The request headers worth forwarding: content type and credentials only."""
    return {name: incoming[name] for name in FORWARDED if name in incoming}


def _is_sse(content_type: str) -> bool:
    """Whether the upstream answers with a stream of server-sent events."""
    return content_type.startswith(SSE_TYPE)


# --- upstream clients: each yields (status, content type, body iterator) -------------------


class AiohttpUpstream:
    """Upstream calls through one aiohttp ClientSession."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.session: Any = None

    async def start(self) -> None:
        """Open the connection pool."""
        import aiohttp

        connector = aiohttp.TCPConnector(limit=POOL_SIZE)
        self.session = aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=None)
        )

    async def close(self) -> None:
        """Close the connection pool."""
        await self.session.close()

    async def send(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, str, Any]:
        """Send the request; return status, content type and the body (bytes or iterator)."""
        response = await self.session.post(self.base + path, data=body, headers=headers)
        ctype = response.headers.get("Content-Type", DEFAULT_TYPE)
        if not _is_sse(ctype):
            async with response:
                return response.status, ctype, await response.read()
        return response.status, ctype, self._chunks(response)

    @staticmethod
    async def _chunks(response: Any) -> AsyncIterator[bytes]:
        """The SSE body as it arrives, releasing the connection at the end."""
        try:
            async for chunk in response.content.iter_any():
                yield chunk
        finally:
            response.release()


class HttpxUpstream:
    """Upstream calls through one httpx AsyncClient."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.client: Any = None

    async def start(self) -> None:
        """Open the connection pool."""
        import httpx

        limits = httpx.Limits(max_connections=POOL_SIZE, max_keepalive_connections=POOL_SIZE)
        # trust_env off: a proxy from the environment must never see bench traffic.
        self.client = httpx.AsyncClient(limits=limits, timeout=None, trust_env=False)

    async def close(self) -> None:
        """Close the connection pool."""
        await self.client.aclose()

    async def send(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, str, Any]:
        """Send the request; return status, content type and the body (bytes or iterator)."""
        request = self.client.build_request("POST", self.base + path, content=body, headers=headers)
        response = await self.client.send(request, stream=True)
        ctype = response.headers.get("content-type", DEFAULT_TYPE)
        if not _is_sse(ctype):
            try:
                return response.status_code, ctype, await response.aread()
            finally:
                await response.aclose()
        return response.status_code, ctype, self._chunks(response)

    @staticmethod
    async def _chunks(response: Any) -> AsyncIterator[bytes]:
        """The SSE body as it arrives, closing the response at the end."""
        try:
            async for chunk in response.aiter_raw():
                yield chunk
        finally:
            await response.aclose()


class Http1Upstream(AiohttpUpstream):
    """Upstream calls through the gateway's own HTTP/1.1 client (``tollway.providers.http1``),
    so the floor can also be measured on the client the gateway runs on. Its answers read as
    aiohttp's do (``content.iter_any``, ``release``)."""

    async def start(self) -> None:
        """Open the connection pool."""
        from tollway.providers.http1 import HTTP1Client

        self.session = HTTP1Client(max_connections=POOL_SIZE)

    async def send(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, str, Any]:
        """Send the request; return status, content type and the body (bytes or iterator)."""
        response = await self.session.post(self.base + path, body, headers, None)
        ctype = response.headers.get("content-type", DEFAULT_TYPE)
        if not _is_sse(ctype):
            try:
                return response.status, ctype, await response.read()
            finally:
                response.release()
        return response.status, ctype, self._chunks(response)


Upstream = AiohttpUpstream | HttpxUpstream | Http1Upstream


def _upstream(client: str, base: str) -> Upstream:
    """The upstream client named by the second half of a stack name."""
    if client == "http1":
        return Http1Upstream(base)
    return AiohttpUpstream(base) if client == "aiohttp" else HttpxUpstream(base)


# --- servers --------------------------------------------------------------------------------


def serve_aiohttp(upstream: Upstream, host: str, port: int) -> None:
    """Serve with aiohttp.web on uvloop."""
    import uvloop
    from aiohttp import web

    async def forward(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        status, ctype, payload = await upstream.send(request.path, body, _headers(request.headers))
        if isinstance(payload, bytes):
            return web.Response(status=status, body=payload, headers={"Content-Type": ctype})
        response = web.StreamResponse(status=status, headers={"Content-Type": ctype})
        await response.prepare(request)
        async for chunk in payload:
            await response.write(chunk)
        await response.write_eof()
        return response

    async def health(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def lifecycle(_: web.Application) -> AsyncIterator[None]:
        await upstream.start()
        yield
        await upstream.close()

    app = web.Application()
    app.cleanup_ctx.append(lifecycle)
    app.router.add_post("/v1/{tail:.*}", forward)
    app.router.add_get("/health", health)
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    web.run_app(app, host=host, port=port, access_log=None, print=None, shutdown_timeout=1)


def serve_starlette(upstream: Upstream, host: str, port: int) -> None:
    """Serve with Starlette on uvicorn (uvloop, and httptools when installed)."""
    import contextlib

    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse, Response, StreamingResponse
    from starlette.routing import Route

    async def forward(request: Request) -> Response:
        body = await request.body()
        status, ctype, payload = await upstream.send(
            request.url.path, body, _headers(request.headers)
        )
        if isinstance(payload, bytes):
            return Response(payload, status_code=status, headers={"Content-Type": ctype})
        return StreamingResponse(payload, status_code=status, headers={"Content-Type": ctype})

    async def health(_: Request) -> Response:
        return PlainTextResponse("ok")

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        await upstream.start()
        yield
        await upstream.close()

    routes = [
        Route("/v1/{tail:path}", forward, methods=["POST"]),
        Route("/health", health, methods=["GET"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    uvicorn.run(
        app, host=host, port=port, loop="uvloop", http=http, log_level="warning", access_log=False
    )


def main() -> None:
    """Parse the command line and serve until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack", choices=STACKS, default="aiohttp-aiohttp")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="base URL, e.g. http://127.0.0.1:9000")
    args = parser.parse_args()
    server, client = args.stack.split("-")
    upstream = _upstream(client, args.upstream.rstrip("/"))
    serve = serve_aiohttp if server == "aiohttp" else serve_starlette
    serve(upstream, args.host, args.port)


if __name__ == "__main__":
    main()
