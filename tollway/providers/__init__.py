"""Provider families by registry: each module contributes ``ProviderSpec`` rows.

Adding a provider is adding a module with its specs and listing it here; nothing outside
this package asks which provider it is talking to.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from tollway.providers import anthropic, bedrock, gemini, openai
from tollway.providers.base import ChatProvider, EmbeddingProvider, ProviderResources, ProviderSpec

BUILTIN_PROVIDERS: Mapping[str, ProviderSpec] = MappingProxyType(
    {spec.name: spec for spec in (*openai.SPECS, *anthropic.SPECS, *bedrock.SPECS, *gemini.SPECS)}
)

__all__ = [
    "BUILTIN_PROVIDERS",
    "ChatProvider",
    "EmbeddingProvider",
    "ProviderResources",
    "ProviderSpec",
]
