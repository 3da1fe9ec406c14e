"""Wires the gateway's components into the aiohttp application."""

from __future__ import annotations

import asyncio
import gc
import logging
import re
import signal
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Literal

import orjson
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.http_exceptions import HttpProcessingError

from tollway.admin.call import admin_routes
from tollway.admin.openapi import openapi_document
from tollway.admin.routes import ROUTES
from tollway.auth.oidc import MAX_TOKEN_LENGTH
from tollway.config.schema import Settings
from tollway.dialects import anthropic
from tollway.dialects.anthropic import AnthropicDialect
from tollway.dialects.client_address import TrustedProxies, client_address
from tollway.dialects.cors import Cors
from tollway.dialects.http import request_id
from tollway.dialects.openai import OpenAIDialect, error_response
from tollway.dialects.responses import ResponsesDialect
from tollway.dialects.route_miss import route_miss
from tollway.gateway import Gateway
from tollway.limits.estimate import estimate_route
from tollway.telemetry.bodies import redact

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter

GATEWAY = web.AppKey("gateway", Gateway)
STOPPING: web.AppKey[Callable[[], None]] = web.AppKey("stopping")
"""Called as the stop is asked for (SIGTERM, SIGINT), before requests in flight finish."""
log = logging.getLogger("tollway")

MAX_HEADER_VALUE = 2 * MAX_TOKEN_LENGTH
"""The longest header value the server reads (aiohttp's default is 8190 bytes). An OIDC token
may be 16 KiB (a user in hundreds of groups is over 8 KiB), and one just longer must reach
the authenticator to be refused in the client's error shape, not by aiohttp in plain text
with the start of the token in it."""


def create_app(
    settings: Settings,
    environ: Mapping[str, str] | None = None,
    config_path: Path | None = None,
    *,
    listen: tuple[str, int] | None = None,
    span_exporter: SpanExporter | None = None,
) -> web.Application:
    """The aiohttp application for ``settings``; components start with the app.

    ``config_path`` is the file ``settings`` came from: it is watched, and SIGHUP re-reads
    it, to reload model groups without a restart. ``listen`` is the address and port the
    process listens on when not ``settings.server``'s (the command line's, the port 0 got).
    ``span_exporter`` receives the spans instead of the OTLP exporter when tracing is on
    (tests).
    """
    gateway = Gateway(settings, environ, config_path, listen=listen, span_exporter=span_exporter)
    _withhold_malformed_requests(logging.getLogger("aiohttp.server"))
    # The dialects enforce the body limit themselves to answer in the client's error shape.
    app = web.Application(
        client_max_size=gateway.max_body_size + 1,
        handler_args={"max_field_size": MAX_HEADER_VALUE},
    )
    app[GATEWAY] = gateway

    hangup = Hangup(gateway)
    readiness = Readiness(gateway)

    def stopping() -> None:
        # From the stop signal itself: a SIGHUP handled in the same turn of the loop (or
        # during the drain delay and the wait for requests in flight, before the cleanup
        # below runs) reloads not; readiness fails from now, while the gateway still serves.
        hangup.stopping()
        readiness.stopping = True
        gateway.ready = False

    async def shutting_down(_: web.Application) -> None:
        stopping()  # when the app is run without the stop signal telling it first (tests)

    app[STOPPING] = stopping

    async def lifecycle(_: web.Application) -> AsyncIterator[None]:
        undo = _on_hangup(hangup)
        try:
            await gateway.start()
        except BaseException:
            undo()
            raise
        _settle_garbage_collector()
        hangup.serving()
        yield
        hangup.stopping()
        await gateway.close()
        undo()

    app.cleanup_ctx.append(lifecycle)
    app.on_shutdown.append(shutting_down)
    app.router.add_routes(OpenAIDialect(gateway).routes())
    app.router.add_routes(ResponsesDialect(gateway).routes())
    app.router.add_routes(AnthropicDialect(gateway).routes())
    app.router.add_routes([estimate_route(gateway)])
    app.router.add_routes(admin_routes(gateway, ROUTES))
    document = orjson.dumps(openapi_document(ROUTES))

    async def openapi(_: web.Request) -> web.Response:
        return web.Response(body=document, content_type="application/json")

    app.router.add_get("/admin/openapi.json", openapi)
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/health/live", _live)
    app.router.add_get("/health/ready", readiness.answer)
    if settings.server.cors is not None:  # else no CORS work at all, not even a check
        Cors(settings.server.cors).install(app)
    app.router.add_route("*", "/{tail:.*}", _unknown_route)
    return app


