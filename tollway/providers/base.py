"""What a provider is: small capability protocols, and what a provider is built from."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from tollway.auth.vault import Vault
from tollway.core.types import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    Deployment,
    EmbeddingRequest,
    EmbeddingResponse,
)
from tollway.providers.http import UpstreamClient

if TYPE_CHECKING:
    from tollway.config.schema import DeploymentConfig


@runtime_checkable
class ChatProvider(Protocol):
    """Serves chat completions for deployments of one provider family."""

    async def chat(self, request: ChatRequest, deployment: Deployment) -> ChatResponse:
        """One complete answer."""
        ...

    def stream(self, request: ChatRequest, deployment: Deployment) -> AsyncIterator[ChatChunk]:
        """The answer as chunks, yielded as the upstream sends them."""
        ...


@runtime_checkable
class EmbeddingProvider(Protocol):
    """Serves embeddings."""

    async def embed(self, request: EmbeddingRequest, deployment: Deployment) -> EmbeddingResponse:
        """Embeddings of every input, in order."""
        ...


@runtime_checkable
class TokenCounter(Protocol):
    """Counts a chat request's input tokens the way the provider bills them."""

    async def count_tokens(self, request: ChatRequest, deployment: Deployment) -> int:
        """The input tokens of ``request`` on ``deployment``."""
        ...


@runtime_checkable
class RequestChecker(Protocol):
    """Tells, without calling the upstream, whether a chat request can be sent to it."""

    def check(self, request: ChatRequest, deployment: Deployment) -> None:
        """Raise what ``chat`` would raise for ``request`` before any call: the 400 naming
        what cannot be translated for ``deployment``, or what cannot be written as JSON."""
        ...


@dataclass(frozen=True, slots=True)
class ProviderResources:
    """What every provider is built with."""

    client: UpstreamClient
    vault: Vault


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    """A registered provider family: how to build it and where its API lives by default."""

    name: str
    build: Callable[[ProviderResources], ChatProvider | EmbeddingProvider]
    default_api_base: str | None
    """May name ``{region}``, filled from the deployment's ``region``."""
    simulator_path: str
    """Path under the embedded simulator's root that this family's API is served at."""
    required_fields: tuple[str, ...] = ()
    """Deployment config fields this family cannot do without."""
    own_fields: tuple[str, ...] = ()
    """Deployment config fields only this family takes (a deployment of another sets them:
    a config error)."""
    check_config: Callable[[DeploymentConfig], None] | None = None
    """Further checks of a deployment's config; raises ``ValueError`` saying what is wrong."""
    openai_hosts: tuple[str, ...] = ()
    """Hosts of ``api_base`` where this family serves OpenAI's own models, whose input tokens
    are then counted exactly (a leading dot: any subdomain; ``"*"``: any host)."""
    declares_tokenizer: bool = False
    """A deployment may declare ``tokenizer``: families of OpenAI's chat format, whose
    framing the local count follows."""
    responses_api: Callable[[str], bool] | None = None
    """Whether a deployment at this ``api_base`` speaks OpenAI's Responses API unless its
    config says (``responses_api``); ``None``: the family has none, whatever config says."""
