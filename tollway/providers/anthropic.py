"""Anthropic's Messages API: chat, streaming and token counting.

The key goes in ``x-api-key``; every call names the API version it was written against
(``ANTHROPIC_VERSION``), which a deployment's ``headers`` may override.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import orjson
from yarl import URL

from tollway.core.errors import UpstreamProtocolError
from tollway.core.types import ChatChunk, ChatRequest, ChatResponse, Deployment
from tollway.providers.base import ProviderResources, ProviderSpec
from tollway.providers.http import encoded
from tollway.wire.anthropic_request import (
    check_temperature,
    count_tokens_to_wire,
    request_to_wire,
)
from tollway.wire.anthropic_response import (
    WIRE_FORMAT,
    error_from_wire,
    response_from_wire,
    usage_from_answer_bytes,
)
from tollway.wire.anthropic_stream import StreamReader

ANTHROPIC_VERSION = "2023-06-01"
BETA_HEADER = "anthropic-beta"


def with_deployment_headers(
    client: Mapping[str, str], deployment: tuple[tuple[str, str], ...]
) -> dict[str, str]:
    """The client's forwarded headers overlaid with a deployment's own, except
    ``anthropic-beta``, which both may name: their betas merged (the client's, then the
    deployment's, each once), since a deployment pinning a beta it needs should not take away
    the ones its client asked for (Anthropic's API and Bedrock take any list of them)."""
    headers = {**client, **dict(deployment)}
    if not deployment or not client:  # the usual case: nothing to merge, nothing walked
        return headers
    pinned, asked = _betas(dict(deployment)), _betas(client)
    if not pinned or not asked:
        return headers
    for name in [name for name in headers if name.lower() == BETA_HEADER]:
        del headers[name]  # whatever case either side wrote it in: sent once
    headers[BETA_HEADER] = ",".join(dict.fromkeys(asked + pinned))
    return headers


def _betas(headers: Mapping[str, str]) -> list[str]:
    """The betas ``anthropic-beta`` names in ``headers`` (comma-separated, any case)."""
    return [
        beta.strip()
        for name, value in headers.items()
        if name.lower() == BETA_HEADER
        for beta in value.split(",")
        if beta.strip()
    ]


class AnthropicProvider:
    """Chat, streams and token counts over the Anthropic Messages wire format."""

    def __init__(self, resources: ProviderResources) -> None:
        self._client = resources.client
        self._vault = resources.vault
        # Parsed once per deployment and path (yarl parsing a URL string costs more than the
        # rest of building the request; providers are rebuilt with every pipeline).
        self._urls: dict[tuple[str, str, str], URL] = {}

    def _url(self, deployment: Deployment, path: str) -> URL:
        key = (deployment.id, deployment.api_base, path)
        url = self._urls.get(key)
        if url is None:
            url = self._urls[key] = URL(f"{deployment.api_base}{path}")
        return url

    def _headers(
        self, request: ChatRequest, deployment: Deployment
    ) -> tuple[dict[str, str], str | None]:
        """Request headers with the credential injected, and the secret (to scrub errors)."""
        client = {**request.upstream_headers, "anthropic-version": ANTHROPIC_VERSION}
        headers = with_deployment_headers(client, deployment.headers)
        headers["Content-Type"] = "application/json"
        if deployment.api_key is None:
            return headers, None
        secret = self._vault.reveal(deployment.api_key)
        headers["x-api-key"] = secret
        return headers, secret

    async def _post(
        self,
        request: ChatRequest,
        deployment: Deployment,
        path: str,
        body: Any,
        parse: Callable[[bytes], Any] = orjson.loads,
    ) -> tuple[bytes, Any]:
        headers, secret = self._headers(request, deployment)
        return await self._client.post_json_body(
            self._url(deployment, path),
            body,
            headers,
            deployment.timeouts,
            error_from_wire,
            secret,
            parse,
        )

    @staticmethod
    def _body(request: ChatRequest, deployment: Deployment, stream: bool) -> dict[str, Any]:
        plain = request.wire_body
        if plain is not None and request.wire_format == WIRE_FORMAT:
            # The client's own plain Messages body says what the canonical request does;
            # only the model is the deployment's (``ChatRequest.wire_body``).
            check_temperature(request)
            body = plain.copy()
            body["model"] = deployment.model
        else:
            body = request_to_wire(request, deployment.model)
        if stream:
            body["stream"] = True
        else:
            body.pop("stream", None)
        return body

    async def chat(self, request: ChatRequest, deployment: Deployment) -> ChatResponse:
        """One complete answer."""
        body = self._body(request, deployment, stream=False)
        if request.answer_as_is and request.wire_format == WIRE_FORMAT:
            # The client is sent ``payload`` itself: only its usage is read.
            payload, read = await self._post(
                request, deployment, "/v1/messages", body, usage_from_answer_bytes
            )
            response: ChatResponse = read
        else:
            payload, raw = await self._post(request, deployment, "/v1/messages", body)
            response = response_from_wire(raw)
        response.raw = payload
        return response

    def check(self, request: ChatRequest, deployment: Deployment) -> None:
        """The 400s ``count_tokens`` would answer for ``request`` before calling (for the
        local count of a deployment that cannot count now)."""
        encoded(count_tokens_to_wire(request, deployment.model))

    async def count_tokens(self, request: ChatRequest, deployment: Deployment) -> int:
        """The input tokens of ``request`` as the upstream counts them."""
        body = count_tokens_to_wire(request, deployment.model)
        _, raw = await self._post(request, deployment, "/v1/messages/count_tokens", body)
        tokens = raw.get("input_tokens") if isinstance(raw, dict) else None
        if not isinstance(tokens, int):
            raise UpstreamProtocolError("upstream token count has no 'input_tokens'")
        return tokens

    async def stream(
        self, request: ChatRequest, deployment: Deployment
    ) -> AsyncIterator[ChatChunk]:
        """Chunks as the upstream sends them; a stream without ``message_stop`` is an error."""
        headers, secret = self._headers(request, deployment)
        body = self._body(request, deployment, stream=True)
        reader = StreamReader()
        events = self._client.post_stream(
            self._url(deployment, "/v1/messages"),
            body,
            headers,
            deployment.timeouts,
            error_from_wire,
            secret,
        )
        try:
            async for event in events:
                chunk = reader.feed(event.data)
                if chunk is not None:
                    yield chunk
                if reader.done:
                    return
        finally:
            # Returning at message_stop leaves the upstream generator open; close it now.
            await events.aclose()  # type: ignore[attr-defined]
        raise UpstreamProtocolError("upstream stream ended before message_stop")


SPECS = (
    ProviderSpec(
        name="anthropic",
        build=AnthropicProvider,
        default_api_base="https://api.anthropic.com",
        simulator_path="",
    ),
)