GC_YOUNG_THRESHOLD = 10_000
"""Net allocations between young-generation collections (Python's default is 700)."""


class Hangup:
    """What SIGHUP does over the process's life. Its default action ends the process, so it
    is handled from before the gateway starts until it has closed: while starting (store
    migrations, loading identities: seconds) it is remembered and the config is read again
    once the gateway serves; while serving it reloads; while stopping it is ignored, so the
    request log's and the budget spend's last writes are not cut short."""

    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway
        self._state: Literal["starting", "serving", "stopping"] = "starting"
        self._asked = False

    def __call__(self) -> None:
        if self._state == "serving":
            self._gateway.reload_on("sighup")
        elif self._state == "starting":
            self._asked = True
            log.info("SIGHUP while starting: the config is read again once the gateway serves")
        else:
            log.warning("SIGHUP ignored: the gateway is stopping")

    def serving(self) -> None:
        """The gateway serves: reload on SIGHUP, and now if one came while it started."""
        if self._state == "stopping":  # asked to stop while it started: it serves not
            return
        self._state = "serving"
        if self._asked:
            self._gateway.reload_on("sighup")

    def stopping(self) -> None:
        """The gateway is closing: SIGHUP no longer reloads."""
        self._state = "stopping"


def _on_hangup(reload: Callable[[], object]) -> Callable[[], None]:
    """Reload on SIGHUP (where the platform and thread allow a handler); returns the undo."""
    loop = asyncio.get_running_loop()
    try:
        loop.add_signal_handler(signal.SIGHUP, reload)
    except (NotImplementedError, RuntimeError, ValueError):
        return lambda: None

    def undo() -> None:
        loop.remove_signal_handler(signal.SIGHUP)

    return undo


def _settle_garbage_collector() -> None:
    """Move everything start-up made out of the collector's way, then collect less often.

    Frozen objects (config, routing, identities, libraries' state) are never scanned again,
    so a full collection costs what the requests in flight hold, not the whole process.
    Request handling makes many short-lived objects but few reference cycles, so the default
    young threshold mostly rescans live request state; 10,000 measured best between
    throughput (50,000 was a little faster) and latency at a fixed rate (50,000 let single
    collections stall requests by several milliseconds), see docs/performance.md.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, 10, 10)


async def _live(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"}, dumps=_dumps)


@dataclass(slots=True)
class Readiness:
    """``GET /health/ready``: 503 while the gateway starts (``starting``) and from the moment
    a stop is asked for (``draining``: it serves on for ``server.drain_delay`` so that a load
    balancer takes it out of rotation first), else 200 with the number of model groups."""

    gateway: Gateway
    stopping: bool = False

    async def answer(self, request: web.Request) -> web.Response:
        """The readiness answer, as JSON."""
        if self.stopping:
            return web.json_response({"status": "draining"}, status=503, dumps=_dumps)
        if not self.gateway.ready:
            return web.json_response({"status": "starting"}, status=503, dumps=_dumps)
        models = len(self.gateway.pipeline.routing.groups)
        return web.json_response({"status": "ready", "models": models}, dumps=_dumps)


async def _metrics(request: web.Request) -> web.Response:
    metrics = request.app[GATEWAY].metrics
    if metrics is None:
        return await _unknown_route(request)
    return web.Response(body=metrics.exposition(), content_type="text/plain", charset="utf-8")


async def _unknown_route(request: web.Request) -> web.Response:
    """404 (or 405 on a known path) in the path's own error shape: Anthropic's under
    ``/v1/messages``, else OpenAI's, which the admin API answers in too."""
    error = await route_miss(request)
    rid = request_id(request)
    if request.path == "/v1/messages":  # under /v1/messages/ the dialect's catch-all answers
        return anthropic.error_response(error, rid, {"x-request-id": rid})
    return error_response(error, {"x-request-id": rid})


