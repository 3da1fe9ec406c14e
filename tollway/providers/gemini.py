"""Google Gemini models, through the Gemini API or Vertex AI: chat, streams, token counts,
embeddings.

The two share one wire format and differ in where a model's methods live, how the credential
is sent, how embeddings are asked for and whether a tool result's image may go by URL, so
each is a row of data (``GeminiFlavor``):

- ``gemini``: ``{api_base}/v1beta/models/{model}:{method}``, the key in ``x-goog-api-key``.
- ``vertex_ai``: ``api_base`` names the project and region,
  ``https://{region}-aiplatform.googleapis.com/v1/projects/{project}/locations/{region}``;
  methods are at ``{api_base}/publishers/google/models/{model}:{method}`` and the credential
  is an OAuth access token sent as ``Authorization: Bearer``: given as ``api_key``, or minted
  by the gateway from a service account key (``google_service_account``, google_oauth.py).

Google takes fewer texts a call than OpenAI's 2,048: 100 requests a ``batchEmbedContents``,
250 instances a Vertex AI ``predict``, and one for a ``gemini-embedding`` model there. A
request with more is sent as several calls (a few at a time), and their embeddings and usage
are joined in input order, so a client within OpenAI's limits never gets Google's 400.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from tollway.core.errors import UpstreamError, UpstreamProtocolError, UpstreamTimeout
from tollway.core.types import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    Deployment,
    EmbeddingRequest,
    EmbeddingResponse,
    Usage,
)
from tollway.providers.base import ProviderResources, ProviderSpec
from tollway.providers.google_oauth import ServiceAccountTokens
from tollway.providers.http import encoded
from tollway.wire.gemini_embeddings import (
    batch_embed_to_wire,
    embedding_response_from_wire,
    predict_to_wire,
)
from tollway.wire.gemini_request import request_to_wire
from tollway.wire.gemini_response import error_from_wire, response_from_wire
from tollway.wire.gemini_stream import StreamReader
from tollway.wire.single_call import FirstCallOnly, first_call_only, wants_one_call

if TYPE_CHECKING:
    from tollway.config.schema import DeploymentConfig

EmbedBody = Callable[[EmbeddingRequest, str], dict[str, Any]]
EmbedMost = Callable[[str], int]
"""The most texts one embeddings call may hold for a model."""
CountBody = Callable[[dict[str, Any], str], dict[str, Any]]


def _wrapped_count(body: dict[str, Any], model: str) -> dict[str, Any]:
    # The Gemini API counts a whole request only when it comes wrapped, model and all.
    return {"generateContentRequest": {"model": f"models/{model}", **body}}


def _plain_count(body: dict[str, Any], model: str) -> dict[str, Any]:
    return body


def _batch_most(model: str) -> int:
    return 100  # BatchEmbedContentsRequest.requests: "at most 100 requests can be in one batch"


def _predict_most(model: str) -> int:
    # Vertex AI's text-embedding models take 250 instances a call, its Gemini ones one.
    return 1 if model.startswith("gemini-embedding") else 250


_EMBED_CALLS_AT_ONCE = 4
"""Calls of one split embeddings request in flight at once: enough to keep a large request's
wait short, few enough not to spend the deployment's rate limit in a burst."""


@dataclass(frozen=True, slots=True)
class GeminiFlavor:
    """How one way of reaching Gemini addresses methods, sends the credential, embeds, counts."""

    models_path: str
    auth_header: str
    auth_prefix: str
    embed_method: str
    embed_body: EmbedBody
    embed_most: EmbedMost
    count_body: CountBody
    result_uris: bool
    """Whether a function response's ``parts`` may hold ``fileData`` (an image by URL in a
    tool result): Vertex AI's ``FunctionResponsePart`` has it, the Gemini API's holds only
    ``inlineData``."""

    def url(self, deployment: Deployment, method: str) -> str:
        """The URL of ``method`` (``generateContent``, ...) of the deployment's model."""
        return f"{deployment.api_base}{self.models_path}/{deployment.model}:{method}"


GEMINI_API = GeminiFlavor(
    models_path="/v1beta/models",
    auth_header="x-goog-api-key",
    auth_prefix="",
    embed_method="batchEmbedContents",
    embed_body=batch_embed_to_wire,
    embed_most=_batch_most,
    count_body=_wrapped_count,
    result_uris=False,
)
VERTEX_AI = GeminiFlavor(
    models_path="/publishers/google/models",
    auth_header="Authorization",
    auth_prefix="Bearer ",
    embed_method="predict",
    embed_body=predict_to_wire,
    embed_most=_predict_most,
    count_body=_plain_count,
    result_uris=True,
)


