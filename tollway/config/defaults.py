"""The embedded default configuration: what ``tollway serve`` runs with no config file.

The simulated provider starts in-process behind demo model names so a request works at
once (``demo-claude`` through the Anthropic wire format); when ``OPENAI_API_KEY`` or
``ANTHROPIC_API_KEY`` is set, that provider's usual models are offered too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tollway.config.loader import validate_settings
from tollway.config.schema import EMBEDDED_SIMULATOR, Settings

DEMO_CHAT_MODELS = ("demo-chat", "demo-chat-large")
DEMO_EMBEDDING_MODEL = "demo-embed"
DEMO_ANTHROPIC_MODEL = "demo-claude"
OPENAI_CHAT_MODELS = ("gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini", "gpt-4.1-nano", "o4-mini")
OPENAI_EMBEDDING_MODELS = ("text-embedding-3-small", "text-embedding-3-large")
# The current Opus, Sonnet and Haiku generations, and the previous ones still served.
ANTHROPIC_CHAT_MODELS = (
    "claude-opus-5-5",
    "claude-sonnet-5-5",
    "claude-haiku-5-5",
    "claude-opus-4-8",
    "claude-sonnet-4-6",
    "claude-haiku-4-5",
)


def _group(name: str, provider: str, model: str, kind: str, **deployment: str) -> dict[str, Any]:
    return {
        "name": name,
        "kind": kind,
        # Simulated demo models are the gateway's own, whatever wire format they speak.
        "owned_by": provider if "api_key" in deployment else "tollway",
        "deployments": [{"provider": provider, "model": model, **deployment}],
    }


def default_settings(environ: Mapping[str, str]) -> Settings:
    """The embedded default for this environment."""
    sim = {"api_base": EMBEDDED_SIMULATOR}
    models = [
        _group("demo-chat", "openai", "sim-chat", "chat", **sim),
        _group("demo-chat-large", "openai", "sim-chat-large", "chat", **sim),
        _group(DEMO_EMBEDDING_MODEL, "openai", "sim-embed", "embedding", **sim),
        _group(DEMO_ANTHROPIC_MODEL, "anthropic", "sim-chat", "chat", **sim),
    ]
    if environ.get("OPENAI_API_KEY"):
        key = {"api_key": "env:OPENAI_API_KEY"}
        models += [_group(m, "openai", m, "chat", **key) for m in OPENAI_CHAT_MODELS]
        models += [_group(m, "openai", m, "embedding", **key) for m in OPENAI_EMBEDDING_MODELS]
    if environ.get("ANTHROPIC_API_KEY"):
        key = {"api_key": "env:ANTHROPIC_API_KEY"}
        models += [_group(m, "anthropic", m, "chat", **key) for m in ANTHROPIC_CHAT_MODELS]
    # The demo models answer without a key so the first request works at once; everything
    # else (real providers included) needs a virtual key.
    data = {
        "simulator": {"enabled": True},
        "auth": {"anonymous_models": ["demo-*"]},
        "models": models,
    }
    return validate_settings(data, source="<embedded default>")