def _dumps(value: object) -> str:
    return orjson.dumps(value).decode()


class MalformedRequestRedaction(logging.Filter):
    """aiohttp's line for a request its parser refused (a header value with a control
    character, a header longer than the server reads or too many of them, a duplicated
    ``Content-Length`` or one beside ``Transfer-Encoding``, a bad request line): answered 400
    by aiohttp before any route, logged as one INFO line naming the client and what was
    wrong, without the request's bytes.

    aiohttp logs the refusal with its traceback at ERROR, as if the gateway had failed, so any
    client could fill the error log (and the alerts on it) at will; and the parser's message
    quotes the line it refused: ``b'Authorization: Bearer tw-...'`` whole, or a too long
    one's first hundred bytes, a key among them; a URL's query string in a bad request line.
    What is kept says what was wrong (the parser's words up to the quote) and who sent it."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite a parser refusal's record; let every other through as it is."""
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, HttpProcessingError):
            return True
        if not logging.getLogger(record.name).isEnabledFor(logging.INFO):
            return False
        sender = record.args[0] if isinstance(record.args, tuple) and record.args else "-"
        record.levelno, record.levelname = logging.INFO, "INFO"
        record.msg = (
            "malformed request from %s answered %s: %s (%s; the request's bytes are not"
            " logged: they may hold a credential)"
        )
        record.args = (sender, exc.code, _parser_words(exc.message), type(exc).__name__)
        record.exc_info = record.exc_text = None
        return True


def _parser_words(message: str) -> str:
    """What aiohttp's parser said was wrong, up to where it quotes the request."""
    first = message.strip().split("\n", 1)[0]
    return re.split(r"""[:'"]| b'""", first, maxsplit=1)[0].strip() or "malformed request"


def _withhold_malformed_requests(logger: logging.Logger) -> None:
    """Put ``MalformedRequestRedaction`` on ``logger`` (aiohttp's server log), once."""
    if not any(isinstance(f, MalformedRequestRedaction) for f in logger.filters):
        logger.addFilter(MalformedRequestRedaction())


_SECRET_PARAM = re.compile(r"key|token|secret|password|passwd|signature|sig|auth|credential", re.I)


class AccessLogger(AbstractAccessLogger):
    """``server.access_log``'s line per request: address, request line, status, size, time and
    user agent, with the value of any query parameter that may hold a credential (``key``,
    ``api_key``, ``token``, ``X-Amz-Signature``...) masked: a client that puts its key in the
    URL (as Gemini's clients do) must not find it in the gateway's log; and what looks like a
    credential anywhere else in the target (a key put in the path as if it were a key id, or
    in a parameter of another name) masked as kept bodies mask it (``redact``)."""

    proxies: ClassVar[TrustedProxies | None] = None
    """Whose ``X-Forwarded-For`` names the client the line begins with (``behind``)."""

    @classmethod
    def behind(cls, trusted_proxies: Sequence[str]) -> type[AccessLogger]:
        """This logger, writing the client's address as ``server.trusted_proxies`` give it
        (aiohttp makes the logger from the class it is given: the proxies are the class's)."""
        proxies = TrustedProxies(trusted_proxies) if trusted_proxies else None
        return type(cls.__name__, (cls,), {"proxies": proxies})

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        target = request.rel_url.path
        if request.rel_url.query_string:
            pairs = [
                f"{name}=***" if _SECRET_PARAM.search(name) else f"{name}={value}"
                for name, value in request.rel_url.query.items()
            ]
            target += "?" + "&".join(pairs)
        target = redact(target)
        version = f"HTTP/{request.version.major}.{request.version.minor}"
        agent = request.headers.get("User-Agent", "-")
        self.logger.info(
            '%s "%s %s %s" %d %d %.6fs "%s"',
            client_address(request, self.proxies), request.method, target, version, response.status,
            response.body_length, time, agent,
        )  # fmt: skip