class GeminiProvider:
    """Chat, streams, token counts and embeddings over the Gemini wire format."""

    def __init__(self, resources: ProviderResources, flavor: GeminiFlavor) -> None:
        self._client = resources.client
        self._vault = resources.vault
        self._flavor = flavor
        self._tokens = ServiceAccountTokens(resources.client, resources.vault)

    async def _headers(
        self, deployment: Deployment, forwarded: dict[str, str]
    ) -> tuple[dict[str, str], str | None]:
        """Request headers with the credential injected, and the secret (to scrub errors)."""
        headers = {**forwarded, **dict(deployment.headers), "Content-Type": "application/json"}
        account = deployment.google_service_account
        if account is not None:
            secret = await self._tokens.token(account, deployment.timeouts)
        elif deployment.api_key is not None:
            secret = self._vault.reveal(deployment.api_key)
        else:
            return headers, None
        headers[self._flavor.auth_header] = self._flavor.auth_prefix + secret
        return headers, secret

    def _body(self, request: ChatRequest, deployment: Deployment) -> dict[str, Any]:
        """The ``generateContent`` body of ``request`` as this way of reaching Gemini takes it."""
        return request_to_wire(request, deployment.model, result_uris=self._flavor.result_uris)

    async def _post(
        self, deployment: Deployment, method: str, body: Any, forwarded: dict[str, str]
    ) -> Any:
        headers, secret = await self._headers(deployment, forwarded)
        return await self._client.post_json(
            self._flavor.url(deployment, method),
            body,
            headers,
            deployment.timeouts,
            error_from_wire,
            secret,
        )

    async def chat(self, request: ChatRequest, deployment: Deployment) -> ChatResponse:
        """One complete answer."""
        body = self._body(request, deployment)
        raw = await self._post(deployment, "generateContent", body, request.upstream_headers)
        response = response_from_wire(raw, request.n or 1)
        # Gemini has no switch for parallel calls: a client that turned them off gets one.
        return first_call_only(response) if wants_one_call(request) else response

    async def stream(
        self, request: ChatRequest, deployment: Deployment
    ) -> AsyncIterator[ChatChunk]:
        """Chunks as the upstream sends them; a body that ends before the finish is an error."""
        headers, secret = await self._headers(deployment, request.upstream_headers)
        reader = StreamReader(request.n or 1)
        one_call = FirstCallOnly() if wants_one_call(request) else None
        events = self._client.post_stream(
            self._flavor.url(deployment, "streamGenerateContent") + "?alt=sse",
            self._body(request, deployment),
            headers,
            deployment.timeouts,
            error_from_wire,
            secret,
        )
        try:
            async for event in events:
                chunk = reader.feed(event.data)
                if chunk is not None and one_call is not None:
                    chunk = one_call(chunk)
                if chunk is not None:
                    yield chunk
        finally:
            await events.aclose()  # type: ignore[attr-defined]
        if not reader.done:
            raise UpstreamProtocolError("upstream stream ended before its finishReason")
        yield reader.last()

    def check(self, request: ChatRequest, deployment: Deployment) -> None:
        """The 400s ``count_tokens`` would answer for ``request`` before calling (for the
        local count of a deployment that cannot count now)."""
        encoded(
            self._flavor.count_body(request_to_wire(request, deployment.model), deployment.model)
        )

    async def count_tokens(self, request: ChatRequest, deployment: Deployment) -> int:
        """The input tokens of ``request`` as the upstream counts them."""
        body = self._flavor.count_body(self._body(request, deployment), deployment.model)
        raw = await self._post(deployment, "countTokens", body, request.upstream_headers)
        tokens = raw.get("totalTokens") if isinstance(raw, dict) else None
        if not isinstance(tokens, int):
            raise UpstreamProtocolError("upstream token count has no 'totalTokens'")
        return tokens

    async def embed(self, request: EmbeddingRequest, deployment: Deployment) -> EmbeddingResponse:
        """Embeddings of every input, in order: in several calls when Google takes fewer."""
        most = self._flavor.embed_most(deployment.model)
        if len(request.input) <= most:
            return await self._embed_call(request, deployment)
        parts = [
            replace(request, input=request.input[start : start + most])
            for start in range(0, len(request.input), most)
        ]
        loop = asyncio.get_running_loop()

        def call(part: EmbeddingRequest) -> Awaitable[EmbeddingResponse]:
            # A model group's deadline bounds the whole request: a batch sent after others
            # gets the time left then, not the limits the first batches got.
            timeouts = deployment.timeouts.left_at(loop.time())
            if timeouts is None:
                raise UpstreamTimeout(
                    "the model group's deadline passed before every batch of the request was sent",
                    phase="total",
                )
            return self._embed_call(part, replace(deployment, timeouts=timeouts))

        answers = await _each(parts, call)
        usage = Usage(input_tokens=sum(answer.usage.input_tokens for answer in answers))
        data = [vector for answer in answers for vector in answer.data]
        return EmbeddingResponse(model=deployment.model, data=data, usage=usage)

    async def _embed_call(
        self, request: EmbeddingRequest, deployment: Deployment
    ) -> EmbeddingResponse:
        method = self._flavor.embed_method
        body = self._flavor.embed_body(request, deployment.model)
        raw = await self._post(deployment, method, body, request.upstream_headers)
        return embedding_response_from_wire(raw, request, deployment.model)


