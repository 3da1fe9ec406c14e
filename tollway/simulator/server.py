"""The simulator's HTTP surface: routes, control endpoints, the ``Simulator`` handle and ``serve``.

Routes: OpenAI ``/v1/chat/completions``, ``/v1/responses`` (and ``/v1/responses/compact``),
``/v1/embeddings``,
``/v1/models``; Mistral's strictness at ``/mistral/v1/chat/completions`` and
``/mistral/v1/embeddings``; Azure ``/openai/deployments/{deployment}/chat/completions`` and
``.../embeddings``, and its v1 API's ``/openai/v1/chat/completions`` and
``/openai/v1/embeddings``, and its Responses API at ``/openai/v1/responses`` and
``/openai/responses``; Anthropic ``/v1/messages`` and ``/v1/messages/count_tokens``; Bedrock
``/model/{modelId}/converse`` and ``.../converse-stream``; Gemini API and Vertex AI
``.../models/{model}:{method}`` (``gemini_api``); control endpoints under ``/_sim/``
(settings, the requests received, and the ones whose caller left before the answer was
complete).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine
from types import TracebackType
from typing import Any

import orjson
from aiohttp import web
from pydantic import ValidationError

from tollway.simulator import aws_auth
from tollway.simulator.anthropic_api import handle_count_tokens, handle_messages
from tollway.simulator.bedrock_api import handle_converse
from tollway.simulator.content import InvalidRequest
from tollway.simulator.errors import JSON_CONTENT_TYPE, Dialect, error_response
from tollway.simulator.exchange import Call, admit
from tollway.simulator.gemini_api import gemini_routes
from tollway.simulator.google_oauth import oauth_routes
from tollway.simulator.mistral_api import embedding_problems, problems, refusal
from tollway.simulator.openai_chat import handle_chat
from tollway.simulator.openai_misc import ANTHROPIC_MODELS, OPENAI_MODELS, handle_embeddings
from tollway.simulator.openai_responses import handle_responses
from tollway.simulator.responses_compact import handle_compact
from tollway.simulator.settings import RecordedRequest, SimulatorSettings
from tollway.simulator.state import SimulatorState

SHUTDOWN_TIMEOUT = 2.0
MAX_BODY_BYTES = 64 * 1024 * 1024
_JSON_HEADERS = {"Content-Type": JSON_CONTENT_TYPE}

Answer = Callable[[Call], Awaitable[web.StreamResponse]]


def _json(payload: object, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(payload), status=status, headers=_JSON_HEADERS)


class _Handlers:
    """Route handlers bound to one simulator's state."""

    def __init__(self, state: SimulatorState) -> None:
        self.state = state

    async def _run(
        self, request: web.Request, dialect: Dialect, answer: Answer, **admission: Any
    ) -> web.StreamResponse:
        call = await admit(request, self.state, dialect, **admission)
        if not isinstance(call, Call):
            return call
        v1 = request.path.startswith("/openai/v1/")
        if dialect is Dialect.AZURE and not v1 and "api-version" not in request.query:
            # Real Azure answers a missing api-version with a 404, not a 400.
            return error_response(dialect, 404, "Resource not found", request_id=call.request_id)
        try:
            return await answer(call)
        except InvalidRequest as exc:
            return error_response(
                dialect, 400, exc.message, request_id=call.request_id, param=exc.param,
                code=exc.code,
            )  # fmt: skip
        except asyncio.CancelledError:
            # The caller closed the connection while the answer was being prepared (the
            # runner cancels handlers then): what a gateway that gives up on a call does.
            self.state.departed(request)
            raise

    def _openai_model(self, call: Call, request: web.Request, dialect: Dialect) -> str:
        model = call.body.get("model")
        if dialect is Dialect.AZURE and "deployment" in request.match_info:
            return model if isinstance(model, str) else request.match_info["deployment"]
        if not isinstance(model, str) or not model:
            raise InvalidRequest("Missing required parameter: 'model'.", "model")
        return model

    async def _chat(self, request: web.Request, dialect: Dialect) -> web.StreamResponse:
        async def answer(call: Call) -> web.StreamResponse:
            if dialect is Dialect.MISTRAL and (details := problems(call.body)):
                return refusal(details, call.request_id)
            model = self._openai_model(call, request, dialect)
            return await handle_chat(request, call, self.state, dialect, model)

        return await self._run(request, dialect, answer)

    async def _embeddings(self, request: web.Request, dialect: Dialect) -> web.StreamResponse:
        async def answer(call: Call) -> web.StreamResponse:
            if dialect is Dialect.MISTRAL and (details := embedding_problems(call.body)):
                return refusal(details, call.request_id)
            model = self._openai_model(call, request, dialect)
            return await handle_embeddings(call, self.state, dialect, model)

        return await self._run(request, dialect, answer)

    async def openai_chat(self, request: web.Request) -> web.StreamResponse:
        return await self._chat(request, Dialect.OPENAI)

    async def azure_chat(self, request: web.Request) -> web.StreamResponse:
        return await self._chat(request, Dialect.AZURE)

    async def mistral_chat(self, request: web.Request) -> web.StreamResponse:
        return await self._chat(request, Dialect.MISTRAL)

    async def mistral_embeddings(self, request: web.Request) -> web.StreamResponse:
        return await self._embeddings(request, Dialect.MISTRAL)

    async def _responses(self, request: web.Request, dialect: Dialect) -> web.StreamResponse:
        async def answer(call: Call) -> web.StreamResponse:
            model = self._openai_model(call, request, dialect)
            return await handle_responses(request, call, self.state, model)

        return await self._run(request, dialect, answer)

    async def openai_responses(self, request: web.Request) -> web.StreamResponse:
        return await self._responses(request, Dialect.OPENAI)

    async def openai_compact(self, request: web.Request) -> web.StreamResponse:
        async def answer(call: Call) -> web.StreamResponse:
            model = self._openai_model(call, request, Dialect.OPENAI)
            return await handle_compact(request, call, self.state, model)

        return await self._run(request, Dialect.OPENAI, answer)

    async def azure_responses(self, request: web.Request) -> web.StreamResponse:
        return await self._responses(request, Dialect.AZURE)

    async def openai_embeddings(self, request: web.Request) -> web.StreamResponse:
        return await self._embeddings(request, Dialect.OPENAI)

    async def azure_embeddings(self, request: web.Request) -> web.StreamResponse:
        return await self._embeddings(request, Dialect.AZURE)

    async def models(self, request: web.Request) -> web.StreamResponse:
        anthropic = "anthropic-version" in request.headers
        dialect = Dialect.ANTHROPIC if anthropic else Dialect.OPENAI
        payload = ANTHROPIC_MODELS if anthropic else OPENAI_MODELS

        async def answer(call: Call) -> web.StreamResponse:
            return web.Response(body=payload, headers=_JSON_HEADERS)

        return await self._run(request, dialect, answer)

    async def messages(self, request: web.Request) -> web.StreamResponse:
        async def answer(call: Call) -> web.StreamResponse:
            return await handle_messages(request, call, self.state)

        return await self._run(request, Dialect.ANTHROPIC, answer)

    async def count_tokens(self, request: web.Request) -> web.StreamResponse:
        return await self._run(request, Dialect.ANTHROPIC, handle_count_tokens)

    async def converse(self, request: web.Request) -> web.StreamResponse:
        stream = request.match_info["action"] == "converse-stream"

        async def answer(call: Call) -> web.StreamResponse:
            return await handle_converse(request, call, self.state, stream)

        return await self._run(
            request, Dialect.BEDROCK, answer, streaming=stream, authorize=aws_auth.authorize
        )

    async def get_requests(self, request: web.Request) -> web.StreamResponse:
        return _json([recorded.to_dict() for recorded in self.state.recorded()])

    async def delete_requests(self, request: web.Request) -> web.StreamResponse:
        return _json({"deleted": self.state.clear_requests()})

    async def get_departures(self, request: web.Request) -> web.StreamResponse:
        return _json(self.state.departures())

    async def delete_departures(self, request: web.Request) -> web.StreamResponse:
        return _json({"deleted": self.state.clear_departures()})

    async def get_config(self, request: web.Request) -> web.StreamResponse:
        return _json(self.state.settings.model_dump())

    async def post_config(self, request: web.Request) -> web.StreamResponse:
        try:
            changes = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return _json({"error": "body must be a JSON object of settings changes"}, 400)
        if not isinstance(changes, dict):
            return _json({"error": "body must be a JSON object of settings changes"}, 400)
        try:
            settings = self.state.configure(**changes)
        except ValidationError as exc:
            return _json({"error": str(exc)}, 400)
        return _json(settings.model_dump())

    async def health(self, request: web.Request) -> web.StreamResponse:
        return _json({"status": "ok"})


