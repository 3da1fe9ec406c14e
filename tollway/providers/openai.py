"""OpenAI and every server that speaks its API (vLLM, Ollama, Groq, Mistral, ...), and Azure.

The family differs only in where the endpoint is and how the key is sent, so each member is
a row of data (``OpenAIFlavor``); the translation is shared.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import orjson
from yarl import URL

from tollway.core.errors import UpstreamProtocolError, UpstreamStatusError
from tollway.core.types import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    Deployment,
    EmbeddingRequest,
    EmbeddingResponse,
)
from tollway.providers.base import ProviderResources, ProviderSpec
from tollway.providers.field_rules import FieldRules
from tollway.providers.http import encoded
from tollway.providers.sse import SSEvent as _Event
from tollway.providers.sse import one_line
from tollway.wire.mistral_content import reasoning_in_content
from tollway.wire.openai_embeddings import (
    embedding_request_to_wire,
    embedding_response_from_wire,
    embedding_texts,
)
from tollway.wire.openai_request import request_to_wire
from tollway.wire.openai_response import (
    WIRE_FORMAT,
    ToolCallSlots,
    chunk_from_wire,
    error_from_wire,
    response_from_wire,
    usage_from_answer,
    usage_from_answer_bytes,
)
from tollway.wire.openai_stream_errors import is_error_event, stream_error
from tollway.wire.responses_upstream import EventReader, sendable
from tollway.wire.responses_upstream import response_from_wire as responses_from_wire

if TYPE_CHECKING:
    from tollway.config.schema import DeploymentConfig


def _always(deployment: Deployment) -> bool:
    return True


def _never(deployment: Deployment) -> bool:
    return False


def _responses_at_base(deployment: Deployment) -> str:
    return f"{deployment.api_base}/responses"


def _deployment_model(deployment: Deployment) -> str:
    return deployment.model


@dataclass(frozen=True, slots=True)
class OpenAIFlavor:
    """Where one member of the family puts its endpoints and its key."""

    url: Callable[[Deployment, str], str]
    body_model: Callable[[Deployment], str]
    """The ``model`` a request body names (Azure's v1 API finds the deployment by it)."""
    auth_header: str
    auth_prefix: str
    completion_tokens: Callable[[Deployment], bool]
    """Whether the upstream names the output limit ``max_completion_tokens`` (its reasoning
    models refuse ``max_tokens``) when the client's API gave it no name of its own."""
    stream_options: Callable[[Deployment], bool]
    """Whether the upstream takes ``stream_options`` (Mistral refuses it, 422 extra_forbidden,
    and puts usage in every stream's last chunk unasked; Azure before api-version 2024-08-01
    refuses it, and its streams then carry no usage, so the gateway counts it)."""
    knows_completion_tokens: Callable[[Deployment], bool] = _always
    """Whether the upstream knows ``max_completion_tokens`` at all; where it does not (Azure
    before api-version 2024-09-01 refuses it, Ollama ignores it and answers unlimited), a
    Chat Completions client's use of that name is sent as ``max_tokens``."""
    obfuscation: Callable[[Deployment], bool] = _never
    """Whether the upstream pads stream events with ``obfuscation`` (OpenAI's own API, unless
    the client sends ``stream_options.include_obfuscation: false``); elsewhere the client's
    choice is not sent."""
    fields: FieldRules | None = None
    """For a strict server, the fields it renames, ignores or refuses; ``None``: the body goes
    as the codec wrote it (every field the client sent passes through)."""
    embedding_fields: FieldRules | None = None
    """``fields`` for embeddings bodies (a strict server's embeddings schema is its own)."""
    embeds_text_only: bool = False
    """Whether the server embeds strings only (Mistral): token-id inputs, which LangChain's
    ``OpenAIEmbeddings`` sends by default, go as the text they encode, as to Gemini."""
    responses_url: Callable[[Deployment], str] = _responses_at_base
    """Where the upstream's Responses API is, for deployments that speak it."""
    responses_model: Callable[[Deployment], str] = _deployment_model
    """The ``model`` a Responses request body names."""
    reshape: Callable[[dict[str, Any]], bool] | None = None
    """For a server whose answers differ from OpenAI's shape, rewrites a parsed answer or
    stream chunk in place into it (whether it did: the bytes are then not sent on as they
    came); ``None``: answers are OpenAI's."""


def _plain_url(deployment: Deployment, endpoint: str) -> str:
    return f"{deployment.api_base}/{endpoint}"


AZURE_V1 = "v1"
"""The ``api_version`` of Azure's v1 API: ``/openai/v1/...`` with no ``api-version`` query and
the deployment named by the body's ``model``."""


def _azure_name(deployment: Deployment) -> str:
    return deployment.azure_deployment or deployment.model


def _azure_body_model(deployment: Deployment) -> str:
    # The deployments form names the deployment in the path (the body's model is ignored).
    return _azure_name(deployment) if deployment.api_version == AZURE_V1 else deployment.model


def _azure_url(deployment: Deployment, endpoint: str) -> str:
    if deployment.api_version == AZURE_V1:
        return f"{deployment.api_base}/openai/v1/{endpoint}"
    return (
        f"{deployment.api_base}/openai/deployments/{_azure_name(deployment)}/{endpoint}"
        f"?api-version={deployment.api_version}"
    )


_HTTPS = "https://"
_OFFICIAL_HOST = "api.openai.com"
# Azure knows max_completion_tokens from this api-version on (and its o-series and gpt-5
# deployments refuse max_tokens, as OpenAI's do); older versions know only max_tokens.
_AZURE_COMPLETION_TOKENS_SINCE = "2024-09-01"
# Azure takes stream_options (include_usage) from this api-version on (2024-08-01-preview,
# the first whose spec has chatCompletionStreamOptions; 2024-10-21 the first stable one);
# older versions answer "Unrecognized request argument supplied: stream_options".
_AZURE_STREAM_OPTIONS_SINCE = "2024-08-01"


def _model(deployment: Deployment) -> str:
    return deployment.model


def _azure_responses_url(deployment: Deployment) -> str:
    # Azure's Responses API has no deployments form: the v1 API, or a resource-wide path.
    if deployment.api_version == AZURE_V1:
        return f"{deployment.api_base}/openai/v1/responses"
    return f"{deployment.api_base}/openai/responses?api-version={deployment.api_version}"


def _openai_api(api_base: str) -> bool:
    """Whether ``api_base`` is OpenAI's own API (or a regional host of it), which speaks the
    Responses API; compatible servers mostly do not."""
    host = (URL(api_base).host or "").lower()
    return host == "api.openai.com" or host.endswith(".api.openai.com")


def _no_responses(api_base: str) -> bool:
    return False


def _official(deployment: Deployment) -> bool:
    """Whether the deployment is OpenAI's own API, at its main host or a data residency one
    (``eu.api.openai.com``), whose reasoning models refuse ``max_tokens`` alike; compatible
    servers may know only max_tokens. Text, not a parsed URL: asked of every stream."""
    base = deployment.api_base
    if not base.startswith(_HTTPS):
        return False
    host = base[len(_HTTPS) :].partition("/")[0].lower()
    return host == _OFFICIAL_HOST or host.endswith("." + _OFFICIAL_HOST)


def _azure_since(version: str, deployment: Deployment) -> bool:
    """Whether ``deployment``'s api-version is ``version`` (a date) or later."""
    own = deployment.api_version or ""  # v1, preview, latest: the newest
    return not own[:4].isdigit() or own >= version


def _azure_completion_tokens(deployment: Deployment) -> bool:
    return _azure_since(_AZURE_COMPLETION_TOKENS_SINCE, deployment)


def _azure_stream_options(deployment: Deployment) -> bool:
    return _azure_since(_AZURE_STREAM_OPTIONS_SINCE, deployment)


OPENAI = OpenAIFlavor(
    url=_plain_url,
    body_model=_model,
    auth_header="Authorization",
    auth_prefix="Bearer ",
    completion_tokens=_official,
    stream_options=_always,
    obfuscation=_official,
)
# Mistral's chat schema (ChatCompletionRequest in mistralai/client-python) forbids extra
# fields, so OpenAI's fields it lacks are renamed, left out or refused here, not by a 422.
_OPENAI_CACHE_SETTINGS = ("prompt_cache_retention", "prompt_cache_options")
"""OpenAI's prompt cache settings (how long it keeps a prompt's cache, where it may cut it):
Mistral has none, and its answer is the same without them."""
_MISTRAL_REFUSED = (
    "logit_bias", "logprobs", "top_logprobs", "modalities", "audio", "web_search_options",
    "verbosity", "functions", "function_call",
)  # fmt: skip
MISTRAL_FIELDS = FieldRules(
    provider="mistral",
    renamed={"max_completion_tokens": "max_tokens", "seed": "random_seed"},
    dropped=frozenset(
        {"store", "service_tier", "safety_identifier", "user", *_OPENAI_CACHE_SETTINGS}
    ),
    refused=frozenset(_MISTRAL_REFUSED),
    roles={"developer": "system"},
    message_keys={
        "system": frozenset({"role", "content"}),
        "user": frozenset({"role", "content"}),
        "assistant": frozenset({"role", "content", "tool_calls", "prefix"}),
        "tool": frozenset({"role", "content", "tool_call_id", "name"}),
    },
    tool_keys=frozenset({"type", "function"}),
    function_keys=frozenset({"name", "description", "parameters", "strict"}),
)
# Its embeddings schema (EmbeddingRequest) is as strict: OpenAI's ``dimensions`` is its
# ``output_dimension``; ``user`` (abuse monitoring) it lacks; ``input`` is text only.
MISTRAL_EMBEDDING_FIELDS = FieldRules(
    provider="mistral",
    renamed={"dimensions": "output_dimension"},
    dropped=frozenset({"user"}),
    refused=frozenset(),
    roles={},
    message_keys={},
)
# Its reasoning models (Magistral) answer with content as a list of thinking and text chunks.
MISTRAL = replace(
    OPENAI,
    stream_options=_never,
    obfuscation=_never,
    fields=MISTRAL_FIELDS,
    embedding_fields=MISTRAL_EMBEDDING_FIELDS,
    embeds_text_only=True,
    reshape=reasoning_in_content,
)
# Self-hosted servers: Ollama's request knows only max_tokens (other fields are ignored
# silently), as vLLM's did before 0.6; every release of each knows max_tokens. Their models
# are not OpenAI's: token-id inputs (cl100k_base ids, LangChain's default) are Ollama's 400
# and would be read by vLLM as ids of its model's own tokenizer, so they go as their text.
SELF_HOSTED = replace(OPENAI, knows_completion_tokens=_never, embeds_text_only=True)
AZURE = OpenAIFlavor(
    url=_azure_url,
    body_model=_azure_body_model,
    auth_header="api-key",
    auth_prefix="",
    completion_tokens=_azure_completion_tokens,
    knows_completion_tokens=_azure_completion_tokens,
    stream_options=_azure_stream_options,
    responses_url=_azure_responses_url,
    responses_model=_azure_name,
)


_NEWER_LIMIT = "max_completion_tokens"


class OpenAIProvider:
    """Chat and embeddings over the OpenAI wire format."""

    def __init__(self, resources: ProviderResources, flavor: OpenAIFlavor) -> None:
        self._client = resources.client
        self._vault = resources.vault
        self._flavor = flavor
        # Parsed once per deployment and endpoint: yarl parsing a URL string costs more than
        # the rest of building the request (providers are rebuilt with every pipeline).
        self._urls: dict[tuple[str, str, str, str], URL] = {}

    def _url(self, deployment: Deployment, endpoint: str) -> URL:
        key = (deployment.id, deployment.api_base, deployment.model, endpoint)
        url = self._urls.get(key)
        if url is None:
            url = self._urls[key] = URL(self._flavor.url(deployment, endpoint))
        return url

    def _body(self, request: ChatRequest, deployment: Deployment) -> dict[str, Any]:
        flavor = self._flavor
        stream = request.stream  # the stream rules are not even asked for a plain answer
        plain = request.wire_body
        if (
            plain is not None
            and not stream
            and flavor.fields is None
            and request.wire_format == WIRE_FORMAT
        ):
            # The client's own plain Chat Completions body says what the canonical request
            # does; only the model is the deployment's (``ChatRequest.wire_body``).
            body = plain.copy()
            body["model"] = flavor.body_model(deployment)
            if _NEWER_LIMIT in body and not flavor.knows_completion_tokens(deployment):
                body["max_tokens"] = body.pop(_NEWER_LIMIT)
            return body
        body = request_to_wire(
            request,
            flavor.body_model(deployment),
            completion_tokens=flavor.completion_tokens(deployment),
            stream_options=stream and flavor.stream_options(deployment),
            obfuscation=stream and flavor.obfuscation(deployment),
        )
        if _NEWER_LIMIT in body and not flavor.knows_completion_tokens(deployment):
            body["max_tokens"] = body.pop(_NEWER_LIMIT)  # the codec writes one of the two
        return body if flavor.fields is None else flavor.fields.apply(body)

    def check(self, request: ChatRequest, deployment: Deployment) -> None:
        """The 400s ``chat`` would answer for ``request`` before calling (for token counts)."""
        encoded(self._body(request, deployment))

    def _headers(
        self, deployment: Deployment, forwarded: dict[str, str]
    ) -> tuple[dict[str, str], str | None]:
        """Request headers with the credential injected, and the secret (to scrub errors)."""
        if deployment.headers:
            headers = {**forwarded, **dict(deployment.headers), "Content-Type": "application/json"}
        else:  # the usual deployment: no dict made of its (empty) headers every call
            headers = {**forwarded, "Content-Type": "application/json"}
        if deployment.api_key is None:
            return headers, None
        secret = self._vault.reveal(deployment.api_key)
        if deployment.bearer_key:  # an Entra ID token on Azure
            headers["Authorization"] = "Bearer " + secret
        else:
            headers[self._flavor.auth_header] = self._flavor.auth_prefix + secret
        return headers, secret

    async def chat(self, request: ChatRequest, deployment: Deployment) -> ChatResponse:
        """One complete chat answer."""
        if request.responses_body is not None and deployment.responses_api:
            return await self._respond(request, deployment)
        # A Responses client's request is tagged ``openai`` too, but its client is not sent
        # a Chat Completions body as it came.
        as_chat = request.responses_body is None
        headers, secret = self._headers(deployment, request.upstream_headers)
        reshape = self._flavor.reshape
        # The client is sent the answer's bytes themselves: only its usage is read.
        as_is = request.answer_as_is and request.wire_format == WIRE_FORMAT and as_chat
        body, raw = await self._client.post_json_body(
            self._url(deployment, "chat/completions"),
            self._body(request, deployment),
            headers,
            deployment.timeouts,
            error_from_wire,
            secret,
            usage_from_answer_bytes if as_is and reshape is None else orjson.loads,
        )
        if reshape is None:
            response = raw if as_is else response_from_wire(raw)
        else:
            if isinstance(raw, dict) and reshape(raw):
                body = orjson.dumps(raw)
            response = usage_from_answer(raw) if as_is else response_from_wire(raw)
        response.raw = body
        return response

    async def stream(
        self, request: ChatRequest, deployment: Deployment
    ) -> AsyncIterator[ChatChunk]:
        """Chunks as the upstream sends them; a stream without ``[DONE]`` is an error."""
        if request.responses_body is not None and deployment.responses_api:
            async for chunk in self._respond_stream(request, deployment):
                yield chunk
            return
        headers, secret = self._headers(deployment, request.upstream_headers)
        url = self._url(deployment, "chat/completions")
        body = self._body(request, deployment)
        events = self._client.post_stream(
            url, body, headers, deployment.timeouts, error_from_wire, secret
        )
        slots = ToolCallSlots()
        reshape = self._flavor.reshape
        try:
            if "stream_options" in body:
                try:
                    first = await anext(events, None)
                except UpstreamStatusError as exc:
                    if not _refuses_stream_options(exc):
                        raise
                    # A compatible server that knows no stream_options (an older release, a
                    # strict schema) refuses the whole call for the usage the gateway asked
                    # for: asked again without it; its usage is then counted (estimated).
                    await events.aclose()  # type: ignore[attr-defined]
                    body = {key: value for key, value in body.items() if key != "stream_options"}
                    events = self._client.post_stream(
                        url, body, headers, deployment.timeouts, error_from_wire, secret
                    )
                    first = await anext(events, None)
                if first is not None:  # else no events: the stream ended before [DONE]
                    events = _chained(first, events)
            async for event in events:
                data = event.data
                if data == b"[DONE]":
                    return
                if b"\n" in data:
                    data = one_line(data)
                try:
                    raw = orjson.loads(data)
                except orjson.JSONDecodeError:
                    raise UpstreamProtocolError("upstream sent an invalid stream event") from None
                if not isinstance(raw, dict):
                    raise UpstreamProtocolError("upstream stream event is not a JSON object")
                if is_error_event(raw):
                    raise stream_error(raw)  # an overload, a rate limit, ... as it says
                reshaped = reshape is not None and reshape(raw)
                chunk = chunk_from_wire(raw, slots)
                if not slots.placed and not reshaped:
                    chunk.raw = data  # else re-encoded for OpenAI clients
                yield chunk
        finally:
            # Returning at [DONE] leaves the upstream generator open; close it now.
            await events.aclose()  # type: ignore[attr-defined]
        raise UpstreamProtocolError("upstream stream ended before [DONE]")

    def _responses_body(self, request: ChatRequest, deployment: Deployment) -> dict[str, Any]:
        """The client's Responses body with the deployment's model and the output limit the
        gateway holds (a budget may have lowered it), without the reasoning the gateway wrote
        for another family, sealed or not (``sendable``)."""
        assert request.responses_body is not None
        body = {
            **sendable(request.responses_body),
            "model": self._flavor.responses_model(deployment),
        }
        if request.max_tokens is not None and not request.responses_route:  # compaction has none
            body["max_output_tokens"] = request.max_tokens
        return body

    def _responses_url(self, deployment: Deployment, route: str = "") -> URL:
        """The deployment's Responses API URL, ``route`` (``/compact``) under it."""
        key = (deployment.id, deployment.api_base, deployment.model, "/responses" + route)
        url = self._urls.get(key)
        if url is None:
            # Azure's dated api-versions put the version in the query, after the path.
            path, mark, query = self._flavor.responses_url(deployment).partition("?")
            url = self._urls[key] = URL(path + route + mark + query)
        return url

    async def _respond(self, request: ChatRequest, deployment: Deployment) -> ChatResponse:
        """A Responses request answered by the upstream's Responses API, sent on as it came."""
        headers, secret = self._headers(deployment, request.upstream_headers)
        body, raw = await self._client.post_json_body(
            self._responses_url(deployment, request.responses_route),
            self._responses_body(request, deployment),
            headers,
            deployment.timeouts,
            error_from_wire,
            secret,
        )
        response = responses_from_wire(raw, whole=not request.answer_as_is)
        response.raw = body
        return response

    async def _respond_stream(
        self, request: ChatRequest, deployment: Deployment
    ) -> AsyncIterator[ChatChunk]:
        """A Responses stream's events as chunks; one without its closing event is an error."""
        headers, secret = self._headers(deployment, request.upstream_headers)
        events = self._client.post_stream(
            self._responses_url(deployment),
            self._responses_body(request, deployment),
            headers,
            deployment.timeouts,
            error_from_wire,
            secret,
        )
        reader = EventReader()
        try:
            async for event in events:
                data = event.data
                yield reader.chunk(one_line(data) if b"\n" in data else data)
                if reader.finished:
                    return
        finally:
            await events.aclose()  # type: ignore[attr-defined]
        raise UpstreamProtocolError("upstream stream ended before response.completed")

    async def embed(self, request: EmbeddingRequest, deployment: Deployment) -> EmbeddingResponse:
        """Embeddings of every input."""
        headers, secret = self._headers(deployment, request.upstream_headers)
        body = embedding_request_to_wire(request, self._flavor.body_model(deployment))
        if self._flavor.embeds_text_only:
            body["input"] = embedding_texts(request)
        if self._flavor.embedding_fields is not None:
            body = self._flavor.embedding_fields.apply(body)
        raw = await self._client.post_json(
            self._url(deployment, "embeddings"),
            body,
            headers,
            deployment.timeouts,
            error_from_wire,
            secret,
        )
        return embedding_response_from_wire(raw, request.encoding_format)


_REFUSAL_STATUSES = frozenset({400, 422})


def _refuses_stream_options(error: UpstreamStatusError) -> bool:
    """Whether ``error`` is the upstream refusing ``stream_options`` itself: Azure's older
    api-versions' "Unrecognized request argument supplied: stream_options", a pydantic schema's
    ``extra_forbidden`` on it (422, or 400 from vLLM-style handlers), "Unknown parameter"."""
    if error.upstream_status not in _REFUSAL_STATUSES:
        return False
    return "stream_options" in (error.param or "") or "stream_options" in error.message


async def _chained(first: _Event, rest: AsyncIterator[_Event]) -> AsyncIterator[_Event]:
    """``first``, then the rest of the events it was read from (closed with them)."""
    try:
        yield first
        async for event in rest:
            yield event
    finally:
        await rest.aclose()  # type: ignore[attr-defined]


def check_azure_deployment(config: DeploymentConfig) -> None:
    """Refuses an ``api_base`` holding the path the gateway adds (``/openai/...``): the openai
    SDK's ``base_url`` for Azure's v1 API or the portal's target URI, copied as they are, sent
    every call to ``/openai/v1/openai/v1/...``, Azure's 404 at the first request."""
    if config.api_base is None:
        return
    url = URL(config.api_base)
    segments = url.path.split("/")
    if not url.is_absolute() or "openai" not in segments:
        return
    root = url.origin().with_path("/".join(segments[: segments.index("openai")]))
    raise ValueError(
        f"api_base is the resource's endpoint, {str(root).rstrip('/')!r}, without "
        "/openai/...: the gateway adds that path itself"
    )


def _openai(resources: ProviderResources) -> OpenAIProvider:
    return OpenAIProvider(resources, OPENAI)


def _mistral(resources: ProviderResources) -> OpenAIProvider:
    return OpenAIProvider(resources, MISTRAL)


def _self_hosted(resources: ProviderResources) -> OpenAIProvider:
    return OpenAIProvider(resources, SELF_HOSTED)


def _azure(resources: ProviderResources) -> OpenAIProvider:
    return OpenAIProvider(resources, AZURE)


# OpenAI-compatible services differ only in their default endpoint, and a few in a flavor
# (and where the simulator serves that flavor's strictness).
_BUILDS = {
    "mistral": _mistral,
    "ollama": _self_hosted,
    "vllm": _self_hosted,
    "lmstudio": _self_hosted,
}
_SIMULATOR_PATHS = {"mistral": "/mistral/v1"}
COMPATIBLE_BASES = {
    "openai": "https://api.openai.com/v1",
    "groq": "https://api.groq.com/openai/v1",
    "mistral": "https://api.mistral.ai/v1",
    "together": "https://api.together.xyz/v1",
    "deepseek": "https://api.deepseek.com/v1",
    "openrouter": "https://openrouter.ai/api/v1",
    "fireworks": "https://api.fireworks.ai/inference/v1",
    "ollama": "http://127.0.0.1:11434/v1",
    "vllm": "http://127.0.0.1:8000/v1",
    "lmstudio": "http://127.0.0.1:1234/v1",
}

# Where OpenAI's own models are served: OpenAI's API and its regional (data residency)
# hosts, and Azure OpenAI's v1 API; elsewhere an OpenAI-compatible server runs other models.
_OPENAI_HOSTS = {"openai": ("api.openai.com", ".api.openai.com", ".openai.azure.com")}
# Which members speak the Responses API unless a deployment says: OpenAI's own API (most
# compatible servers have no /v1/responses; a deployment of one that has sets it).
_RESPONSES_DEFAULTS = {"openai": _openai_api}

SPECS = (
    *(
        ProviderSpec(
            name=name,
            build=_BUILDS.get(name, _openai),
            default_api_base=base,
            simulator_path=_SIMULATOR_PATHS.get(name, "/v1"),
            openai_hosts=_OPENAI_HOSTS.get(name, ()),
            declares_tokenizer=True,
            responses_api=_RESPONSES_DEFAULTS.get(name, _no_responses),
        )
        for name, base in COMPATIBLE_BASES.items()
    ),
    ProviderSpec(
        name="azure_openai",
        build=_azure,
        default_api_base=None,
        simulator_path="",
        required_fields=("api_base", "api_version"),
        own_fields=("azure_ad_token",),
        check_config=check_azure_deployment,
        # Azure OpenAI lives at each customer's own resource (or a custom domain before it).
        openai_hosts=("*",),
        declares_tokenizer=True,
        responses_api=_no_responses,  # only where config sets it
    ),
)