async def _each(
    parts: Sequence[EmbeddingRequest],
    call: Callable[[EmbeddingRequest], Awaitable[EmbeddingResponse]],
) -> list[EmbeddingResponse]:
    """``call`` of every part, answers in order, ``_EMBED_CALLS_AT_ONCE`` in flight at a time;
    the first failure cancels the rest and is raised as it is (the pipeline judges it as any
    call's), carrying the tokens of the parts already answered (``spent``): Google bills
    them, so the request is charged for them though it failed."""
    gate = asyncio.Semaphore(_EMBED_CALLS_AT_ONCE)

    async def gated(part: EmbeddingRequest) -> EmbeddingResponse:
        async with gate:
            return await call(part)

    tasks: list[asyncio.Task[EmbeddingResponse]] = []
    try:
        async with asyncio.TaskGroup() as group:
            tasks += [group.create_task(gated(part)) for part in parts]
    except BaseExceptionGroup as failed:
        error = failed.exceptions[0]
        answered = [
            t.result() for t in tasks if t.done() and not t.cancelled() and not t.exception()
        ]
        if answered and isinstance(error, UpstreamError):
            error.spent = Usage(input_tokens=sum(a.usage.input_tokens for a in answered))
        raise error from None
    return [task.result() for task in tasks]


def _gemini(resources: ProviderResources) -> GeminiProvider:
    return GeminiProvider(resources, GEMINI_API)


def _vertex(resources: ProviderResources) -> GeminiProvider:
    return GeminiProvider(resources, VERTEX_AI)


SIMULATED_VERTEX_PATH = "/v1/projects/simulated/locations/us-central1"
"""Where the embedded simulator serves the Vertex AI form (any project and region work)."""
_VERTEX_BASE = re.compile(r"https?://[^/]+(/[^/]+)*/projects/[^/]+/locations/[^/]+/?")


def check_vertex_deployment(config: DeploymentConfig) -> None:
    """A vertex_ai ``api_base`` must name the project and the region; one credential kind."""
    # Imported here: the config schema itself imports the provider registry.
    from tollway.config.schema import EMBEDDED_SIMULATOR

    if config.api_key is not None and config.google_service_account is not None:
        raise ValueError(
            "provider 'vertex_ai' takes api_key (an access token) or google_service_account "
            "(a service account key the gateway mints tokens from), not both"
        )
    if config.api_base == EMBEDDED_SIMULATOR or _VERTEX_BASE.fullmatch(config.api_base or ""):
        return
    raise ValueError(
        "provider 'vertex_ai' needs api_base of the form https://{region}-aiplatform"
        ".googleapis.com/v1/projects/{project}/locations/{region}"
    )


SPECS = (
    ProviderSpec(
        name="gemini",
        build=_gemini,
        default_api_base="https://generativelanguage.googleapis.com",
        simulator_path="",
    ),
    ProviderSpec(
        name="vertex_ai",
        build=_vertex,
        default_api_base=None,
        simulator_path=SIMULATED_VERTEX_PATH,
        required_fields=("api_base",),
        check_config=check_vertex_deployment,
    ),
)