def create_app(state: SimulatorState | Simulator | None = None) -> web.Application:
    """The aiohttp application of a simulator (a fresh default state when none is given)."""
    if isinstance(state, Simulator):
        state = state.state
    handlers = _Handlers(state if state is not None else SimulatorState())
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    add = app.router
    add.add_post("/v1/chat/completions", handlers.openai_chat)
    add.add_post("/v1/embeddings", handlers.openai_embeddings)
    add.add_post("/v1/responses", handlers.openai_responses)
    add.add_post("/v1/responses/compact", handlers.openai_compact)
    add.add_get("/v1/models", handlers.models)
    add.add_post("/mistral/v1/chat/completions", handlers.mistral_chat)
    add.add_post("/mistral/v1/embeddings", handlers.mistral_embeddings)
    add.add_post("/openai/deployments/{deployment}/chat/completions", handlers.azure_chat)
    add.add_post("/openai/deployments/{deployment}/embeddings", handlers.azure_embeddings)
    add.add_post("/openai/v1/chat/completions", handlers.azure_chat)
    add.add_post("/openai/v1/embeddings", handlers.azure_embeddings)
    add.add_post("/openai/v1/responses", handlers.azure_responses)
    add.add_post("/openai/responses", handlers.azure_responses)
    add.add_post("/v1/messages", handlers.messages)
    add.add_post("/v1/messages/count_tokens", handlers.count_tokens)
    add.add_post("/model/{model_id:.+}/{action:converse|converse-stream}", handlers.converse)
    add.add_routes(gemini_routes(handlers.state))
    add.add_routes(oauth_routes(handlers.state))
    add.add_get("/_sim/requests", handlers.get_requests)
    add.add_delete("/_sim/requests", handlers.delete_requests)
    add.add_get("/_sim/departures", handlers.get_departures)
    add.add_delete("/_sim/departures", handlers.delete_departures)
    add.add_get("/_sim/config", handlers.get_config)
    add.add_post("/_sim/config", handlers.post_config)
    add.add_get("/_sim/health", handlers.health)
    return app


