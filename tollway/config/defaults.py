"""The embedded default configuration: what ``tollway serve`` runs with no config file.

The simulated provider starts in-process behind demo model names so a request works at
once; when ``OPENAI_API_KEY`` is set, OpenAI's usual models are offered too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tollway.config.loader import validate_settings
from tollway.config.schema import EMBEDDED_SIMULATOR, Settings

DEMO_CHAT_MODELS = ("demo-chat", "demo-chat-large")
DEMO_EMBEDDING_MODEL = "demo-embed"
OPENAI_CHAT_MODELS = ("gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini", "gpt-4.1-nano", "o4-mini")
OPENAI_EMBEDDING_MODELS = ("text-embedding-3-small", "text-embedding-3-large")


def _group(name: str, provider: str, model: str, kind: str, **deployment: str) -> dict[str, Any]:
    return {
        "name": name,
        "kind": kind,
        "owned_by": provider if provider != "openai" or "api_key" in deployment else "tollway",
        "deployments": [{"provider": provider, "model": model, **deployment}],
    }


def default_settings(environ: Mapping[str, str]) -> Settings:
    """The embedded default for this environment."""
    sim = {"api_base": EMBEDDED_SIMULATOR}
    models = [
        _group("demo-chat", "openai", "sim-chat", "chat", **sim),
        _group("demo-chat-large", "openai", "sim-chat-large", "chat", **sim),
        _group(DEMO_EMBEDDING_MODEL, "openai", "sim-embed", "embedding", **sim),
    ]
    if environ.get("OPENAI_API_KEY"):
        key = {"api_key": "env:OPENAI_API_KEY"}
        models += [_group(m, "openai", m, "chat", **key) for m in OPENAI_CHAT_MODELS]
        models += [_group(m, "openai", m, "embedding", **key) for m in OPENAI_EMBEDDING_MODELS]
    data = {"simulator": {"enabled": True}, "models": models}
    return validate_settings(data, source="<embedded default>")