class Simulator:
    """A simulated OpenAI / Azure OpenAI / Anthropic provider running in this event loop."""

    def __init__(self, settings: SimulatorSettings | None = None) -> None:
        self.state = SimulatorState(settings)
        self._runner: web.AppRunner | None = None
        self._url: str | None = None

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Start listening; returns the base URL (no ``/v1``), e.g. ``http://127.0.0.1:54321``."""
        if self._runner is not None:
            raise RuntimeError("simulator already started")
        # A fresh event: one made in an earlier event loop cannot be awaited in this one.
        self.state.stopping = asyncio.Event()
        runner = web.AppRunner(
            create_app(self.state),
            access_log=None,
            handler_cancellation=True,
            shutdown_timeout=SHUTDOWN_TIMEOUT,
        )
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port, backlog=1024).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        bound_port = runner.addresses[0][1]
        shown_host = f"[{host}]" if ":" in host else host
        self._url = f"http://{shown_host}:{bound_port}"
        return self._url

    async def stop(self) -> None:
        """Stop listening; hung and in-flight requests are cut after a short grace period."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        self.state.stopping.set()
        await runner.cleanup()

    @property
    def url(self) -> str:
        """The base URL of a started simulator."""
        if self._url is None:
            raise RuntimeError("simulator not started")
        return self._url

    @property
    def settings(self) -> SimulatorSettings:
        """The settings in force."""
        return self.state.settings

    @settings.setter
    def settings(self, value: SimulatorSettings) -> None:
        self.state.settings = value

    def configure(self, **changes: object) -> None:
        """Change some settings at runtime, e.g. ``configure(fault="status:500")``."""
        self.state.configure(**changes)

    @property
    def requests(self) -> list[RecordedRequest]:
        """The last requests received (up to 200), oldest first."""
        return self.state.recorded()

    def clear_requests(self) -> None:
        """Forget the recorded requests."""
        self.state.clear_requests()

    @property
    def departures(self) -> list[dict[str, Any]]:
        """The requests whose caller left before their answer was complete, oldest first."""
        return self.state.departures()

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


async def _serve_forever(host: str, port: int, settings: SimulatorSettings) -> None:
    simulator = Simulator(settings)
    url = await simulator.start(host, port)
    # The URL on stdout lets a parent process that asked for port 0 find the real port.
    print(f"tollway mock provider listening on {url}", flush=True)
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, done.set)
    try:
        await done.wait()
    finally:
        await simulator.stop()


def serve(host: str, port: int, settings: SimulatorSettings) -> None:
    """Run a simulator until SIGINT/SIGTERM (blocking), on uvloop when it is installed."""
    try:
        import uvloop
    except ImportError:
        runner: Callable[[Coroutine[Any, Any, None]], None] = asyncio.run
    else:
        runner = uvloop.run
    with contextlib.suppress(KeyboardInterrupt):
        runner(_serve_forever(host, port, settings))
    sys.stdout.flush()
